"""serialize_image_data's pure logic: read the request, vet an S3 object as an image that fits a synchronous
Lambda payload once base64-encoded, and build the envelope that classify_image takes."""

from __future__ import annotations

import base64
from typing import Any, TypedDict

# A synchronous Invoke carries at most 6 MB (6,291,456 bytes) each way. The image travels base64-encoded inside
# a JSON envelope, so the limit on the raw object leaves room for that envelope: keys, the bucket and object
# names (an S3 key is at most 1,024 bytes, up to 6 times that JSON-escaped) and the inferences added later.
MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
ENVELOPE_MARGIN_BYTES = 64 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def base64_length(n_bytes: int) -> int:
    """Length of the base64 text of n bytes (with padding): 4 * ceil(n / 3)."""
    return 4 * -(-n_bytes // 3)


# The largest N with base64_length(N) <= MAX_SYNC_PAYLOAD_BYTES - ENVELOPE_MARGIN_BYTES.
MAX_IMAGE_BYTES = 3 * ((MAX_SYNC_PAYLOAD_BYTES - ENVELOPE_MARGIN_BYTES) // 4)


class InvalidEvent(ValueError):
    """The event is not {"s3_bucket": str, "s3_key": str}."""


class ImageNotFound(LookupError):
    """The bucket or the object does not exist."""


class EmptyImage(ValueError):
    """The object has no bytes."""


class NotAnImage(ValueError):
    """The object is neither a PNG nor a JPEG."""


class ImageTooLarge(ValueError):
    """The object would not fit a synchronous Lambda payload once base64-encoded."""


class ImageRequest(TypedDict):
    s3_bucket: str
    s3_key: str


class ImageRecord(TypedDict):
    image_data: str  # base64 of the object's bytes
    s3_bucket: str
    s3_key: str
    inferences: list[float]  # empty here; classify_image fills it


class ImageEnvelope(TypedDict):
    statusCode: int
    body: ImageRecord


def parse_request(event: Any) -> ImageRequest:
    """The bucket and key of the image, at the top of the event or under "body" (the seed's envelope)."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"expected a JSON object with s3_bucket and s3_key, got {type(event).__name__}")
    source = event["body"] if isinstance(event.get("body"), dict) else event
    for key in ("s3_bucket", "s3_key"):
        value = source.get(key)
        if not isinstance(value, str) or not value:
            problem = "is missing" if value is None else "must be a non-empty string"
            raise InvalidEvent(f"event key {key!r} {problem} (got {value!r})")
    return ImageRequest(s3_bucket=source["s3_bucket"], s3_key=source["s3_key"])


def s3_uri(request: ImageRequest) -> str:
    return f"s3://{request['s3_bucket']}/{request['s3_key']}"


def check_size(size: int, request: ImageRequest) -> None:
    """Before downloading: the object's ContentLength must be 1..MAX_IMAGE_BYTES."""
    if size == 0:
        raise EmptyImage(f"{s3_uri(request)} is empty (0 bytes)")
    if size > MAX_IMAGE_BYTES:
        raise ImageTooLarge(
            f"{s3_uri(request)} is {size:,} bytes; its base64 ({base64_length(size):,} bytes) would not fit the "
            f"{MAX_SYNC_PAYLOAD_BYTES:,}-byte synchronous Lambda payload. The limit is {MAX_IMAGE_BYTES:,} bytes."
        )


def image_kind(data: bytes) -> str | None:
    """ "png" or "jpeg" by the file's magic bytes, else None."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    return None


def serialize(request: ImageRequest, data: bytes) -> ImageEnvelope:
    """The envelope for classify_image. The size is checked again: the object may have changed since HEAD."""
    check_size(len(data), request)
    if image_kind(data) is None:
        raise NotAnImage(f"{s3_uri(request)} is not a PNG or JPEG image (it starts with {data[:8]!r})")
    record = ImageRecord(
        image_data=base64.b64encode(data).decode("ascii"),
        s3_bucket=request["s3_bucket"],
        s3_key=request["s3_key"],
        inferences=[],
    )
    return ImageEnvelope(statusCode=200, body=record)
