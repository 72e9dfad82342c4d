"""Scenario 10, limits of the local SageMaker, tried as an attacker would, each answered with AWS's error code while the
service keeps serving: capped request bodies (raw HTTP, lying and missing Content-Length), NaN/Infinity and
non-integers in integer fields, deep nesting, instance quotas, runtime header lengths, and data capture
destinations (bad schemes, missing buckets, bounded retries, spools removed with their endpoint).
Pure validator rules: tests/localcloud/test_validation.py. Runs against this package's own cloud, like the other
scenarios; the first ones leave it with a deployed endpoint, which changes nothing here."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from botocore.exceptions import ClientError
from starlette.requests import Request

from localcloud.sagemaker.models.invocation import MAX_PAYLOAD_BYTES, Invocation, InvocationResult
from localcloud.sagemaker.models.quotas import InstanceQuotas, quota_exceeded
from localcloud.sagemaker.responses import MAX_CONTROL_PLANE_BODY_BYTES, OversizedBody, read_body
from localcloud.sagemaker.runners.capture import CaptureWriter
from localcloud.sagemaker.validation import MAX_ECHOED_CHARS, MAX_NESTING_DEPTH
from tests.conftest import PYTORCH_INFERENCE_IMAGE, ROLE_ARN, LocalCloud
from tests.localcloud.helpers import create_pure_python_model, error_of, signed_headers, unique, wait_for

MIB = 1024 * 1024
ANSWER_WITHIN_S = 5.0  # an oversized body must be refused long before it could have been read
DEPLOY_TIMEOUT_S = 60.0
QUOTAS = InstanceQuotas.from_env()  # what the server under test runs with (the same environment)

pytestmark = pytest.mark.e2e


# The package's cloud under the names the session fixtures use (tests/conftest.py), so the scenarios share it.
@pytest.fixture(scope="module")
def local_cloud(cloud: LocalCloud) -> LocalCloud:
    return cloud


@pytest.fixture(scope="module")
def sagemaker(cloud: LocalCloud) -> Any:
    return cloud.client("sagemaker")


@pytest.fixture(scope="module")
def runtime(cloud: LocalCloud) -> Any:
    return cloud.client("sagemaker-runtime")


@pytest.fixture(scope="module")
def s3(cloud: LocalCloud) -> Any:
    return cloud.client("s3")


# --- the capped body reader (no server) ------------------------------------------------------------------
def fake_request(chunks: list[bytes], content_length: int | None) -> tuple[Request, list[int]]:
    """A starlette Request whose body arrives in `chunks`; the list counts the receive() calls."""
    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    pending = list(chunks)
    pulls = [0]

    async def receive() -> dict[str, Any]:
        pulls[0] += 1
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers}, receive), pulls


def test_a_declared_length_over_the_cap_is_refused_before_any_byte_is_read() -> None:
    request, pulls = fake_request([b"x" * 10], content_length=300 * MIB)
    body = asyncio.run(read_body(request, 1024))
    assert body == OversizedBody(declared=300 * MIB, limit=1024)
    assert pulls == [0]


@pytest.mark.parametrize("content_length", [None, 10], ids=["missing", "lying"])
def test_a_missing_or_lying_length_is_capped_while_streaming(content_length: int | None) -> None:
    request, pulls = fake_request([b"x" * 600] * 1000, content_length)
    body = asyncio.run(read_body(request, 1024))
    assert body == OversizedBody(declared=None, limit=1024)
    assert pulls == [2]  # stopped at the first chunk past the cap, not after 600 kB


def test_a_body_within_the_cap_is_returned_whole() -> None:
    request, _ = fake_request([b"ab", b"cd"], content_length=4)
    assert asyncio.run(read_body(request, 4)) == b"abcd"


# --- the body caps over raw HTTP ------------------------------------------------------------------------
@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


def raw_post(url: str, path: str, headers: dict[str, str], body: Iterable[bytes]) -> RawReply:
    """Send the head and whatever of `body` the server takes, then read one response (socket timeout 10 s)."""
    started = time.monotonic()
    address = urlparse(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        head = [f"POST {path} HTTP/1.1", f"Host: {address.netloc}", *(f"{k}: {v}" for k, v in headers.items())]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            for chunk in body:
                sock.sendall(chunk)
        except OSError:
            pass  # the server may stop reading once it has answered
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536) or _eof()
        head_bytes, rest = received.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
        reply_headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
        while len(rest) < int(reply_headers["content-length"]):
            rest += sock.recv(65536) or _eof()
    return RawReply(int(status_line.split()[1]), reply_headers, rest, time.monotonic() - started)


def _eof() -> bytes:
    raise AssertionError("the server closed the connection without a complete response")


def chunked(total: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    """`total` bytes of Transfer-Encoding: chunked body, then the last chunk."""
    for _ in range(total // piece):
        yield f"{piece:x}\r\n".encode() + b" " * piece + b"\r\n"
    yield b"0\r\n\r\n"


CONTROL_PLANE_HEADERS = {"X-Amz-Target": "SageMaker.ListModels", "Content-Type": "application/x-amz-json-1.1"}


def test_a_huge_declared_control_plane_body_is_refused_at_once(local_cloud: LocalCloud, sagemaker: Any) -> None:
    declared = 300 * MIB
    headers = CONTROL_PLANE_HEADERS | {"Content-Length": str(declared)}
    reply = raw_post(local_cloud.cfg.sagemaker_url, "/", headers, [b" " * MIB])  # 1 MiB of the 300 sent
    assert reply.seconds < ANSWER_WITHIN_S
    assert (reply.status, reply.json()) == (
        413,
        {
            "__type": "RequestEntityTooLarge",
            "message": f"Request body of {declared} bytes exceeds the maximum of {MAX_CONTROL_PLANE_BODY_BYTES} bytes.",
        },
    )
    assert "Models" in sagemaker.list_models()  # still serving


def test_a_chunked_control_plane_body_is_counted_and_capped(local_cloud: LocalCloud, sagemaker: Any) -> None:
    headers = CONTROL_PLANE_HEADERS | {"Transfer-Encoding": "chunked"}
    reply = raw_post(local_cloud.cfg.sagemaker_url, "/", headers, chunked(MAX_CONTROL_PLANE_BODY_BYTES + MIB))
    assert (reply.status, reply.json()) == (
        413,
        {
            "__type": "RequestEntityTooLarge",
            "message": (
                f"Request body of more than {MAX_CONTROL_PLANE_BODY_BYTES} bytes exceeds the maximum of "
                f"{MAX_CONTROL_PLANE_BODY_BYTES} bytes."
            ),
        },
    )
    assert "Models" in sagemaker.list_models()


@pytest.mark.parametrize("framing", ["declared", "chunked"])
def test_a_huge_runtime_body_is_refused_at_once(local_cloud: LocalCloud, runtime: Any, framing: str) -> None:
    headers = {"Content-Type": "application/json"}
    if framing == "declared":
        headers["Content-Length"] = str(300 * MIB)
        body: Iterable[bytes] = [b" " * MIB]
        size = f"{300 * MIB}"
    else:
        headers["Transfer-Encoding"] = "chunked"
        body = chunked(MAX_PAYLOAD_BYTES + MIB)
        size = f"more than {MAX_PAYLOAD_BYTES}"
    reply = raw_post(local_cloud.cfg.sagemaker_url, "/endpoints/no-such-endpoint/invocations", headers, body)
    assert reply.seconds < ANSWER_WITHIN_S
    assert (reply.status, reply.headers["x-amzn-errortype"]) == (413, "ValidationError")
    assert reply.json()["message"] == (
        f"Request payload of {size} bytes exceeds the maximum of {MAX_PAYLOAD_BYTES} bytes."
    )
    # and the runtime still answers an ordinary request
    assert error_of(runtime.invoke_endpoint, EndpointName="no-such-endpoint", Body=b"{}")["Code"] == "ValidationError"


def test_boto3_reads_the_early_answer_to_an_oversized_body(sagemaker: Any, runtime: Any) -> None:
    # botocore sends the whole body before it reads the answer: the server must drain, not reset, the rest.
    tag = {"Key": "k", "Value": "v" * (MAX_CONTROL_PLANE_BODY_BYTES + 1)}  # botocore leaves `max` to the server
    error = error_of(sagemaker.add_tags, ResourceArn="arn:aws:sagemaker:us-east-1:000000000000:model/m", Tags=[tag])
    assert error["Code"] == "RequestEntityTooLarge"
    size = MAX_PAYLOAD_BYTES + 1
    error = error_of(runtime.invoke_endpoint, EndpointName="no-such-endpoint", Body=b"x" * size)
    assert error == {
        "Code": "ValidationError",
        "Message": f"Request payload of {size} bytes exceeds the maximum of {MAX_PAYLOAD_BYTES} bytes.",
    }
    assert "Models" in sagemaker.list_models()


# --- JSON the service must refuse ------------------------------------------------------------------------
def control_plane(url: str, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
    headers = signed_headers(url + "/", body, {"X-Amz-Target": target})
    request = urllib.request.Request(url + "/", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


NOT_JSON = {"__type": "SerializationException", "message": "The request body is not valid JSON."}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_not_json(local_cloud: LocalCloud, literal: str) -> None:
    body = f'{{"MaxResults": {literal}}}'.encode()
    assert control_plane(local_cloud.cfg.sagemaker_url, "SageMaker.ListModels", body) == (400, NOT_JSON)


def test_a_fraction_in_an_integer_field_is_a_serialization_error(local_cloud: LocalCloud) -> None:
    status, body = control_plane(local_cloud.cfg.sagemaker_url, "SageMaker.ListModels", b'{"MaxResults": 1.5}')
    assert (status, body) == (
        400,
        {"__type": "SerializationException", "message": "Expected an integer at 'maxResults'"},
    )


TOO_DEEP = {
    "__type": "SerializationException",
    "message": f"The request body is nested more than {MAX_NESTING_DEPTH} levels deep.",
}


def test_json_nested_100000_deep_is_refused(local_cloud: LocalCloud, sagemaker: Any) -> None:
    body = b'{"ModelName": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert control_plane(local_cloud.cfg.sagemaker_url, "SageMaker.DescribeModel", body) == (400, TOO_DEEP)
    assert "Models" in sagemaker.list_models()


def test_a_recursive_shape_nested_deeply_is_refused_before_the_validator_recurses(local_cloud: LocalCloud) -> None:
    # SearchExpression.SubExpressions is recursive in the model; 400 levels parse, but walking them recursed.
    expression: dict[str, Any] = {}
    for _ in range(400):
        expression = {"SubExpressions": [expression]}
    body = json.dumps({"Resource": "TrainingJob", "SearchExpression": expression}).encode()
    assert control_plane(local_cloud.cfg.sagemaker_url, "SageMaker.Search", body) == (400, TOO_DEEP)


# --- instance quotas -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quota_model(sagemaker: Any) -> str:
    """A model whose archive does not exist: should a quota fail to hold, the deploy fails before any process."""
    name = unique("quota-model")
    container = {"Image": PYTORCH_INFERENCE_IMAGE, "ModelDataUrl": "s3://no-such-bucket-here/model.tar.gz"}
    sagemaker.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=ROLE_ARN)
    return name


def config_with(sagemaker: Any, model: str, counts: list[int], **extra: Any) -> str:
    """An endpoint config with one variant per instance count."""
    name = unique("config")
    variants = [
        {"VariantName": f"V{i}", "ModelName": model, "InitialInstanceCount": n, "InstanceType": "ml.m5.large"}
        for i, n in enumerate(counts)
    ]
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=variants, **extra)
    return name


def refused_create(sagemaker: Any, config: str) -> dict[str, str]:
    name = unique("quota-ep")
    try:
        return error_of(sagemaker.create_endpoint, EndpointName=name, EndpointConfigName=config)
    finally:
        try:
            sagemaker.delete_endpoint(EndpointName=name)  # only if the quota failed to hold
        except ClientError:
            pass


@pytest.mark.parametrize("count", [QUOTAS.per_variant + 1, 1_000_000_000])
def test_a_variant_over_the_instance_quota_is_refused(sagemaker: Any, quota_model: str, count: int) -> None:
    error = refused_create(sagemaker, config_with(sagemaker, quota_model, [1, count]))
    assert error == {
        "Code": "ResourceLimitExceeded",
        "Message": (
            "The account-level service limit 'Number of instances per production variant' is "
            f"{QUOTAS.per_variant} Instances, with current utilization of 0 Instances and a request delta of {count} "
            "Instances. Please use AWS Service Quotas to request an increase for this quota. (Local SageMaker: set "
            "LOCAL_SAGEMAKER_MAX_INSTANCES_PER_VARIANT to raise it.)"
        ),
    }


def test_endpoints_together_over_the_total_quota_are_refused(sagemaker: Any, quota_model: str) -> None:
    variants = QUOTAS.total // QUOTAS.per_variant + 1
    error = refused_create(sagemaker, config_with(sagemaker, quota_model, [QUOTAS.per_variant] * variants))
    assert error["Code"] == "ResourceLimitExceeded"
    shape = (
        rf"The account-level service limit 'Number of instances across all endpoints' is {QUOTAS.total} Instances, "
        rf"with current utilization of (\d+) Instances and a request delta of {variants * QUOTAS.per_variant} "
        r"Instances\. Please use AWS Service Quotas to request an increase for this quota\. "
        r"\(Local SageMaker: set LOCAL_SAGEMAKER_MAX_ENDPOINT_INSTANCES to raise it\.\)"
    )
    assert re.fullmatch(shape, error["Message"]), error["Message"]


def test_quota_message_has_aws_shape() -> None:
    error = quota_exceeded("Number of instances across all endpoints", 8, 3, 6, "LOCAL_SAGEMAKER_X")
    assert error.code == "ResourceLimitExceeded" and error.status == 400
    assert error.message.startswith(
        "The account-level service limit 'Number of instances across all endpoints' is 8 Instances, with current "
        "utilization of 3 Instances and a request delta of 6 Instances. Please use AWS Service Quotas"
    )


# --- runtime headers ------------------------------------------------------------------------------------
def header_error(member: str, value: str, constraint: str) -> str:
    value = value.encode().decode("latin-1")  # botocore sends header values as UTF-8; HTTP reads them as Latin-1
    shown = value if len(value) <= MAX_ECHOED_CHARS else value[:MAX_ECHOED_CHARS] + "..."
    return f"1 validation error detected: Value '{shown}' at '{member}' failed to satisfy constraint: {constraint}"


@pytest.mark.parametrize(
    ("argument", "value", "member", "constraint"),
    [
        ("CustomAttributes", "a" * 1025, "customAttributes", "Member must have length less than or equal to 1024"),
        (
            "CustomAttributes",
            "caf\u00e9",
            "customAttributes",
            "Member must satisfy regular expression pattern: \\p{ASCII}*",
        ),
        ("InferenceId", "i" * 65, "inferenceId", "Member must have length less than or equal to 64"),
        (
            "InferenceId",
            "id-\u00e9",
            "inferenceId",
            "Member must satisfy regular expression pattern: \\A\\S[\\p{Print}]*\\z",
        ),
    ],
)
def test_runtime_headers_are_validated_against_the_runtime_model(
    runtime: Any, argument: str, value: str, member: str, constraint: str
) -> None:
    error = error_of(runtime.invoke_endpoint, EndpointName="no-such-endpoint", Body=b"{}", **{argument: value})
    assert error == {"Code": "ValidationError", "Message": header_error(member, value, constraint)}


# --- data capture destinations ---------------------------------------------------------------------------
def capture(destination: str) -> dict[str, Any]:
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": destination,
        "CaptureOptions": [{"CaptureMode": "Input"}],
    }


def capture_config(sagemaker: Any, model: str, destination: str) -> str:
    return config_with(sagemaker, model, [1], DataCaptureConfig=capture(destination))


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        (
            "file:///tmp/capture",
            "1 validation error detected: Value 'file:///tmp/capture' at 'dataCaptureConfig.destinationS3Uri' failed "
            "to satisfy constraint: Member must satisfy regular expression pattern: (https|s3)://([^/])/?(.*)",
        ),
        (
            "https://example.com/c",  # the model's pattern admits it; the local SageMaker cannot deliver there
            "The local SageMaker delivers data capture only to s3://<bucket>/<prefix> destinations, "
            "not 'https://example.com/c'.",
        ),
    ],
)
def test_a_capture_destination_that_is_not_s3_is_refused(
    sagemaker: Any, quota_model: str, destination: str, message: str
) -> None:
    error = error_of(capture_config, sagemaker=sagemaker, model=quota_model, destination=destination)
    assert error == {"Code": "ValidationException", "Message": message}


@pytest.fixture(scope="module")
def capture_bucket(s3: Any) -> str:
    name = unique("limits-capture")
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def served_model(sagemaker: Any, s3: Any, capture_bucket: str) -> str:
    return create_pure_python_model(sagemaker, s3, capture_bucket, unique("limits-model"))


def settle(sagemaker: Any, name: str) -> dict[str, Any]:
    described = wait_for(
        lambda: (
            (d := sagemaker.describe_endpoint(EndpointName=name))["EndpointStatus"] not in ("Creating", "Updating")
            and d
        ),
        timeout_s=DEPLOY_TIMEOUT_S,
    )
    assert described, f"endpoint {name} did not settle"
    return dict(described)


def test_a_capture_bucket_that_does_not_exist_fails_the_endpoint(sagemaker: Any, served_model: str) -> None:
    bucket = f"no-such-capture-{uuid.uuid4().hex[:8]}"
    config = capture_config(sagemaker, served_model, f"s3://{bucket}/dc")  # AWS does not check it here
    name = unique("capture-ep")
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    described = settle(sagemaker, name)
    assert described["EndpointStatus"] == "Failed"
    assert described["FailureReason"] == (
        f"Cannot write data capture to s3://{bucket}/dc: the S3 bucket {bucket} does not exist or is not accessible."
    )
    sagemaker.delete_endpoint(EndpointName=name)


def spool_dirs(local_cloud: LocalCloud, endpoint: str) -> list[Path]:
    """The server's capture spool folders of this endpoint."""
    spool = local_cloud.cfg.sagemaker_home / "data-capture-spool"
    destinations = [d / "destination.json" for d in spool.iterdir()]
    return [f.parent for f in destinations if f.is_file() and json.loads(f.read_text())["EndpointName"] == endpoint]


