"""monitoring.stats: per-hour and overall numbers, PSI and alerts, recomputed by hand for small inputs."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from include.scones import evaluation
from include.scones.manifests import LstRow
from include.scones.monitoring.capture import CaptureRecord, SkipLog, Window
from include.scones.monitoring.stats import (
    EPSILON,
    Baseline,
    BaselineError,
    Limits,
    Reservoir,
    WindowStats,
    alerts,
    bin_index,
    psi,
)

CLASSES = ["bicycle", "motorcycle"]
T10 = datetime(2026, 11, 21, 10, tzinfo=UTC)
WINDOW = Window(T10, T10 + timedelta(hours=3))
# Two bins, [0.5, 0.75) and [0.75, 1.0]; the window below matches these shares and class mix exactly.
BASELINE = Baseline((0.5, 0.75, 1.0), (0.25, 0.75), {"bicycle": 0.5, "motorcycle": 0.5}, 0.5)


def at(minutes: float, *probabilities: float) -> CaptureRecord:
    return CaptureRecord(T10 + timedelta(minutes=minutes), probabilities, event_id=f"e{minutes}")


RECORDS = [
    at(5, 0.95, 0.05),  # 10h  bicycle     0.95  upper bin  passes
    at(30, 0.40, 0.60),  # 10h motorcycle  0.60  lower bin  below
    at(59.99, 0.75, 0.25),  # 10h bicycle  0.75  upper bin (on the edge)  below
    at(120, 0.10, 0.90),  # 12h motorcycle 0.90  upper bin  passes (equal to the threshold)
    at(180, 0.5, 0.5),  # 13:00 is the window's exclusive end
    at(-0.01, 0.99, 0.01),  # before the window
]


def stats_of(records: list[CaptureRecord], threshold: float = 0.9, max_samples: int = 12) -> WindowStats:
    stats = WindowStats(WINDOW, CLASSES, threshold, BASELINE.bin_edges, max_samples=max_samples)
    for record in records:
        stats.add(record)
    return stats


def test_counts_shares_and_means_by_hand() -> None:
    summary = stats_of(RECORDS).summary(BASELINE, Limits(min_records=1), SkipLog.empty(), "ep")

    totals = summary["totals"]
    assert (totals["records"], totals["below_threshold"], summary["out_of_window"]) == (4, 2, 2)
    assert totals["below_threshold_share"] == 0.5
    assert totals["mean_confidence"] == pytest.approx((0.95 + 0.60 + 0.75 + 0.90) / 4)
    assert totals["class_counts"] == {"bicycle": 2, "motorcycle": 2}
    assert totals["class_mix"] == {"bicycle": 0.5, "motorcycle": 0.5}
    assert totals["confidence_shares"] == [0.25, 0.75]
    assert [(row["hour"], row["records"], row["below_threshold"]) for row in summary["hours"]] == [
        ("2026-11-21T10:00:00Z", 3, 2),
        ("2026-11-21T11:00:00Z", 0, 0),
        ("2026-11-21T12:00:00Z", 1, 0),
    ]
    ten, eleven, twelve = summary["hours"]
    assert ten["mean_confidence"] == round((0.95 + 0.60 + 0.75) / 3, 6)
    assert ten["below_threshold_share"] == round(2 / 3, 6)
    assert ten["class_counts"] == {"bicycle": 2, "motorcycle": 1}
    assert (eleven["mean_confidence"], eleven["below_threshold_share"]) == (None, None)
    assert (twelve["mean_confidence"], twelve["below_threshold_share"]) == (0.9, 0.0)
    assert summary["drift"] == {"confidence_psi": 0.0, "class_mix_psi": 0.0, "epsilon": EPSILON}
    assert summary["alerts"] == []
    assert summary["window"] == {
        "start": "2026-11-21T10:00:00Z",
        "end": "2026-11-21T13:00:00Z",
        "seconds": 10800.0,
        "hours": 3,  # the per-hour rows, not the length: a 21-second window has one
    }
    json.dumps(summary, allow_nan=False)


def test_a_tie_goes_to_the_first_class_as_in_evaluation() -> None:
    assert at(1, 0.5, 0.5).predicted == 0
    assert stats_of([at(1, 0.5, 0.5)]).overall.classes == [1, 0]


def test_bins_match_evaluation_confidence_histogram() -> None:
    edges = evaluation.CONFIDENCE_BIN_EDGES
    values = [0.3, 0.5, 0.549999, 0.55, 0.6, 0.74, 0.75, 0.95, 0.9499, 0.9999, 1.0]
    counts = [0] * (len(edges) - 1)
    for value in values:
        counts[bin_index(value, edges)] += 1
    assert [c / len(values) for c in counts] == evaluation.confidence_histogram(values)
    assert [bin_index(v, edges) for v in (0.3, 0.55, 0.95, 1.0)] == [0, 1, 9, 9]


def test_psi_by_hand() -> None:
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    assert psi([1.0, 0.0], [1.0, 0.0]) == 0.0  # empty bins on both sides add nothing
    # (0.8-0.5)ln(0.8/0.5) + (0.2-0.5)ln(0.2/0.5) = 0.3 ln 1.6 + 0.3 ln 2.5 = 0.3 ln 4
    assert psi([0.5, 0.5], [0.8, 0.2]) == pytest.approx(0.3 * math.log(4))
    # an empty bin counts as EPSILON: 2 (1 - eps) ln(1 / eps)
    assert psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - EPSILON) * math.log(1 / EPSILON))
    with pytest.raises(ValueError):
        psi([0.5, 0.5], [1.0])


def test_a_shifted_window_drifts_past_the_limit_and_alerts() -> None:
    shifted = [at(m, 0.6, 0.4) for m in range(0, 120, 10)]  # all bicycle, all in the lower bin, all below

    summary = stats_of(shifted).summary(BASELINE, Limits(min_records=1), SkipLog.empty())

    # confidence: baseline (0.25, 0.75) vs (1, 0); class mix: (0.5, 0.5) vs (1, 0)
    expected_confidence = 0.75 * math.log(4) + (EPSILON - 0.75) * math.log(EPSILON / 0.75)
    expected_mix = 0.5 * math.log(2) + (EPSILON - 0.5) * math.log(EPSILON / 0.5)
    assert summary["drift"]["confidence_psi"] == pytest.approx(expected_confidence, abs=1e-6)
    assert summary["drift"]["class_mix_psi"] == pytest.approx(expected_mix, abs=1e-6)
    assert summary["drift"]["confidence_psi"] > Limits(min_records=1).psi
    assert summary["alerts"] == [
        "low-confidence share 100.0% (12 of 12 predictions below the confidence threshold 0.9) is above the limit "
        "50.0%",
        f"confidence distribution drifted from the training baseline: PSI {expected_confidence:.3f} is above the "
        "limit 0.25",
        f"predicted class mix drifted from the training baseline: PSI {expected_mix:.3f} is above the limit 0.25",
    ]


def test_alerts_only_strictly_above_the_limits() -> None:
    summary = stats_of(RECORDS).summary(BASELINE, Limits(min_records=1), SkipLog.empty())  # share 0.5, PSI 0
    assert alerts(summary, Limits(low_confidence_share=0.5, psi=0.0, min_records=1)) == []
    assert alerts(summary, Limits(low_confidence_share=0.49, min_records=1)) == [
        "low-confidence share 50.0% (2 of 4 predictions below the confidence threshold 0.9) is above the limit 49.0%"
    ]
    assert stats_of(RECORDS).summary(BASELINE, Limits(low_confidence_share=0.49, min_records=1), SkipLog.empty())[
        "alerts"
    ]


def test_an_empty_window_has_no_numbers_and_no_alerts() -> None:
    skipped = SkipLog.empty()
    skipped.counts["bad_json"] += 3
    summary = stats_of([]).summary(BASELINE, Limits(low_confidence_share=0.0, psi=0.0), skipped)
    assert summary["totals"]["records"] == 0
    assert summary["totals"]["mean_confidence"] is None and summary["totals"]["class_mix"] is None
    assert summary["drift"]["confidence_psi"] is None and summary["drift"]["class_mix_psi"] is None
    assert (summary["skipped"], summary["skipped_total"]) == ({"bad_json": 3}, 3)
    assert summary["alerts"] == []
    assert len(summary["hours"]) == 3
    json.dumps(summary, allow_nan=False)


def test_low_confidence_sample_is_bounded_and_only_low_confidence() -> None:
    records = [at(i / 10, 0.5 + (i % 50) / 100, 0.5 - (i % 50) / 100) for i in range(1000)]

    stats = stats_of(records, threshold=0.9, max_samples=5)

    samples = stats.samples()
    assert len(samples) == 5 and stats.low_confidence.offered == sum(r.confidence < 0.9 for r in records)
    assert all(s.confidence < 0.9 for s in samples)
    assert [s.confidence for s in samples] == sorted(s.confidence for s in samples)
    assert stats.summary(BASELINE, Limits(min_records=1), SkipLog.empty())["low_confidence_samples"][0].keys() == {
        "inference_time",
        "event_id",
        "inference_id",
        "predicted",
        "confidence",
        "probabilities",
    }


def test_reservoir_reaches_past_the_first_items_and_is_seeded() -> None:
    def sample(seed: int) -> list[float]:
        reservoir = Reservoir(4, seed)
        for i in range(1000):
            reservoir.offer(at(i, 0.5, 0.5))
        return [r.inference_time.timestamp() for r in reservoir.items]

    assert len(sample(1)) == 4 and sample(1) == sample(1) != sample(2)
    assert max(sample(1)) > at(4, 0.5, 0.5).inference_time.timestamp()
    empty = Reservoir(0)
    empty.offer(at(0, 0.5, 0.5))
    assert (empty.items, empty.offered) == ([], 1)


def test_reservoir_ignores_an_item_offered_again_under_the_same_key() -> None:
    reservoir = Reservoir(3)
    offers = [(at(0, 0.5, 0.5), b"a"), (at(1, 0.5, 0.5), b"a"), (at(2, 0.5, 0.5), None), (at(3, 0.5, 0.5), None)]

    accepted = [reservoir.offer(item, key) for item, key in offers]

    assert accepted == [True, False, True, True]  # no key: nothing to compare, so distinct
    assert [r.event_id for r in reservoir.items] == ["e0", "e2", "e3"] and reservoir.offered == 3
    full = Reservoir(1)
    assert [full.offer(at(i, 0.5, 0.5), key) for i, key in enumerate([b"a", b"b", b"a", b"b"])] == [
        True,
        True,
        False,
        False,
    ]
    assert full.offered == 2


def test_low_confidence_samples_are_distinct_images() -> None:
    # The same image resent (or delivered twice by capture) five times, and two other images.
    images = ["c2FtZQ=="] * 5 + ["b25l", "dHdv"]
    records = [
        CaptureRecord(T10 + timedelta(minutes=i), (0.6, 0.4), event_id=f"e{i}", input_base64=image)
        for i, image in enumerate(images)
    ]

    stats = stats_of(records, threshold=0.9, max_samples=12)

    samples = stats.samples()
    assert len(samples) == 3 and len({s.input_bytes() for s in samples}) == 3
    assert [s.event_id for s in samples] == ["e0", "e5", "e6"]  # the first of the repeats is kept
    summary = stats.summary(BASELINE, Limits(min_records=1), SkipLog.empty())
    assert summary["totals"]["low_confidence_offered"] == 3
    assert summary["totals"]["below_threshold"] == 7  # every record is still counted in the numbers
    assert len(summary["low_confidence_samples"]) == 3


def test_baseline_from_a_real_evaluation_record() -> None:
    rows = [LstRow(0, 0, "a.png"), LstRow(1, 1, "b.png")]
    record = evaluation.evaluate({"a.png": [0.99, 0.01], "b.png": [0.6, 0.4]}, rows, CLASSES, 0.93)

    baseline = Baseline.from_mapping(record)

    assert baseline == Baseline.from_mapping(record["baseline"])
    assert baseline.bin_edges == tuple(evaluation.CONFIDENCE_BIN_EDGES)
    assert baseline.class_mix == {"bicycle": 1.0, "motorcycle": 0.0}
    assert baseline.below_threshold_share == 0.5
    assert baseline.to_dict() == record["baseline"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"confidence_shares": [1.0], "class_mix": {}}, "not an evaluation baseline"),
        ({"confidence_bin_edges": [0.5, 0.5, 1.0], "confidence_shares": [0, 1], "class_mix": {}}, "increasing"),
        ({"confidence_bin_edges": [0.5, 1.0], "confidence_shares": [0.5, 0.5], "class_mix": {}}, "2 confidence_sh"),
        ({"confidence_bin_edges": [0.5, 1.0], "confidence_shares": [1.0], "class_mix": ["x"]}, "not an evaluation"),
    ],
)
def test_malformed_baselines_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(BaselineError, match=message):
        Baseline.from_mapping(data)


def test_classes_must_match_the_baseline() -> None:
    BASELINE.check_classes(["motorcycle", "bicycle"])
    with pytest.raises(BaselineError, match=r"classes \['bicycle', 'car'\] do not match"):
        BASELINE.check_classes(["bicycle", "car"])


def test_a_window_with_too_few_records_raises_no_alert() -> None:
    # Given a window whose share and PSI are both beyond the limits, but with fewer records than min_records
    summary = stats_of(RECORDS).summary(BASELINE, Limits(min_records=1), SkipLog.empty())
    limits = Limits(low_confidence_share=0.0, psi=0.0, min_records=summary["totals"]["records"] + 1)
    # Then nothing alerts; with exactly min_records records, it alerts again
    assert alerts(summary, limits) == []
    assert alerts(summary, Limits(low_confidence_share=0.0, psi=-1.0, min_records=summary["totals"]["records"]))
