"""extract.download: the MD5-verified cache, retries with backoff, and the errors a user sees."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from include.scones.extract import ChecksumMismatch, DownloadFailed, ExtractError, cache_path, download, md5_of
from tests.scones.helpers import ScriptedServer, closed_port_url

PAYLOAD = b"cifar archive bytes " * 5000  # ~100 KB: several reads of the response stream
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
UNREACHABLE_URL = "http://127.0.0.1:9/x.tar.gz"


class FlakyServer:
    """What ScriptedServer cannot script: a redirect, and a first answer that announces the whole payload, then
    stops halfway (`/cut.tar.gz`: closes the connection; `/stall.tar.gz`: stalls for a second). Later answers
    are whole."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                first = self.path not in server.requests
                server.requests.append(self.path)
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/cut.tar.gz")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(PAYLOAD)))
                self.end_headers()
                if first:
                    self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
                    self.wfile.flush()
                    if self.path == "/stall.tar.gz":
                        time.sleep(1)
                    return
                self.wfile.write(PAYLOAD)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.handle_error = lambda *args: None  # type: ignore[method-assign]  # the client hung up
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def flaky_server() -> Iterator[FlakyServer]:
    server = FlakyServer()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(timeout=5)


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_md5_of_and_cache_path(tmp_path: Path) -> None:
    # Given a file, When hashing it, Then md5_of agrees with hashlib
    path = tmp_path / "f.bin"
    path.write_bytes(PAYLOAD)
    assert md5_of(path) == PAYLOAD_MD5
    # cache entries are keyed by the lower-case MD5 and the URL's file name
    assert cache_path(tmp_path, "https://h/a/b/cifar.tgz?x=1", "ABCDEF") == tmp_path / "abcdef" / "cifar.tgz"
    assert cache_path(tmp_path, "https://host/", "abc") == tmp_path / "abc" / "cifar-100-python.tar.gz"


def test_cache_hit_returns_the_file_without_any_request(tmp_path: Path) -> None:
    # Given the archive with the expected MD5 already in the cache
    target = cache_path(tmp_path, UNREACHABLE_URL, PAYLOAD_MD5)
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD)
    slept: list[float] = []
    # When downloading from an unreachable URL (an upper-case, padded MD5 names the same entry)
    result = download(UNREACHABLE_URL, f"  {PAYLOAD_MD5.upper()} ", tmp_path, sleep=slept.append)
    # Then the cached file is returned untouched: no connection was even attempted
    assert result == target
    assert result.read_bytes() == PAYLOAD
    assert slept == []


def test_download_verifies_and_caches(tmp_path: Path, http_server: ScriptedServer) -> None:
    url = http_server.serve("/data/cifar-100-python.tar.gz", (200, PAYLOAD))
    result = download(url, PAYLOAD_MD5, tmp_path / "cache")
    assert result == tmp_path / "cache" / PAYLOAD_MD5 / "cifar-100-python.tar.gz"
    assert result.read_bytes() == PAYLOAD
    assert files_under(tmp_path / "cache") == [f"{PAYLOAD_MD5}/cifar-100-python.tar.gz"]  # no .partial left
    # And a second call is a cache hit: the server sees no new request
    assert download(url, PAYLOAD_MD5, tmp_path / "cache") == result
    assert http_server.requests == ["/data/cifar-100-python.tar.gz"]


def test_checksum_mismatch_names_url_both_md5s_and_variables(tmp_path: Path, http_server: ScriptedServer) -> None:
    # Given a server whose bytes do not match the expected MD5
    url = http_server.serve("/cifar.tar.gz", (200, PAYLOAD))
    expected = "0" * 32
    # When downloading
    with pytest.raises(ChecksumMismatch) as raised:
        download(url, expected, tmp_path)
    # Then the error says what to fix, and nothing is left in the cache
    message = str(raised.value)
    for part in (url, expected, PAYLOAD_MD5, "SCONES_CIFAR_URL", "SCONES_CIFAR_MD5"):
        assert part in message
    assert files_under(tmp_path) == []


def test_retries_a_503_with_backoff_then_succeeds(tmp_path: Path, http_server: ScriptedServer) -> None:
    # Given a server that answers 503 once, then the archive
    url = http_server.serve("/c.tar.gz", (503, b"busy"), (200, PAYLOAD))
    slept: list[float] = []
    # When downloading with an injected sleep
    result = download(url, PAYLOAD_MD5, tmp_path, sleep=slept.append)
    # Then it waited the first backoff step once and returned the verified file
    assert slept == [2.0]
    assert http_server.requests == ["/c.tar.gz", "/c.tar.gz"]
    assert result.read_bytes() == PAYLOAD


