"""Crash durability (localcloud/ministack/durability.py): which requests count as definition changes, that the
answer waits for the save, that a failed save answers 500, that saves of one service never overlap, and, in
MiniStack's own interpreter, that the files it writes are the ones MiniStack's `load_state` reads back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from typing import Any

import pytest

from localcloud.config import PROJECT_ROOT, LocalCloudConfig
from localcloud.ministack import durability
from localcloud.ministack.durability import DurableWrites, MinistackStore, definition_change, operation_name


# --- the rule ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "target", "action", "operation"),
    [
        ("/", "AWSStepFunctions.CreateStateMachine", None, "CreateStateMachine"),
        ("/", "Logs_20140328.PutLogEvents", None, "PutLogEvents"),
        ("/service/GraniteServiceVersion20100801/operation/PutMetricData", None, None, "PutMetricData"),
        ("/", None, "CreateRole", "CreateRole"),
        ("/2015-03-31/functions", None, None, None),
    ],
)
def test_operation_name(path: str, target: str | None, action: str | None, operation: str | None) -> None:
    assert operation_name(path, target, action) == operation


CHANGES = [
    ("states", "POST", "/", "CreateStateMachine"),
    ("states", "POST", "/", "UpdateStateMachine"),
    ("states", "POST", "/", "DeleteStateMachine"),
    ("states", "POST", "/", "TagResource"),
    ("iam", "POST", "/", "CreateRole"),
    ("iam", "POST", "/", "PutRolePolicy"),
    ("iam", "POST", "/", "AttachRolePolicy"),
    ("logs", "POST", "/", "CreateLogGroup"),
    ("monitoring", "POST", "/", "PutMetricAlarm"),
    ("lambda", "POST", "/2015-03-31/functions", None),
    ("lambda", "PUT", "/2015-03-31/functions/scones-classify-image/code", None),
    ("lambda", "PUT", "/2015-03-31/functions/scones-classify-image/configuration", None),
    ("lambda", "DELETE", "/2015-03-31/functions/scones-classify-image", None),
    ("lambda", "POST", "/2015-03-31/functions/scones-classify-image/versions", None),
    ("s3", "PUT", "/scones-bucket", None),
    ("s3", "DELETE", "/scones-bucket", None),
]
READS_AND_DATA_PLANE = [
    ("states", "POST", "/", "DescribeStateMachine"),
    ("states", "POST", "/", "ListStateMachines"),
    ("states", "POST", "/", "StartExecution"),
    ("states", "POST", "/", "StartSyncExecution"),
    ("states", "POST", "/", "SendTaskSuccess"),
    ("states", "POST", "/", "ValidateStateMachineDefinition"),
    ("iam", "POST", "/", "GetRole"),
    ("iam", "POST", "/", "ListRoles"),
    ("sts", "POST", "/", "GetCallerIdentity"),
    ("logs", "POST", "/", "PutLogEvents"),
    ("logs", "POST", "/", "FilterLogEvents"),
    ("monitoring", "POST", "/", "PutMetricData"),
    ("lambda", "GET", "/2015-03-31/functions/scones-classify-image", None),
    ("lambda", "GET", "/2015-03-31/functions", None),
    ("lambda", "POST", "/2015-03-31/functions/scones-classify-image/invocations", None),
    ("lambda", "POST", "/2014-11-13/functions/scones-classify-image/invoke-async/", None),
    ("lambda", "POST", "/2021-11-15/functions/scones-classify-image/response-streaming-invocations", None),
    ("s3", "PUT", "/scones-bucket/data_capture/2026/01/01/capture.jsonl", None),
    ("s3", "POST", "/scones-bucket", None),  # DeleteObjects: object files, on disk already
    ("s3", "GET", "/scones-bucket", None),
    ("s3", "DELETE", "/scones-bucket/key", None),
    ("lambda", "POST", "/_ministack/reset", None),
]


@pytest.mark.parametrize(("service", "method", "path", "operation"), CHANGES)
def test_definition_changes(service: str, method: str, path: str, operation: str | None) -> None:
    assert definition_change(service, method, path, operation)


@pytest.mark.parametrize(("service", "method", "path", "operation"), READS_AND_DATA_PLANE)
def test_reads_and_the_data_plane_do_not_save(service: str, method: str, path: str, operation: str | None) -> None:
    assert not definition_change(service, method, path, operation)


def test_s3_bucket_level_in_the_host() -> None:
    assert definition_change("s3", "PUT", "/", None, bucket_in_host=True)  # CreateBucket, virtual-hosted
    assert not definition_change("s3", "PUT", "/key", None, bucket_in_host=True)  # PutObject, virtual-hosted


# --- the middleware, on a fake app and a fake store ------------------------------------------------------------
class FakeStore:
    enabled = True

    def __init__(self, events: list[str], error: Exception | None = None) -> None:
        self.events, self.error = events, error

    async def save(self, service: str) -> None:
        await asyncio.sleep(0.01)
        self.events.append(f"save {service}")
        if self.error is not None:
            raise self.error


def fake_app(status: int = 200, content_type: bytes = b"application/x-amz-json-1.0") -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
        await send({"type": "http.response.body", "body": b"part 1", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def call(
    app: DurableWrites, method: str = "POST", body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> list[str]:
    """Drive one request through `app`; what reached the client, in order (events shared with FakeStore)."""
    events: list[str] = app.store.events  # type: ignore[attr-defined]
    scope = {"type": "http", "method": method, "path": "/", "query_string": b"", "headers": headers or []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            events.append(f"start {message['status']}")
        else:
            events.append(f"body {message.get('body', b'').decode()}")

    asyncio.run(app(scope, receive, send))
    return events


def test_the_answer_waits_for_the_save() -> None:
    app = DurableWrites(fake_app(), FakeStore([]), resolve=lambda scope, form: "states")
    assert call(app) == ["save states", "start 200", "body part 1", "body "]


def test_reads_and_errors_are_not_held_back() -> None:
    resolved: list[str] = []

    def resolve(scope: Any, form: bytes) -> str:
        resolved.append(scope["method"])
        return "states"

    assert call(DurableWrites(fake_app(), FakeStore([]), resolve), method="GET")[0] == "start 200"
    assert call(DurableWrites(fake_app(status=400), FakeStore([]), resolve))[0] == "start 400"
    assert resolved == []  # neither a GET nor a non-2xx answer is looked at


def test_the_query_protocol_form_reaches_the_resolver() -> None:
    forms: list[bytes] = []

    def resolve(scope: Any, form: bytes) -> None:
        forms.append(form)

    form = b"Action=CreateRole&RoleName=r&Version=2010-05-08"
    headers = [(b"content-type", b"application/x-www-form-urlencoded; charset=utf-8")]
    assert call(DurableWrites(fake_app(), FakeStore([]), resolve), body=form, headers=headers)[0] == "start 200"
    assert forms == [form]


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [(b"application/x-amz-json-1.0", b'"__type": "InternalFailure"'), (b"text/xml", b"<Code>InternalFailure</Code>")],
)
def test_a_failed_save_answers_500(content_type: bytes, expected: bytes) -> None:
    store = FakeStore([], error=OSError(28, "No space left on device"))
    events = call(DurableWrites(fake_app(content_type=content_type), store, resolve=lambda scope, form: "iam"))
    assert events[:2] == ["save iam", "start 500"]
    assert expected.decode() in events[2] and len(events) == 3


# --- MinistackStore's locking, with MiniStack's parts replaced -----------------------------------------------
class CountingStore(MinistackStore):
    """Snapshots are change counters; writes take a while and record how many ran at once."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = 0
        self.written: list[int] = []
        self.active = self.most_active = 0
        self.guard = threading.Lock()

    enabled = True  # type: ignore[assignment]

    @staticmethod
    def files(service: str) -> tuple[tuple[str, str], ...]:
        return ((service, service),)

    def _snapshot(self, module_name: str) -> Any:
        return self.changed

    def _write(self, snapshots: list[tuple[str, str, Any]]) -> None:
        with self.guard:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(0.02)
        self.written.append(snapshots[0][2])
        with self.guard:
            self.active -= 1


