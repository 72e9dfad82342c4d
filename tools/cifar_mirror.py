"""An offline CIFAR-100 mirror for the demo and the tests: serve a fixture archive over real HTTP on loopback.

Lives in tools/, not include/: it is how this machine stands in for the CIFAR host, never part of the DAGs.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tools.fixture import build_fixture

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATASET = PROJECT_ROOT / "datasets" / "cifar100-bicycle-motorcycle"
ARCHIVE_NAME = "cifar-100-python.tar.gz"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        pass


@contextmanager
def serve_archive(archive: Path) -> Iterator[str]:
    """Serve `archive` over real HTTP on 127.0.0.1 (a free port) as an offline CIFAR mirror; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(archive.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, name="cifar-mirror", daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{archive.name}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def configured_or_fixture_source(fixture_dir: Path) -> Iterator[dict[str, str]]:
    """Where the DAGs get CIFAR-100: the user's SCONES_CIFAR_URL if set (nothing to add to the environment);
    otherwise a fixture archive built from datasets/ into `fixture_dir` and served while the context lasts,
    as the SCONES_CIFAR_URL/SCONES_CIFAR_MD5 pair to add to the DAGs' environment."""
    if os.environ.get("SCONES_CIFAR_URL"):
        print(f"data: {os.environ['SCONES_CIFAR_URL']}", flush=True)
        yield {}
        return
    archive = fixture_dir / ARCHIVE_NAME
    md5 = build_fixture(DATASET, archive)
    with serve_archive(archive) as url:
        print(
            f"data: fixture archive built from {DATASET.relative_to(PROJECT_ROOT)}, served at {url} (md5 {md5}); "
            "set SCONES_CIFAR_URL and SCONES_CIFAR_MD5 to use another copy",
            flush=True,
        )
        yield {"SCONES_CIFAR_URL": url, "SCONES_CIFAR_MD5": md5}
