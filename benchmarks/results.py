"""The bench's results: percentile math, the targets of issue #7, the keys `benchmarks/latest.json` must hold,
carrying sections over from the previous run, and the Markdown table. Pure: no clock, no processes, no AWS."""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECTIONS = ("model", "endpoint", "workflow", "batch", "rollout", "report", "dags", "demo")

# Dotted paths every complete result has (issue #7's "keys, at least", plus what the table needs). `dags.files`
# is checked separately: one entry per DAG file, whatever the files are called.
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "model": ("test_accuracy", "train_seconds", "pass_share_at_threshold", "accuracy_among_passed", "threshold"),
    "endpoint": (
        "model_forward_ms_p50",
        "concurrency_1.invoke_ms_p50",
        "concurrency_1.invoke_ms_p99",
        "concurrency_8.invoke_ms_p50",
        "concurrency_8.invoke_ms_p99",
        "throughput_rps",
        "overhead_ms_p50",
        "model_server_workers",
        "concurrency_8_one_worker.invoke_ms_p99",
        "p99_c8_workers_to_one_worker",
    ),
    "workflow": (
        "execution_ms_p50",
        "execution_ms_p99",
        "executions",
        "succeeded_share",
        "noop_execution_ms_p50",
        "ratio_to_noop_p50",
    ),
    "batch": (
        "map_100_images_per_second",
        "map_1000_images_per_second",
        "transform_100_images_per_second",
        "transform_1000_images_per_second",
        "map_to_transform_1000",
    ),
    "rollout": ("update_to_full_traffic_seconds", "alarm_to_rollback_seconds", "canary_bake_seconds"),
    "report": ("records", "labels", "seconds", "peak_rss_mb"),
    "dags": ("files", "airflow_import_seconds", "max_parse_seconds"),
    "demo": ("wall_seconds", "measured_at"),
}
TOP_LEVEL_KEYS = ("measured_at", "machine")
DAG_FILE_KEYS = ("parse_seconds",)


class IncompleteResults(ValueError):
    """A result lacks keys that latest.json promises; the message lists them."""


# --- statistics -----------------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default), so
    p50 of an even count is the mean of the middle two and p99 of 100 samples lies between the top two."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(milliseconds: Sequence[float], prefix: str = "") -> dict[str, float]:
    """p50, p90, p99, mean and max of latencies in ms, rounded to 0.01 ms, keys prefixed (e.g. `invoke_ms_`)."""
    return {
        f"{prefix}p50": round(percentile(milliseconds, 50), 2),
        f"{prefix}p90": round(percentile(milliseconds, 90), 2),
        f"{prefix}p99": round(percentile(milliseconds, 99), 2),
        f"{prefix}mean": round(sum(milliseconds) / len(milliseconds), 2),
        f"{prefix}max": round(max(milliseconds), 2),
    }