def test_saves_of_one_service_never_overlap_and_cover_every_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(durability, "SETTLE_S", 0.05)
    store = CountingStore()

    async def change_then_save() -> tuple[int, int]:
        store.changed += 1
        change = store.changed
        await store.save("lambda")
        return change, max(store.written)  # the change, and the newest snapshot on disk when save returned

    async def main() -> list[tuple[int, int]]:
        results = await asyncio.gather(*(change_then_save() for _ in range(8)))
        await asyncio.sleep(0.2)  # the settle save
        return list(results)

    results = asyncio.run(main())
    assert store.most_active == 1
    assert all(change <= on_disk for change, on_disk in results), results  # each save returned once it was on disk
    assert store.written == [1, 8, 8], store.written  # the 6 saves a write had covered did not write; one settle


# --- the real files, in MiniStack's interpreter --------------------------------------------------------------
ROUND_TRIP = """
import asyncio, base64, io, json, os, sys, time, zipfile
os.environ.update(PERSIST_STATE="1", STATE_DIR=sys.argv[1], LOG_LEVEL="WARNING")
import ministack.app as app
from ministack.core.persistence import load_state
from localcloud.ministack.durability import MinistackStore

async def main():
    for name in ("f1", "f2", "f3"):
        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w") as archive:
            archive.writestr("h.py", "def h(event, context):\\n    return " + repr(name))
        code = base64.b64encode(zipped.getvalue()).decode()
        body = json.dumps({"FunctionName": name, "Runtime": "python3.11", "Handler": "h.h",
                           "Role": "arn:aws:iam::000000000000:role/r", "Code": {"ZipFile": code}}).encode()
        status, _, _ = await app.SERVICE_HANDLERS["lambda"]("POST", "/2015-03-31/functions", {}, body, {})
        assert status == 201, status
    began = time.perf_counter()
    await MinistackStore().save("lambda", settle=False)
    seconds = time.perf_counter() - began
    functions = load_state("lambda")["functions"]._data
    print(json.dumps({"names": sorted(key[-1] for key in functions), "ms": seconds * 1000,
                      "blobs": len(os.listdir(os.path.join(sys.argv[1], "lambda-blobs")))}))

asyncio.run(main())
"""


def test_the_files_are_what_ministack_loads(tmp_path: Any) -> None:
    python = LocalCloudConfig.from_env().ministack_venv / "bin" / "python"
    if not python.exists():
        pytest.skip("no MiniStack virtual environment (make venvs)")
    done = subprocess.run(
        [str(python), "-c", ROUND_TRIP, str(tmp_path / "state")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["names"] == ["f1", "f2", "f3"] and result["blobs"] == 3, result
    assert not list((tmp_path / "state").glob(".*.durable"))  # no temporary file left behind
