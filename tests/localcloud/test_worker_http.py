"""The InvokeEndpoint hop's HTTP client (runners/worker_http.py) against small asyncio servers that misbehave
on purpose: keep-alive reuse, a pooled connection the server already closed, a reply cut short, a model too slow
to answer, a refused connection, `Connection: close`, and a reply that is not HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from localcloud.sagemaker.runners.worker_http import (
    WorkerConnectError,
    WorkerConnectionPool,
    WorkerDisconnected,
)
from tests.conftest import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return await reader.readexactly(length)


def reply(body: bytes, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def serve(handler: Handler, port: int) -> tuple[asyncio.Server, list[int]]:
    """A server on `port` that numbers its connections and passes each to `handler`."""
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        try:
            await handler(reader, writer, connections[-1])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(on_connect, "127.0.0.1", port), connections


def post(pool: WorkerConnectionPool, body: bytes = b"ping", read_timeout_s: float = 5.0) -> Awaitable:
    return pool.post("/invocations", body, {"Content-Type": "text/plain"}, 1.0, read_timeout_s)


async def echo_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
    while True:
        body = await read_request(reader)
        writer.write(reply(b"echo:" + body))
        await writer.drain()


def test_replies_are_parsed_and_the_connection_is_reused() -> None:
    async def scenario() -> None:
        port = free_port()
        server, connections = await serve(echo_forever, port)
        pool = WorkerConnectionPool("127.0.0.1", port)
        first = await post(pool, b"one")
        second = await post(pool, b"two")
        assert (first.status, first.body, first.headers["content-type"]) == (200, b"echo:one", "application/json")
        assert second.body == b"echo:two"
        assert connections == [0]  # keep-alive: one connection served both
        pool.close()
        server.close()

    asyncio.run(scenario())


def test_a_pooled_connection_the_server_closed_is_replaced_transparently() -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        body = await read_request(reader)
        writer.write(reply(f"conn{number}:".encode() + body))
        await writer.drain()
        await reader.read(1)  # the next request: dropped unanswered, as by a worker closing an idle connection

    async def scenario() -> None:
        port = free_port()
        server, connections = await serve(answer_once, port)
        pool = WorkerConnectionPool("127.0.0.1", port)
        assert (await post(pool, b"a")).body == b"conn0:a"
        assert (await post(pool, b"b")).body == b"conn1:b"  # retried once, on a fresh connection
        assert connections == [0, 1]
        server.close()

    asyncio.run(scenario())


def test_an_expired_pooled_connection_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    from localcloud.sagemaker.runners import worker_http

    async def scenario() -> None:
        port = free_port()
        server, connections = await serve(echo_forever, port)
        pool = WorkerConnectionPool("127.0.0.1", port)
        await post(pool)
        monkeypatch.setattr(worker_http, "KEEPALIVE_EXPIRY_S", 0.0)
        await post(pool)
        assert connections == [0, 1]
        server.close()

    asyncio.run(scenario())


def test_a_reply_cut_short_is_a_disconnect_and_is_not_retried() -> None:
    async def half_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()

    async def scenario() -> None:
        port = free_port()
        server, connections = await serve(half_reply, port)
        with pytest.raises(WorkerDisconnected, match="broke off"):
            await post(WorkerConnectionPool("127.0.0.1", port))
        assert connections == [0]  # the request may have run: never sent twice
        server.close()

    asyncio.run(scenario())


def test_a_worker_that_does_not_answer_in_time_raises_timeout() -> None:
    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    async def scenario() -> None:
        port = free_port()
        server, _ = await serve(never_answers, port)
        with pytest.raises(TimeoutError):
            await post(WorkerConnectionPool("127.0.0.1", port), read_timeout_s=0.2)
        server.close()

    asyncio.run(scenario())


def test_a_refused_connection_is_a_connect_error() -> None:
    with pytest.raises(WorkerConnectError, match="cannot connect"):
        asyncio.run(post(WorkerConnectionPool("127.0.0.1", free_port())))


def test_connection_close_is_honoured() -> None:
    async def close_after_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        while True:  # would keep serving, but the client must not reuse the connection
            await read_request(reader)
            writer.write(reply(b"ok", "Connection: close\r\n"))
            await writer.drain()

    async def scenario() -> None:
        port = free_port()
        server, connections = await serve(close_after_reply, port)
        pool = WorkerConnectionPool("127.0.0.1", port)
        await post(pool)
        await post(pool)
        assert connections == [0, 1]
        server.close()

    asyncio.run(scenario())


def test_a_reply_that_is_not_http_is_a_disconnect() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    async def scenario() -> None:
        port = free_port()
        server, _ = await serve(garbage, port)
        with pytest.raises(WorkerDisconnected, match="not an HTTP/1.x status line"):
            await post(WorkerConnectionPool("127.0.0.1", port))
        server.close()

    asyncio.run(scenario())


def test_get_sends_an_empty_body_on_the_same_pool() -> None:
    requests: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            requests.append(head.split(b"\r\n", 1)[0])
            writer.write(reply(b""))
            await writer.drain()

    async def scenario() -> None:
        port = free_port()
        server, connections = await serve(record, port)
        pool = WorkerConnectionPool("127.0.0.1", port)
        assert (await pool.get("/ping", 1.0, 1.0)).status == 200
        assert (await post(pool, b"")).status == 200
        assert requests == [b"GET /ping HTTP/1.1", b"POST /invocations HTTP/1.1"]
        assert connections == [0]
        pool.close()
        server.close()

    asyncio.run(scenario())
