"""serialize_image_data: fetch an image from S3 and return it base64-encoded for classify_image.

Event: {"s3_bucket": str, "s3_key": str}. Returns {"statusCode": 200, "body": {"image_data", "s3_bucket",
"s3_key", "inferences": []}}. The object's size is checked with HeadObject first, so an object too large for
the synchronous payload is never downloaded."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from logic import ImageEnvelope, ImageNotFound, check_size, parse_request, s3_uri, serialize

S3_CONFIG = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"})
NOT_FOUND_CODES = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}


@functools.cache
def s3_client() -> Any:
    return boto3.client("s3", config=S3_CONFIG)


def lambda_handler(event: Any, context: Any) -> ImageEnvelope:
    request = parse_request(event)
    s3 = s3_client()
    try:
        head = s3.head_object(Bucket=request["s3_bucket"], Key=request["s3_key"])
        check_size(int(head["ContentLength"]), request)
        data = s3.get_object(Bucket=request["s3_bucket"], Key=request["s3_key"])["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in NOT_FOUND_CODES:
            raise ImageNotFound(f"{s3_uri(request)} does not exist") from error
        raise
    return serialize(request, data)