# --- keys -----------------------------------------------------------------------------------------------------
def lookup(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path; KeyError naming the path when a step is missing."""
    value: Any = data
    for step in path.split("."):
        if not isinstance(value, Mapping) or step not in value:
            raise KeyError(path)
        value = value[step]
    return value


def _has(data: Mapping[str, Any], path: str) -> bool:
    try:
        return lookup(data, path) is not None
    except KeyError:
        return False


def missing_keys(results: Mapping[str, Any]) -> list[str]:
    """Every promised key the results lack (or hold as null), as dotted paths in a stable order."""
    missing = [key for key in TOP_LEVEL_KEYS if not _has(results, key)]
    for section, keys in REQUIRED_KEYS.items():
        missing += [f"{section}.{key}" for key in keys if not _has(results, f"{section}.{key}")]
    files = results.get("dags", {}).get("files") if isinstance(results.get("dags"), Mapping) else None
    if isinstance(files, Mapping):
        if not files:
            missing.append("dags.files.<at least one DAG file>")
        for name, entry in files.items():
            missing += [f"dags.files.{name}.{key}" for key in DAG_FILE_KEYS if not _has(entry, key)]
    return missing


def check_complete(results: Mapping[str, Any]) -> None:
    missing = missing_keys(results)
    if missing:
        raise IncompleteResults(f"{len(missing)} required key(s) missing from the bench results: {', '.join(missing)}")


def carry_over(current: dict[str, Any], previous: Mapping[str, Any] | None, sections: Iterable[str]) -> list[str]:
    """Copy the named sections from the previous results into `current` where this run did not measure them,
    marked `carried_over: true` (each section keeps its own `measured_at`). Returns the sections copied."""
    copied = []
    for section in sections:
        if section in current or not previous or not isinstance(previous.get(section), Mapping):
            continue
        current[section] = dict(previous[section]) | {"carried_over": True}
        copied.append(section)
    return copied


def write_results(results: dict[str, Any], json_path: Path, markdown_path: Path, allow_missing: bool = False) -> str:
    """Write latest.json and latest.md (the same table the bench prints); returns the table.

    A result missing required keys is refused, unless `allow_missing` (a partial `--only` run with no earlier
    results to carry over), in which case the missing keys are listed under `missing` in the JSON."""
    missing = missing_keys(results)
    if missing and not allow_missing:
        check_complete(results)
    results = dict(results)
    if missing:
        results["missing"] = missing
    else:
        results.pop("missing", None)
    table = render_table(results)
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    markdown_path.write_text(table + "\n")
    return table


# --- targets and the table ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    section: str
    path: str  # within the section
    label: str
    unit: str = ""
    digits: int = 2
    limit: float | None = None  # the target, compared with `compare`
    compare: str = "<="

    def target_text(self) -> str:
        return "" if self.limit is None else f"{self.compare} {_number(self.limit, self.digits)}{self.unit}"

    def met(self, value: Any) -> bool | None:
        if self.limit is None or not isinstance(value, int | float) or isinstance(value, bool):
            return None
        test: Callable[[float, float], bool] = operator.le if self.compare == "<=" else operator.ge
        return bool(test(float(value), self.limit))


ROWS: tuple[Row, ...] = (
    # Issue #19's goals (round one's were accuracy >= 0.93 and training <= 180 s).
    Row("model", "test_accuracy", "test accuracy", digits=4, limit=0.95, compare=">="),
    Row("model", "train_seconds", "training wall time", " s", 1, limit=120.0),
    Row("model", "train_cpu_seconds", "training CPU time (both cores together)", " s", 1),
    Row("model", "fastest_member_train_seconds", "fastest ensemble member (each is the same work)", " s", 1),
    Row("model", "pass_share_at_threshold", "share of test images passing 0.93", digits=4, limit=0.85, compare=">="),
    Row("model", "accuracy_among_passed", "accuracy among them", digits=4, limit=0.99, compare=">="),
    Row("model", "expected_calibration_error", "expected calibration error (10 bins; must not grow)", digits=4),
    Row("endpoint", "model_forward_ms_p50", "bare model forward, p50", " ms"),
    Row("endpoint", "concurrency_1.invoke_ms_p50", "InvokeEndpoint p50, concurrency 1", " ms"),
    Row("endpoint", "concurrency_1.invoke_ms_p99", "InvokeEndpoint p99, concurrency 1", " ms"),
    Row("endpoint", "overhead_ms_p50", "overhead p50 (invoke − forward)", " ms", limit=2.0),
    Row("endpoint", "server_overhead_ms_p50", "overhead p50 without botocore (plain HTTP − forward)", " ms"),
    Row("endpoint", "concurrency_8.invoke_ms_p50", "InvokeEndpoint p50, concurrency 8", " ms"),
    Row("endpoint", "concurrency_8.invoke_ms_p99", "InvokeEndpoint p99, concurrency 8", " ms", limit=20.0),
    Row("endpoint", "throughput_rps", "throughput at concurrency 8", " req/s", 1),
    Row("endpoint", "model_server_workers", "model-server workers per instance (`model_server_workers`)", "", 0),
    Row("endpoint", "concurrency_8_one_worker.invoke_ms_p99", "InvokeEndpoint p99, concurrency 8, one worker", " ms"),
    Row("endpoint", "concurrency_8_one_worker.throughput_rps", "throughput at concurrency 8, one worker", " req/s", 1),
    Row("endpoint", "p99_c8_workers_to_one_worker", "p99 at concurrency 8: the workers / one worker", "×", 2),
    Row("endpoint", "signature_check_ms_p50", "SigV4 check per InvokeEndpoint, p50 (in-process)", " ms", 4, limit=0.5),
    Row("workflow", "execution_ms_p50", "execution p50", " ms", 0),
    Row("workflow", "execution_ms_p99", "execution p99", " ms", 0),
    Row("workflow", "noop_execution_ms_p50", "no-op machine p50 (engine floor)", " ms", 0),
    Row("workflow", "ratio_to_noop_p50", "execution p50 / no-op p50", "×", 2, limit=1.2),
    Row("workflow", "succeeded_share", "share SUCCEEDED (the rest: low confidence)", digits=3),
    Row("workflow", "express_execution_ms_p50", "Express (StartSyncExecution) execution p50", " ms", 0, limit=100.0),
    Row("workflow", "express_client_ms_p50", "Express: the caller's StartSyncExecution round trip, p50", " ms", 0),
    Row("batch", "map_100_images_per_second", "Distributed Map (batch machine), 100 images", " images/s", 1),
    Row("batch", "map_1000_images_per_second", "Distributed Map, 1,000 images", " images/s", 1),
    Row("batch", "map_growth_100_to_1000", "Distributed Map: images/s at 1,000 / at 100", "×", 2),
    Row("batch", "transform_100_images_per_second", "batch transform of the same 100 images", " images/s", 1),
    Row("batch", "transform_1000_images_per_second", "batch transform of the same 1,000 images", " images/s", 1),
    Row("batch", "transform_growth_100_to_1000", "batch transform: images/s at 1,000 / at 100", "×", 2),
    Row("batch", "map_to_transform_1000", "Distributed Map / batch transform, images/s at 1,000", "×", 2),
    Row("batch", "map_per_image_ms", "Distributed Map: time per image (fixed part aside)", " ms", 2),
    Row("batch", "map_fixed_seconds", "Distributed Map: fixed part (start, collect)", " s", 2),
    Row("batch", "transform_per_image_ms", "batch transform: time per image (fixed part aside)", " ms", 2),
    Row("batch", "transform_fixed_seconds", "batch transform: fixed part (model-server start)", " s", 2),
    Row(
        "rollout",
        "update_to_full_traffic_seconds",
        "UpdateEndpoint → all traffic on the new fleet (canary 20 %, 5 s bake)",
        " s",
        2,
    ),
    Row(
        "rollout",
        "update_to_full_traffic_beyond_bakes_seconds",
        "of which beyond the bake (fleet start, shift)",
        " s",
        2,
    ),
    Row("rollout", "alarm_to_rollback_seconds", "alarm in ALARM → rolled back, p50", " s", 2),
    Row("rollout", "alarm_to_rollback_max_seconds", "alarm in ALARM → rolled back, max", " s", 2),
    Row("report", "seconds", "report from 100,000 records and 10,000 labels", " s", limit=15.0),
    Row("report", "peak_rss_mb", "peak RSS", " MB", 0, limit=500.0),
    Row("dags", "airflow_import_seconds", "baseline: `import airflow.sdk` (not counted)", " s", 3),
    Row("demo", "wall_seconds", "`make demo` wall time (venvs installed)", " s", 0),
)
DAG_PARSE_LIMIT_S = 0.3


def _number(value: Any, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None else str(value)
    return f"{value:,.{digits}f}"


def table_rows(results: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(section, metric, value, target, met) for every row, DAG files included; a section that was carried over
    from an earlier run says when it was measured."""
    rows: list[tuple[str, str, str, str, str]] = []

    def add(row: Row, value: Any, label: str | None = None) -> None:
        met = row.met(value)
        verdict = "" if met is None else ("yes" if met else "**no**")
        shown = "not measured" if value is None else f"{_number(value, row.digits)}{row.unit}"
        rows.append((_section_label(results, row.section), label or row.label, shown, row.target_text(), verdict))

    for row in ROWS:
        if row.section == "dags" and row.path == "airflow_import_seconds":
            files = _get(results, "dags.files") or {}
            parse_row = Row("dags", "", "", " s", 3, limit=DAG_PARSE_LIMIT_S)
            cold_row = Row("dags", "", "", " s", 3)
            for name in sorted(files):
                add(parse_row, _get(files[name], "parse_seconds"), f"parse `dags/{name}` (best of 5)")
                if _get(files[name], "cold_parse_seconds") is not None:
                    label = f"parse `dags/{name}` cold (no `airflow.*` pre-import)"
                    add(cold_row, _get(files[name], "cold_parse_seconds"), label)
        add(row, _get(results, f"{row.section}.{row.path}"))
    return rows


def _get(data: Any, path: str) -> Any:
    try:
        return lookup(data, path)
    except KeyError:
        return None


def _section_label(results: Mapping[str, Any], section: str) -> str:
    data = results.get(section)
    if isinstance(data, Mapping) and data.get("carried_over"):
        return f"{section} (from {str(data.get('measured_at', '?'))[:16].replace('T', ' ')})"
    return section


def render_table(results: Mapping[str, Any]) -> str:
    header = ("Section", "Metric", "Value", "Target", "Met?")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---", ":---:"]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return "\n".join(lines)


def targets_missed(results: Mapping[str, Any]) -> list[str]:
    """`section: metric value (target)` for every row whose target is not met."""
    return [f"{section}: {metric} {value} ({target})" for section, metric, value, target, met in table_rows(results)
            if met == "**no**"]  # fmt: skip
