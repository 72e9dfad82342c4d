"""What every project DAG shares in its header: a fixed, timezone-aware start date, the default task args, and
how a stage's TaskGroup is declared."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_ARGS = {"owner": "scones-ml", "retries": 2, "retry_delay": timedelta(seconds=30)}


def stage(name: str, tooltip: str) -> dict[str, Any]:
    """TaskGroup arguments for one stage of a DAG's graph. Task ids stay unprefixed (`train`, not `Train.train`),
    so logs, XCom pulls and the CLI name tasks as before."""
    return {"group_id": name, "tooltip": tooltip, "prefix_group_id": False}
