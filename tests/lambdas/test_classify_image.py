"""classify_image: the endpoint call it makes, the envelope it returns, and its errors (the sagemaker-runtime client
is faked; tests/workflow runs it against a real local endpoint)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.lambdas.helpers import FakeLambdaContext, FakeRuntime, LoadedLambda, load_lambda, png

ENDPOINT = "scones-vehicle-classifier"


def envelope(image: bytes = b"", **body: Any) -> dict[str, Any]:
    record = {"image_data": base64.b64encode(image or png()).decode(), "s3_bucket": "b", "s3_key": "k.png"}
    return {"statusCode": 200, "body": record | {"inferences": []} | body}


def classify(reply: bytes = b"[0.97, 0.03]", env: dict[str, str] | None = None) -> tuple[LoadedLambda, FakeRuntime]:
    loaded = load_lambda("classify_image", {"ENDPOINT_NAME": ENDPOINT} if env is None else env)
    runtime = FakeRuntime(reply)
    loaded.handler.runtime_client = lambda: runtime
    return loaded, runtime


def test_sends_the_decoded_image_to_the_endpoint_and_adds_the_inferences() -> None:
    image = png("motorcycle")
    loaded, runtime = classify(b"[0.25, 0.75]")
    event = envelope(image)

    result = loaded.handler.lambda_handler(event, FakeLambdaContext())

    assert runtime.calls == [
        {
            "EndpointName": ENDPOINT,
            "ContentType": "image/png",
            "Accept": "application/json",
            "Body": image,
            "InferenceId": loaded.logic.inference_id("b", "k.png", image),
        }
    ]
    assert result == {"statusCode": 200, "body": {**event["body"], "inferences": [0.25, 0.75]}}


def test_the_inference_id_is_stable_per_object_and_its_content_and_fits_sagemakers_limits() -> None:
    import re

    logic = load_lambda("classify_image").logic
    same = logic.inference_id("b", "k.png", b"image")
    assert same == logic.inference_id("b", "k.png", b"image")  # a retry or a re-run names the same inference
    others = {logic.inference_id("b", "other.png", b"image"), logic.inference_id("c", "k.png", b"image"),
              logic.inference_id("b", "k.png", b"image2"), logic.inference_id("b", "k.pn", b"gimage")}  # fmt: skip
    assert same not in others and len(others) == 4
    # X-Amzn-SageMaker-Inference-Id: 1-64 characters, pattern \A\S[\p{Print}]*\z (aws-contracts-2.md §4)
    assert re.fullmatch(r"[0-9a-f]{64}", same)


def test_the_runtime_client_has_explicit_timeouts_and_few_retries() -> None:
    config = load_lambda("classify_image").handler.RUNTIME_CONFIG
    assert (config.connect_timeout, config.read_timeout) == (5, 30)
    assert config.retries == {"max_attempts": 2, "mode": "standard"}


def test_a_missing_endpoint_name_fails_at_call_time_naming_the_variable() -> None:
    loaded, runtime = classify(env={})  # loading without ENDPOINT_NAME works
    with pytest.raises(loaded.logic.MissingSetting, match="ENDPOINT_NAME is not set"):
        loaded.handler.lambda_handler(envelope(), FakeLambdaContext())
    assert runtime.calls == []


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"s3_bucket": "b", "s3_key": "k"}, "no 'body' object"),
        ({"statusCode": 200, "body": {"s3_bucket": "b", "s3_key": "k"}}, "'body.image_data' is missing"),
        (envelope(image_data=7), "'body.image_data' must be a string"),
        (envelope(image_data="not base64!"), "'body.image_data' is not valid base64"),
        (envelope(image_data=""), "'body.image_data' is empty"),
        (envelope(inferences="none"), "'body.inferences' must be a list"),
    ],
)
def test_rejects_an_event_that_is_not_serializes_envelope(event: dict[str, Any], message: str) -> None:
    loaded, runtime = classify()
    with pytest.raises(loaded.logic.InvalidEvent, match=message):
        loaded.handler.lambda_handler(event, FakeLambdaContext())
    assert runtime.calls == []


@pytest.mark.parametrize(
    "reply",
    [b'{"probabilities": [0.5, 0.5]}', b"[]", b'["0.5", "0.5"]', b"[true, false]", b"[NaN, 0.5]", b"<html>", b"\xff"],
)
def test_a_reply_that_is_not_a_list_of_numbers_is_a_named_error(reply: bytes) -> None:
    loaded, _ = classify(reply)
    with pytest.raises(loaded.logic.InvalidModelResponse, match="the endpoint's reply is not"):
        loaded.handler.lambda_handler(envelope(), FakeLambdaContext())


def test_integer_probabilities_become_floats() -> None:
    loaded, _ = classify(b"[1, 0]")
    result = loaded.handler.lambda_handler(envelope(), FakeLambdaContext())
    assert result["body"]["inferences"] == [1.0, 0.0]
    assert json.dumps(result["body"]["inferences"]) == "[1.0, 0.0]"
