from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.scones.helpers import ScriptedServer


@pytest.fixture
def http_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    try:
        yield server
    finally:
        server.close()
