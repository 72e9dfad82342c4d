"""serialize_image_data: request parsing, the payload-size limit, image checks, and the S3 calls it makes (a fake
S3 for the unit tests, MiniStack's S3 for the end-to-end one)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from tests.lambdas.helpers import FakeLambdaContext, FakeS3, LoadedLambda, load_lambda, png

BUCKET, KEY = "scones-images", "test/bicycle_s_000001.png"


class HugeObjectS3(FakeS3):
    """Reports a size without holding the bytes, so a too-large object costs nothing to fake."""

    def __init__(self, size: int) -> None:
        super().__init__({})
        self.size = size

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"ContentLength": self.size}


@pytest.fixture
def serialize() -> LoadedLambda:
    return load_lambda("serialize_image_data")


def run(serialize: LoadedLambda, s3: FakeS3, event: Any) -> Any:
    serialize.handler.s3_client = lambda: s3  # the module's lazily created client, replaced
    return serialize.handler.lambda_handler(event, FakeLambdaContext())


def test_returns_the_image_base64_encoded_in_the_envelope_classify_takes(serialize: LoadedLambda) -> None:
    image = png("bicycle")
    result = run(serialize, FakeS3({(BUCKET, KEY): image}), {"s3_bucket": BUCKET, "s3_key": KEY})

    assert result == {
        "statusCode": 200,
        "body": {"image_data": base64.b64encode(image).decode(), "s3_bucket": BUCKET, "s3_key": KEY, "inferences": []},
    }
    assert json.loads(json.dumps(result)) == result  # plain JSON, as Step Functions passes it on


def test_accepts_the_request_under_body_as_the_seed_sent_it(serialize: LoadedLambda) -> None:
    s3 = FakeS3({(BUCKET, KEY): png()})
    result = run(serialize, s3, {"body": {"s3_bucket": BUCKET, "s3_key": KEY}})
    assert result["body"]["s3_key"] == KEY


def test_accepts_a_jpeg_by_its_magic_bytes(serialize: LoadedLambda) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 16
    result = run(serialize, FakeS3({(BUCKET, KEY): jpeg}), {"s3_bucket": BUCKET, "s3_key": KEY})
    assert base64.b64decode(result["body"]["image_data"]) == jpeg


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({}, "'s3_bucket' is missing"),
        ({"s3_bucket": BUCKET}, "'s3_key' is missing"),
        ({"s3_bucket": "", "s3_key": KEY}, "'s3_bucket' must be a non-empty string"),
        ({"s3_bucket": BUCKET, "s3_key": 7}, "'s3_key' must be a non-empty string"),
        (["not", "an", "object"], "expected a JSON object"),
    ],
)
def test_rejects_an_event_without_bucket_and_key(serialize: LoadedLambda, event: Any, message: str) -> None:
    with pytest.raises(serialize.logic.InvalidEvent, match=message):
        run(serialize, FakeS3({}), event)


def test_rejects_an_empty_object_without_downloading_it(serialize: LoadedLambda) -> None:
    s3 = FakeS3({(BUCKET, KEY): b""})
    with pytest.raises(serialize.logic.EmptyImage, match=f"s3://{BUCKET}/{KEY} is empty"):
        run(serialize, s3, {"s3_bucket": BUCKET, "s3_key": KEY})
    assert s3.downloaded == []


def test_rejects_an_object_that_is_neither_png_nor_jpeg(serialize: LoadedLambda) -> None:
    s3 = FakeS3({(BUCKET, KEY): b"GIF89a not what the model takes"})
    with pytest.raises(serialize.logic.NotAnImage, match="not a PNG or JPEG"):
        run(serialize, s3, {"s3_bucket": BUCKET, "s3_key": KEY})


def test_rejects_an_object_too_large_for_the_payload_without_downloading_it(serialize: LoadedLambda) -> None:
    s3 = HugeObjectS3(serialize.logic.MAX_IMAGE_BYTES + 1)
    with pytest.raises(serialize.logic.ImageTooLarge, match="would not fit the 6,291,456-byte"):
        run(serialize, s3, {"s3_bucket": BUCKET, "s3_key": KEY})
    assert s3.downloaded == []


def test_a_missing_object_is_named(serialize: LoadedLambda) -> None:
    with pytest.raises(serialize.logic.ImageNotFound, match=f"s3://{BUCKET}/{KEY} does not exist"):
        run(serialize, FakeS3({}), {"s3_bucket": BUCKET, "s3_key": KEY})


def test_base64_length_is_four_per_started_three_bytes(serialize: LoadedLambda) -> None:
    for n in range(0, 50):
        assert serialize.logic.base64_length(n) == len(base64.b64encode(b"x" * n))


def test_the_largest_allowed_image_fits_a_synchronous_payload_with_its_envelope(serialize: LoadedLambda) -> None:
    logic = serialize.logic
    largest = logic.MAX_IMAGE_BYTES
    assert logic.base64_length(largest) <= logic.MAX_SYNC_PAYLOAD_BYTES - logic.ENVELOPE_MARGIN_BYTES
    assert logic.base64_length(largest + 3) > logic.MAX_SYNC_PAYLOAD_BYTES - logic.ENVELOPE_MARGIN_BYTES

    # The worst envelope: the largest image, the longest S3 key (1,024 bytes), every character JSON-escaped.
    request = {"s3_bucket": "b" * 63, "s3_key": "\u0001" * 1024}
    envelope = logic.serialize(request, logic.PNG_MAGIC + bytes(largest - len(logic.PNG_MAGIC)))
    envelope["body"]["inferences"] = [0.123456789012345678] * 100  # as classify_image returns it
    assert len(json.dumps(envelope).encode()) <= logic.MAX_SYNC_PAYLOAD_BYTES == 6_291_456


@pytest.mark.e2e
def test_reads_the_image_from_the_local_clouds_s3(local_cloud: Any, s3: Any) -> None:
    bucket = f"serialize-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    image = png("from MiniStack")
    s3.put_object(Bucket=bucket, Key=KEY, Body=image)

    serialize = load_lambda("serialize_image_data")  # its boto3 client finds MiniStack through AWS_ENDPOINT_URL
    result = serialize.handler.lambda_handler({"s3_bucket": bucket, "s3_key": KEY}, FakeLambdaContext())

    assert base64.b64decode(result["body"]["image_data"]) == image
    with pytest.raises(serialize.logic.ImageNotFound):
        serialize.handler.lambda_handler({"s3_bucket": bucket, "s3_key": "missing.png"}, FakeLambdaContext())
