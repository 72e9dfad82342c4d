"""Batch transform on the "instance": one model server, every input object under the job's S3 input
sent through it, each reply written to `<S3OutputPath>/<key relative to the input prefix>.out`.

Knows nothing about the control plane or the store: the transform model builds a `TransformSpec`,
calls `run_transform` on its own thread and maps the outcome (return, `TransformFailed`,
`TransformStopped`) onto the job's status.

Supported data handling: S3Prefix and ManifestFile sources; CompressionType None|Gzip; SplitType
None (the whole object is one request) or Line (one request per line with BatchStrategy
SingleRecord, or as many lines as fit MaxPayloadInMB with MultiRecord); AssembleWith None|Line.
An output object is written only after every request of its input succeeded."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.sagemaker.runners.artifacts import list_keys, parse_s3_uri
from localcloud.sagemaker.runners.cloudwatch import LogStream
from localcloud.sagemaker.runners.hosting import HostingError, ModelServer, WorkerFailed, prepare_model_dir

log = logging.getLogger(__name__)

LOG_GROUP = "/aws/sagemaker/TransformJobs"
HOST = "algo-1"
HEALTH_TIMEOUT_S = 240.0  # the serving contract: /ping must pass within 4 minutes of start
HEALTH_POLL_S = 1.0  # how often a job that is starting its server looks for a stop request
MAX_THREADS = 4  # MaxConcurrentTransforms is honoured up to this; the machine has few cores
MAX_REASON_CHARS = 1024  # DescribeTransformJob's FailureReason limit
MB = 1024 * 1024


class TransformFailed(Exception):
    """The job failed; `reason` becomes its FailureReason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:MAX_REASON_CHARS]


class TransformStopped(Exception):
    """A stop was requested and every in-flight request has finished."""


@dataclass(frozen=True)
class TransformSettings:
    content_type: str = "application/octet-stream"
    accept: str = "application/json"
    split_type: str = "None"
    batch_strategy: str = "MultiRecord"
    assemble_with: str = "None"
    compression: str = "None"
    max_payload_bytes: int = 6 * MB
    max_concurrent: int = 1
    invocation_timeout_s: float = 600.0


@dataclass(frozen=True)
class TransformSpec:
    job_name: str
    python: Path
    model_data_url: str
    environment: dict[str, str]
    data_source: dict[str, Any]  # TransformInput.DataSource.S3DataSource
    output_path: str
    settings: TransformSettings
    work_dir: Path
    stop_event: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class TransformItem:
    input_uri: str
    output_uri: str


# --- planning ---------------------------------------------------------------------------------
def output_uri(output_path: str, relative: str) -> str:
    bucket, prefix = parse_s3_uri(output_path)
    key = "/".join(p for p in (prefix.strip("/"), relative) if p)
    return f"s3://{bucket}/{key}.out"


