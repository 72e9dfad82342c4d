"""The labelling loop's part of the report (monitoring/live.py through report.build_report): live accuracy from
labels merged by inferenceId (the label window reaching back before the report window), the CBPE estimate,
input drift of the captured images, the review candidates, held-back alerts, and the retraining request."""

from __future__ import annotations

import base64
import io
import json
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from PIL import Image

from include.scones import evaluation
from include.scones.monitoring.capture import CaptureRecord, Window
from include.scones.monitoring.ground_truth import NEITHER, Label
from include.scones.monitoring.image_stats import ImageBaseline, image_statistics
from include.scones.monitoring.live import LiveInputs
from include.scones.monitoring.report import build_report, retraining_request
from include.scones.monitoring.stats import Limits
from tools.synthetic_traffic import Traffic

CLASSES = ["bicycle", "motorcycle"]
START = datetime(2026, 12, 4, 10, tzinfo=UTC)
WINDOW = Window(START, START + timedelta(hours=2))
BASELINE = Traffic(0, START).baseline()


def png(rng: np.random.Generator, scale: float = 1.0, size: int = 32) -> bytes:
    pixels = np.clip(rng.integers(40, 230, (size, size, 3)) * scale, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def record(when: datetime, confidence: float, predicted: int, inference_id: str | None, image: bytes | None = None):
    probabilities = [1 - confidence, 1 - confidence]
    probabilities[predicted] = confidence
    encoded = None if image is None else base64.b64encode(image).decode()
    return CaptureRecord(when, tuple(probabilities), f"e-{inference_id}", inference_id, encoded)


def image_baseline(count: int = 300) -> dict:
    rng = np.random.default_rng(1)
    return ImageBaseline.from_statistics([image_statistics(png(rng)) for _ in range(count)]).to_dict()


def calibration() -> dict:
    # a test split where the 0.6-0.7 bin was right 50% of the time and the 0.9-1.0 bin 100%
    confidences = [0.65, 0.65, 0.95, 0.95]
    return {"calibration": evaluation.calibration(confidences, [True, False, True, True])}


def test_labels_merge_with_the_captures_of_the_label_window() -> None:
    before = START - timedelta(hours=5)  # an earlier report's record: merged, not reported on
    records = [
        record(before, 0.6, 0, "old"),
        record(START + timedelta(minutes=1), 0.6, 0, "a"),
        record(START + timedelta(minutes=2), 0.7, 1, "b"),
        record(START + timedelta(minutes=3), 0.99, 1, "c"),
        record(START + timedelta(minutes=70), 0.6, 1, "d"),
    ]
    labelled_at = START + timedelta(hours=3)  # after the window: late, still merged
    labels = [
        Label("old", "bicycle", labelled_at),
        Label("a", "motorcycle", labelled_at),  # wrong, then corrected: the last label counts
        Label("a", "bicycle", labelled_at + timedelta(seconds=1)),
        Label("b", "bicycle", labelled_at),  # predicted motorcycle: wrong
        Label("d", NEITHER, labelled_at),
        Label("ghost", "bicycle", labelled_at),  # no capture has this id
    ]
    live = LiveInputs(labels=labels, label_start=START - timedelta(hours=24))
    summary = build_report(records, BASELINE, CLASSES, 0.93, WINDOW, live=live).summary

    assert summary["totals"]["records"] == 4 and summary["out_of_window"] == 0
    accuracy = summary["live_accuracy"]
    assert (accuracy["labelled"], accuracy["neither"], accuracy["unknown_ids"]) == (3, 1, 1)
    assert (accuracy["duplicates"], accuracy["late"]) == (1, 4)  # the ghost's label is unknown, not late
    assert accuracy["accuracy"] == pytest.approx(2 / 3, abs=1e-6)
    assert accuracy["confusion_matrix"]["rows"] == [[2, 1], [0, 0]]  # true bicycle: 2 right, 1 taken for motorcycle
    hours = {row["hour"]: row for row in accuracy["hours"]}
    assert hours["2026-12-04T10:00:00Z"]["predictions"] == 3 and hours["2026-12-04T10:00:00Z"]["labelled"] == 2
    assert hours["2026-12-04T05:00:00Z"]["labelled_share"] == 1.0
    assert accuracy["window"]["start"] == "2026-12-03T10:00:00Z"
    html = build_report(records, BASELINE, CLASSES, 0.93, WINDOW, live=live).html
    assert "Live accuracy (labelled by people)" in html and "66.7%" in html


def test_without_a_label_window_earlier_records_are_outside_the_report() -> None:
    records = [record(START - timedelta(hours=1), 0.6, 0, "old"), record(START, 0.6, 0, "a")]
    summary = build_report(records, BASELINE, CLASSES, 0.93, WINDOW, live=LiveInputs(
        labels=[Label("old", "bicycle", START)])).summary  # fmt: skip
    assert summary["out_of_window"] == 1
    assert summary["live_accuracy"]["unknown_ids"] == 1 and summary["live_accuracy"]["labelled"] == 0


def test_the_estimate_uses_the_test_splits_accuracy_per_confidence_bin() -> None:
    records = [record(START, 0.62, 0, "a"), record(START, 0.68, 1, "b"), record(START, 0.97, 0, "c"),
               record(START, 0.85, 0, "d")]  # fmt: skip
    summary = build_report(records, BASELINE, CLASSES, 0.93, WINDOW, live=LiveInputs(calibration=calibration())).summary
    estimate = summary["estimated_accuracy"]
    # 0.5, 0.5 (bin 0.6-0.7), 1.0 (bin 0.9-1.0), and 0.85 itself (its bin had no test image)
    assert estimate["estimated_accuracy"] == pytest.approx((0.5 + 0.5 + 1.0 + 0.85) / 4, abs=1e-6)
    assert estimate["calibration_error"] == calibration()["calibration"]["expected_calibration_error"]
    assert "±" in build_report(records, BASELINE, CLASSES, 0.93, WINDOW, live=LiveInputs(
        calibration=calibration())).html  # fmt: skip
    assert build_report(records, BASELINE, CLASSES, 0.93, WINDOW).summary["estimated_accuracy"] is None


def drifted_records(scale: float, count: int = 120, size: int = 32) -> list[CaptureRecord]:
    rng = np.random.default_rng(5)
    return [record(START + timedelta(seconds=i), 0.99, i % 2, f"id-{i}", png(rng, scale, size)) for i in range(count)]


def test_darkened_images_raise_the_input_drift_alert_and_like_ones_do_not() -> None:
    live = LiveInputs(image_baseline=image_baseline())
    limits = Limits(min_records=50)
    alike = build_report(drifted_records(1.0), BASELINE, CLASSES, 0.93, WINDOW, limits, live=live).summary
    assert alike["input_drift"]["images"] == 120 and alike["input_drift"]["drifted"] == []
    assert not [a for a in alike["alerts"] if a.startswith("input drift")]
    dark = build_report(drifted_records(0.3), BASELINE, CLASSES, 0.93, WINDOW, limits, live=live).summary
    assert "brightness" in dark["input_drift"]["drifted"]
    assert any(a.startswith("input drift: image brightness") for a in dark["alerts"])
    big = build_report(drifted_records(1.0, size=64), BASELINE, CLASSES, 0.93, WINDOW, limits, live=live).summary
    assert "size" in big["input_drift"]["drifted"]


def test_the_image_sample_is_bounded() -> None:
    live = LiveInputs(image_baseline=image_baseline(), image_sample=30)
    summary = build_report(drifted_records(1.0), BASELINE, CLASSES, 0.93, WINDOW, live=live).summary
    assert (summary["input_drift"]["images"], summary["input_drift"]["offered"]) == (30, 120)


def test_a_small_window_says_which_alerts_it_holds_back() -> None:
    live = LiveInputs(image_baseline=image_baseline())
    report = build_report(drifted_records(0.3, count=20), BASELINE, CLASSES, 0.93, WINDOW, Limits(min_records=50),
                          live=live)  # fmt: skip
    assert report.summary["alerts"] == []
    held = report.summary["held_back"]
    assert any("brightness" in sentence for sentence in held)
    assert any("confidence distribution" in sentence for sentence in held)  # 0.99 everywhere: the PSI is high
    assert "Too few records to judge" in report.html and "Held back, though over its limit" in report.html
    assert '<div class="held"><strong>Too few records' in report.html  # amber, not the all-clear green
    assert "every number is within its limit" not in report.html
    calm = build_report([], BASELINE, CLASSES, 0.93, WINDOW, Limits(min_records=50), live=live)
    assert calm.summary["held_back"] == []


def test_review_candidates_are_filtered_inferences_with_an_id_and_an_image() -> None:
    rng = np.random.default_rng(2)
    records = [record(START + timedelta(seconds=i), 0.6 if i % 2 else 0.99, 0, f"id-{i}", png(rng))
               for i in range(40)]  # fmt: skip
    records += [record(START, 0.5, 0, None, png(rng)), record(START, 0.5, 0, "no-image")]
    records += [records[1]]  # delivered twice
    report = build_report(records, BASELINE, CLASSES, 0.93, WINDOW, live=LiveInputs(review_capacity=8))
    queued = report.review
    assert len(queued) == 8 and len({r.inference_id for r in queued}) == 8
    assert all(r.confidence < 0.93 and r.inference_id and r.input_base64 for r in queued)
    assert report.summary["review_offered"] == 20  # the 20 filtered ones with an id and an image, once each
    assert list(queued) == sorted(queued, key=lambda r: r.inference_time)


def test_summary_is_strict_json_with_every_loop_number() -> None:
    rng = random.Random(3)
    records = [record(START + timedelta(seconds=i), rng.uniform(0.5, 1), rng.randrange(2), f"id-{i}")
               for i in range(60)]  # fmt: skip
    live = LiveInputs(calibration=calibration(), image_baseline=image_baseline(50),
                      labels=[Label("id-3", "bicycle", START)])  # fmt: skip
    summary = build_report(records, BASELINE, CLASSES, 0.93, WINDOW, live=live).summary
    json.dumps(summary, allow_nan=False)
    assert summary["input_drift"]["images"] == 0  # no image captured: nothing measured, no alert
    assert summary["live_accuracy"]["labelled"] == 1


def test_an_alert_requests_retraining_unless_the_trigger_is_off() -> None:
    summary = {"alerts": ["input drift: image brightness …"], "report_uri": "s3://b/r.html", "window": {}}
    request = retraining_request(summary, enabled=True)
    assert request.skip_reason is None and request.extra["alerts"] == summary["alerts"]
    assert request.extra["report_uri"] == "s3://b/r.html"
    off = retraining_request(summary, enabled=False)
    assert off.skip_reason and "SCONES_RETRAIN_ON_ALERT" in off.skip_reason
    assert retraining_request({"alerts": []}, enabled=True).skip_reason
