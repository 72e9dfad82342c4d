"""Download the CIFAR-100 archive into a local cache, verified by MD5.

- A cached file whose MD5 matches is reused without any network access.
- Downloads stream to a `.partial` file with progress in the log, and retry transient failures (connection
  errors, timeouts, a body cut short, 429, 5xx) with exponential backoff; tenacity runs the attempts, so the
  policy is declared, not looped by hand. Only a verified file is renamed into the cache, so a bad download is
  never used.
- `requests` (which Airflow already brings) fetches it: one session per download, redirects followed, and the
  timeout bounds the connection and each read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
HINT = "Set SCONES_CIFAR_URL (environment or Airflow Variable) to a reachable copy and SCONES_CIFAR_MD5 to its MD5."


class ExtractError(RuntimeError):
    """The archive could not be obtained; retrying the same request will not help."""


class ChecksumMismatch(ExtractError):
    pass


class DownloadFailed(ExtractError):
    pass


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_path(cache_dir: Path, url: str, md5: str) -> Path:
    name = Path(urlparse(url).path).name or "cifar-100-python.tar.gz"
    return cache_dir / md5.lower() / name


# Failures of the connection rather than of the request. requests wraps a read timeout while streaming in
# ConnectionError, and a connection closed before the announced length in ChunkedEncodingError.
TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def _stream_once(session: requests.Session, url: str, target: Path, timeout_seconds: float) -> None:
    with session.get(url, stream=True, timeout=timeout_seconds, allow_redirects=True) as response:
        response.raise_for_status()
        total = int(response.headers.get("content-length") or 0)
        done, next_report = 0, 0.0
        with target.open("wb") as handle:
            for chunk in response.iter_content(CHUNK_BYTES):
                handle.write(chunk)
                done += len(chunk)
                if total and done / total >= next_report:
                    log.info("downloaded %5.1f%% (%d of %d MiB)", 100 * done / total, done >> 20, total >> 20)
                    next_report += 0.1
    log.info("downloaded %d bytes from %s", done, url)


def _retryable(exc: BaseException) -> bool:
    """Transient failures only: a retry of a 404 or a bad URL would fail the same way."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return isinstance(exc, TRANSPORT_ERRORS)


def _retrying(attempts: int, backoff_seconds: float, url: str, sleep: Callable[[float], None]) -> Retrying:
    """`attempts` tries in all, waiting backoff_seconds * 2 ** (n - 1) after the n-th failure; the last failure
    (retryable or not) is re-raised as itself. `sleep` is injectable so tests never wait."""

    def announce(state: RetryCallState) -> None:
        log.info("downloading %s (attempt %d of %d)", url, state.attempt_number, attempts)

    def warn(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning("download failed (%s); retrying in %.0f s", error, state.upcoming_sleep)

    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=backoff_seconds, exp_base=2),
        retry=retry_if_exception(_retryable),
        sleep=sleep,
        before=announce,
        before_sleep=warn,
        reraise=True,
    )


def download(
    url: str,
    md5: str,
    cache_dir: Path,
    attempts: int = 3,
    backoff_seconds: float = 2.0,
    timeout_seconds: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Return the cached archive for (url, md5), downloading it if needed."""
    md5 = md5.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{32}", md5):
        raise ExtractError(f"SCONES_CIFAR_MD5 must be 32 hexadecimal digits, got {md5[:40]!r}")
    target = cache_path(cache_dir, url, md5)
    if target.exists():
        if md5_of(target) == md5:
            log.info("cache hit: %s (md5 %s)", target, md5)
            return target
        log.warning("cached %s does not match md5 %s; downloading again", target, md5)
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    # A unique partial file per download: two runs fetching the same archive never write into one file.
    handle, partial_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".partial", dir=target.parent)
    os.close(handle)
    partial = Path(partial_name)
    try:
        with requests.Session() as session:
            _retrying(attempts, backoff_seconds, url, sleep)(_stream_once, session, url, partial, timeout_seconds)
    except requests.RequestException as exc:
        partial.unlink(missing_ok=True)
        raise DownloadFailed(f"could not download the CIFAR-100 archive from {url}: {exc}. {HINT}") from exc
    actual = md5_of(partial)
    if actual != md5:
        partial.unlink()
        raise ChecksumMismatch(
            f"checksum mismatch for {url}: expected md5 {md5}, got {actual}. The file was discarded and not "
            f"used. {HINT}"
        )
    partial.replace(target)
    log.info("verified md5 %s; cached at %s", md5, target)
    return target
