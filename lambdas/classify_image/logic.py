"""classify_image's pure logic: read serialize_image_data's envelope, decode the image, and turn the endpoint's
JSON reply (one probability per class) into the envelope's `inferences`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, TypedDict

CONTENT_TYPE = "image/png"
ACCEPT = "application/json"


ENVELOPE_SHAPE = '{"statusCode": 200, "body": {"image_data", "s3_bucket", "s3_key", "inferences"}}'


class InvalidEvent(ValueError):
    """The event is not serialize_image_data's envelope {"statusCode", "body": {"image_data", ...}}."""


class MissingSetting(RuntimeError):
    """An environment variable the function needs is not set."""


class InvalidModelResponse(ValueError):
    """The endpoint answered something other than a non-empty JSON list of numbers."""


class ImageRecord(TypedDict):
    image_data: str
    s3_bucket: str
    s3_key: str
    inferences: list[float]


class ImageEnvelope(TypedDict):
    statusCode: int
    body: ImageRecord


@dataclass(frozen=True)
class Settings:
    endpoint_name: str | None  # ENDPOINT_NAME; checked when the function is called, not when it loads

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Settings:
        return cls(endpoint_name=env.get("ENDPOINT_NAME") or None)

    def require_endpoint_name(self) -> str:
        if not self.endpoint_name:
            raise MissingSetting("environment variable ENDPOINT_NAME is not set: give it the SageMaker endpoint's name")
        return self.endpoint_name


def parse_envelope(event: Any) -> ImageRecord:
    """The body of serialize_image_data's envelope, its fields' types checked."""
    body = event.get("body") if isinstance(event, dict) else None
    if not isinstance(body, dict):
        raise InvalidEvent(f"expected serialize_image_data's envelope {ENVELOPE_SHAPE}; no 'body' object")
    for key in ("image_data", "s3_bucket", "s3_key"):
        if not isinstance(body.get(key), str):
            problem = "is missing" if key not in body else f"must be a string (got {type(body[key]).__name__})"
            raise InvalidEvent(f"event key 'body.{key}' {problem}")
    if not isinstance(body.get("inferences", []), list):
        raise InvalidEvent("event key 'body.inferences' must be a list")
    return ImageRecord(
        image_data=body["image_data"],
        s3_bucket=body["s3_bucket"],
        s3_key=body["s3_key"],
        inferences=list(body.get("inferences", [])),
    )


def decode_image(image_data: str) -> bytes:
    try:
        data = base64.b64decode(image_data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidEvent(f"event key 'body.image_data' is not valid base64: {error}") from error
    if not data:
        raise InvalidEvent("event key 'body.image_data' is empty")
    return data


def inference_id(bucket: str, key: str, image: bytes) -> str:
    """InferenceId for InvokeEndpoint, which the capture keeps as `eventMetadata.inferenceId` (1-64 printable
    characters): the SHA-256, in hex, of the object's S3 URI and its bytes. The same object always gets the same
    id, so a label given to one capture of it applies to every capture of it (Model Monitor merges ground truth by
    this id); an object overwritten with another image gets a new one."""
    digest = hashlib.sha256(f"s3://{bucket}/{key}".encode())
    digest.update(b"\0")
    digest.update(image)
    return digest.hexdigest()


def parse_inferences(reply: bytes) -> list[float]:
    """The endpoint's reply as a list of floats: one probability per class, in the model's class order."""
    try:
        value = json.loads(reply)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidModelResponse(f"the endpoint's reply is not JSON: {reply[:200]!r}") from error
    if not isinstance(value, list) or not value or not all(_is_number(x) for x in value):
        raise InvalidModelResponse(f"the endpoint's reply is not a non-empty list of numbers: {str(value)[:200]}")
    return [float(x) for x in value]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def with_inferences(record: ImageRecord, inferences: list[float]) -> ImageEnvelope:
    """The same envelope shape as the input, so filter_inferences takes what serialize_image_data made."""
    return ImageEnvelope(statusCode=200, body=ImageRecord(**{**record, "inferences": inferences}))
