"""Aggregates of the captured predictions in a report window, their drift from the training baseline, and alerts.

Numbers kept per UTC hour and overall: record count, mean confidence (the top probability), share below the
confidence threshold (`confidence < threshold`, the complement of what evaluation.py counts as passing), the
confidence histogram on the baseline's own bin edges, and the predicted class counts. Only these counters, a
bounded reservoir of low-confidence records and a 32-byte digest per distinct low-confidence image are held, so
memory grows with distinct low-confidence images at most (about 100 bytes each), not with traffic.

Drift is the population stability index (PSI) of the window's shares `a` against the baseline's shares `e`:

    PSI = sum over bins i of (a_i - e_i) * ln(a_i / e_i)

where a share below EPSILON (an empty bin) counts as EPSILON, so the logarithm stays finite. PSI is 0 for
identical distributions; the usual reading is < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a major shift.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from include.scones.monitoring.capture import CaptureRecord, SkipLog, Window, floor_hour, utc_text

EPSILON = 1e-4
DIGITS = 6  # rounding of the shares and means written to summary.json


class BaselineError(ValueError):
    pass


@dataclass(frozen=True)
class Limits:
    """Alert when a window's share below the threshold, or a PSI, is strictly above its limit."""

    low_confidence_share: float = 0.5
    psi: float = 0.25
    # Input drift: the PSI of each image statistic (brightness, contrast, saturation, sharpness, size) against the
    # training images (live.py, image_stats.py).
    image_psi: float = 0.25
    # Shares and PSI over a handful of records are noise (6 smoke executions can show a PSI near 1): a window
    # with fewer records than this raises no alert; its numbers are still reported.
    min_records: int = 50


@dataclass(frozen=True)
class Baseline:
    """The `baseline` that evaluation.evaluate stores in evaluation.json."""

    bin_edges: tuple[float, ...]
    confidence_shares: tuple[float, ...]
    class_mix: Mapping[str, float]
    below_threshold_share: float | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Baseline:
        """From evaluation.json as a whole or from its `baseline` member."""
        data = data.get("baseline", data)
        try:
            edges = tuple(float(edge) for edge in data["confidence_bin_edges"])
            shares = tuple(float(share) for share in data["confidence_shares"])
            mix = {str(name): float(share) for name, share in data["class_mix"].items()}
            below = data.get("below_threshold_share")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BaselineError(f"not an evaluation baseline ({exc!r})") from None
        if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise BaselineError(f"confidence_bin_edges must be at least two increasing numbers, got {list(edges)}")
        if len(shares) != len(edges) - 1:
            raise BaselineError(f"{len(shares)} confidence_shares for {len(edges) - 1} bins")
        return cls(edges, shares, mix, None if below is None else float(below))

    def check_classes(self, classes: Sequence[str]) -> None:
        """The deployed model's classes must be the ones the baseline was measured on."""
        if set(self.class_mix) != set(classes):
            baseline_classes = sorted(self.class_mix)
            raise BaselineError(f"classes {list(classes)} do not match the baseline's class mix {baseline_classes}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "confidence_bin_edges": list(self.bin_edges),
            "confidence_shares": list(self.confidence_shares),
            "class_mix": dict(self.class_mix),
            "below_threshold_share": self.below_threshold_share,
        }


def bin_index(confidence: float, edges: Sequence[float]) -> int:
    """The histogram bin of evaluation.confidence_histogram: below the first edge counts in the first bin, the
    last bin includes the last edge, and a value on an inner edge belongs to the bin above it."""
    return bisect_right(edges, confidence, 1, len(edges) - 1) - 1


