"""The three functions' contract: each one's output is the next one's input. The real handlers run in a chain
with only the AWS clients faked, and the payload crosses JSON between steps, as Step Functions carries it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.lambdas.helpers import FUNCTIONS, FakeLambdaContext, FakeRuntime, FakeS3, load_lambda, png


def chain(probabilities: bytes, threshold: str = "0.93") -> Any:
    image = png("contract")
    serialize = load_lambda("serialize_image_data")
    serialize.handler.s3_client = lambda: FakeS3({("bucket", "test/x.png"): image})
    classify = load_lambda("classify_image", {"ENDPOINT_NAME": "ep"})
    classify.handler.runtime_client = lambda: FakeRuntime(probabilities)
    filter_ = load_lambda("filter_inferences", {"THRESHOLD": threshold})

    payload: Any = {"s3_bucket": "bucket", "s3_key": "test/x.png"}
    for step in (serialize, classify, filter_):
        payload = json.loads(json.dumps(step.handler.lambda_handler(payload, FakeLambdaContext())))
    return payload


def test_a_confident_image_flows_through_all_three_functions() -> None:
    result = chain(b"[0.96, 0.04]")
    assert result["statusCode"] == 200
    assert result["body"]["inferences"] == [0.96, 0.04]
    assert (result["body"]["s3_bucket"], result["body"]["s3_key"]) == ("bucket", "test/x.png")


def test_a_low_confidence_image_stops_at_the_filter_by_name() -> None:
    with pytest.raises(Exception) as raised:
        chain(b"[0.55, 0.45]")
    assert type(raised.value).__name__ == "ThresholdConfidenceNotMet"


def test_the_envelope_types_agree_from_one_function_to_the_next() -> None:
    logics = [load_lambda(name, {"ENDPOINT_NAME": "ep", "THRESHOLD": "0.93"}).logic for name in FUNCTIONS]
    # Each module's own annotations (strings, under `from __future__ import annotations`): same names, same types.
    envelopes = [logic.ImageEnvelope.__annotations__ for logic in logics]
    records = [logic.ImageRecord.__annotations__ for logic in logics]
    assert envelopes[0].keys() == envelopes[1].keys() == envelopes[2].keys() == {"statusCode", "body"}
    assert records[0] == records[1] == records[2]
