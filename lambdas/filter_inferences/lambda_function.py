"""filter_inferences: let confident inferences through, fail the rest with ThresholdConfidenceNotMet.

Event and result: classify_image's {"statusCode": 200, "body": {..., "inferences": [...]}}, returned unchanged
when max(inferences) >= THRESHOLD. Environment: THRESHOLD (required: the training Param
`confidence_threshold`, which the workflow DAG deploys), read once when the function loads."""

from __future__ import annotations

import os
from typing import Any

from logic import ImageEnvelope, Settings, filter_confident

SETTINGS = Settings.from_env(dict(os.environ))


def lambda_handler(event: Any, context: Any) -> ImageEnvelope:
    return filter_confident(event, SETTINGS.threshold)
