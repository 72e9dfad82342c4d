"""`bench.py`'s choice of parts (--only, --skip, BENCH_DEMO) and the train.py output it parses."""

from __future__ import annotations

import pytest

from benchmarks.bench import selected_parts
from benchmarks.model_bench import parse_metrics
from benchmarks.results import SECTIONS


def test_everything_runs_by_default_in_order() -> None:
    assert selected_parts(None, None, {}) == list(SECTIONS)


def test_only_keeps_the_canonical_order() -> None:
    assert selected_parts("workflow, model", None, {}) == ["model", "workflow"]


@pytest.mark.parametrize("value", ["0", "false", "no", " NO "])
def test_bench_demo_off_skips_the_demo(value: str) -> None:
    assert "demo" not in selected_parts(None, None, {"BENCH_DEMO": value})
    assert "demo" in selected_parts(None, None, {"BENCH_DEMO": "1"})


def test_skip_removes_parts() -> None:
    assert selected_parts(None, "demo,dags", {}) == ["model", "endpoint", "workflow", "batch", "rollout", "report"]


def test_unknown_parts_are_refused() -> None:
    with pytest.raises(SystemExit, match="unknown part"):
        selected_parts("models", None, {})


def test_parse_metrics_reads_train_py_final_lines_only() -> None:
    output = "\n".join(
        [
            "hyperparameters: {...}",
            "epoch=1 train_loss=0.6000 train_accuracy=0.7000 seconds=2.0000",  # a progress line, not a metric
            "train_seconds=93.1234",
            "test_accuracy=0.9150",
            "test_pass_accuracy=nan",
        ]
    )
    metrics = parse_metrics(output)
    assert metrics["train_seconds"] == 93.1234
    assert metrics["test_accuracy"] == 0.915
    assert metrics["test_pass_accuracy"] is None  # nan: nothing passed; JSON has no NaN
    assert set(metrics) == {"train_seconds", "test_accuracy", "test_pass_accuracy"}


def test_member_seconds_splits_an_ensemble_at_each_epoch_one() -> None:
    from benchmarks.model_bench import member_seconds

    output = "\n".join(
        [
            "member=1/2 seed=42",
            "epoch=1 train_loss=0.7 train_accuracy=0.5 seconds=1.5000",
            "epoch=2 train_loss=0.6 train_accuracy=0.6 seconds=3.2500",
            "member=2/2 seed=43",
            "epoch=1 train_loss=0.7 train_accuracy=0.5 seconds=9.0000",
            "epoch=2 train_loss=0.6 train_accuracy=0.6 seconds=20.0400",
            "train_seconds=23.2900",  # not an epoch line
        ]
    )
    assert member_seconds(output) == [3.2, 20.0]  # rounded to 0.1 s (3.25 rounds to even)
    assert member_seconds("train_seconds=1.0") == []
