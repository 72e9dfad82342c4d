"""An offline CIFAR-100 mirror for the demo and the tests: serve a fixture archive over real HTTP on loopback.

Lives in tools/, not include/: it is how this machine stands in for the CIFAR host, never part of the DAGs.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


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
