"""classify_image: send serialize_image_data's image to the SageMaker endpoint and add its inferences.

Event and result: {"statusCode": 200, "body": {"image_data", "s3_bucket", "s3_key", "inferences"}}; the result
carries the endpoint's class probabilities in `inferences`. Each call names its InferenceId (logic.inference_id: a
stable id of the S3 object), so the endpoint's data capture can be joined with the labels people give it.
Environment: ENDPOINT_NAME."""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from botocore.config import Config
from logic import (
    ACCEPT,
    CONTENT_TYPE,
    ImageEnvelope,
    Settings,
    decode_image,
    inference_id,
    parse_envelope,
    parse_inferences,
    with_inferences,
)

SETTINGS = Settings.from_env(dict(os.environ))
# An endpoint must answer within 60 s; a small classifier answers in well under a second. Two attempts in all
# keep the worst case (about 2 x 35 s) inside the function timeout the README recommends.
RUNTIME_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})


@functools.cache
def runtime_client() -> Any:
    return boto3.client("sagemaker-runtime", config=RUNTIME_CONFIG)


def lambda_handler(event: Any, context: Any) -> ImageEnvelope:
    record = parse_envelope(event)
    image = decode_image(record["image_data"])
    reply = runtime_client().invoke_endpoint(
        EndpointName=SETTINGS.require_endpoint_name(),
        ContentType=CONTENT_TYPE,
        Accept=ACCEPT,
        Body=image,
        InferenceId=inference_id(record["s3_bucket"], record["s3_key"], image),
    )
    return with_inferences(record, parse_inferences(reply["Body"].read()))
