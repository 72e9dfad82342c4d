"""Score a model on the test split from batch-transform outputs: accuracy, per-class precision and recall, the
confusion matrix, what the workflow's confidence filter would keep, how well calibrated its confidence is (expected
calibration error, with the reliability table behind it), and the baseline that monitoring compares live traffic
against (confidence histogram and predicted class mix)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from include.scones.manifests import LstRow

# Max-probability bins 0.50 … 1.00; the first also holds anything below 0.5 (possible with three or more classes).
CONFIDENCE_BIN_EDGES = [round(0.5 + 0.05 * i, 2) for i in range(11)]


class EvaluationError(ValueError):
    pass


def parse_prediction(body: bytes | str, n_classes: int, source: str) -> list[float]:
    """A transform output: the JSON list of class probabilities in label order."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{source}: not JSON ({exc})") from None
    if (
        not isinstance(value, list)
        or len(value) != n_classes
        or not all(isinstance(p, int | float) and not isinstance(p, bool) and math.isfinite(p) for p in value)
    ):
        raise EvaluationError(f"{source}: expected a list of {n_classes} probabilities, got {str(value)[:80]}")
    return [float(p) for p in value]


def confidence_histogram(confidences: Sequence[float]) -> list[float]:
    """Shares of predictions per bin of CONFIDENCE_BIN_EDGES (the last bin includes 1.0)."""
    counts = [0] * (len(CONFIDENCE_BIN_EDGES) - 1)
    for confidence in confidences:
        position = sum(1 for edge in CONFIDENCE_BIN_EDGES[1:-1] if confidence >= edge)
        counts[position] += 1
    total = max(len(confidences), 1)
    return [count / total for count in counts]


# Calibration bins: ten of equal width over the confidence (the top probability), the usual ECE definition.
CALIBRATION_BINS = 10


def calibration(confidences: Sequence[float], correct: Sequence[bool], bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Expected calibration error: the images' share-weighted gap between accuracy and mean confidence per bin,
    ECE = sum over bins b of (n_b / N) * |accuracy_b - confidence_b|; 0 when the confidence says exactly how often
    the model is right. The table behind it (per bin: images, mean confidence, accuracy) comes with it."""
    if len(confidences) != len(correct) or not confidences:
        raise EvaluationError("calibration needs one correctness per confidence, and at least one")
    members: list[list[int]] = [[] for _ in range(bins)]
    for index, confidence in enumerate(confidences):
        members[min(int(confidence * bins), bins - 1)].append(index)  # 1.0 belongs to the last bin
    table = []
    gap = 0.0
    for number, indices in enumerate(members):
        if not indices:
            continue
        mean_confidence = sum(confidences[i] for i in indices) / len(indices)
        accuracy = sum(bool(correct[i]) for i in indices) / len(indices)
        gap += len(indices) / len(confidences) * abs(accuracy - mean_confidence)
        table.append({
            "low": number / bins, "high": (number + 1) / bins, "images": len(indices),
            "mean_confidence": round(mean_confidence, 6), "accuracy": round(accuracy, 6),
        })  # fmt: skip
    return {"expected_calibration_error": round(gap, 6), "bins": bins, "table": table}


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator else None


def evaluate(
    predictions: Mapping[str, list[float]], rows: Sequence[LstRow], class_names: Sequence[str], threshold: float
) -> dict[str, Any]:
    missing = [row.filename for row in rows if row.filename not in predictions]
    if missing:
        raise EvaluationError(f"{len(missing)} test images have no prediction, e.g. {missing[:3]}")
    if not rows:
        raise EvaluationError("the test split is empty")
    n = len(class_names)
    confusion = [[0] * n for _ in range(n)]
    confidences: list[float] = []
    hits: list[bool] = []
    passed = passed_correct = 0
    for row in rows:
        probabilities = predictions[row.filename]
        predicted = max(range(n), key=probabilities.__getitem__)
        confusion[row.label][predicted] += 1
        confidence = probabilities[predicted]
        confidences.append(confidence)
        hits.append(predicted == row.label)
        if confidence >= threshold:
            passed += 1
            passed_correct += predicted == row.label
    correct = sum(confusion[i][i] for i in range(n))
    per_class = {
        name: {
            "precision": _ratio(confusion[i][i], sum(confusion[r][i] for r in range(n))),
            "recall": _ratio(confusion[i][i], sum(confusion[i])),
            "support": sum(confusion[i]),
        }
        for i, name in enumerate(class_names)
    }
    predicted_counts = [sum(confusion[r][c] for r in range(n)) for c in range(n)]
    calibrated = calibration(confidences, hits)
    return {
        "images": len(rows),
        "accuracy": round(correct / len(rows), 6),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(class_names), "rows_are": "true class", "matrix": confusion},
        "threshold": threshold,
        "pass_share_at_threshold": round(passed / len(rows), 6),
        "accuracy_among_passed": _ratio(passed_correct, passed),
        "expected_calibration_error": calibrated["expected_calibration_error"],
        "calibration": calibrated,
        "baseline": {
            "confidence_bin_edges": CONFIDENCE_BIN_EDGES,
            "confidence_shares": confidence_histogram(confidences),
            "class_mix": {name: predicted_counts[i] / len(rows) for i, name in enumerate(class_names)},
            "below_threshold_share": round(1 - passed / len(rows), 6),
        },
    }


def summary(metrics: Mapping[str, Any]) -> str:
    lines = [
        f"test images: {metrics['images']}   accuracy: {metrics['accuracy']:.4f}",
        f"at threshold {metrics['threshold']}: {metrics['pass_share_at_threshold']:.1%} pass, "
        f"accuracy among them {metrics['accuracy_among_passed']}",
        f"expected calibration error (ECE, {metrics['calibration']['bins']} bins): "
        f"{metrics['expected_calibration_error']:.4f}",
        f"{'class':<16}{'precision':>10}{'recall':>10}{'support':>9}",
    ]
    for name, scores in metrics["per_class"].items():
        lines.append(f"{name:<16}{scores['precision']!s:>10}{scores['recall']!s:>10}{scores['support']:>9}")
    labels = metrics["confusion_matrix"]["labels"]
    lines.append("confusion (rows: true, columns: predicted) " + " ".join(labels))
    for name, row in zip(labels, metrics["confusion_matrix"]["matrix"], strict=True):
        lines.append(f"  {name:<14}" + "".join(f"{v:>8}" for v in row))
    return "\n".join(lines)
