"""Acknowledged writes survive `kill -9`: MiniStack's answer to a change of a service's definitions leaves only
once that service's state is on disk.

MiniStack keeps every service in memory and writes `<STATE_DIR>/<key>.json` only at a clean shutdown (`save_all`
in its lifespan), so a crash lost every function, state machine and role made since the last `make down`. The ASGI
middleware here holds back a 2xx answer to a definition change, saves the service's state files with MiniStack's
own `get_state()` and file format (so its `load_state` reads them at the next start), fsyncs them (and the
directory, and Lambda's code blobs), and only then sends the answer.

Which requests change definitions (`definition_change`), decided from the request alone:
- An operation named by `X-Amz-Target` (JSON protocols: Step Functions, CloudWatch Logs), by the path of the RPC v2
  CBOR protocol (`/service/<service>/operation/<name>`, CloudWatch) or by `Action=` (query protocol: IAM, STS):
  every one except the read-only names (`READ_ONLY_PREFIXES`: Get*, List*, Describe*, ...) and the data plane.
- Without an operation name (REST: Lambda's `/2015-03-31/functions...`, API Gateway, ...): POST, PUT, PATCH and
  DELETE, except Lambda's invocations and durable executions.
- S3: bucket-level writes only (create or delete a bucket, its versioning, policy, tags, notifications ...), which
  live in `s3.json`. Object writes need nothing here: with S3_PERSIST=1 MiniStack writes the object's file and its
  metadata sidecar (tmp + rename) inside the handler, before answering, so they survive a process crash. Not a
  power cut, though: MiniStack does not fsync them, and one fsync per object would tax the data-capture path.

The data plane (`DATA_PLANE`) is left out on purpose: it runs at load-test rates (500 Step Functions executions,
each invoking Lambdas), and each save serializes the service's whole state. Lambda Invoke, StartExecution,
StartSyncExecution, SendTask*, PutLogEvents and PutMetricData, and other services' messages, records and items
(SQS, SNS, Kinesis, DynamoDB), are saved at a clean shutdown only, as before (or along with a later definition
change of their service): a crash loses the executions and log events made since.

Saving: one asyncio lock per set of state files. The snapshot (`get_state()`, a deep copy) is taken on the event
loop, so no other handler is seen half-done; encoding, writing and fsync run in a worker thread. A request whose
change an earlier save already covered does not save again. One settle save follows a second later, because some
changes finish after the answer (Lambda flips a new function from Pending to Active 0.5 s later, in a thread); a
crash within that second brings the function back with its code and configuration, and the patch
`lambda-finish-interrupted-transitions.patch` completes its Pending -> Active transition when the state loads.

Failure: if saving raises, the client gets 500 `InternalFailure` instead of its 2xx, and the error is logged with
its traceback. The change is in memory but not durable, which "outcome unknown" describes; botocore retries a 500,
and a retried create then answers that the resource exists, so a failing disk cannot pass unnoticed as a success.

    RequestGuard(signature_check(DurableWrites(ministack_app.app)))     # innermost, in localcloud/ministack/serve.py
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Resolve = Callable[[Scope, bytes], str | None]  # the service whose definitions a 2xx request changed, or None

ERROR_CODE = "InternalFailure"
READ_ONLY_PREFIXES = (
    "Get", "List", "Describe", "Head", "BatchGet", "Query", "Scan", "Search", "Lookup", "Filter", "Test", "Simulate",
    "Validate",
)  # fmt: skip
DATA_PLANE = frozenset({
    "Invoke", "InvokeAsync", "InvokeWithResponseStream",  # Lambda
    "StartExecution", "StartSyncExecution", "StopExecution", "RedriveExecution",  # Step Functions
    "SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat",
    "PutLogEvents", "PutMetricData",  # CloudWatch Logs, CloudWatch
    "SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage", "DeleteMessageBatch",  # SQS
    "ChangeMessageVisibility", "ChangeMessageVisibilityBatch", "Publish", "PublishBatch",  # SNS
    "PutRecord", "PutRecords", "PutRecordBatch", "PutEvents",  # Kinesis, Firehose, EventBridge
    "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems", "TransactGetItems",  # DynamoDB
    "ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction",
    "AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML",  # STS
    "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "Sign", "Verify",  # KMS
})  # fmt: skip
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LAMBDA_DATA_PLANE_PATH = re.compile(
    r"/functions/[^/]+/(?:invocations|invoke-async|response-streaming-invocations)/?$|/durable-execution"
)
RPC_V2_PATH = re.compile(r"^/service/[^/]+/operation/([A-Za-z0-9]+)$")
ADMIN_PREFIXES = ("/_ministack/", "/_localstack/", "/_aws/")
FORM_LIMIT = 1 << 20  # bytes of a form-encoded body kept to find its Action=
SNAPSHOT_ATTEMPTS = 5  # a MiniStack worker thread may change a dict while it is copied
SETTLE_S = 1.0

log = logging.getLogger("localcloud.durability")


def operation_name(path: str, target: str | None, action: str | None) -> str | None:
    """The operation a request names, when its protocol names one: `AWSStepFunctions.CreateStateMachine` ->
    `CreateStateMachine`; `/service/GraniteServiceVersion20100801/operation/PutMetricData` -> `PutMetricData`."""
    if target:
        return target.rsplit(".", 1)[-1]
    if match := RPC_V2_PATH.match(path):
        return match.group(1)
    return action or None


def definition_change(
    service: str, method: str, path: str, operation: str | None, *, bucket_in_host: bool = False
) -> bool:
    """Whether a request, once answered 2xx, changed what `service` keeps in its state files (module docstring)."""
    if path.startswith(ADMIN_PREFIXES):
        return False
    if service == "s3":
        # A bucket-level path: `/bucket` path-style, `/` when the bucket is in the Host.
        segments = [part for part in path.split("/") if part]
        return method in ("PUT", "DELETE") and len(segments) == (0 if bucket_in_host else 1)
    if operation:
        return not operation.startswith(READ_ONLY_PREFIXES) and operation not in DATA_PLANE
    if method not in WRITE_METHODS:
        return False
    return not (service == "lambda" and LAMBDA_DATA_PLANE_PATH.search(path))


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in scope.get("headers") or ():
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers


def ministack_service(scope: Scope, form: bytes) -> str | None:
    """The service MiniStack's router sends the request to, if the request changed its definitions."""
    from ministack.app import _extract_s3_vhost_bucket
    from ministack.core.router import detect_service

    method, path = scope["method"], scope["path"]
    headers = _headers(scope)
    params = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    if form:
        params = parse_qs(form.decode("utf-8", "replace"), keep_blank_values=True) | params
    service = str(detect_service(method, path, headers, params))
    action = (params.get("Action") or [None])[0]
    operation = operation_name(path, headers.get("x-amz-target"), action)
    in_host = service == "s3" and _extract_s3_vhost_bucket(headers.get("host", "")) is not None
    return service if definition_change(service, method, path, operation, bucket_in_host=in_host) else None


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, text: str) -> None:
    """Replace `path` by `text` atomically (tmp + rename, as MiniStack does) and durably (fsync, then the directory)."""
    tmp = path.with_name(f".{path.name}.durable")
    try:
        with open(tmp, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _retrying(make: Callable[[], Any]) -> Any:
    for attempt in range(SNAPSHOT_ATTEMPTS):
        try:
            return make()
        except RuntimeError:  # "dictionary changed size during iteration"
            if attempt == SNAPSHOT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


class Store(Protocol):
    @property
    def enabled(self) -> bool: ...

    async def save(self, service: str) -> None: ...


class MinistackStore:
    """MiniStack's state files, saved per service: the state keys `_state_map` gives its module and sub-modules."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self._changes: dict[tuple[str, ...], int] = {}  # changes seen per set of files ...
        self._durable: dict[tuple[str, ...], int] = {}  # ... and how many of them are on disk
        self._settling: dict[tuple[str, ...], asyncio.Task[None]] = {}

    @property
    def enabled(self) -> bool:
        from ministack.core import persistence

        return bool(persistence.PERSIST_STATE)

    @staticmethod
    def files(service: str) -> tuple[tuple[str, str], ...]:
        """(state key, module) pairs: lambda -> (lambda, lambda_svc), (lambda_durable, lambda_durable)."""
        from ministack.app import SERVICE_REGISTRY

        config = SERVICE_REGISTRY.get(service)
        if config is None:
            return ()
        module = config["module"]
        return ((config.get("state_key", module), module), *((sub, sub) for sub in config.get("sub_modules", ())))

    async def save(self, service: str, *, settle: bool = True) -> None:
        files = self.files(service)
        if not files:
            return
        names = tuple(key for key, _ in files)
        self._changes[names] = change = self._changes.get(names, 0) + 1
        async with self._locks.setdefault(names, asyncio.Lock()):
            if self._durable.get(names, 0) >= change:
                return  # a save that began after this change finished
            covered = self._changes[names]
            snapshots = [(key, module, state) for key, module in files if (state := self._snapshot(module)) is not None]
            await asyncio.to_thread(self._write, snapshots)
            self._durable[names] = covered
        if settle and names not in self._settling:
            self._settling[names] = asyncio.get_running_loop().create_task(self._settle(service, names))

    async def _settle(self, service: str, names: tuple[str, ...]) -> None:
        await asyncio.sleep(SETTLE_S)
        del self._settling[names]
        try:
            await self.save(service, settle=False)
        except Exception:
            log.exception("settle save of %s failed", "/".join(names))

    @staticmethod
    def _module(name: str) -> Any:
        from ministack import app

        return app._loaded_modules.get(name) or sys.modules.get(f"ministack.services.{name}")

    def _snapshot(self, module_name: str) -> Any:
        """The module's `get_state()`, or None when it is not loaded (nothing changed) or has no state."""
        module = self._module(module_name)
        if module is None or not hasattr(module, "get_state"):
            return None
        return _retrying(module.get_state)

    def _write(self, snapshots: list[tuple[str, str, Any]]) -> None:
        from ministack.core import persistence

        directory = Path(persistence.STATE_DIR)
        directory.mkdir(parents=True, exist_ok=True)
        for _, module_name, _ in snapshots:
            # Lambda's get_state() writes code zips as blobs (no fsync) that lambda.json refers to.
            blobs = getattr(self._module(module_name), "CODE_BLOB_DIR", None)
            if blobs and os.path.isdir(blobs):
                for entry in os.scandir(blobs):
                    if entry.is_file() and not entry.name.endswith(".tmp"):
                        with open(entry.path, "rb") as blob:
                            os.fsync(blob.fileno())
                _fsync_directory(Path(blobs))
        for key, _, state in snapshots:
            wrapped = {"__ministack_format__": persistence._state_format_version(key), "payload": state}
            text = _retrying(functools.partial(json.dumps, wrapped, default=persistence._json_default))
            write_durably(directory / f"{key}.json", text)


def failure_messages(start: Message, service: str) -> list[Message]:
    """The 500 that replaces an answer whose change could not be saved: XML where the service answered XML."""
    headers = {k.lower(): v for k, v in start.get("headers", [])}
    reason = f"the {service} change was made in memory but could not be saved to disk; see MiniStack's log"
    if b"xml" in headers.get(b"content-type", b""):
        text = f"<ErrorResponse><Error><Type>Receiver</Type><Code>{ERROR_CODE}</Code><Message>{reason}</Message>"
        body, content_type = f"{text}</Error></ErrorResponse>".encode(), b"text/xml"
    else:
        body, content_type = json.dumps({"__type": ERROR_CODE, "message": reason}).encode(), b"application/json"
    raw = [(b"content-type", content_type), (b"x-amzn-errortype", ERROR_CODE.encode())]
    raw += [(name, headers[name]) for name in (b"x-amzn-requestid", b"date") if name in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    return [
        {"type": "http.response.start", "status": 500, "headers": raw},
        {"type": "http.response.body", "body": body},
    ]


class DurableWrites:
    """ASGI middleware: a 2xx answer to a definition change is sent only after `store.save(service)` returned."""

    def __init__(self, app: ASGIApp, store: Store | None = None, resolve: Resolve | None = None) -> None:
        self.app = app
        self.store: Store = MinistackStore() if store is None else store
        self.resolve = ministack_service if resolve is None else resolve

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reads = scope.get("method") in ("GET", "HEAD", "OPTIONS") and b"Action=" not in scope.get("query_string", b"")
        if scope["type"] != "http" or reads or not self.store.enabled:
            await self.app(scope, receive, send)
            return
        form = bytearray()
        content_type = _headers(scope).get("content-type", "")
        capture = content_type.startswith("application/x-www-form-urlencoded")
        held: list[Message] = []
        service: str | None = None

        async def receive_capturing() -> Message:
            message = await receive()
            if capture and message["type"] == "http.request" and len(form) < FORM_LIMIT:
                form.extend(message.get("body", b""))
            return message

        async def send_durably(message: Message) -> None:
            nonlocal service
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                try:
                    service = self.resolve(scope, bytes(form))
                except Exception:
                    log.exception("could not tell whether %s %s changed a service", scope["method"], scope["path"])
            if service is None:
                await send(message)
                return
            held.append(message)
            if message["type"] != "http.response.body" or message.get("more_body", False):
                return
            try:
                await self.store.save(service)
            except Exception:
                log.exception("saving %s after %s %s failed", service, scope["method"], scope["path"])
                held[:] = failure_messages(held[0], service)
            for part in held:
                await send(part)
            held.clear()

        await self.app(scope, receive_capturing, send_durably)