def test_backoff_doubles_and_gives_up_after_the_last_attempt(tmp_path: Path, http_server: ScriptedServer) -> None:
    url = http_server.serve("/c.tar.gz", (503, b"busy"))
    slept: list[float] = []
    with pytest.raises(DownloadFailed) as raised:
        download(url, PAYLOAD_MD5, tmp_path, attempts=4, backoff_seconds=0.5, sleep=slept.append)
    assert slept == [0.5, 1.0, 2.0]  # no sleep after the last attempt
    assert len(http_server.requests) == 4
    assert "503" in str(raised.value) and url in str(raised.value)
    assert files_under(tmp_path) == []


def test_429_is_retried(tmp_path: Path, http_server: ScriptedServer) -> None:
    url = http_server.serve("/c.tar.gz", (429, b"slow down"), (200, PAYLOAD))
    slept: list[float] = []
    assert download(url, PAYLOAD_MD5, tmp_path, sleep=slept.append).read_bytes() == PAYLOAD
    assert slept == [2.0]


def test_404_is_not_retried(tmp_path: Path, http_server: ScriptedServer) -> None:
    url = http_server.serve("/missing.tar.gz", (404, b"no"))
    slept: list[float] = []
    with pytest.raises(DownloadFailed) as raised:
        download(url, PAYLOAD_MD5, tmp_path, sleep=slept.append)
    assert http_server.requests == ["/missing.tar.gz"]
    assert slept == []
    message = str(raised.value)
    assert "404" in message and url in message
    assert "SCONES_CIFAR_URL" in message and "SCONES_CIFAR_MD5" in message
    assert files_under(tmp_path) == []


def test_unreachable_host_is_retried_then_fails_naming_url_and_variables(tmp_path: Path) -> None:
    url = closed_port_url()
    slept: list[float] = []
    with pytest.raises(DownloadFailed) as raised:
        download(url, PAYLOAD_MD5, tmp_path, attempts=3, timeout_seconds=5, sleep=slept.append)
    assert slept == [2.0, 4.0]  # connection errors are transient: every attempt was made
    message = str(raised.value)
    assert message.startswith(f"could not download the CIFAR-100 archive from {url}: ")
    assert "SCONES_CIFAR_URL" in message and "SCONES_CIFAR_MD5" in message


def test_a_body_cut_short_is_retried_after_following_the_redirect(tmp_path: Path, flaky_server: FlakyServer) -> None:
    # Given a URL that redirects to a server whose first answer closes the connection halfway through the body
    slept: list[float] = []
    # When downloading
    result = download(flaky_server.url("/moved"), PAYLOAD_MD5, tmp_path, sleep=slept.append)
    # Then the redirect was followed each time, the short body was retried once, and the verified file is cached
    assert flaky_server.requests == ["/moved", "/cut.tar.gz", "/moved", "/cut.tar.gz"]
    assert slept == [2.0]
    assert result.read_bytes() == PAYLOAD
    assert files_under(tmp_path) == [f"{PAYLOAD_MD5}/moved"]


def test_a_stalled_read_times_out_and_is_retried(tmp_path: Path, flaky_server: FlakyServer) -> None:
    # Given a server that stalls for a second in the middle of its first answer
    slept: list[float] = []
    # When downloading with a shorter timeout
    result = download(flaky_server.url("/stall.tar.gz"), PAYLOAD_MD5, tmp_path, timeout_seconds=0.2, sleep=slept.append)
    # Then the timeout bounded the read and the second attempt got the whole file
    assert flaky_server.requests == ["/stall.tar.gz", "/stall.tar.gz"]
    assert slept == [2.0]
    assert result.read_bytes() == PAYLOAD


def test_cached_file_with_wrong_md5_is_replaced(tmp_path: Path, http_server: ScriptedServer) -> None:
    # Given a corrupt file where the cache entry should be
    url = http_server.serve("/cifar-100-python.tar.gz", (200, PAYLOAD))
    target = cache_path(tmp_path, url, PAYLOAD_MD5)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    # When downloading
    result = download(url, PAYLOAD_MD5, tmp_path)
    # Then it was fetched again and the cache now holds the verified bytes
    assert result == target
    assert md5_of(result) == PAYLOAD_MD5
    assert http_server.requests == ["/cifar-100-python.tar.gz"]
    assert files_under(tmp_path) == [f"{PAYLOAD_MD5}/cifar-100-python.tar.gz"]


def test_malformed_md5_never_touches_files_outside_the_cache(tmp_path: Path) -> None:
    # Given a file beside the cache directory and an MD5 setting of ".." (a typo, or a hostile Variable)
    victim = tmp_path / "victim.tar.gz"
    victim.write_bytes(b"precious")
    (tmp_path / "cache").mkdir()
    # When downloading, Then the setting is refused and the file outside the cache is untouched
    with pytest.raises((ExtractError, ValueError)):
        download("http://127.0.0.1:9/victim.tar.gz", "..", tmp_path / "cache", attempts=1)
    assert victim.read_bytes() == b"precious"
