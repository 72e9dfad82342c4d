"""filter_inferences' pure logic: pass an envelope on when the model is confident enough, else raise
ThresholdConfidenceNotMet, the error the state machine catches by name."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypedDict

ENVELOPE_SHAPE = '{"statusCode": 200, "body": {"image_data", "s3_bucket", "s3_key", "inferences"}}'


class InvalidEvent(ValueError):
    """The event is not classify_image's envelope with a non-empty list of numeric inferences."""


class InvalidSetting(ValueError):
    """An environment variable holds a value the function cannot use."""


class ThresholdConfidenceNotMet(Exception):
    """The highest class probability is below THRESHOLD. Step Functions sees this class name as the error."""

    def __init__(self, confidence: float, threshold: float) -> None:
        super().__init__(f"max confidence {confidence!r} is below the threshold {threshold!r}")
        self.confidence = confidence
        self.threshold = threshold


class ImageRecord(TypedDict):
    image_data: str
    s3_bucket: str
    s3_key: str
    inferences: list[float]


class ImageEnvelope(TypedDict):
    statusCode: int
    body: ImageRecord


def parse_threshold(raw: str | None) -> float:
    """THRESHOLD as a float in [0, 1]. Required: the workflow DAG sets it from the deployed model's
    confidence_threshold (the training Param), so the function has no default of its own to drift from it."""
    if raw is None or not raw.strip():
        raise InvalidSetting("environment variable THRESHOLD must be set: the workflow DAG deploys it from the Param")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise InvalidSetting(f"environment variable THRESHOLD must be a number between 0 and 1, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    threshold: float

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Settings:
        return cls(threshold=parse_threshold(env.get("THRESHOLD")))


def inferences_of(event: Any) -> list[float]:
    body = event.get("body") if isinstance(event, dict) else None
    if not isinstance(body, dict):
        raise InvalidEvent(f"expected classify_image's envelope {ENVELOPE_SHAPE}; no 'body' object")
    inferences = body.get("inferences")
    if inferences is None:
        raise InvalidEvent("event key 'body.inferences' is missing")
    if not isinstance(inferences, list) or not inferences:
        raise InvalidEvent(f"event key 'body.inferences' must be a non-empty list (got {inferences!r})")
    if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in inferences):
        raise InvalidEvent(f"event key 'body.inferences' must hold only numbers (got {inferences!r})")
    return [float(x) for x in inferences]


def filter_confident(event: ImageEnvelope, threshold: float) -> ImageEnvelope:
    """The event unchanged when max(inferences) >= threshold."""
    confidence = max(inferences_of(event))
    if confidence < threshold:
        raise ThresholdConfidenceNotMet(confidence, threshold)
    return event
