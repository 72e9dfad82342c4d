"""Protocol layer: decode SageMaker's JSON 1.1 control-plane requests and its rest-json runtime
requests, validate them against botocore's model, call the backend, and encode results and
errors exactly as AWS does. Knows nothing about processes or storage."""

from __future__ import annotations

import json
import logging
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from localcloud.sagemaker import validation
from localcloud.sagemaker.exceptions import (
    PayloadTooLarge,
    RequestEntityTooLarge,
    RuntimeValidationError,
    SageMakerError,
    SerializationException,
    UnknownOperationException,
)
from localcloud.sagemaker.models.backend import SageMakerBackend
from localcloud.sagemaker.models.invocation import MAX_PAYLOAD_BYTES, Invocation

log = logging.getLogger(__name__)

JSON_11 = "application/x-amz-json-1.1"
TARGET_PREFIX = "SageMaker."
# JSON 1.1 control-plane requests are small: the largest member in the whole model (PipelineDefinition) is
# 1 MiB, and no operation the local SageMaker implements comes near that (CreateTrainingJob at its limits is
# about 0.5 MB). AWS documents no overall cap for these requests; 2 MiB bounds the memory one request can take.
MAX_CONTROL_PLANE_BODY_BYTES = 2 * 1024 * 1024
NOT_JSON = "The request body is not valid JSON."


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _request_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class OversizedBody:
    """What read_body returns instead of a body over its limit; `declared` is the Content-Length, when it said so."""

    declared: int | None
    limit: int

    def size(self) -> str:
        return str(self.declared) if self.declared is not None else f"more than {self.limit}"


async def read_body(request: Request, limit: int) -> bytes | OversizedBody:
    """The request body, never holding more than `limit` bytes (plus one network chunk) in memory: a declared
    Content-Length over the limit is refused before any byte is read, and the bytes are counted as they arrive,
    for a body sent without a Content-Length (chunked) or with one that lies."""
    try:
        declared = int(request.headers.get("content-length", ""))
    except ValueError:
        declared = -1
    if declared > limit:
        return OversizedBody(declared, limit)
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            return OversizedBody(None, limit)
    return bytes(received)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999 parses as inf
        raise ValueError(f"{text} is not a finite number")
    return number


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")  # json.loads accepts NaN and Infinity unless told not to


def control_plane_error(error: SageMakerError) -> Reply:
    body = {"__type": error.code, "message": error.message} | error.extra_body()
    return Reply(error.status, json.dumps(body).encode(), {"Content-Type": JSON_11, "x-amzn-RequestId": _request_id()})


def runtime_error(error: SageMakerError) -> Reply:
    # botocore's rest-json parser reads the code from x-amzn-ErrorType first.
    body = {"ErrorCode": error.code, "message": error.message} | error.extra_body()
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": error.code, "x-amzn-RequestId": _request_id()}
    return Reply(error.status, json.dumps(body).encode(), headers)


class ControlPlane:
    max_body_bytes = MAX_CONTROL_PLANE_BODY_BYTES

    def __init__(self, backend: SageMakerBackend) -> None:
        self.backend = backend

    def handle(self, target: str | None, raw_body: bytes | OversizedBody) -> Reply:
        try:
            if isinstance(raw_body, OversizedBody):
                raise RequestEntityTooLarge(
                    f"Request body of {raw_body.size()} bytes exceeds the maximum of {raw_body.limit} bytes."
                )
            operation = self._operation(target)
            params = self._params(raw_body)
            validation.validate_input(validation.operation_model(operation), params)
            result = self.backend.dispatch(operation, params)
        except SageMakerError as error:
            return control_plane_error(error)
        except Exception:  # a bug in the emulator must still look like AWS to the caller
            log.exception("internal error handling %s", target)
            return control_plane_error(SageMakerError("An internal error occurred."))
        return Reply(200, json.dumps(result).encode(), {"Content-Type": JSON_11, "x-amzn-RequestId": _request_id()})

    @staticmethod
    def _operation(target: str | None) -> str:
        if not target or not target.startswith(TARGET_PREFIX):
            shown = None if target is None else validation.shorten(target)
            raise UnknownOperationException(f"Missing or unknown X-Amz-Target header: {shown!r}")
        return target[len(TARGET_PREFIX) :]

    @staticmethod
    def _params(raw_body: bytes) -> dict[str, Any]:
        if not raw_body.strip():
            return {}
        try:
            params = json.loads(raw_body, parse_constant=_no_constants, parse_float=_finite_float)
        except ValueError as exc:
            raise SerializationException(NOT_JSON) from exc
        except RecursionError as exc:  # the decoder recurses once per level; the validator refuses what parses
            raise SerializationException(validation.TOO_DEEP) from exc
        if not isinstance(params, dict):
            raise SerializationException("The request body must be a JSON object.")
        return params


class Runtime:
    max_body_bytes = MAX_PAYLOAD_BYTES

    def __init__(self, backend: SageMakerBackend) -> None:
        self.backend = backend

    async def invoke(self, endpoint_name: str, body: bytes | OversizedBody, headers: dict[str, str]) -> Reply:
        try:
            if isinstance(body, bytes) and len(body) > MAX_PAYLOAD_BYTES:
                body = OversizedBody(len(body), MAX_PAYLOAD_BYTES)
            if isinstance(body, OversizedBody):
                raise PayloadTooLarge(
                    f"Request payload of {body.size()} bytes exceeds the maximum of {MAX_PAYLOAD_BYTES} bytes."
                )
            self._validate(endpoint_name, headers)
            invocation = Invocation(
                endpoint_name=endpoint_name,
                body=body,
                content_type=headers.get("content-type") or "application/octet-stream",
                accept=headers.get("accept") or "application/json",
                custom_attributes=headers.get("x-amzn-sagemaker-custom-attributes"),
                target_variant=headers.get("x-amzn-sagemaker-target-variant"),
                inference_id=headers.get("x-amzn-sagemaker-inference-id"),
            )
            result = await self.backend.endpoints.invoke(invocation)
        except SageMakerError as error:
            return runtime_error(error)
        except Exception:
            log.exception("internal error invoking %s", endpoint_name)
            return runtime_error(SageMakerError("An internal error occurred."))
        reply_headers = {
            "Content-Type": result.content_type,
            "x-Amzn-Invoked-Production-Variant": result.variant,
            "x-amzn-RequestId": _request_id(),
        }
        if result.custom_attributes:
            reply_headers["X-Amzn-SageMaker-Custom-Attributes"] = result.custom_attributes
        return Reply(200, result.body, reply_headers)

    @staticmethod
    def _validate(endpoint_name: str, headers: dict[str, str]) -> None:
        """The endpoint name and every header the runtime model declares (lengths, patterns), as AWS checks them."""
        shape = validation.service_model("sagemaker-runtime").operation_model("InvokeEndpoint").input_shape
        params: dict[str, Any] = {"EndpointName": endpoint_name, "Body": ""}  # the body's limit is checked above
        for name, member in shape.members.items():
            if member.serialization.get("location") == "header":
                value = headers.get(member.serialization["name"].lower())
                if value is not None:
                    params[name] = value
        errors = validation.validation_errors(shape, params)
        if errors:
            raise RuntimeValidationError(validation.validation_message(errors))
