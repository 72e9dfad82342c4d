"""evaluation: scores from batch-transform outputs, computed by hand for a small test split."""

from __future__ import annotations

import pytest

from include.scones.evaluation import (
    CONFIDENCE_BIN_EDGES,
    EvaluationError,
    calibration,
    confidence_histogram,
    evaluate,
    parse_prediction,
    summary,
)
from include.scones.manifests import LstRow

CLASSES = ["bicycle", "motorcycle"]
# filename: (true label, probabilities)
CASES = {
    "a.png": (0, [0.99, 0.01]),  # right, passes 0.93
    "b.png": (0, [0.60, 0.40]),  # right, below
    "c.png": (0, [0.30, 0.70]),  # wrong, below
    "g.png": (0, [0.80, 0.20]),  # right, below
    "d.png": (1, [0.05, 0.95]),  # right, passes
    "e.png": (1, [0.94, 0.06]),  # wrong, passes
    "f.png": (1, [0.07, 0.93]),  # right, exactly at the threshold: passes
    "h.png": (1, [0.51, 0.49]),  # wrong, below
}
ROWS = [LstRow(i, label, name) for i, (name, (label, _)) in enumerate(CASES.items())]
PREDICTIONS = {name: probabilities for name, (_, probabilities) in CASES.items()}


def test_metrics_by_hand() -> None:
    metrics = evaluate(PREDICTIONS, ROWS, CLASSES, 0.93)
    # confusion rows are the true class: bicycle 3 right 1 wrong, motorcycle 2 wrong 2 right
    assert metrics["confusion_matrix"] == {"labels": CLASSES, "rows_are": "true class", "matrix": [[3, 1], [2, 2]]}
    assert metrics["images"] == 8
    assert metrics["accuracy"] == 0.625
    assert metrics["per_class"] == {
        "bicycle": {"precision": 0.6, "recall": 0.75, "support": 4},
        "motorcycle": {"precision": 0.666667, "recall": 0.5, "support": 4},
    }
    assert metrics["threshold"] == 0.93
    assert metrics["pass_share_at_threshold"] == 0.5  # a, d, e, f
    assert metrics["accuracy_among_passed"] == 0.75  # e is wrong
    baseline = metrics["baseline"]
    assert baseline["below_threshold_share"] == 0.5
    assert baseline["class_mix"] == {"bicycle": 0.625, "motorcycle": 0.375}
    assert baseline["confidence_bin_edges"] == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0]
    # confidences .99 .60 .70 .80 .95 .94 .93 .51
    assert baseline["confidence_shares"] == [0.125, 0, 0.125, 0, 0.125, 0, 0.125, 0, 0.25, 0.25]
    assert sum(baseline["confidence_shares"]) == pytest.approx(1.0)


def test_expected_calibration_error_by_hand() -> None:
    metrics = evaluate(PREDICTIONS, ROWS, CLASSES, 0.93)
    # ten bins of the top probability: h .51 (wrong) | b .60 (right) | c .70 (wrong) | g .80 (right) |
    # a .99, d .95, e .94, f .93: mean .9525, 3 of 4 right
    table = metrics["calibration"]["table"]
    assert [(row["low"], row["images"], row["accuracy"]) for row in table] == [
        (0.5, 1, 0.0), (0.6, 1, 1.0), (0.7, 1, 0.0), (0.8, 1, 1.0), (0.9, 4, 0.75),
    ]  # fmt: skip
    assert table[-1]["mean_confidence"] == 0.9525
    expected = (0.51 + 0.40 + 0.70 + 0.20) / 8 + 4 / 8 * (0.9525 - 0.75)
    assert metrics["expected_calibration_error"] == pytest.approx(expected, abs=1e-6) == pytest.approx(0.3275)
    assert metrics["calibration"]["expected_calibration_error"] == metrics["expected_calibration_error"]


