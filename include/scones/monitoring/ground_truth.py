"""Ground-truth labels in SageMaker Model Monitor's format, merged with the captured predictions by inference id,
and the quality numbers: live accuracy where people labelled images, a CBPE estimate where nobody did.

Record, one JSON object per line of a `.jsonl` file (Model Monitor's ground-truth format):

    {"groundTruthData": {"data": "bicycle", "encoding": "CSV"},
     "eventMetadata": {"eventId": "<id>", "inferenceId": "<id>", "labelTime": "2026-12-04T18:35:32.123456Z",
                       "labeledBy": "admin"},
     "eventVersion": "0"}

- `data` is one of the model's class names, or NEITHER when the image shows none of them.
- AWS matches `eventMetadata.eventId` against the capture's inferenceId, so both keys carry the same value. A
  reader takes `inferenceId` and falls back to `eventId`.
- `labelTime` (UTC) orders the labels of one inference: the last one counts, and on equal times the one read
  later. A record without it takes the hour of its S3 key as its time.

Keys: `ground_truth/YYYY/MM/DD/HH/<MMSS>-<microseconds>-<8 hex>.jsonl`, dated by when the label was collected
(UTC). Within an hour the names sort in collection order, so reading the keys sorted reads the labels in order.

Merge rules (`merge`): the latest label per id is matched with the capture's prediction of that id. A label whose
id has no prediction counts in `unknown_ids`; NEITHER counts in `neither`; a label that is no class counts in
`unknown_classes`; none of these three enters the accuracy. A label collected after the window's end is merged
all the same (ground truth arrives later than the inference, as Model Monitor expects) and counted in `late`.
Superseded labels count in `duplicates`.

CBPE (confidence-based performance estimation): without labels, a prediction's chance of being right is taken as
the test-split accuracy of its confidence bin (evaluation.calibration's reliability table, bin
`min(int(confidence * bins), bins - 1)`); a bin the test split left empty falls back to the confidence itself.
The mean of those chances estimates the accuracy. It assumes live inputs look like the test split, and it is no
better than the calibration error.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from include.scones.monitoring.capture import HOUR, Window, floor_hour, json_object, key_hour, utc_text

NEITHER = "neither"
GROUND_TRUTH_PREFIX = "ground_truth"
DIGITS = 6  # rounding of the shares written out
# Why a line was skipped. Blank lines are ignored without being counted.
SKIP_REASONS = (
    "bad_json",  # not JSON (or not UTF-8)
    "not_an_object",  # JSON, but not an object
    "missing_ground_truth",  # no groundTruthData object with a non-blank string `data`
    "missing_inference_id",  # neither eventMetadata.inferenceId nor eventId is a non-empty string
    "bad_label_time",  # labelTime is not ISO 8601, or absent where the key gives no hour either
)
# InvokeEndpoint's InferenceId: 1-64 characters, pattern `\A\S[\p{Print}]*\z`. Java's \p{Print} is ASCII
# (the local SageMaker's validation.py reads it the same way).
MAX_INFERENCE_ID = 64
_INFERENCE_ID = re.compile(r"\A\S[\x20-\x7E]*\Z")
_TOKEN = re.compile(r"[0-9a-f]{8}")


def _utc(name: str, when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {when.isoformat()}")
    return when.astimezone(UTC)


def _ratio(numerator: int, denominator: int | None) -> float | None:
    return round(numerator / denominator, DIGITS) if denominator else None


# --- records and keys -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Label:
    """One person's answer for one inference."""

    inference_id: str
    label: str
    label_time: datetime  # aware, UTC
    labeled_by: str | None = None


def label_record(inference_id: str, label: str, label_time: datetime, labeled_by: str | None) -> dict[str, Any]:
    """The ground-truth record of one label. `labeledBy` is left out when nobody is named."""
    if not 1 <= len(inference_id) <= MAX_INFERENCE_ID or not _INFERENCE_ID.match(inference_id):
        raise ValueError(
            f"inference id {inference_id[:80]!r} must be 1-{MAX_INFERENCE_ID} printable ASCII characters, "
            "the first not whitespace"
        )
    # The reader strips the label, so one with blanks around it would not come back as written.
    if not label.strip() or label != label.strip():
        raise ValueError(f"label {label!r} must be non-empty, without leading or trailing whitespace")
    metadata = {
        "eventId": inference_id,
        "inferenceId": inference_id,
        "labelTime": utc_text(_utc("label_time", label_time)),
    }
    if labeled_by is not None:
        metadata["labeledBy"] = labeled_by
    return {"groundTruthData": {"data": label, "encoding": "CSV"}, "eventMetadata": metadata, "eventVersion": "0"}


