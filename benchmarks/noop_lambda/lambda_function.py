"""A Lambda that does nothing: returns its event. Three of these, chained in the workflow's own state machine
template, measure what the Step Functions engine and Lambda runtime cost by themselves (the bench's floor)."""

from __future__ import annotations

from typing import Any


def lambda_handler(event: Any, context: Any) -> Any:
    return event
