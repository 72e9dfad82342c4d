"""monitoring.ground_truth: the label record and key format, reading labels, merging them with captures, and the
quality numbers (live accuracy with labels, the CBPE estimate without)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest

from include.scones.evaluation import calibration
from include.scones.monitoring.capture import key_hour
from include.scones.monitoring.ground_truth import (
    GROUND_TRUTH_PREFIX,
    NEITHER,
    SKIP_REASONS,
    AccuracyEstimate,
    BadLabel,
    Calibration,
    Label,
    MergeResult,
    hour_prefixes,
    iter_labels,
    label_key,
    label_line,
    label_record,
    latest_labels,
    live_accuracy,
    merge,
    parse_label,
)

WHEN = datetime(2026, 12, 4, 18, 35, 32, 123456, tzinfo=UTC)
CLASSES = ["bicycle", "motorcycle", "truck"]


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 4, hour, minute, tzinfo=UTC)


def record_line(metadata: dict[str, object], truth: object = None) -> str:
    body = {"groundTruthData": {"data": "bicycle", "encoding": "CSV"} if truth is None else truth}
    return json.dumps({**body, "eventMetadata": metadata, "eventVersion": "0"})


# --- format -----------------------------------------------------------------------------------------------
def test_the_line_is_model_monitors_record_exactly() -> None:
    line = label_line("req-1", "bicycle", WHEN, "admin")

    assert line == (
        '{"groundTruthData":{"data":"bicycle","encoding":"CSV"},"eventMetadata":{"eventId":"req-1",'
        '"inferenceId":"req-1","labelTime":"2026-12-04T18:35:32.123456Z","labeledBy":"admin"},"eventVersion":"0"}\n'
    )
    assert json.loads(line) == label_record("req-1", "bicycle", WHEN, "admin")


def test_a_line_parses_back_to_its_label() -> None:
    paris = timezone(timedelta(hours=1))

    assert parse_label(label_line("req-1", "bicycle", WHEN, "admin")) == Label("req-1", "bicycle", WHEN, "admin")
    # an offset time is written, and read back, as the same instant in UTC
    label = parse_label(label_line("req-2", NEITHER, WHEN.astimezone(paris), None).encode())
    assert label == Label("req-2", NEITHER, WHEN, None)
    assert label.label_time.tzinfo is UTC


def test_nobody_named_leaves_labeled_by_out() -> None:
    assert "labeledBy" not in label_record("req-1", "bicycle", WHEN, None)["eventMetadata"]


@pytest.mark.parametrize("inference_id", ["", " req", "\treq", "a\tb", "a\nb", "x" * 65, "caf\u00e9-2"])
def test_inference_ids_outside_the_aws_pattern_are_refused(inference_id: str) -> None:
    with pytest.raises(ValueError, match="inference id"):
        label_record(inference_id, "bicycle", WHEN, None)


def test_inference_ids_inside_the_aws_pattern_are_kept() -> None:
    for inference_id in ["x" * 64, "a b ~!", "9"]:
        assert label_record(inference_id, "bicycle", WHEN, None)["eventMetadata"]["eventId"] == inference_id


@pytest.mark.parametrize("label", ["", "   ", " bicycle"])
def test_blank_labels_are_refused(label: str) -> None:
    with pytest.raises(ValueError, match="label"):
        label_record("req-1", label, WHEN, None)


def test_a_naive_label_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        label_record("req-1", "bicycle", datetime(2026, 12, 4, 18), None)
    with pytest.raises(ValueError, match="timezone-aware"):
        label_key(datetime(2026, 12, 4, 18), "0a1b2c3d")


def test_the_key_is_dated_by_the_utc_collection_time() -> None:
    key = label_key(WHEN, "0a1b2c3d")

    assert key == "ground_truth/2026/12/04/18/3532-123456-0a1b2c3d.jsonl"
    assert key.startswith(GROUND_TRUTH_PREFIX + "/")
    assert key_hour(key) == at(18)
    assert label_key(WHEN.astimezone(timezone(timedelta(hours=-5))), "0a1b2c3d") == key
    assert label_key(at(7), "ffffffff", prefix="") == "2026/12/04/07/0000-000000-ffffffff.jsonl"
    assert label_key(at(7), "ffffffff", prefix="/team/gt/") == "team/gt/2026/12/04/07/0000-000000-ffffffff.jsonl"


@pytest.mark.parametrize("token", ["0A1B2C3D", "0a1b2c3", "0a1b2c3d9", "ghijklmn", "", "0a1b-c3d"])
def test_a_token_must_be_eight_lowercase_hex_characters(token: str) -> None:
    with pytest.raises(ValueError, match="token"):
        label_key(WHEN, token)


def test_a_uri_is_not_a_prefix() -> None:
    with pytest.raises(ValueError, match="not a URI"):
        label_key(WHEN, "0a1b2c3d", prefix="s3://bucket/ground_truth")


def test_hour_prefixes_include_the_hour_of_the_end() -> None:
    assert hour_prefixes(at(18, 35), at(20)) == [
        "ground_truth/2026/12/04/18/",
        "ground_truth/2026/12/04/19/",
        "ground_truth/2026/12/04/20/",
    ]
    assert hour_prefixes(WHEN, WHEN) == ["ground_truth/2026/12/04/18/"]
    assert hour_prefixes(at(23, 59), at(23, 59) + timedelta(minutes=2), prefix="gt") == [
        "gt/2026/12/04/23/",
        "gt/2026/12/05/00/",
    ]


def test_hour_prefixes_refuse_a_reversed_or_naive_range() -> None:
    with pytest.raises(ValueError, match="before start"):
        hour_prefixes(at(18, 40), at(18, 10))
    with pytest.raises(ValueError, match="timezone-aware"):
        hour_prefixes(at(18), datetime(2026, 12, 4, 19))


# --- reading ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        ("[1, 2]", "not_an_object"),
        ('"bicycle"', "not_an_object"),
        (json.dumps({"eventMetadata": {"eventId": "a"}}), "missing_ground_truth"),
        (record_line({"eventId": "a"}, truth="bicycle"), "missing_ground_truth"),
        (record_line({"eventId": "a"}, truth={"data": 3}), "missing_ground_truth"),
        (record_line({"eventId": "a"}, truth={"data": "  "}), "missing_ground_truth"),
        (json.dumps({"groundTruthData": {"data": "bicycle"}}), "missing_inference_id"),
        (record_line({"inferenceId": "", "labelTime": "2026-12-04T18:00:00Z"}), "missing_inference_id"),
        (record_line({"eventId": 5}), "missing_inference_id"),
        (record_line({"eventId": "a", "labelTime": "yesterday"}), "bad_label_time"),
        (record_line({"eventId": "a", "labelTime": 1764873332}), "bad_label_time"),
        (record_line({"eventId": "a"}), "bad_label_time"),  # no labelTime and no fallback
    ],
)
def test_each_bad_line_has_its_reason(line: str | bytes, reason: str) -> None:
    with pytest.raises(BadLabel) as caught:
        parse_label(line)

    assert caught.value.reason == reason
    assert reason in SKIP_REASONS


def test_the_id_falls_back_to_event_id_and_the_time_to_the_key_hour() -> None:
    label = parse_label(record_line({"eventId": "evt-9"}), fallback_time=at(18))

    assert label == Label("evt-9", "bicycle", at(18), None)
    # inferenceId wins over eventId when both are there
    assert parse_label(record_line({"eventId": "e", "inferenceId": "i", "labelTime": "2026-12-04T18:05:00Z"})) == (
        Label("i", "bicycle", at(18, 5), None)
    )


def test_a_naive_label_time_is_read_as_utc() -> None:
    label = parse_label(record_line({"eventId": "a", "labelTime": "2026-12-04T18:05:00"}))

    assert label.label_time == at(18, 5)


def test_iter_labels_counts_bad_lines_and_uses_the_key_hour() -> None:
    skipped: Counter[str] = Counter()
    sources = [
        (
            "ground_truth/2026/12/04/18/3532-123456-0a1b2c3d.jsonl",
            [label_line("a", "bicycle", at(18, 35), "admin"), "", "   \n", "{oops", record_line({"eventId": "b"})],
        ),
        ("ground_truth/2026/12/04/19/0000-000000-ffffffff.jsonl", label_line("c", "truck", at(19), None).encode()),
        ("somewhere/else.jsonl", [record_line({"eventId": "d"}), b"[]"]),
    ]

    labels = list(iter_labels(sources, skipped))

    assert labels == [
        Label("a", "bicycle", at(18, 35), "admin"),
        Label("b", "bicycle", at(18), None),
        Label("c", "truck", at(19), None),
    ]
    assert skipped == Counter({"bad_json": 1, "bad_label_time": 1, "not_an_object": 1})


def test_the_latest_label_wins_whatever_order_it_is_read_in() -> None:
    first = Label("a", "bicycle", at(18, 40))
    older = Label("a", "truck", at(18, 30))
    tie = Label("b", "bicycle", at(18, 10))
    tie_later_read = Label("b", "motorcycle", at(18, 10))
    only = Label("c", "truck", at(18, 20))

    latest, superseded = latest_labels([first, tie, older, only, tie_later_read])

    assert latest == {"a": first, "b": tie_later_read, "c": only}
    assert superseded == 2


# --- merge and live accuracy ------------------------------------------------------------------------------
PREDICTIONS = {
    "a": (at(18, 10), 0),
    "b": (at(18, 20), 0),
    "c": (at(19, 5), 1),
    "d": (at(19, 30), 1),
    "e": (at(19, 40), 0),
    "f": (at(20), 2),
}
LABELS = [
    Label("c", "truck", at(19, 10)),  # superseded by the next one
    Label("c", "motorcycle", at(19, 50)),  # after the window: merged, and late
    Label("a", "bicycle", at(18, 30)),  # exactly at the window end: not late
    Label("b", "motorcycle", at(18, 25)),
    Label("d", NEITHER, at(18, 15)),
    Label("e", "train", at(18, 16)),  # no class of the model
    Label("zzz", "bicycle", at(19, 55)),  # no such prediction: counted only, even though late
]


def test_merge_matches_the_latest_labels_and_counts_the_rest() -> None:
    result = merge(PREDICTIONS, LABELS, CLASSES, window_end=at(18, 30))

    assert result == MergeResult(
        classes=CLASSES,
        matched=[(at(18, 10), 0, 0), (at(18, 20), 0, 1), (at(19, 5), 1, 1)],
        unknown_ids=1,
        unknown_classes=1,
        neither=1,
        duplicates=1,
        late=1,
        labels=5,
    )


def test_merge_without_a_window_end_has_no_late_labels() -> None:
    assert merge(PREDICTIONS, LABELS, CLASSES).late == 0


def test_merge_refuses_bad_classes_and_predictions() -> None:
    with pytest.raises(ValueError, match="distinct"):
        merge(PREDICTIONS, LABELS, ["bicycle", NEITHER])
    with pytest.raises(ValueError, match="distinct"):
        merge(PREDICTIONS, LABELS, ["bicycle", "bicycle"])
    with pytest.raises(ValueError, match="no index"):
        merge({"a": (at(18), 3)}, [Label("a", "bicycle", at(18))], CLASSES)


def test_live_accuracy_on_a_hand_computed_case() -> None:
    result = merge(PREDICTIONS, LABELS, CLASSES, window_end=at(18, 30))
    per_hour = {at(17): 0, at(18): 4, at(19): 3, at(20): 1}

    numbers = live_accuracy(result, per_hour)

    assert numbers["labelled"] == 3
    assert (numbers["neither"], numbers["unknown_ids"], numbers["unknown_classes"]) == (1, 1, 1)
    assert (numbers["duplicates"], numbers["late"]) == (1, 1)
    assert numbers["accuracy"] == 0.666667
    # rows: true class; columns: predicted
    assert numbers["confusion_matrix"] == {"labels": CLASSES, "rows": [[1, 0, 0], [1, 1, 0], [0, 0, 0]]}
    assert numbers["per_class"] == {
        "bicycle": {"labelled": 1, "recall": 1.0, "precision": 0.5},
        "motorcycle": {"labelled": 2, "recall": 0.5, "precision": 1.0},
        "truck": {"labelled": 0, "recall": None, "precision": None},
    }
    assert numbers["hours"] == [
        {"hour": "2026-12-04T17:00:00Z", "labelled": 0, "correct": 0, "accuracy": None, "predictions": 0,
         "labelled_share": None},
        {"hour": "2026-12-04T18:00:00Z", "labelled": 2, "correct": 1, "accuracy": 0.5, "predictions": 4,
         "labelled_share": 0.5},
        {"hour": "2026-12-04T19:00:00Z", "labelled": 1, "correct": 1, "accuracy": 1.0, "predictions": 3,
         "labelled_share": 0.333333},
        {"hour": "2026-12-04T20:00:00Z", "labelled": 0, "correct": 0, "accuracy": None, "predictions": 1,
         "labelled_share": 0.0},
    ]  # fmt: skip
    json.dumps(numbers, allow_nan=False)


def test_live_accuracy_hours_come_from_the_labels_when_no_counts_are_given() -> None:
    numbers = live_accuracy(merge(PREDICTIONS, LABELS, CLASSES))

    assert [
        (hour["hour"], hour["labelled"], hour["predictions"], hour["labelled_share"]) for hour in numbers["hours"]
    ] == [
        ("2026-12-04T18:00:00Z", 2, None, None),
        ("2026-12-04T19:00:00Z", 1, None, None),
    ]


def test_live_accuracy_without_labels_is_undefined_not_zero() -> None:
    numbers = live_accuracy(MergeResult(classes=CLASSES), {at(18): 5})

    assert numbers["labelled"] == 0
    assert numbers["accuracy"] is None
    assert numbers["per_class"]["bicycle"] == {"labelled": 0, "recall": None, "precision": None}
    assert numbers["hours"] == [
        {"hour": "2026-12-04T18:00:00Z", "labelled": 0, "correct": 0, "accuracy": None, "predictions": 5,
         "labelled_share": 0.0}
    ]  # fmt: skip
    json.dumps(numbers, allow_nan=False)


# --- CBPE -------------------------------------------------------------------------------------------------
def evaluation_calibration() -> dict[str, object]:
    # bin 9: 0.95, 0.95, 0.92 (2 of 3 right); bin 5: 0.55, 0.58 (1 of 2 right); the other bins are empty
    return calibration([0.95, 0.95, 0.92, 0.55, 0.58], [True, True, False, True, False])


def test_calibration_reads_the_evaluations_table() -> None:
    calibrated = evaluation_calibration()

    whole = Calibration.from_mapping({"accuracy": 0.6, "calibration": calibrated})

    assert whole == Calibration.from_mapping(calibrated)
    assert whole.bins == 10
    assert whole.images == (0, 0, 0, 0, 0, 2, 0, 0, 0, 3)
    assert whole.accuracy == (None, None, None, None, None, 0.5, None, None, None, 0.666667)
    assert whole.ece == calibrated["expected_calibration_error"]


def test_expected_correct_is_the_bins_accuracy_or_the_confidence() -> None:
    calibrated = Calibration.from_mapping(evaluation_calibration())

    assert calibrated.expected_correct(0.97) == 0.666667
    assert calibrated.expected_correct(1.0) == 0.666667  # 1.0 belongs to the last bin
    assert calibrated.expected_correct(0.5) == 0.5
    assert calibrated.expected_correct(0.75) == 0.75  # bin 7 had no test images


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"accuracy": 0.9}, "no calibration"),
        ({"calibration": None}, "no calibration"),
        ({"bins": "10", "table": [], "expected_calibration_error": 0.1}, "positive integer"),
        ({"bins": 10, "table": {}, "expected_calibration_error": 0.1}, "must be a list"),
        ({"bins": 10, "table": [], "expected_calibration_error": None}, "finite number"),
        ({"bins": 10, "table": [{"low": 0.05, "images": 1, "accuracy": 1.0}], "expected_calibration_error": 0},
         "equal-width"),
        ({"bins": 10, "table": [{"low": 0.5, "images": -1, "accuracy": 1.0}], "expected_calibration_error": 0},
         "count"),
        ({"bins": 10, "table": [{"low": 0.5, "images": 1, "accuracy": 1.5}], "expected_calibration_error": 0},
         "outside"),
        ({"bins": 10, "table": [{"low": 0.5, "images": 1, "accuracy": 1.0}] * 2, "expected_calibration_error": 0},
         "twice"),
    ],
)  # fmt: skip
def test_a_malformed_calibration_is_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Calibration.from_mapping(data)


def test_the_estimate_on_a_hand_case() -> None:
    estimate = AccuracyEstimate(Calibration.from_mapping(evaluation_calibration()))
    for confidence in (0.99, 0.51, 0.75):  # expected correct: 0.666667, 0.5, 0.75 (empty bin)
        estimate.add(confidence)

    numbers = estimate.to_dict()

    assert numbers["records"] == 3
    assert numbers["estimated_accuracy"] == pytest.approx((0.666667 + 0.5 + 0.75) / 3, abs=1e-6)
    assert numbers["mean_confidence"] == 0.75
    assert numbers["calibration_error"] == evaluation_calibration()["expected_calibration_error"]
    assert numbers["method"].startswith("CBPE: ") and "10 equal-width bins" in numbers["method"]
    json.dumps(numbers, allow_nan=False)


def test_an_empty_estimate_is_undefined() -> None:
    numbers = AccuracyEstimate(Calibration.from_mapping(evaluation_calibration())).to_dict()

    assert (numbers["records"], numbers["estimated_accuracy"], numbers["mean_confidence"]) == (0, None, None)
    json.dumps(numbers, allow_nan=False)
