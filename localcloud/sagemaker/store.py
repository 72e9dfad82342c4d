"""Durable state: one SQLite file holding every resource description as JSON.

Descriptions are stored exactly as Describe* returns them, so a restart needs no conversion.
Thread-safe: the control plane serves requests from a thread pool and runners report from
their own threads."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
);
"""


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM resources").fetchone()
        self._seq = int(row[0])

    def put(self, kind: str, name: str, body: dict[str, Any]) -> None:
        text = json.dumps(body)
        with self._lock:
            self._seq += 1
            # Keep the original insertion order (seq) when an existing row is updated.
            self._db.execute(
                "INSERT INTO resources (kind, name, body, seq) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(kind, name) DO UPDATE SET body = excluded.body",
                (kind, name, text, self._seq),
            )

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM resources WHERE kind = ? AND name = ?", (kind, name)).fetchone()
        return json.loads(row[0]) if row else None

    def delete(self, kind: str, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM resources WHERE kind = ? AND name = ?", (kind, name))

    def list(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM resources WHERE kind = ? ORDER BY seq", (kind,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
