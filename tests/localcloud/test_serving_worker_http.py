"""The model server's own HTTP handling (serving_worker.py, which parses request headers itself rather than
through the email parser), driven with raw bytes over a socket: keep-alive, HTTP/1.0, 100-continue, folded,
oversized, malformed and too many header lines, an HTTP/2 request line, and `//` paths."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from localcloud.sagemaker.runners.serving_worker import (
    MAX_HEADER_LINE,
    MAX_HEADERS,
    InferenceHandlers,
    InvocationRequestHandler,
    WorkerServer,
)
from tests.conftest import free_port


def echo_module() -> SimpleNamespace:
    """Handlers that answer `<content type>|<accept>|<body>`, so a test sees what the headers parsed to (JSON and
    CSV bodies arrive as str, others as bytes)."""

    def output_fn(prediction: tuple[bytes | str, str], accept: str) -> tuple[bytes, str]:
        body, content_type = prediction
        raw = body.encode() if isinstance(body, str) else body
        return f"{content_type}|{accept}|".encode() + raw, "text/plain"

    return SimpleNamespace(
        model_fn=lambda model_dir: "model",
        input_fn=lambda body, content_type: (body, content_type),
        predict_fn=lambda data, model: data,
        output_fn=output_fn,
    )


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    server = WorkerServer(("127.0.0.1", port), InvocationRequestHandler)
    server.handlers = InferenceHandlers(echo_module(), tmp_path)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


def exchange(port: int, *requests: bytes, read_until_close: bool = False) -> bytes:
    """Send the requests on one connection and return what came back (until close, or a short quiet spell)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for request in requests:
            sock.sendall(request)
        sock.settimeout(5 if read_until_close else 0.5)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            assert not read_until_close, "the server kept the connection open"
        return received


def post(body: bytes, *headers: str, version: str = "HTTP/1.1") -> bytes:
    lines = [f"POST /invocations {version}", "Host: 127.0.0.1", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_keep_alive_serves_several_requests_on_one_connection(worker: int) -> None:
    reply = exchange(worker, post(b"one", "Content-Type: text/csv"), post(b"two", "Accept: application/json"))
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    assert b"text/csv|application/json|one" in reply  # a missing Accept means application/json
    assert b"application/json|application/json|two" in reply  # a missing Content-Type too


def test_http_1_0_closes_unless_keep_alive_is_asked_for(worker: int) -> None:
    closed = exchange(worker, post(b"x", "Content-Type: text/plain", version="HTTP/1.0"), read_until_close=True)
    assert closed.startswith(b"HTTP/1.1 200 OK")
    kept = exchange(worker, post(b"y", "Connection: keep-alive", version="HTTP/1.0") * 2)
    assert kept.count(b"200 OK") == 2


def test_expect_100_continue_is_answered_before_the_body(worker: int) -> None:
    reply = exchange(worker, post(b"body", "Expect: 100-continue", "Content-Type: text/plain"))
    assert reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")


def test_a_folded_header_continues_the_previous_one(worker: int) -> None:
    reply = exchange(worker, post(b"z", "Content-Type: text/plain;", " charset=utf-8"))
    assert b"text/plain; charset=utf-8|" in reply


def test_header_names_are_case_insensitive(worker: int) -> None:
    reply = exchange(worker, post(b"z", "content-type: image/png", "ACCEPT: text/csv"))
    assert b"image/png|text/csv|z" in reply


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([f"X-Long: {'a' * MAX_HEADER_LINE}"], b"431"),
        ([f"X-{i}: v" for i in range(MAX_HEADERS + 1)], b"431"),
        (["no colon here"], b"400"),
    ],
)
def test_bad_headers_are_refused(worker: int, headers: list[str], status: bytes) -> None:
    reply = exchange(worker, post(b"x", *headers), read_until_close=True)
    assert reply.startswith(b"HTTP/1.1 " + status)


def test_other_request_lines_get_the_standard_librarys_answers(worker: int) -> None:
    reply = exchange(worker, b"GET /ping HTTP/2.0\r\n\r\n", read_until_close=True)
    assert b"Error code: 505" in reply  # http.server answers an unknown version HTTP/0.9-style: body only
    reply = exchange(worker, b"get /ping HTTP/1.1\r\n\r\n", read_until_close=True)  # lower-case: not ours
    assert reply.startswith(b"HTTP/1.1 501")


def test_a_double_slash_path_is_reduced(worker: int) -> None:
    assert exchange(worker, b"GET //ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize(
    "headers",
    [
        ["Host: attacker.example:8080"],  # a page whose name was rebound to 127.0.0.1
        ["Host: 127.0.0.1.attacker.example"],
        [],  # no Host at all
        ["Host: 127.0.0.1", "Origin: http://127.0.0.1:9999"],  # a cross-origin page on loopback
        ["Host: 127.0.0.1", "Origin: null"],
    ],
)
def test_only_the_local_sagemaker_is_answered(worker: int, headers: list[str]) -> None:
    for request in (
        ("\r\n".join(["POST /invocations HTTP/1.1", "Content-Length: 3", *headers]) + "\r\n\r\nabc").encode(),
        ("\r\n".join(["GET /ping HTTP/1.1", *headers]) + "\r\n\r\n").encode(),
    ):
        reply = exchange(worker, request, read_until_close=True)
        assert reply.startswith(b"HTTP/1.1 403"), reply[:200]
        assert b"answers only the local SageMaker" in reply and b"abc" not in reply  # the model never ran


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8080", "localhost:1", "[::1]:8080"])
def test_loopback_hosts_are_answered(worker: int, host: str) -> None:
    assert exchange(worker, post(b"ok").replace(b"Host: 127.0.0.1", f"Host: {host}".encode())).startswith(
        b"HTTP/1.1 200 OK"
    )
