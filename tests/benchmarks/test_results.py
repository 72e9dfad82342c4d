"""The bench's pure parts: percentile math, the latest.json key contract, carrying sections over, and the
Markdown table. No timing here: nothing in these tests depends on how fast the machine is."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import results
from benchmarks.results import IncompleteResults


def complete() -> dict[str, Any]:
    """A result with every promised key, as a full bench run writes it."""
    return {
        "measured_at": "2026-11-21T12:00:00+00:00",
        "machine": {"cpus": 2},
        "model": {
            "measured_at": "2026-11-21T12:00:00+00:00",
            "test_accuracy": 0.96,
            "train_seconds": 200.0,
            "pass_share_at_threshold": 0.85,
            "accuracy_among_passed": 0.98,
            "expected_calibration_error": 0.031,
            "threshold": 0.93,
        },
        "endpoint": {
            "model_forward_ms_p50": 1.5,
            "concurrency_1": {"invoke_ms_p50": 3.0, "invoke_ms_p99": 4.0},
            "concurrency_8": {"invoke_ms_p50": 12.0, "invoke_ms_p99": 25.0},
            "throughput_rps": 600.0,
            "overhead_ms_p50": 1.5,
            "model_server_workers": 2,
            "concurrency_8_one_worker": {"invoke_ms_p99": 40.0},
            "p99_c8_workers_to_one_worker": 0.62,
        },
        "workflow": {
            "execution_ms_p50": 360.0,
            "execution_ms_p99": 420.0,
            "executions": 100,
            "succeeded_share": 0.85,
            "noop_execution_ms_p50": 320.0,
            "ratio_to_noop_p50": 1.125,
        },
        "batch": {
            "map_100_images_per_second": 40.0,
            "map_1000_images_per_second": 60.0,
            "transform_100_images_per_second": 20.0,
            "transform_1000_images_per_second": 90.0,
            "map_to_transform_1000": 0.67,
        },
        "rollout": {"update_to_full_traffic_seconds": 9.1, "alarm_to_rollback_seconds": 1.2, "canary_bake_seconds": 5},
        "report": {"records": 100_000, "labels": 10_000, "seconds": 2.2, "peak_rss_mb": 75.0},
        "dags": {
            "files": {"a.py": {"parse_seconds": 0.1}, "b.py": {"parse_seconds": 0.4}},
            "airflow_import_seconds": 2.0,
            "max_parse_seconds": 0.4,
        },
        "demo": {"wall_seconds": 800.0, "measured_at": "2026-11-20T10:00:00+00:00"},
    }


# --- percentiles ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),  # even count: the mean of the middle two
        ([3.0, 1.0, 2.0], 50, 2.0),  # order of the input does not matter
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([float(v) for v in range(1, 101)], 99, 99.01),  # between the top two of 100, as numpy interpolates
        ([10.0, 20.0], 25, 12.5),
    ],
)
def test_percentile_interpolates_between_closest_ranks(values: list[float], q: float, expected: float) -> None:
    assert results.percentile(values, q) == pytest.approx(expected)


def test_percentile_refuses_no_values_and_bad_ranks() -> None:
    with pytest.raises(ValueError, match="no values"):
        results.percentile([], 50)
    with pytest.raises(ValueError, match="0..100"):
        results.percentile([1.0], 101)


def test_latency_summary_names_and_rounds() -> None:
    summary = results.latency_summary([1.0, 2.0, 3.0, 4.0, 100.0], "invoke_ms_")
    assert summary == {
        "invoke_ms_p50": 3.0,
        "invoke_ms_p90": 61.6,
        "invoke_ms_p99": 96.16,
        "invoke_ms_mean": 22.0,
        "invoke_ms_max": 100.0,
    }


# --- the key contract ---------------------------------------------------------------------------------------------
def test_a_complete_result_misses_nothing() -> None:
    assert results.missing_keys(complete()) == []
    results.check_complete(complete())


@pytest.mark.parametrize(
    "path",
    [
        "model.test_accuracy",
        "endpoint.concurrency_8.invoke_ms_p99",
        "endpoint.overhead_ms_p50",
        "workflow.noop_execution_ms_p50",
        "report.peak_rss_mb",
        "demo.measured_at",
        "machine",
    ],
)
def test_each_missing_key_is_named(path: str) -> None:
    broken = copy.deepcopy(complete())
    *parents, last = path.split(".")
    holder = broken
    for step in parents:
        holder = holder[step]
    del holder[last]
    assert results.missing_keys(broken) == [path]
    with pytest.raises(IncompleteResults, match=path.replace(".", r"\.")):
        results.check_complete(broken)


def test_a_null_value_counts_as_missing() -> None:
    broken = complete()
    broken["model"]["accuracy_among_passed"] = None  # evaluation's value when nothing passed the threshold
    assert results.missing_keys(broken) == ["model.accuracy_among_passed"]


def test_a_missing_section_lists_all_its_keys() -> None:
    broken = complete()
    del broken["report"]
    assert results.missing_keys(broken) == ["report.records", "report.labels", "report.seconds", "report.peak_rss_mb"]


def test_every_dag_file_needs_its_parse_time() -> None:
    broken = complete()
    del broken["dags"]["files"]["b.py"]["parse_seconds"]
    assert results.missing_keys(broken) == ["dags.files.b.py.parse_seconds"]
    broken["dags"]["files"] = {}
    assert results.missing_keys(broken) == ["dags.files.<at least one DAG file>"]


def test_the_writer_refuses_an_incomplete_result(tmp_path: Path) -> None:
    broken = complete()
    del broken["workflow"]["execution_ms_p99"]
    json_path, markdown_path = tmp_path / "latest.json", tmp_path / "latest.md"
    with pytest.raises(IncompleteResults, match=r"workflow\.execution_ms_p99"):
        results.write_results(broken, json_path, markdown_path)
    assert not json_path.exists() and not markdown_path.exists()


def test_the_writer_flags_gaps_when_allowed(tmp_path: Path) -> None:
    broken = complete()
    del broken["demo"]
    json_path, markdown_path = tmp_path / "latest.json", tmp_path / "latest.md"
    results.write_results(broken, json_path, markdown_path, allow_missing=True)
    written = json.loads(json_path.read_text())
    assert written["missing"] == ["demo.wall_seconds", "demo.measured_at"]
    assert "| demo | `make demo` wall time (venvs installed) | not measured |" in markdown_path.read_text()


def test_the_writer_writes_the_table_it_returns(tmp_path: Path) -> None:
    json_path, markdown_path = tmp_path / "latest.json", tmp_path / "latest.md"
    table = results.write_results(complete(), json_path, markdown_path)
    assert markdown_path.read_text() == table + "\n"
    assert json.loads(json_path.read_text())["model"]["test_accuracy"] == 0.96
    assert "missing" not in json.loads(json_path.read_text())


# --- carrying sections over -----------------------------------------------------------------------------------------
def test_carry_over_copies_only_what_this_run_lacks() -> None:
    previous = complete()
    current = {"measured_at": "later", "machine": {}, "model": {"test_accuracy": 0.5}}
    copied = results.carry_over(current, previous, results.SECTIONS)
    assert copied == ["endpoint", "workflow", "batch", "rollout", "report", "dags", "demo"]
    assert current["model"] == {"test_accuracy": 0.5}  # measured now: untouched
    assert current["demo"] == previous["demo"] | {"carried_over": True}
    assert "carried_over" not in previous["demo"]  # the previous result is not modified


def test_carry_over_without_previous_results_copies_nothing() -> None:
    current: dict[str, Any] = {}
    assert results.carry_over(current, None, results.SECTIONS) == []
    assert current == {}


# --- the table --------------------------------------------------------------------------------------------------------
def rows_by_metric(result: dict[str, Any]) -> dict[str, tuple[str, str, str, str, str]]:
    return {row[1]: row for row in results.table_rows(result)}


def test_table_judges_each_target() -> None:
    rows = rows_by_metric(complete())
    assert rows["test accuracy"][2:] == ("0.9600", ">= 0.9500", "yes")
    assert rows["training wall time"][2:] == ("200.0 s", "<= 120.0 s", "**no**")
    assert rows["share of test images passing 0.93"][2:] == ("0.8500", ">= 0.8500", "yes")
    assert rows["accuracy among them"][2:] == ("0.9800", ">= 0.9900", "**no**")
    assert rows["expected calibration error (10 bins; must not grow)"][2:] == ("0.0310", "", "")
    assert rows["InvokeEndpoint p99, concurrency 8"][4] == "**no**"
    assert rows["overhead p50 (invoke − forward)"][4] == "yes"
    assert rows["execution p50 / no-op p50"][2:] == ("1.12×", "<= 1.20×", "yes")
    assert rows["parse `dags/a.py` (best of 5)"][4] == "yes"
    assert rows["parse `dags/b.py` (best of 5)"][2:] == ("0.400 s", "<= 0.300 s", "**no**")
    assert rows["p99 at concurrency 8: the workers / one worker"][2:] == ("0.62×", "", "")  # reported, no target


def test_target_on_the_limit_is_met() -> None:
    result = complete()
    result["endpoint"]["overhead_ms_p50"] = 2.0
    result["model"]["test_accuracy"] = 0.95
    rows = rows_by_metric(result)
    assert rows["overhead p50 (invoke − forward)"][4] == "yes"
    assert rows["test accuracy"][4] == "yes"


def test_carried_over_sections_say_when_they_were_measured() -> None:
    result = complete()
    result["demo"]["carried_over"] = True
    rows = rows_by_metric(result)
    assert rows["`make demo` wall time (venvs installed)"][0] == "demo (from 2026-11-20 10:00)"
    assert rows["test accuracy"][0] == "model"


def test_rendered_table_is_markdown_with_one_line_per_row() -> None:
    table = results.render_table(complete())
    lines = table.splitlines()
    assert lines[0] == "| Section | Metric | Value | Target | Met? |"
    assert lines[1] == "|---|---|---|---|:---:|"
    assert len(lines) == 2 + len(results.table_rows(complete()))
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines[2:])


def test_targets_missed_lists_every_miss() -> None:
    missed = results.targets_missed(complete())
    assert missed == [
        "model: training wall time 200.0 s (<= 120.0 s)",
        "model: accuracy among them 0.9800 (>= 0.9900)",
        "endpoint: InvokeEndpoint p99, concurrency 8 25.00 ms (<= 20.00 ms)",
        "dags: parse `dags/b.py` (best of 5) 0.400 s (<= 0.300 s)",
    ]
