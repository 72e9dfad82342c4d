"""What the monitoring report adds for the labelling loop (issue #18), fed the same records as stats.WindowStats:

- **Live accuracy**: the people's labels (ground_truth.py, from the Review page) merged by inferenceId with the
  captures of the label window, `[window end - SCONES_LABEL_LOOKBACK_HOURS, window end)`, which reaches back
  before the report window so that a label given after an earlier report still counts (late labels, as Model
  Monitor allows). Per hour and per class, with the confusion matrix and the labelled share.
- **Estimated accuracy without labels** (CBPE) over the report window, from the evaluation's reliability table,
  stated with the model's calibration error on the test split.
- **Input drift** of the window's images against the training images (image_stats.py): PSI per statistic, each
  against the image PSI limit, on a seeded uniform sample of at most `image_sample` distinct images (PSI over a
  couple of thousand images is as telling as over all of them, at a fraction of the decoding).
- **Review candidates**: a seeded uniform sample of the window's filtered inferences (below the threshold) that
  carry an InferenceId and an image, for the Review page's queue (labelling.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from include.scones.labelling import candidate_key
from include.scones.monitoring.capture import CaptureRecord, Window, floor_hour
from include.scones.monitoring.ground_truth import AccuracyEstimate, Calibration, Label, live_accuracy, merge
from include.scones.monitoring.image_stats import ImageBaseline, ImageDrift, drift_alerts
from include.scones.monitoring.stats import Reservoir

IMAGE_SAMPLE = 2000


@dataclass
class LiveInputs:
    """What the loop's numbers are measured against. Any of them may be missing (a model evaluated before
    calibration was recorded, a dataset without image statistics): that number is then reported as unavailable."""

    calibration: Mapping[str, Any] | None = None  # evaluation.json (or its `calibration`)
    image_baseline: Mapping[str, Any] | None = None  # the dataset's image_baseline.json
    labels: Iterable[Label] = ()
    label_start: datetime | None = None  # the label window's start; None: the report window's
    review_capacity: int = 0
    image_sample: int = IMAGE_SAMPLE
    label_files: int = 0
    label_skipped: Mapping[str, int] = field(default_factory=dict)


class LiveStats:
    def __init__(self, window: Window, classes: Sequence[str], threshold: float, inputs: LiveInputs, seed: int = 0):
        self.window, self.classes, self.threshold, self.inputs = window, list(classes), threshold, inputs
        self.label_window = Window(min(inputs.label_start or window.start, window.start), window.end)
        self.predictions: dict[str, tuple[datetime, int]] = {}
        self.per_hour: Counter[datetime] = Counter()
        self.calibration = _calibration(inputs.calibration)
        self.estimate = AccuracyEstimate(self.calibration) if self.calibration else None
        self.image_baseline = None if inputs.image_baseline is None else ImageBaseline.from_mapping(
            inputs.image_baseline)  # fmt: skip
        self.images = Reservoir(inputs.image_sample, seed)
        self.review = Reservoir(inputs.review_capacity, seed)

    def covers(self, record: CaptureRecord) -> bool:
        """True when the record belongs to the label window (the report window included)."""
        return record.inference_time in self.label_window

    def add(self, record: CaptureRecord) -> None:
        """A record of the label window; the report window's also count for the estimate, drift and review."""
        if record.inference_id is not None:
            self.predictions[record.inference_id] = (record.inference_time, record.predicted)
            self.per_hour[floor_hour(record.inference_time)] += 1
        if record.inference_time not in self.window:
            return
        if self.estimate is not None:
            self.estimate.add(record.confidence)
        digest = record.input_digest()
        if digest is not None and self.image_baseline is not None:
            self.images.offer(record, digest)
        key = candidate_key(record)
        if key is not None and record.confidence < self.threshold:
            self.review.offer(record, key)

    def review_records(self) -> list[CaptureRecord]:
        return sorted(self.review.items, key=lambda record: record.inference_time)

    def summary(self, image_psi_limit: float, min_images: int) -> dict[str, Any]:
        merged = merge(self.predictions, self.inputs.labels, self.classes, self.window.end)
        accuracy = live_accuracy(merged, self.per_hour) | {
            "window": self.label_window.to_dict(),
            "label_files": self.inputs.label_files,
            "skipped": dict(sorted(self.inputs.label_skipped.items())),
            "predictions_with_id": len(self.predictions),
        }
        drift: dict[str, Any] | None = None
        if self.image_baseline is not None:
            images = ImageDrift(self.image_baseline)
            for record in self.images.items:
                images.add(record.input_bytes() or b"")
            drift = images.to_dict(image_psi_limit, min_images) | {"offered": self.images.offered}
        return {
            "live_accuracy": accuracy,
            "estimated_accuracy": None if self.estimate is None else self.estimate.to_dict(),
            "input_drift": drift,
            "review_queued": len(self.review.items),
            "review_offered": self.review.offered,
        }


def _calibration(evaluation: Mapping[str, Any] | None) -> Calibration | None:
    if evaluation is None or not (evaluation.get("calibration") or "table" in evaluation):
        return None
    return Calibration.from_mapping(evaluation)


def input_drift_alerts(summary: Mapping[str, Any], *, held_back_too: bool = False) -> list[str]:
    """The input-drift sentences of a summary; with `held_back_too`, also those a small window holds back."""
    drift = summary.get("input_drift")
    if not drift:
        return []
    return drift_alerts({**drift, "held_back": False} if held_back_too else drift)
