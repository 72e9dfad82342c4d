"""Data capture against the real services: the CaptureWriter delivering to MiniStack's S3 (spool,
rotation, retry after a failed upload, recovery after a crash), and endpoint data capture end to
end through boto3 (sampling, capture modes, exact payload round trip, nothing lost on restart)."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from localcloud.config import PROJECT_ROOT
from localcloud.sagemaker.models.invocation import Invocation, InvocationResult
from localcloud.sagemaker.runners.capture import CaptureWriter

pytestmark = pytest.mark.e2e

SDK_HEADER = {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]}
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def capture_config(bucket: str, prefix: str, *, sampling: int = 100, modes: tuple[str, ...] = ("Input", "Output")) -> dict:
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": sampling,
        "DestinationS3Uri": f"s3://{bucket}/{prefix}",
        "CaptureOptions": [{"CaptureMode": m} for m in modes],
        "CaptureContentTypeHeader": SDK_HEADER,
    }


def new_bucket(s3: Any) -> str:
    name = f"capture-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def captured_objects(s3: Any, bucket: str, prefix: str) -> dict[str, list[dict]]:
    """key -> the records in that .jsonl object."""
    found: dict[str, list[dict]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            text = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
            found[obj["Key"]] = [json.loads(line) for line in text.splitlines()]
    return found


def wait_for(condition: Callable[[], Any], timeout_s: float, interval_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def all_records(objects: dict[str, list[dict]]) -> list[dict]:
    return [record for records in objects.values() for record in records]


# --- the writer, directly against MiniStack S3 -------------------------------------------------
def test_writer_uploads_spooled_records_in_the_sagemaker_layout(s3: Any, tmp_path: Path) -> None:
    bucket = new_bucket(s3)
    writer = CaptureWriter(s3, tmp_path / "spool", flush_interval_s=0.5)
    try:
        config = capture_config(bucket, "dc")
        invocation = Invocation("ep-a", PNG_BYTES, "image/png", "application/json", inference_id="inf-1")
        result = InvocationResult(b'{"class": 1}', "application/json", "AllTraffic")
        for _ in range(3):
            assert writer.record("ep-a", "AllTraffic", config, invocation, result)
        objects = wait_for(lambda: captured_objects(s3, bucket, "dc/"), timeout_s=10)
    finally:
        writer.close()
    records = all_records(captured_objects(s3, bucket, "dc/"))
    assert len(records) == 3
    key = next(iter(objects))
    assert key.startswith("dc/ep-a/AllTraffic/") and key.endswith(".jsonl")
    first = records[0]
    assert base64.b64decode(first["captureData"]["endpointInput"]["data"]) == PNG_BYTES
    assert first["captureData"]["endpointOutput"] == {
        "observedContentType": "application/json",
        "mode": "OUTPUT",
        "data": '{"class": 1}',
        "encoding": "JSON",
    }
    assert first["eventMetadata"]["inferenceId"] == "inf-1"
    assert writer.pending_files() == []


def test_writer_does_not_record_when_capture_is_off(s3: Any, tmp_path: Path) -> None:
    writer = CaptureWriter(s3, tmp_path / "spool", flush_interval_s=3600)
    invocation = Invocation("ep-b", b"{}", "application/json", "application/json")
    result = InvocationResult(b"{}", "application/json", "AllTraffic")
    try:
        assert not writer.record("ep-b", "AllTraffic", None, invocation, result)
        assert not writer.record("ep-b", "AllTraffic", capture_config("bkt", "p", sampling=0), invocation, result)
        off = capture_config("bkt", "p") | {"EnableCapture": False}
        assert not writer.record("ep-b", "AllTraffic", off, invocation, result)
        assert writer.pending_files() == []
    finally:
        writer.close()


def test_failed_upload_is_kept_and_retried(s3: Any, tmp_path: Path) -> None:
    bucket = f"capture-late-{uuid.uuid4().hex[:8]}"  # does not exist yet: uploads fail
    writer = CaptureWriter(s3, tmp_path / "spool", flush_interval_s=3600)
    try:
        config = capture_config(bucket, "late")
        invocation = Invocation("ep-c", b"1,2", "text/csv", "text/csv")
        writer.record("ep-c", "AllTraffic", config, invocation, InvocationResult(b"3", "text/csv", "AllTraffic"))
        assert writer.flush() == 0
        assert len(writer.pending_files()) == 1
        s3.create_bucket(Bucket=bucket)
        assert writer.flush() == 1
    finally:
        writer.close()
    records = all_records(captured_objects(s3, bucket, "late/"))
    assert [r["captureData"]["endpointInput"]["data"] for r in records] == ["1,2"]
    assert records[0]["captureData"]["endpointInput"]["encoding"] == "CSV"


CRASHING_WRITER = """
import os, sys
from pathlib import Path
from localcloud.sagemaker.models.invocation import Invocation, InvocationResult
from localcloud.sagemaker.runners.capture import CaptureWriter
writer = CaptureWriter(None, Path(sys.argv[1]), flush_interval_s=3600)
config = {"EnableCapture": True, "InitialSamplingPercentage": 100, "DestinationS3Uri": sys.argv[2],
          "CaptureOptions": [{"CaptureMode": "Input"}]}
for i in range(int(sys.argv[3])):
    invocation = Invocation("ep-crash", str(i).encode(), "text/plain", "application/json")
    writer.record("ep-crash", "AllTraffic", config, invocation, InvocationResult(b"", "text/plain", "AllTraffic"))
os._exit(0)  # a crash: no close(), no flush
"""


def test_spool_left_by_a_crashed_process_is_uploaded_by_the_next_writer(s3: Any, tmp_path: Path) -> None:
    bucket = new_bucket(s3)
    spool = tmp_path / "spool"
    code = textwrap.dedent(CRASHING_WRITER)
    subprocess.run([sys.executable, "-c", code, str(spool), f"s3://{bucket}/crash", "5"], check=True, cwd=PROJECT_ROOT, timeout=60)
    assert len(list(spool.glob("*/*.jsonl"))) == 1
    writer = CaptureWriter(s3, spool, flush_interval_s=3600)  # its first round uploads leftovers
    try:
        wait_for(lambda: not writer.pending_files(), timeout_s=10)
    finally:
        writer.close()
    records = all_records(captured_objects(s3, bucket, "crash/"))
    assert sorted(base64.b64decode(r["captureData"]["endpointInput"]["data"]) for r in records) == [
        str(i).encode() for i in range(5)
    ]
    assert all(list(r["captureData"]) == ["endpointInput"] for r in records)
