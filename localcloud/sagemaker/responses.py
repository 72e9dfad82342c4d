"""Protocol layer: decode SageMaker's JSON 1.1 control-plane requests and its rest-json runtime
requests, validate them against botocore's model, call the backend, and encode results and
errors exactly as AWS does. Knows nothing about processes or storage."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from localcloud.sagemaker import validation
from localcloud.sagemaker.exceptions import (
    PayloadTooLarge,
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


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _request_id() -> str:
    return str(uuid.uuid4())


def control_plane_error(error: SageMakerError) -> Reply:
    body = {"__type": error.code, "message": error.message} | error.extra_body()
    return Reply(error.status, json.dumps(body).encode(), {"Content-Type": JSON_11, "x-amzn-RequestId": _request_id()})


def runtime_error(error: SageMakerError) -> Reply:
    # botocore's rest-json parser reads the code from x-amzn-ErrorType first.
    body = {"ErrorCode": error.code, "message": error.message} | error.extra_body()
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": error.code, "x-amzn-RequestId": _request_id()}
    return Reply(error.status, json.dumps(body).encode(), headers)


class ControlPlane:
    def __init__(self, backend: SageMakerBackend) -> None:
        self.backend = backend

    def handle(self, target: str | None, raw_body: bytes) -> Reply:
        try:
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
            raise UnknownOperationException(f"Missing or unknown X-Amz-Target header: {target!r}")
        return target[len(TARGET_PREFIX) :]

    @staticmethod
    def _params(raw_body: bytes) -> dict[str, Any]:
        if not raw_body.strip():
            return {}
        try:
            params = json.loads(raw_body)
        except ValueError as exc:
            raise SerializationException("The request body is not valid JSON.") from exc
        if not isinstance(params, dict):
            raise SerializationException("The request body must be a JSON object.")
        return params


class Runtime:
    def __init__(self, backend: SageMakerBackend) -> None:
        self.backend = backend

    async def invoke(self, endpoint_name: str, body: bytes, headers: dict[str, str]) -> Reply:
        try:
            if len(body) > MAX_PAYLOAD_BYTES:
                raise PayloadTooLarge(
                    f"Request payload of {len(body)} bytes exceeds the maximum of {MAX_PAYLOAD_BYTES} bytes."
                )
            invocation = Invocation(
                endpoint_name=endpoint_name,
                body=body,
                content_type=headers.get("content-type") or "application/octet-stream",
                accept=headers.get("accept") or "application/json",
                custom_attributes=headers.get("x-amzn-sagemaker-custom-attributes"),
                target_variant=headers.get("x-amzn-sagemaker-target-variant"),
                inference_id=headers.get("x-amzn-sagemaker-inference-id"),
            )
            self._validate(invocation)
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
    def _validate(invocation: Invocation) -> None:
        shape = validation.service_model("sagemaker-runtime").operation_model("InvokeEndpoint").input_shape
        errors = validation.validation_errors(shape.members["EndpointName"], invocation.endpoint_name, "endpointName")
        if errors:
            raise RuntimeValidationError(errors[0])