def test_a_perfectly_calibrated_model_has_no_calibration_error_and_a_certain_wrong_one_the_most() -> None:
    # in the 0.7-0.8 bin, 0.75 confidence and 3 of 4 right: calibrated
    assert calibration([0.75] * 4, [True, True, True, False])["expected_calibration_error"] == 0
    assert calibration([1.0, 1.0], [False, False])["expected_calibration_error"] == 1.0  # 1.0 is in the last bin
    with pytest.raises(EvaluationError, match="one correctness per confidence"):
        calibration([0.9], [])


def test_nobody_passes_gives_no_accuracy_among_passed() -> None:
    metrics = evaluate(PREDICTIONS, ROWS, CLASSES, 0.999)
    assert metrics["pass_share_at_threshold"] == 0.0
    assert metrics["accuracy_among_passed"] is None


def test_a_class_never_predicted_has_no_precision() -> None:
    rows = [LstRow(0, 0, "a.png"), LstRow(1, 1, "b.png")]
    metrics = evaluate({"a.png": [0.9, 0.1], "b.png": [0.8, 0.2]}, rows, CLASSES, 0.5)
    assert metrics["per_class"]["motorcycle"] == {"precision": None, "recall": 0.0, "support": 1}
    assert metrics["per_class"]["bicycle"] == {"precision": 0.5, "recall": 1.0, "support": 1}


def test_histogram_edges_and_extremes() -> None:
    shares = confidence_histogram([0.5, 0.549, 0.55, 1.0, 0.999, 0.2])
    assert shares == [3 / 6, 1 / 6, 0, 0, 0, 0, 0, 0, 0, 2 / 6]  # below 0.5 counts in the first bin, 1.0 in the last
    assert len(shares) == len(CONFIDENCE_BIN_EDGES) - 1
    assert confidence_histogram([]) == [0.0] * 10


def test_missing_prediction_is_an_error() -> None:
    predictions = dict(PREDICTIONS)
    del predictions["c.png"]
    with pytest.raises(EvaluationError, match=r"1 test images have no prediction, e.g. \['c.png'\]"):
        evaluate(predictions, ROWS, CLASSES, 0.93)


def test_empty_test_split_is_an_error() -> None:
    with pytest.raises(EvaluationError, match="the test split is empty"):
        evaluate({}, [], CLASSES, 0.93)


def test_parse_prediction_accepts_a_json_probability_list() -> None:
    assert parse_prediction(b"[0.25, 0.75]", 2, "x.out") == [0.25, 0.75]
    assert parse_prediction("[1, 0]", 2, "x.out") == [1.0, 0.0]
    assert all(type(p) is float for p in parse_prediction("[1, 0]", 2, "x.out"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "p/a.png.out: not JSON"),
        (b"\xff\xfe", "p/a.png.out: not JSON"),
        (b"[0.5, 0.3, 0.2]", "p/a.png.out: expected a list of 2 probabilities, got [0.5, 0.3, 0.2]"),
        (b"[NaN, 1.0]", "expected a list of 2 probabilities, got [nan, 1.0]"),
        (b"[Infinity, 0]", "expected a list of 2 probabilities"),
        (b"[true, false]", "expected a list of 2 probabilities, got [True, False]"),
        (b'{"a": 1, "b": 2}', "expected a list of 2 probabilities"),
        (b'["0.5", "0.5"]', "expected a list of 2 probabilities"),
        (b"[null, 1]", "expected a list of 2 probabilities"),
    ],
)
def test_parse_prediction_rejects(body: bytes, message: str) -> None:
    with pytest.raises(EvaluationError) as raised:
        parse_prediction(body, 2, "p/a.png.out")
    assert message in str(raised.value)


def test_summary_names_the_numbers() -> None:
    text = summary(evaluate(PREDICTIONS, ROWS, CLASSES, 0.93))
    lines = text.splitlines()
    assert lines[0] == "test images: 8   accuracy: 0.6250"
    assert lines[1] == "at threshold 0.93: 50.0% pass, accuracy among them 0.75"
    assert lines[2] == "expected calibration error (ECE, 10 bins): 0.3275"
    assert any(line.startswith("bicycle") and "0.6" in line and "0.75" in line for line in lines)
    assert lines[-2:] == ["  bicycle              3       1", "  motorcycle           2       2"]
