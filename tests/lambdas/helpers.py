"""Helpers for the Lambda tests: import a function the way the Lambda runtime does, build real PNG bytes, and
package and deploy a function folder to the local cloud's Lambda (MiniStack)."""

from __future__ import annotations

import importlib
import io
import os
import struct
import sys
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any
from unittest import mock

from botocore.exceptions import ClientError

from tests.conftest import PROJECT_ROOT

LAMBDAS = PROJECT_ROOT / "lambdas"
FUNCTIONS = ("serialize_image_data", "classify_image", "filter_inferences")
SETTINGS_VARIABLES = ("ENDPOINT_NAME", "THRESHOLD")
LAMBDA_ROLE_ARN = "arn:aws:iam::000000000000:role/scones-lambda"  # MiniStack checks roles only with AUTH=1


@dataclass(frozen=True)
class LoadedLambda:
    # Typed Any: tests swap a module's lazily made client (s3_client, runtime_client) for a fake.
    handler: Any  # lambda_function
    logic: Any  # the logic module that very handler imported (same exception classes)


def load_lambda(name: str, env: dict[str, str] | None = None) -> LoadedLambda:
    """Import lambdas/<name>/lambda_function.py as the runtime does (its folder on sys.path, `logic` a top-level
    module), with `env` as the environment while it loads (settings are read once, at import). Every call gives
    fresh modules, and sys.modules is left as it was, so the three functions' same-named modules never meet."""
    folder = str(LAMBDAS / name)
    saved: dict[str, Any] = {key: sys.modules.pop(key) for key in ("logic", "lambda_function") if key in sys.modules}
    sys.path.insert(0, folder)
    try:
        with mock.patch.dict(os.environ, env or {}):
            for variable in set(SETTINGS_VARIABLES) - (env or {}).keys():
                os.environ.pop(variable, None)
            handler = importlib.import_module("lambda_function")
        logic = sys.modules["logic"]
    finally:
        sys.path.remove(folder)
        for key in ("logic", "lambda_function"):
            sys.modules.pop(key, None)
        sys.modules.update(saved)
    return LoadedLambda(handler, logic)


class FakeS3:
    """head_object/get_object/put_object over a dict, recording which objects were downloaded."""

    def __init__(self, objects: dict[tuple[str, str], bytes]) -> None:
        self.objects = objects
        self.downloaded: list[tuple[str, str]] = []

    def _find(self, bucket: str, key: str, operation: str) -> bytes:
        if (bucket, key) not in self.objects:
            raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, operation)
        return self.objects[bucket, key]

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"ContentLength": len(self._find(Bucket, Key, "HeadObject"))}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self.downloaded.append((Bucket, Key))
        return {"Body": io.BytesIO(self._find(Bucket, Key, "GetObject"))}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        self.objects[Bucket, Key] = Body
        return {}


class FakeRuntime:
    """invoke_endpoint answering a fixed body, recording the calls."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.calls: list[dict[str, Any]] = []

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"Body": io.BytesIO(self.reply), "ContentType": "application/json"}


@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str = "test-function"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    memory_limit_in_mb: int = 128

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def png(text: str = "", width: int = 2, height: int = 2) -> bytes:
    """A real, tiny grey PNG; `text` goes in a tEXt chunk, so tests can tell images apart by content."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))  # filter byte 0, one grey byte per pixel
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    text_chunk = chunk(b"tEXt", b"Comment\x00" + text.encode("latin-1")) if text else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + text_chunk
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def lambda_zip(name: str) -> bytes:
    """The deployment package: the folder's .py files at the zip's root, as the handler name expects."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((LAMBDAS / name).glob("*.py")):
            archive.write(path, path.name)
    return buffer.getvalue()


def zip_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buffer.getvalue()


def deploy(lambda_client: Any, code: bytes, env: dict[str, str] | None = None, prefix: str = "fn") -> str:
    """Create a Python 3.11 function from a zip; returns its ARN."""
    created = lambda_client.create_function(
        FunctionName=f"{prefix}-{uuid.uuid4().hex[:8]}",
        Runtime="python3.11",
        Role=LAMBDA_ROLE_ARN,
        Handler="lambda_function.lambda_handler",
        Code={"ZipFile": code},
        Timeout=30,
        Environment={"Variables": env or {}},
    )
    return str(created["FunctionArn"])
