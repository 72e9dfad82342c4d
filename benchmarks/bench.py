"""`make bench`: measure the model, the endpoint, the workflow, batch classification, the monitoring report, DAG
parsing and the demo against the local cloud (started if needed), print a Markdown table and write
`benchmarks/latest.json` and `benchmarks/latest.md`.

    .venv/bin/python benchmarks/bench.py                        # everything (8 minutes on a quiet machine)
    .venv/bin/python benchmarks/bench.py --only endpoint,rollout
    BENCH_DEMO=0 make bench                                     # or --skip demo: reuse the last demo figure

A section this run does not measure (or fails to) is carried over from the previous latest.json, marked
`carried_over` with its own `measured_at`. Exits 1 when a part failed; the table says which targets are missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import (  # noqa: E402
    batch_bench,
    dag_parse_bench,
    demo_bench,
    endpoint_bench,
    model_bench,
    report_bench,
    rollout_bench,
    workflow_bench,
)
from benchmarks.context import BENCH_DIR, BenchContext, load_average, log, utc_now  # noqa: E402
from benchmarks.results import SECTIONS, carry_over, targets_missed, write_results  # noqa: E402

PARTS: dict[str, Callable[[BenchContext], dict[str, Any]]] = {
    "model": model_bench.run,
    "endpoint": endpoint_bench.run,
    "workflow": workflow_bench.run,
    "batch": batch_bench.run,
    "rollout": rollout_bench.run,
    "report": report_bench.run,
    "dags": dag_parse_bench.run,
    "demo": demo_bench.run,
}
NEEDS_ENDPOINT = {"endpoint", "workflow", "batch", "rollout"}


def selected_parts(only: str | None, skip: str | None, environ: dict[str, str]) -> list[str]:
    """The parts to run, in the canonical order; unknown names are an error."""

    def names(text: str | None) -> set[str]:
        chosen = {name.strip() for name in (text or "").split(",") if name.strip()}
        unknown = chosen - set(SECTIONS)
        if unknown:
            raise SystemExit(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
        return chosen

    wanted = names(only) or set(SECTIONS)
    wanted -= names(skip)
    if environ.get("BENCH_DEMO", "1").strip().lower() in {"0", "false", "no"}:
        wanted.discard("demo")
    return [name for name in SECTIONS if name in wanted]


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": load_average(),
    }


def tear_down_endpoint(ctx: BenchContext) -> None:
    try:
        endpoint_bench.teardown(ctx)
    except Exception:  # leftovers are deleted by the next run's deploy; the figures matter more
        log(f"could not delete the bench endpoint:\n{traceback.format_exc()}")


def read_previous(path: Path) -> dict[str, Any] | None:
    try:
        previous: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return previous


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated parts to run ({', '.join(SECTIONS)})")
    parser.add_argument("--skip", help="comma-separated parts to leave out (e.g. demo)")
    parser.add_argument("--output-dir", type=Path, default=BENCH_DIR, help="where latest.json and latest.md go")
    args = parser.parse_args(argv)
    parts = selected_parts(args.only, args.skip, dict(os.environ))
    json_path, markdown_path = args.output_dir / "latest.json", args.output_dir / "latest.md"
    previous = read_previous(json_path)

    ctx = BenchContext.create()
    ctx.start_local_cloud()
    results: dict[str, Any] = {"measured_at": utc_now(), "machine": machine(), "parts_run": parts}
    failures: dict[str, str] = {}
    try:
        for name in parts:
            log(f"== {name} ==")
            try:
                results[name] = PARTS[name](ctx)
            except Exception as error:  # one broken part must not lose the others' figures
                traceback.print_exc()
                failures[name] = f"{type(error).__name__}: {error}"
            if name in NEEDS_ENDPOINT and not NEEDS_ENDPOINT & set(parts[parts.index(name) + 1 :]):
                tear_down_endpoint(ctx)  # nothing after this needs the bench endpoint's model server
    finally:
        if ctx.facts.get("endpoints"):
            tear_down_endpoint(ctx)
    results["machine"]["load_average_at_end"] = load_average()
    carry_over(results, previous, SECTIONS)
    for name, reason in failures.items():
        if name in results:
            results[name]["latest_run_error"] = reason
    # A full, successful run must have every key (a missing one is a bug here); a partial run with no earlier
    # results to carry over is written with its gaps listed under `missing`.
    partial = bool(failures) or set(parts) != set(SECTIONS)
    table = write_results(results, json_path, markdown_path, allow_missing=partial)
    print(table)
    print(f"\nwrote {json_path} and {markdown_path}")
    for line in targets_missed(results):
        print(f"target missed: {line}")
    for name, reason in failures.items():
        print(f"part failed: {name}: {reason}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
