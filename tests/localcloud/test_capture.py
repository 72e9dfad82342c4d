"""Data capture against the real services: the CaptureWriter delivering to MiniStack's S3 (spool,
rotation, retry after a failed upload, recovery after a crash), and endpoint data capture end to
end through boto3 (sampling, capture modes, exact payload round trip). Nothing lost across `make down`
right after a burst: tests/reliability/test_load.py."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from localcloud.config import PROJECT_ROOT, aws_managed_s3_key_arn
from localcloud.sagemaker.models.invocation import Invocation, InvocationResult
from localcloud.sagemaker.runners.capture import CaptureWriter
from tests.localcloud.helpers import create_pure_python_model, wait_for

pytestmark = pytest.mark.e2e

SDK_HEADER = {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]}
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
DEPLOY_TIMEOUT_S = 60.0
FLUSH_WAIT_S = 15.0  # the server flushes every 0.5 s; leave room for a loaded machine


def capture_config(
    bucket: str, prefix: str, *, sampling: int = 100, modes: tuple[str, ...] = ("Input", "Output")
) -> dict:
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


def all_records(objects: dict[str, list[dict]]) -> list[dict]:
    return [record for records in objects.values() for record in records]


def wait_for_records(s3: Any, bucket: str, prefix: str, count: int) -> dict[str, list[dict]]:
    """The capture objects under prefix once they hold at least `count` records (or at the deadline)."""
    found: dict[str, list[dict]] = {}

    def enough() -> bool:
        found.clear()
        found.update(captured_objects(s3, bucket, prefix))
        return len(all_records(found)) >= count

    wait_for(enough, FLUSH_WAIT_S)
    return found


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
    # Written with SSE-KMS, as SageMaker writes captures: the account's aws/s3 key when the config names none.
    stored = s3.head_object(Bucket=bucket, Key=key)
    assert (stored["ServerSideEncryption"], stored["SSEKMSKeyId"]) == ("aws:kms", aws_managed_s3_key_arn())


def test_writer_encrypts_with_the_key_the_config_names(s3: Any, tmp_path: Path) -> None:
    bucket = new_bucket(s3)
    key_arn = "arn:aws:kms:us-east-1:000000000000:key/11111111-2222-3333-4444-555555555555"
    writer = CaptureWriter(s3, tmp_path / "spool", flush_interval_s=0.5)
    try:
        config = capture_config(bucket, "dc") | {"KmsKeyId": key_arn}
        invocation = Invocation("ep-k", PNG_BYTES, "image/png", "application/json")
        assert writer.record("ep-k", "AllTraffic", config, invocation, InvocationResult(b"{}", "application/json", "A"))
        objects = wait_for(lambda: captured_objects(s3, bucket, "dc/"), timeout_s=10)
    finally:
        writer.close()
    assert s3.head_object(Bucket=bucket, Key=next(iter(objects)))["SSEKMSKeyId"] == key_arn


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
from tests.localcloud.helpers import create_pure_python_model
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
    subprocess.run(
        [sys.executable, "-c", code, str(spool), f"s3://{bucket}/crash", "5"], check=True, cwd=PROJECT_ROOT, timeout=60
    )
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


# --- end to end: endpoints with DataCaptureConfig ------------------------------------------------
KEY = re.compile(r"^(?P<dir>.+/\d{4}/\d{2}/\d{2}/(?P<hour>\d{2}))/\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl$")


@pytest.fixture(scope="module")
def capture_bucket(s3: Any) -> str:
    return new_bucket(s3)


@pytest.fixture(scope="module")
def capture_model(sagemaker: Any, s3: Any, capture_bucket: str) -> str:
    return create_pure_python_model(sagemaker, s3, capture_bucket, f"capture-model-{uuid.uuid4().hex[:6]}")


def deploy(sagemaker: Any, model: str, config: dict) -> str:
    name = f"cap-{uuid.uuid4().hex[:8]}"
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": model,
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
    }
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant], DataCaptureConfig=config)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    described = wait_for(
        lambda: (d := sagemaker.describe_endpoint(EndpointName=name))["EndpointStatus"] != "Creating" and d,
        timeout_s=DEPLOY_TIMEOUT_S,
    )
    assert described and described["EndpointStatus"] == "InService", described
    return name


def invoke_png(runtime: Any, endpoint: str, body: bytes, **extra: Any) -> bytes:
    response = runtime.invoke_endpoint(
        EndpointName=endpoint, Body=body, ContentType="image/png", Accept="application/json", **extra
    )
    return bytes(response["Body"].read())


def test_endpoint_capture_round_trips_the_exact_input_and_output(
    sagemaker: Any, runtime: Any, s3: Any, capture_bucket: str, capture_model: str
) -> None:
    endpoint = deploy(sagemaker, capture_model, capture_config(capture_bucket, "e2e"))
    described = sagemaker.describe_endpoint(EndpointName=endpoint)["DataCaptureConfig"]
    assert described["EnableCapture"] is True and described["CaptureStatus"] == "Started"
    bodies = [PNG_BYTES + bytes([i]) for i in range(3)]
    outputs = [invoke_png(runtime, endpoint, body, InferenceId=f"inf-{i}") for i, body in enumerate(bodies)]

    prefix = f"e2e/{endpoint}/AllTraffic/"
    objects = wait_for_records(s3, capture_bucket, prefix, 3)
    for key, records in objects.items():
        match = KEY.match(key)
        assert match and match["dir"].startswith(prefix.rstrip("/")), key
        assert {r["eventMetadata"]["inferenceTime"][11:13] for r in records} == {match["hour"]}  # UTC hour folder
    records = sorted(all_records(objects), key=lambda r: r["eventMetadata"]["inferenceId"])
    assert len(records) == 3
    for record, body, output in zip(records, bodies, outputs, strict=True):
        captured_input = record["captureData"]["endpointInput"]
        assert captured_input["observedContentType"] == "image/png"
        assert captured_input["mode"] == "INPUT" and captured_input["encoding"] == "BASE64"
        assert base64.b64decode(captured_input["data"]) == body
        assert record["captureData"]["endpointOutput"] == {
            "observedContentType": "application/json",
            "mode": "OUTPUT",
            "data": output.decode(),
            "encoding": "JSON",
        }
        assert json.loads(output)["bytes"] == len(body)  # the output really is this input's prediction
        assert record["eventVersion"] == "0"
        assert uuid.UUID(record["eventMetadata"]["eventId"]).version == 4


def test_sampling_zero_captures_nothing_and_input_mode_captures_no_output(
    sagemaker: Any, runtime: Any, s3: Any, capture_bucket: str, capture_model: str
) -> None:
    unsampled = deploy(sagemaker, capture_model, capture_config(capture_bucket, "zero", sampling=0))
    input_only = deploy(sagemaker, capture_model, capture_config(capture_bucket, "in-only", modes=("Input",)))
    for _ in range(3):
        invoke_png(runtime, unsampled, PNG_BYTES)
        invoke_png(runtime, input_only, PNG_BYTES)
    records = all_records(wait_for_records(s3, capture_bucket, "in-only/", 3))
    assert len(records) == 3
    assert all(list(r["captureData"]) == ["endpointInput"] for r in records)
    # The input-only endpoint's files arrived, so a flush has run since the unsampled calls too.
    assert captured_objects(s3, capture_bucket, "zero/") == {}
