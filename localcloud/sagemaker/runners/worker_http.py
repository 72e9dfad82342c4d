"""The local SageMaker's one HTTP client for its model servers: HTTP/1.1 POST /invocations (the InvokeEndpoint
hop, batch transform) and GET /ping on pooled keep-alive connections, written with asyncio streams directly.

Why not httpx here: on a 2-core machine the generic client (httpx -> httpcore -> anyio, cookies, auth and
redirect handling, several awaits per request) cost more CPU per invocation than the rest of the control
plane's request path together (see benchmarks/profiles/); measured again against a pure-Python model server,
httpx.AsyncClient spent 1.0-1.4 ms of CPU and 1.2-2.8 ms of wall time per request where this pool spends
0.1 ms and 0.2-0.4 ms. The worker is our own `serving_worker.py`, always HTTP/1.1 with Content-Length, so a
request is one write and a reply is one header read plus one body read.

Errors are the caller's to classify: connect failures and timeouts raise `WorkerConnectError`, a read past the
deadline raises `TimeoutError`, a connection dropped mid-reply raises `WorkerDisconnected`."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

MAX_IDLE_CONNECTIONS = 64  # per worker; more than the concurrency a one-request-at-a-time worker can use
KEEPALIVE_EXPIRY_S = 5.0  # the worker drops idle connections after IDLE_CONNECTION_TIMEOUT_S (120 s)
MAX_HEADER_BYTES = 64 * 1024


class WorkerConnectError(ConnectionError):
    """No connection could be opened (refused, or not accepted in time)."""


class WorkerDisconnected(ConnectionError):
    """The connection closed or broke before a complete reply arrived."""


@dataclass(frozen=True)
class RawReply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def close(self) -> None:
        self.writer.close()


@dataclass
class WorkerConnectionPool:
    """Keep-alive connections to one worker, for the event loop that made them (streams are loop-bound)."""

    host: str
    port: int
    _idle: deque[_Connection] = field(default_factory=deque)

    async def post(
        self, path: str, body: bytes, headers: dict[str, str], connect_timeout_s: float, read_timeout_s: float
    ) -> RawReply:
        return await self._request("POST", path, body, headers, connect_timeout_s, read_timeout_s)

    async def get(self, path: str, connect_timeout_s: float, read_timeout_s: float) -> RawReply:
        return await self._request("GET", path, b"", {}, connect_timeout_s, read_timeout_s)

    async def _request(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> RawReply:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        connection = self._take_idle()
        if connection is not None:
            try:
                return await self._exchange(connection, request, read_timeout_s)
            except WorkerDisconnected as error:
                # The worker may have closed an idle connection just as we reused it. Nothing was answered, and
                # the worker handles a request only after reading all of it, so a fresh connection is safe.
                if not error.args or error.args[0] != _NOTHING_RECEIVED:
                    raise
        connection = await self._connect(connect_timeout_s)
        return await self._exchange(connection, request, read_timeout_s)

    def close(self) -> None:
        while self._idle:
            self._idle.popleft().close()

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the least likely to have been dropped
            if now - connection.idle_since < KEEPALIVE_EXPIRY_S and not connection.reader.at_eof():
                return connection
            connection.close()
        return None

    async def _connect(self, timeout_s: float) -> _Connection:
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as error:
            raise WorkerConnectError(f"cannot connect to {self.host}:{self.port}: {error!r}") from error
        return _Connection(reader, writer)

    async def _exchange(self, connection: _Connection, request: bytes, timeout_s: float) -> RawReply:
        received_anything = False
        try:
            async with asyncio.timeout(timeout_s):
                connection.writer.write(request)
                await connection.writer.drain()
                head = await connection.reader.readuntil(b"\r\n\r\n")
                received_anything = True
                status, headers = _parse_head(head)
                body = await connection.reader.readexactly(int(headers.get("content-length") or 0))
        except TimeoutError:
            connection.close()
            raise
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
            connection.close()
            if not received_anything and isinstance(error, OSError | asyncio.IncompleteReadError):
                raise WorkerDisconnected(_NOTHING_RECEIVED) from error
            raise WorkerDisconnected(f"the reply from {self.host}:{self.port} broke off: {error!r}") from error
        if headers.get("connection", "").lower() == "close":
            connection.close()
        elif len(self._idle) < MAX_IDLE_CONNECTIONS:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        return RawReply(status, headers, body)


_NOTHING_RECEIVED = "the connection closed before any reply"


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of `HTTP/1.1 200 OK\\r\\nName: value\\r\\n...\\r\\n\\r\\n`."""
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError("reply headers too large")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise ValueError("chunked replies are not expected from the model server")
    return int(parts[1]), headers
