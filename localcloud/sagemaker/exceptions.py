"""One exception class per AWS error code the local SageMaker returns.

Each carries the HTTP status AWS uses, so the protocol layer can encode it without knowing
which operation raised it."""

from __future__ import annotations

from typing import Any


class SageMakerError(Exception):
    code = "InternalFailure"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def extra_body(self) -> dict[str, Any]:
        """Members added to the error body next to the message (ModelError has some)."""
        return {}


# --- control plane (sagemaker, json 1.1) ----------------------------------------------------
class ValidationException(SageMakerError):
    code = "ValidationException"
    status = 400


class ResourceInUse(SageMakerError):
    code = "ResourceInUse"
    status = 400


class ResourceNotFound(SageMakerError):
    code = "ResourceNotFound"
    status = 400


class ConflictException(SageMakerError):
    code = "ConflictException"
    status = 400


class ResourceLimitExceeded(SageMakerError):
    code = "ResourceLimitExceeded"
    status = 400


class UnknownOperationException(SageMakerError):
    code = "UnknownOperationException"
    status = 400


class SerializationException(SageMakerError):
    code = "SerializationException"
    status = 400


class RequestEntityTooLarge(SageMakerError):
    """A control-plane body over the local cap. AWS's exact code for this is not in the contracts doc (its front
    end answers before SageMaker sees the request), so this is the HTTP 413 reason phrase in a JSON 1.1 body."""

    code = "RequestEntityTooLarge"
    status = 413


class InternalFailure(SageMakerError):
    code = "InternalFailure"
    status = 500


# --- runtime (sagemaker-runtime, rest-json) --------------------------------------------------
class RuntimeValidationError(SageMakerError):
    """The runtime's own validation code is `ValidationError`, not `ValidationException`."""

    code = "ValidationError"
    status = 400


class ModelError(SageMakerError):
    code = "ModelError"
    status = 424

    def __init__(self, message: str, original_status: int, original_message: str, log_stream_arn: str = "") -> None:
        super().__init__(message)
        self.original_status = original_status
        self.original_message = original_message
        self.log_stream_arn = log_stream_arn

    def extra_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "OriginalStatusCode": self.original_status,
            "OriginalMessage": self.original_message,
        }
        if self.log_stream_arn:
            body["LogStreamArn"] = self.log_stream_arn
        return body


class ModelNotReadyException(SageMakerError):
    code = "ModelNotReadyException"
    status = 429


class ServiceUnavailable(SageMakerError):
    code = "ServiceUnavailable"
    status = 503


class PayloadTooLarge(RuntimeValidationError):
    """AWS answers an over-limit body with a 413 before the model sees it."""

    status = 413