def psi(expected: Sequence[float], actual: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population stability index of `actual` shares against `expected` shares (see the module docstring)."""
    if len(expected) != len(actual):
        raise ValueError(f"{len(actual)} shares against {len(expected)} expected")
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, epsilon), max(a, epsilon)
        total += (a - e) * math.log(a / e)
    return total


def _share(numerator: float, denominator: int) -> float | None:
    return round(numerator / denominator, DIGITS) if denominator else None


@dataclass
class Tally:
    """Counters of one hour or of the whole window."""

    n_bins: int
    n_classes: int
    records: int = 0
    confidence_sum: float = 0.0
    below_threshold: int = 0
    bins: list[int] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bins = self.bins or [0] * self.n_bins
        self.classes = self.classes or [0] * self.n_classes

    def add(self, confidence: float, predicted: int, bin_: int, below: bool) -> None:
        self.records += 1
        self.confidence_sum += confidence
        self.below_threshold += below
        self.bins[bin_] += 1
        self.classes[predicted] += 1

    def confidence_shares(self) -> list[float] | None:
        return [round(count / self.records, DIGITS) for count in self.bins] if self.records else None

    def class_shares(self) -> list[float] | None:
        return [round(count / self.records, DIGITS) for count in self.classes] if self.records else None

    def row(self, class_names: Sequence[str]) -> dict[str, Any]:
        return {
            "records": self.records,
            "mean_confidence": _share(self.confidence_sum, self.records),
            "below_threshold": self.below_threshold,
            "below_threshold_share": _share(self.below_threshold, self.records),
            "class_counts": dict(zip(class_names, self.classes, strict=True)),
        }


class Reservoir:
    """A uniform random sample of at most `capacity` distinct offered items (Vitter's algorithm R), seeded.

    An item offered with a `key` already seen (the digest of the same image) is ignored: clients resend an image
    and capture may deliver a record twice, and the page should not show one image twice. `offered` counts the
    distinct items, so "n of offered" stays true. An item without a key counts as distinct."""

    def __init__(self, capacity: int, seed: int = 0) -> None:
        self.capacity = capacity
        self.items: list[CaptureRecord] = []
        self.offered = 0
        self._rng = random.Random(seed)
        self._seen: set[bytes] = set()

    def offer(self, item: CaptureRecord, key: bytes | None = None) -> bool:
        """Offer one item; False when its key was seen before (the item is then not counted)."""
        if key is not None:
            if key in self._seen:
                return False
            self._seen.add(key)
        self.offered += 1
        if len(self.items) < self.capacity:
            self.items.append(item)
        elif self.capacity:
            slot = self._rng.randrange(self.offered)
            if slot < self.capacity:
                self.items[slot] = item
        return True


class WindowStats:
    """Feed records with `add`; read the result with `summary`."""

    def __init__(
        self,
        window: Window,
        classes: Sequence[str],
        threshold: float,
        bin_edges: Sequence[float],
        *,
        max_samples: int = 12,
        seed: int = 0,
    ) -> None:
        self.window = window
        self.classes = list(classes)
        self.threshold = threshold
        self.bin_edges = list(bin_edges)
        self.overall = self._tally()
        self.hours: dict[datetime, Tally] = {hour: self._tally() for hour in window.hours()}
        self.out_of_window = 0
        self.low_confidence = Reservoir(max_samples, seed)

    def _tally(self) -> Tally:
        return Tally(len(self.bin_edges) - 1, len(self.classes))

    def add(self, record: CaptureRecord) -> bool:
        """Count one record; False (and counted as out of window) when its inference time is outside."""
        if record.inference_time not in self.window:
            self.out_of_window += 1
            return False
        confidence, predicted = record.confidence, record.predicted
        bin_ = bin_index(confidence, self.bin_edges)
        below = confidence < self.threshold
        self.overall.add(confidence, predicted, bin_, below)
        self.hours[floor_hour(record.inference_time)].add(confidence, predicted, bin_, below)
        if below:
            self.low_confidence.offer(record, record.input_digest())
        return True

    def samples(self) -> list[CaptureRecord]:
        """The low-confidence sample, least confident first."""
        return sorted(self.low_confidence.items, key=lambda record: (record.confidence, record.inference_time))

    def summary(self, baseline: Baseline, limits: Limits, skipped: SkipLog, endpoint_name: str = "") -> dict[str, Any]:
        """Everything the report shows, JSON-serialisable (no NaN: undefined numbers are null)."""
        overall = self.overall
        confidence_shares = overall.confidence_shares()
        class_shares = overall.class_shares()
        baseline_mix = [baseline.class_mix.get(name, 0.0) for name in self.classes]
        drift = {
            "confidence_psi": None if confidence_shares is None else psi(baseline.confidence_shares, confidence_shares),
            "class_mix_psi": None if class_shares is None else psi(baseline_mix, class_shares),
            "epsilon": EPSILON,
        }
        drift = {name: round(value, DIGITS) if value is not None else None for name, value in drift.items()}
        totals = overall.row(self.classes) | {
            "class_mix": None if class_shares is None else dict(zip(self.classes, class_shares, strict=True)),
            "confidence_shares": confidence_shares,
            "low_confidence_offered": self.low_confidence.offered,  # distinct inputs, a repeated image once
        }
        summary: dict[str, Any] = {
            "endpoint_name": endpoint_name,
            "window": self.window.to_dict() | {"hours": len(self.hours)},
            "classes": self.classes,
            "threshold": self.threshold,
            "limits": {
                "low_confidence_share": limits.low_confidence_share,
                "psi": limits.psi,
                "image_psi": limits.image_psi,
                "min_records": limits.min_records,
            },
            "baseline": baseline.to_dict(),
            "totals": totals,
            "drift": drift,
            "skipped": dict(sorted(skipped.counts.items())),
            "skipped_total": sum(skipped.counts.values()),
            "skipped_examples": list(skipped.examples),
            "out_of_window": self.out_of_window,
            "hours": [{"hour": utc_text(hour)} | tally.row(self.classes) for hour, tally in self.hours.items()],
            "low_confidence_samples": [_sample_row(record, self.classes) for record in self.samples()],
        }
        summary["alerts"] = alerts(summary, limits)
        return summary


def _sample_row(record: CaptureRecord, classes: Sequence[str]) -> dict[str, Any]:
    return {
        "inference_time": utc_text(record.inference_time),
        "event_id": record.event_id,
        "inference_id": record.inference_id,
        "predicted": classes[record.predicted],
        "confidence": round(record.confidence, DIGITS),
        "probabilities": dict(zip(classes, record.probabilities, strict=True)),
    }


def alerts(summary: Mapping[str, Any], limits: Limits) -> list[str]:
    """One sentence per limit the window exceeds; a window without records exceeds none."""
    found: list[str] = []
    totals, drift = summary["totals"], summary["drift"]
    if totals["records"] < limits.min_records:
        return found
    share = totals["below_threshold_share"]
    if share is not None and share > limits.low_confidence_share:
        found.append(
            f"low-confidence share {share:.1%} ({totals['below_threshold']} of {totals['records']} predictions "
            f"below the confidence threshold {summary['threshold']}) is above the limit "
            f"{limits.low_confidence_share:.1%}"
        )
    for key, what in (("confidence_psi", "confidence distribution"), ("class_mix_psi", "predicted class mix")):
        value = drift[key]
        if value is not None and value > limits.psi:
            found.append(f"{what} drifted from the training baseline: PSI {value:.3f} is above the limit {limits.psi}")
    return found