def label_line(inference_id: str, label: str, label_time: datetime, labeled_by: str | None) -> str:
    """The record as one compact `.jsonl` line."""
    return json.dumps(label_record(inference_id, label, label_time, labeled_by), separators=(",", ":")) + "\n"


def _prefix(prefix: str) -> str:
    if prefix.startswith("s3://"):
        raise ValueError(f"the ground-truth prefix is the key prefix inside the bucket, not a URI: {prefix}")
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


def label_key(label_time: datetime, token: str, prefix: str = GROUND_TRUTH_PREFIX) -> str:
    """`ground_truth/2026/12/04/18/3532-123456-<token>.jsonl` for a label collected at 18:35:32.123456 UTC.
    `token` (8 lowercase hex characters, e.g. `secrets.token_hex(4)`) keeps two labels of one microsecond apart."""
    if not _TOKEN.fullmatch(token):
        raise ValueError(f"token {token[:40]!r} must be 8 lowercase hex characters")
    when = _utc("label_time", label_time)
    return f"{_prefix(prefix)}{when:%Y/%m/%d/%H}/{when:%M%S}-{when.microsecond:06d}-{token}.jsonl"


def hour_prefixes(start: datetime, end: datetime, prefix: str = GROUND_TRUTH_PREFIX) -> list[str]:
    """One `ground_truth/YYYY/MM/DD/HH/` per UTC hour from `start`'s to `end`'s (both included), oldest first."""
    start, end = _utc("start", start), _utc("end", end)
    if end < start:
        raise ValueError(f"end {utc_text(end)} is before start {utc_text(start)}")
    base = _prefix(prefix)
    return [f"{base}{hour:%Y/%m/%d/%H}/" for hour in Window(start, floor_hour(end) + HOUR).hours()]


