"""filter_inferences: confident envelopes pass unchanged, the rest raise ThresholdConfidenceNotMet, and bad input or
settings are named errors of their own (never mistaken for low confidence)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.lambdas.helpers import FakeLambdaContext, LoadedLambda, load_lambda


def envelope(inferences: Any) -> dict[str, Any]:
    body = {"image_data": "iVBORw0KGgo=", "s3_bucket": "b", "s3_key": "k.png", "inferences": inferences}
    return {"statusCode": 200, "body": body}


@pytest.fixture
def strict() -> LoadedLambda:
    return load_lambda("filter_inferences", {"THRESHOLD": "0.93"})


@pytest.mark.parametrize("inferences", [[0.95, 0.05], [0.07, 0.93], [1, 0]])
def test_passes_a_confident_envelope_through_unchanged(strict: LoadedLambda, inferences: list[float]) -> None:
    event = envelope(inferences)
    result = strict.handler.lambda_handler(copy.deepcopy(event), FakeLambdaContext())
    assert result == event


def test_raises_threshold_confidence_not_met_naming_both_numbers(strict: LoadedLambda) -> None:
    with pytest.raises(strict.logic.ThresholdConfidenceNotMet) as raised:
        strict.handler.lambda_handler(envelope([0.6, 0.4]), FakeLambdaContext())
    assert str(raised.value) == "max confidence 0.6 is below the threshold 0.93"
    assert (raised.value.confidence, raised.value.threshold) == (0.6, 0.93)
    assert type(raised.value).__name__ == "ThresholdConfidenceNotMet"  # the error name Step Functions matches


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (envelope([]), "must be a non-empty list"),
        ({"statusCode": 200, "body": {"s3_key": "k.png"}}, "'body.inferences' is missing"),
        (envelope(None), "'body.inferences' is missing"),
        (envelope(["0.99"]), "must hold only numbers"),
        (envelope([True]), "must hold only numbers"),
        ({"inferences": [0.99]}, "no 'body' object"),
    ],
)
def test_missing_or_empty_inferences_are_invalid_not_low_confidence(
    strict: LoadedLambda, event: dict[str, Any], message: str
) -> None:
    with pytest.raises(strict.logic.InvalidEvent, match=message):
        strict.handler.lambda_handler(event, FakeLambdaContext())


@pytest.mark.parametrize(("raw", "expected"), [("0.93", 0.93), ("0.5", 0.5), ("0", 0.0), ("1", 1.0)])
def test_the_threshold_parses_as_a_float(raw: str, expected: float) -> None:
    assert load_lambda("filter_inferences", {"THRESHOLD": raw}).handler.SETTINGS.threshold == expected


@pytest.mark.parametrize("env", [{}, {"THRESHOLD": ""}, {"THRESHOLD": "  "}], ids=["unset", "empty", "blank"])
def test_the_threshold_has_no_default_of_its_own(env: dict[str, str]) -> None:
    # One value, the training Param, deployed by the workflow DAG: a function without it refuses to load
    with pytest.raises(ValueError, match="THRESHOLD must be set"):
        load_lambda("filter_inferences", env)


@pytest.mark.parametrize("raw", ["high", "1.5", "-0.1", "nan", "0,9"])
def test_a_threshold_outside_0_to_1_is_a_clear_error(raw: str) -> None:
    logic = load_lambda("filter_inferences", {"THRESHOLD": "0.93"}).logic
    with pytest.raises(logic.InvalidSetting, match=f"THRESHOLD must be a number between 0 and 1, got '{raw}'"):
        logic.parse_threshold(raw)
    with pytest.raises(ValueError, match="THRESHOLD must be a number between 0 and 1"):
        load_lambda("filter_inferences", {"THRESHOLD": raw})  # read once, when the function loads


def test_a_lower_threshold_lets_more_through() -> None:
    lenient = load_lambda("filter_inferences", {"THRESHOLD": "0.5"})
    event = envelope([0.6, 0.4])
    assert lenient.handler.lambda_handler(copy.deepcopy(event), FakeLambdaContext()) == event