def test_a_served_endpoint_refuses_an_update_over_quota_and_its_spool_goes_with_it(
    local_cloud: LocalCloud, sagemaker: Any, runtime: Any, served_model: str, capture_bucket: str
) -> None:
    name = unique("capture-ep")
    sagemaker.create_endpoint(
        EndpointName=name,
        EndpointConfigName=capture_config(sagemaker, served_model, f"s3://{capture_bucket}/dc"),
    )
    assert settle(sagemaker, name)["EndpointStatus"] == "InService"
    runtime.invoke_endpoint(EndpointName=name, Body=b"{}", ContentType="application/json")
    assert spool_dirs(local_cloud, name)

    error = error_of(
        sagemaker.update_endpoint,
        EndpointName=name,
        EndpointConfigName=config_with(sagemaker, served_model, [QUOTAS.per_variant + 1]),
    )
    assert error["Code"] == "ResourceLimitExceeded"
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"

    sagemaker.delete_endpoint(EndpointName=name)
    assert wait_for(lambda: not spool_dirs(local_cloud, name), 30), "the endpoint's capture spool outlived it"


def test_uploads_that_keep_failing_are_given_up_after_a_bounded_number_of_attempts(s3: Any, tmp_path: Path) -> None:
    writer = CaptureWriter(s3, tmp_path / "spool", flush_interval_s=3600, max_upload_attempts=3)
    try:
        invocation = Invocation("ep-doomed", b"1", "text/csv", "text/csv")
        result = InvocationResult(b"2", "text/csv", "AllTraffic")
        writer.record("ep-doomed", "AllTraffic", capture(f"s3://missing-{uuid.uuid4().hex[:8]}/p"), invocation, result)
        assert [writer.flush() for _ in range(2)] == [0, 0] and len(writer.pending_files()) == 1
        writer.flush()  # the third failure is the last
        assert writer.pending_files() == []
    finally:
        writer.close()


def test_retiring_an_endpoint_delivers_then_removes_its_spool(s3: Any, capture_bucket: str, tmp_path: Path) -> None:
    writer = CaptureWriter(s3, tmp_path / "spool", flush_interval_s=3600)
    try:
        for endpoint in ("ep-gone", "ep-gone--x"):  # a name that another endpoint's folder name starts with
            invocation = Invocation(endpoint, b"1", "text/csv", "text/csv")
            result = InvocationResult(b"2", "text/csv", "AllTraffic")
            writer.record(endpoint, "AllTraffic", capture(f"s3://{capture_bucket}/retire"), invocation, result)
        writer.retire("ep-gone")
        remaining = [json.loads((d / "destination.json").read_text()) for d in (tmp_path / "spool").iterdir()]
        assert [d["EndpointName"] for d in remaining] == ["ep-gone--x"]
    finally:
        writer.close()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=capture_bucket, Prefix="retire/").get("Contents", [])]
    assert sorted(k.split("/")[1] for k in keys) == ["ep-gone", "ep-gone--x"]