# --- reading ----------------------------------------------------------------------------------------------
class BadLabel(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _text(mapping: dict[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    return value if isinstance(value, str) and value else None


def _label_time(metadata: dict[str, Any], fallback_time: datetime | None) -> datetime:
    raw = metadata.get("labelTime")
    if raw is None:
        if fallback_time is None:
            raise BadLabel("bad_label_time", "no labelTime, and no key hour to stand in for it")
        return _utc("fallback_time", fallback_time)
    if not isinstance(raw, str):
        raise BadLabel("bad_label_time", f"labelTime is a JSON {type(raw).__name__}")
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise BadLabel("bad_label_time", f"labelTime {raw[:40]!r}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_label(line: str | bytes, *, fallback_time: datetime | None = None) -> Label:
    """One ground-truth line -> Label. Raises BadLabel (reason from SKIP_REASONS) for anything else.
    `data` is read as the class name whatever its `encoding` says (we write CSV), with blanks around it stripped."""
    record = json_object(line, BadLabel)
    truth = record.get("groundTruthData")
    data = truth.get("data") if isinstance(truth, dict) else None
    if not isinstance(data, str) or not data.strip():
        raise BadLabel("missing_ground_truth", "no groundTruthData object with string data")
    metadata = record.get("eventMetadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    inference_id = _text(metadata, "inferenceId") or _text(metadata, "eventId")
    if inference_id is None:
        raise BadLabel("missing_inference_id", "no eventMetadata.inferenceId or eventId")
    return Label(inference_id, data.strip(), _label_time(metadata, fallback_time), _text(metadata, "labeledBy"))


def iter_labels(sources: Iterable[tuple[str, Iterable[str | bytes]]], skipped: Counter[str]) -> Iterator[Label]:
    """Labels from each `(s3 key, lines)` source in turn, lazily; `lines` may also be a whole body as str or bytes.
    Bad lines are counted in `skipped` by reason, never raised. A record without labelTime takes its key's hour."""
    for key, lines in sources:
        fallback_time = key_hour(key)
        body = lines.splitlines() if isinstance(lines, str | bytes) else lines
        for line in body:
            if not line.strip():
                continue
            try:
                yield parse_label(line, fallback_time=fallback_time)
            except BadLabel as error:
                skipped[error.reason] += 1


def latest_labels(labels: Iterable[Label]) -> tuple[dict[str, Label], int]:
    """The last label of each inference id (latest label_time; on a tie the one read later), and how many labels
    were superseded by another of the same id."""
    latest: dict[str, Label] = {}
    superseded = 0
    for label in labels:
        current = latest.get(label.inference_id)
        if current is not None:
            superseded += 1
            if label.label_time < current.label_time:
                continue
        latest[label.inference_id] = label
    return latest, superseded


# --- merge and live accuracy ------------------------------------------------------------------------------
@dataclass
class MergeResult:
    """Labels matched with predictions. `labels` counts the distinct ids matched to a prediction, whatever their
    label (NEITHER and unknown classes included); `late` counts those among them collected after the window."""

    classes: list[str]
    matched: list[tuple[datetime, int, int]] = field(default_factory=list)  # (inference time, predicted, true)
    unknown_ids: int = 0
    unknown_classes: int = 0
    neither: int = 0
    duplicates: int = 0
    late: int = 0
    labels: int = 0


def merge(
    predictions: Mapping[str, tuple[datetime, int]],
    labels: Iterable[Label],
    classes: Sequence[str],
    window_end: datetime | None = None,
) -> MergeResult:
    """Match the latest label of each id with `predictions` (capture inference id -> (inference time, predicted
    class index)). `matched` is in inference-time order."""
    index = {name: number for number, name in enumerate(classes)}
    if not classes or len(index) != len(classes) or NEITHER in index:
        raise ValueError(f"classes {list(classes)} must be distinct, at least one, and not {NEITHER!r}")
    end = None if window_end is None else _utc("window_end", window_end)
    latest, superseded = latest_labels(labels)
    result = MergeResult(list(classes), duplicates=superseded)
    for inference_id, label in latest.items():
        prediction = predictions.get(inference_id)
        if prediction is None:
            result.unknown_ids += 1
            continue
        inference_time, predicted = prediction
        if not 0 <= predicted < len(classes):
            raise ValueError(f"prediction {predicted} of {inference_id!r} is no index into {len(classes)} classes")
        result.labels += 1
        if end is not None and label.label_time > end:
            result.late += 1
        if label.label == NEITHER:
            result.neither += 1
        elif label.label not in index:
            result.unknown_classes += 1
        else:
            result.matched.append((_utc("inference time", inference_time), predicted, index[label.label]))
    result.matched.sort()
    return result


def live_accuracy(result: MergeResult, predictions_per_hour: Mapping[datetime, int] | None = None) -> dict[str, Any]:
    """The quality numbers of a merge, JSON-ready: undefined ratios are None. Confusion rows are the true class,
    columns the predicted one. `hours` (by inference hour) covers every hour of `predictions_per_hour` and every
    hour with a matched label; `labelled_share` is the hour's labelled predictions over its predictions."""
    n = len(result.classes)
    confusion = [[0] * n for _ in range(n)]
    per_hour: dict[datetime, list[int]] = {}  # hour -> [labelled, correct]
    for inference_time, predicted, true in result.matched:
        confusion[true][predicted] += 1
        counts = per_hour.setdefault(floor_hour(inference_time), [0, 0])
        counts[0] += 1
        counts[1] += predicted == true
    totals: dict[datetime, int] | None = None
    if predictions_per_hour is not None:
        totals = Counter()
        for hour, count in predictions_per_hour.items():
            totals[floor_hour(_utc("hour", hour))] += count
    hours = []
    for hour in sorted(set(per_hour) | set(totals or ())):
        labelled, correct = per_hour.get(hour, [0, 0])
        predictions = None if totals is None else totals.get(hour)
        hours.append({
            "hour": utc_text(hour), "labelled": labelled, "correct": correct, "accuracy": _ratio(correct, labelled),
            "predictions": predictions, "labelled_share": _ratio(labelled, predictions),
        })  # fmt: skip
    per_class = {
        name: {
            "labelled": sum(confusion[i]),
            "recall": _ratio(confusion[i][i], sum(confusion[i])),
            "precision": _ratio(confusion[i][i], sum(row[i] for row in confusion)),
        }
        for i, name in enumerate(result.classes)
    }
    return {
        "labelled": len(result.matched),
        "neither": result.neither,
        "unknown_ids": result.unknown_ids,
        "unknown_classes": result.unknown_classes,
        "duplicates": result.duplicates,
        "late": result.late,
        "accuracy": _ratio(sum(confusion[i][i] for i in range(n)), len(result.matched)),
        "confusion_matrix": {"labels": list(result.classes), "rows": confusion},
        "per_class": per_class,
        "hours": hours,
    }


# --- CBPE: accuracy estimated without labels --------------------------------------------------------------
def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"calibration {what} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Calibration:
    """evaluation.calibration's reliability table, one entry per bin (empty bins: 0 images, accuracy None)."""

    bins: int
    accuracy: tuple[float | None, ...]
    images: tuple[int, ...]
    ece: float

    def __post_init__(self) -> None:
        if self.bins < 1 or len(self.accuracy) != self.bins or len(self.images) != self.bins:
            raise ValueError(f"{len(self.accuracy)} accuracies and {len(self.images)} counts for {self.bins} bins")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Calibration:
        """From evaluation.json as a whole or from its `calibration` member."""
        if not isinstance(data, Mapping):
            raise ValueError(f"calibration must be a JSON object, got {type(data).__name__}")
        data = data.get("calibration", data)
        if not isinstance(data, Mapping) or not {"bins", "table", "expected_calibration_error"} <= set(data):
            raise ValueError("no calibration (bins, table, expected_calibration_error) in the evaluation")
        bins, table = data["bins"], data["table"]
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"calibration bins must be a positive integer, got {bins!r}")
        if not isinstance(table, list):
            raise ValueError(f"calibration table must be a list, got {type(table).__name__}")
        accuracy: list[float | None] = [None] * bins
        images = [0] * bins
        for row in table:
            if not isinstance(row, Mapping):
                raise ValueError(f"calibration table row {row!r} is not an object")
            low = _number(row.get("low"), "low")
            number = round(low * bins)
            if not 0 <= number < bins or not math.isclose(low, number / bins, abs_tol=1e-9):
                raise ValueError(f"calibration bin low {low} is not one of {bins} equal-width bins")
            if images[number]:
                raise ValueError(f"calibration bin {low} appears twice")
            count = row.get("images")
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"calibration bin {low} images must be a count, got {count!r}")
            share = row.get("accuracy")
            if share is not None and not 0 <= _number(share, "accuracy") <= 1:
                raise ValueError(f"calibration bin {low} accuracy {share} is outside [0, 1]")
            images[number] = count
            accuracy[number] = None if share is None else float(share)
        ece = _number(data["expected_calibration_error"], "expected_calibration_error")
        return cls(bins, tuple(accuracy), tuple(images), ece)

    def bin(self, confidence: float) -> int:
        """The bin rule of evaluation.calibration; 1.0 (and a hair above) belongs to the last bin."""
        if not math.isfinite(confidence):
            raise ValueError(f"confidence {confidence} is not finite")
        return max(0, min(int(confidence * self.bins), self.bins - 1))

    def expected_correct(self, confidence: float) -> float:
        """The chance a prediction of this confidence is right: its bin's test accuracy, or, for a bin the test
        split left empty, the confidence itself (the estimate of last resort)."""
        number = self.bin(confidence)
        accuracy = self.accuracy[number]
        return accuracy if self.images[number] and accuracy is not None else confidence


class AccuracyEstimate:
    """CBPE over a stream of confidences, O(1) per record: counts per bin that has a test accuracy, and the sum of
    the confidences that stand in for one."""

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration
        self.records = 0
        self._per_bin = [0] * calibration.bins
        self._confidence_sum = 0.0
        self._fallback_sum = 0.0  # confidences of records whose bin had no test images

    def add(self, confidence: float) -> None:
        calibration = self.calibration
        number = calibration.bin(confidence)
        self.records += 1
        self._confidence_sum += confidence
        if calibration.images[number] and calibration.accuracy[number] is not None:
            self._per_bin[number] += 1
        else:
            self._fallback_sum += confidence

    def to_dict(self) -> dict[str, Any]:
        calibration = self.calibration
        estimated = None
        mean_confidence = None
        if self.records:
            binned = sum(count * (calibration.accuracy[i] or 0.0) for i, count in enumerate(self._per_bin))
            estimated = round((binned + self._fallback_sum) / self.records, DIGITS)
            mean_confidence = round(self._confidence_sum / self.records, DIGITS)
        return {
            "records": self.records,
            "estimated_accuracy": estimated,
            "mean_confidence": mean_confidence,
            "calibration_error": calibration.ece,
            "method": (
                "CBPE: each prediction's chance of being right is the test-split accuracy of its confidence bin "
                f"({calibration.bins} equal-width bins); the estimate assumes the inputs look like the test split "
                "and is no better than the calibration error"
            ),
        }