def plan_items(s3: Any, data_source: dict[str, Any], output_path: str) -> list[TransformItem]:
    """Every input object of the job and where its result goes, in key order."""
    uri = data_source["S3Uri"]
    if data_source["S3DataType"] == "ManifestFile":
        return _manifest_items(s3, uri, output_path)
    bucket, prefix = parse_s3_uri(uri)
    items = []
    for key in sorted(list_keys(s3, uri)):
        if key.endswith("/"):
            continue  # a "folder" marker object, not data
        relative = key[len(prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
        items.append(TransformItem(f"s3://{bucket}/{key}", output_uri(output_path, relative)))
    if not items:
        raise TransformFailed(f'No S3 objects found under S3 URL "{uri}" given in input data source.')
    return items


def _manifest_items(s3: Any, manifest_uri: str, output_path: str) -> list[TransformItem]:
    """A manifest is `[{"prefix": "s3://b/p/"}, "relative/key", ...]`; outputs keep the relative keys."""
    bucket, key = parse_s3_uri(manifest_uri)
    try:
        entries = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        prefix_uri = entries[0]["prefix"]
        relatives = [str(e) for e in entries[1:]]
    except Exception as error:
        raise TransformFailed(f"ClientError: Could not read the manifest file {manifest_uri}: {error}") from error
    if not relatives:
        raise TransformFailed(f"ClientError: The manifest file {manifest_uri} lists no objects.")
    base = prefix_uri if prefix_uri.endswith("/") else prefix_uri + "/"
    return [TransformItem(base + r.lstrip("/"), output_uri(output_path, r.lstrip("/"))) for r in relatives]


# --- requests per input -----------------------------------------------------------------------
def split_records(payload: bytes, settings: TransformSettings) -> list[bytes]:
    """The request bodies for one input object."""
    if settings.split_type != "Line":
        return [payload]
    lines = [line for line in payload.splitlines() if line.strip()]
    if settings.batch_strategy == "SingleRecord":
        return lines
    batches: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        if current and size + len(line) + 1 > settings.max_payload_bytes:
            batches.append(b"\n".join(current) + b"\n")
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        batches.append(b"\n".join(current) + b"\n")
    return batches


def assemble(replies: list[bytes], assemble_with: str) -> bytes:
    if assemble_with == "Line":
        return b"".join(r if r.endswith(b"\n") else r + b"\n" for r in replies)
    return b"".join(replies)


class BatchTransform:
    """Sends every item through one model server, MaxConcurrentTransforms at a time; the first
    failure cancels the items not yet started."""

    def __init__(
        self, s3: Any, invoke: Callable[[bytes], Any], settings: TransformSettings, stop_event: threading.Event
    ):
        self.s3 = s3
        self.invoke = invoke  # body -> WorkerReply
        self.settings = settings
        self.stop_event = stop_event
        self._abort = threading.Event()  # set on the first failure: queued items are skipped

    def run(self, items: list[TransformItem]) -> None:
        threads = max(1, min(self.settings.max_concurrent, MAX_THREADS))
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="transform") as pool:
            futures: list[Future[None]] = [pool.submit(self._one, item) for item in items]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failures = [f.exception() for f in done if f.exception() is not None]
            if failures:
                self._abort.set()
                for future in futures:
                    future.cancel()
        # Leaving the pool waited for the in-flight items; report the first real failure.
        errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
        failed = [e for e in errors if isinstance(e, TransformFailed)]
        if failed:
            raise failed[0]
        if errors:
            raise errors[0]  # type: ignore[misc]

    def _one(self, item: TransformItem) -> None:
        if self.stop_event.is_set():
            raise TransformStopped()
        if self._abort.is_set():
            return
        payload = self._read(item)
        replies = []
        for body in split_records(payload, self.settings):
            if len(body) > self.settings.max_payload_bytes:
                raise TransformFailed(
                    f"ClientError: Input {item.input_uri} is {len(body)} bytes, more than MaxPayloadInMB "
                    f"({self.settings.max_payload_bytes // MB} MB) allows."
                )
            replies.append(self._invoke(item, body))
        bucket, key = parse_s3_uri(item.output_uri)
        self.s3.put_object(Bucket=bucket, Key=key, Body=assemble(replies, self.settings.assemble_with))

    def _read(self, item: TransformItem) -> bytes:
        bucket, key = parse_s3_uri(item.input_uri)
        try:
            payload: bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as error:
            raise TransformFailed(f"ClientError: Could not read input {item.input_uri}: {error}") from error
        if self.settings.compression == "Gzip":
            try:
                payload = gzip.decompress(payload)
            except OSError as error:
                raise TransformFailed(f"ClientError: Input {item.input_uri} is not valid gzip: {error}") from error
        return payload

    def _invoke(self, item: TransformItem, body: bytes) -> bytes:
        try:
            reply = self.invoke(body)
        except HostingError as error:
            raise TransformFailed(
                f"AlgorithmError: Inference failed for input {item.input_uri}: {error.reason}"
            ) from error
        if not 200 <= reply.status < 300:
            message = reply.body.decode("utf-8", errors="replace").strip()
            raise TransformFailed(
                f"ClientError: Inference failed for input {item.input_uri}: "
                f'the model returned HTTP {reply.status} with message "{message}"'
            )
        return bytes(reply.body)


# --- the whole job ----------------------------------------------------------------------------
def _start_server(spec: TransformSpec, stream: LogStream, endpoint_url: str) -> ModelServer:
    server = ModelServer.launch(
        python=spec.python,
        model_dir=spec.work_dir / "model",
        environment=spec.environment,
        log_path=spec.work_dir / "model-server.log",
        log_sink=stream.write,
        endpoint_url=endpoint_url,
    )
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    try:
        while True:  # short health waits, so a stop request is seen while the model loads
            try:
                server.wait_healthy(min(HEALTH_POLL_S, max(0.0, deadline - time.monotonic())))
                return server
            except WorkerFailed:
                if not server.alive() or time.monotonic() >= deadline:
                    raise
            if spec.stop_event.is_set():
                raise TransformStopped()
    except BaseException:
        server.stop(drain_timeout_s=0)
        raise


def run_transform(s3: Any, logs: Any, spec: TransformSpec) -> None:
    """Run the job to the end. Raises TransformFailed (with a FailureReason) or TransformStopped."""
    stream = LogStream(logs, LOG_GROUP, f"{spec.job_name}/{HOST}-{int(time.time())}")
    server: ModelServer | None = None
    try:
        prepare_model_dir(s3, spec.model_data_url, spec.work_dir / "model")
        items = plan_items(s3, spec.data_source, spec.output_path)
        # The model's own boto3 calls go where the job's data comes from: the local cloud's S3 (MiniStack).
        server = _start_server(spec, stream, s3.meta.endpoint_url)

        def invoke(body: bytes) -> Any:
            return server.invoke_sync(
                body, spec.settings.content_type, spec.settings.accept, spec.settings.invocation_timeout_s
            )

        BatchTransform(s3, invoke, spec.settings, spec.stop_event).run(items)
        if spec.stop_event.is_set():
            raise TransformStopped()
    except HostingError as error:
        raise TransformFailed(f"ClientError: {error.reason}") from error
    finally:
        if server is not None:
            server.stop()
        stream.close()
        discard_model_copy(spec.work_dir)


def discard_model_copy(work_dir: Path) -> None:
    """A finished (or lost) job's extracted model is dead weight on disk; its log stays."""
    shutil.rmtree(work_dir / "model", ignore_errors=True)
