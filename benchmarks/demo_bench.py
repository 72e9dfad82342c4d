"""The demo part: the wall time of `tools/demo.py` (what `make demo` runs once the venvs are installed and the
local cloud is up), run as a child with its output passed through. Skipped with `BENCH_DEMO=0` or
`--skip demo`: the previous figure is then carried over with the date it was measured."""

from __future__ import annotations

from typing import Any

from benchmarks.context import ROOT, BenchContext, load_average, log, run_child, utc_now

DEMO = ROOT / "tools" / "demo.py"
SUMMARY_MARKER = "== Scones Unlimited demo summary =="


def run(ctx: BenchContext) -> dict[str, Any]:
    measured_at = utc_now()
    log("running tools/demo.py (make demo without the install step); this takes minutes")
    load_before = load_average()
    output, seconds = run_child([ctx.project_python, str(DEMO)], echo=lambda line: log(f"demo: {line}"))
    summary = output.split(SUMMARY_MARKER, 1)[1].strip().splitlines() if SUMMARY_MARKER in output else []
    return {
        "measured_at": measured_at,
        "wall_seconds": round(seconds, 1),
        "summary": summary,
        "load_average_before_after": [load_before, load_average()],
    }
