"""The report part: `report_scale.py` (100,000 synthetic capture records over 24 hours and 10,000 ground-truth
labels, read streaming by a fresh child that builds the whole monitoring report, live accuracy and input drift
included) run as a child, its JSON line taken as is."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from benchmarks.context import BENCH_DIR, BenchContext, log, utc_now

RECORDS, HOURS, LABELS = 100_000, 24, 10_000


def run(ctx: BenchContext) -> dict[str, Any]:
    measured_at = utc_now()
    log(f"monitoring report over {RECORDS:,} synthetic capture records ({HOURS} hours) and {LABELS:,} labels")
    # Exit 1 means "over budget", which the table reports; anything else, or no JSON, is a failure.
    child = subprocess.run(
        [
            ctx.project_python,
            str(BENCH_DIR / "report_scale.py"),
            "--records",
            str(RECORDS),
            "--hours",
            str(HOURS),
            "--labels",
            str(LABELS),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode not in (0, 1) or not child.stdout.strip():
        raise RuntimeError(f"report_scale.py exited with {child.returncode}: {child.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return {"measured_at": measured_at, **result}
