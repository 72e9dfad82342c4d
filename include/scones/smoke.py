"""Smoke executions of the workflow: pick test images, judge each execution against the confidence threshold.

A low-confidence image ends its execution FAILED with `ThresholdConfidenceNotMet` by design (the filter Lambda
raises it), so judging reads each execution's status, error and cause rather than trusting SUCCEEDED alone. The
end judged is StartSyncExecution's answer (the per-image machine is Express, which keeps no history); a
DescribeExecution of a Standard execution has the same fields and is judged the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from include.scones.manifests import read_split
from include.scones.state_machine_deploy import execution_input

LOW_CONFIDENCE_ERROR = "ThresholdConfidenceNotMet"


@dataclass(frozen=True)
class SmokeImage:
    s3_bucket: str
    s3_key: str
    label: str

    def execution_input(self) -> dict[str, str]:
        return execution_input(self.s3_bucket, self.s3_key)


def pick_smoke_images(hook: Any, data_uri: str, count: int) -> list[dict[str, str]]:
    """`count` test images, alternating classes so both outcomes are likely, in a stable order."""
    bucket, keys, rows, classes = read_split(hook, data_uri)
    by_label: dict[int, list[Any]] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row)
    available = len(by_label) * min((len(v) for v in by_label.values()), default=0)
    if count > available:
        raise ValueError(f"asked for {count} test images, the split has {available} in alternating classes")
    picked = []
    for position in range(count):
        label = sorted(by_label)[position % len(by_label)]
        row = by_label[label][position // len(by_label)]
        picked.append(SmokeImage(bucket, f"{keys.images}{row.filename}", classes[label]))
    return [asdict(image) for image in picked]


@dataclass(frozen=True)
class Outcome:
    s3_key: str
    label: str
    status: str  # SUCCEEDED, LOW_CONFIDENCE, or the failure
    predicted: str
    confidence: float | None


def judge_execution(description: Mapping[str, Any], image: Mapping[str, str], classes: list[str]) -> Outcome:
    """SUCCEEDED carries the envelope; a low-confidence end carries the inferences in its cause."""
    status = description["status"]
    inferences: list[float] = []
    if status == "SUCCEEDED":
        inferences = json.loads(description["output"])["body"]["inferences"]
    elif status == "FAILED" and description.get("error") == LOW_CONFIDENCE_ERROR:
        status = "LOW_CONFIDENCE"
        inferences = _inferences_in(description.get("cause") or "")
    else:
        status = f"{status}: {description.get('error')} {str(description.get('cause'))[:200]}"
    best = max(range(len(inferences)), key=inferences.__getitem__) if inferences else None
    return Outcome(
        s3_key=image["s3_key"],
        label=image["label"],
        status=status,
        predicted=classes[best] if best is not None and best < len(classes) else "-",
        confidence=float(inferences[best]) if best is not None else None,  # unrounded: compared to the threshold
    )


def _inferences_in(cause: str) -> list[float]:
    """Find the `inferences` list anywhere in the (nested, JSON-in-JSON) cause of a low-confidence end."""
    try:
        value: Any = json.loads(cause)
    except ValueError:
        return []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and item[:1] in "{[":
            try:
                stack.append(json.loads(item))
            except ValueError:
                pass
        elif isinstance(item, dict):
            found = item.get("inferences")
            if isinstance(found, list) and found and all(isinstance(p, int | float) for p in found):
                return [float(p) for p in found]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return []


def outcome_table(outcomes: list[Outcome]) -> str:
    lines = [f"{'key':<60} {'label':<12} {'predicted':<12} {'confidence':>10}  outcome"]
    for o in outcomes:
        confidence = f"{o.confidence:.4f}" if o.confidence is not None else "-"
        lines.append(f"{o.s3_key[-60:]:<60} {o.label:<12} {o.predicted:<12} {confidence:>10}  {o.status}")
    return "\n".join(lines)


def check_outcomes(outcomes: list[Outcome], threshold: float) -> None:
    """Every execution must succeed exactly when its confidence clears the threshold, and fail otherwise
    only in the low-confidence state."""
    problems = []
    for o in outcomes:
        if o.status not in ("SUCCEEDED", "LOW_CONFIDENCE"):
            problems.append(f"{o.s3_key}: {o.status}")
        elif o.confidence is None or (o.status == "SUCCEEDED") != (o.confidence >= threshold):
            problems.append(f"{o.s3_key}: {o.status} with confidence {o.confidence} at threshold {threshold}")
    if problems:
        raise RuntimeError(f"{len(problems)} smoke execution(s) went wrong: " + "; ".join(problems))
