"""Helpers shared by the local-cloud tests: AWS error extraction, output-shape checks, polling,
unique names, and a pure-Python model (no torch) that the serving worker can load."""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError

from localcloud.sagemaker import validation
from tests.conftest import PYTORCH_INFERENCE_IMAGE, ROLE_ARN


def signed_headers(url: str, body: bytes, headers: dict[str, str], service: str = "sagemaker") -> dict[str, str]:
    """`headers` plus a SigV4 signature of a POST of `body` to `url`, with the credentials boto3 finds (the
    local cloud's, which the session fixture puts in the environment): for requests boto3 itself cannot send."""
    request = AWSRequest("POST", url, data=body, headers=headers)
    SigV4Auth(boto3.Session().get_credentials(), service, "us-east-1").add_auth(request)
    return dict(request.headers.items())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error_response(call: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """The whole parsed error response of a call that must fail with a ClientError."""
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return dict(raised.value.response)


def error_of(call: Callable[..., Any], **kwargs: Any) -> dict[str, str]:
    """{"Code", "Message"} of a call that must fail with a ClientError."""
    return dict(error_response(call, **kwargs)["Error"])


def assert_valid_output(operation: str, response: dict[str, Any]) -> None:
    """The response satisfies botocore's output shape (required members, enums, ranges, no extras)."""
    body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    wire = json.loads(json.dumps(body, default=lambda d: d.timestamp()))  # datetimes back to epoch seconds
    assert validation.output_errors(validation.operation_model(operation), wire) == []


def wait_for(condition: Callable[[], Any], timeout_s: float, interval_s: float = 0.2) -> Any:
    """Poll until condition() is truthy or the time is up; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def live_processes(matches: Callable[[Path], bool]) -> set[int]:
    """Pids of running (not zombie) processes whose /proc/<pid> folder `matches`; unreadable ones are skipped."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z" and matches(proc):
                found.add(int(proc.name))
        except OSError:
            continue
    return found


def process_gone(pid: int, timeout_s: float = 10) -> bool:
    """True once pid has exited (a zombie waiting for its parent to reap it counts as gone)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.2)
    return False


# Pure Python, no torch: the worker imports it in .venv-pytorch as the framework container would.
PURE_PYTHON_INFERENCE = textwrap.dedent(
    """
    import json, os, time

    def model_fn(model_dir):
        with open(os.path.join(model_dir, "weights.json")) as f:
            return json.load(f)

    def transform_fn(model, body, content_type, accept):
        raw = body.encode() if isinstance(body, str) else body
        if raw.startswith(b"FAIL"):
            raise ValueError("cannot classify this scone")
        if raw.startswith(b"SLOW"):
            time.sleep(1.0)
        if content_type == "text/csv":
            return ",".join(str(float(x) * model["scale"]) for x in body.strip().split(",")), "text/csv"
        result = {"bytes": len(raw), "head": raw[:4].hex(), "scale": model["scale"], "type": content_type}
        return json.dumps(result), accept
    """
)


def pure_python_model_archive(scale: int = 2, inference: str = PURE_PYTHON_INFERENCE) -> bytes:
    """model.tar.gz of a pure-Python model: `weights.json` ({"scale": scale}) and `code/inference.py`."""
    buffer = io.BytesIO()
    weights = json.dumps({"scale": scale}).encode()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("weights.json", weights), ("code/inference.py", inference.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def create_pure_python_model(sagemaker: Any, s3: Any, bucket: str, name: str) -> str:
    """Upload pure_python_model_archive() and register it as a PyTorch-image model."""
    key = f"models/{name}/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=pure_python_model_archive())
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": PYTORCH_INFERENCE_IMAGE, "ModelDataUrl": f"s3://{bucket}/{key}"},
        ExecutionRoleArn=ROLE_ARN,
    )
    return name
