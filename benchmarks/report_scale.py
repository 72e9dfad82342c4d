"""Scale check of the monitoring report: 100,000 synthetic capture records over 24 hours, written as one
.jsonl file per hour in the capture key layout, then read streaming by a fresh child process that builds the
whole report (summary, three charts, HTML) and serialises its files.

    .venv/bin/python benchmarks/report_scale.py [--records 100000] [--hours 24]

Prints one JSON object: records, seconds (the child's wall time from its first report import to the files in
memory), peak_rss_mb (the child's ru_maxrss, so the generator's memory is not counted), the budget
(<= 15 s, <= 500 MB) and the load average around the run, since timings on a shared machine move with it.
Exits 1 when the budget is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAX_SECONDS, MAX_RSS_MB = 15.0, 500.0
START = datetime(2026, 11, 21, tzinfo=UTC)
CLASSES = ["bicycle", "motorcycle"]
PREFIX, ENDPOINT = "data_capture", "scones-vehicle-classifier"


def measure(root: Path, hours: int) -> dict[str, object]:
    """Runs in the child: everything the monitoring DAG task would do after listing the keys."""
    import resource

    started = time.perf_counter()
    from include.scones.monitoring.capture import Window, keys_in_window
    from include.scones.monitoring.report import build_report, report_files
    from tools.synthetic_traffic import Traffic

    window = Window(START, START + timedelta(hours=hours))
    keys = [str(path.relative_to(root)) for path in root.rglob("*.jsonl")]
    selected = keys_in_window(keys, window.start, window.end)

    def opened():  # one file open at a time, read line by line
        for key in selected:
            with (root / key).open("rb") as handle:
                yield handle

    baseline = Traffic(0, START, classes=tuple(CLASSES)).baseline()  # what training would have measured
    report = build_report(opened(), baseline, CLASSES, 0.93, window, endpoint_name=ENDPOINT)
    files = report_files(report)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "records": report.summary["totals"]["records"],
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "files_read": len(selected),
        "report_bytes": {name: len(body) for name, body in files.items()},
        "alerts": report.summary["alerts"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child's entry point
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.hours)))
        return 0

    from tools.synthetic_traffic import Traffic

    with tempfile.TemporaryDirectory(prefix="report-scale-") as tmp:
        root = Path(tmp)
        generated = time.perf_counter()
        paths = Traffic(args.records, START, hours=args.hours, seed=1).write_files(root, PREFIX, ENDPOINT)
        generated = time.perf_counter() - generated
        load_before = os.getloadavg()
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(root), "--hours", str(args.hours)],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(child.stdout)
        result |= {
            "capture_files": len(paths),
            "capture_mb": round(sum(p.stat().st_size for p in paths) / 2**20, 1),
            "generate_seconds": round(generated, 2),
            "budget": {"seconds": MAX_SECONDS, "peak_rss_mb": MAX_RSS_MB},
            "within_budget": result["seconds"] <= MAX_SECONDS and result["peak_rss_mb"] <= MAX_RSS_MB,
            "cpus": os.cpu_count(),
            "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        }
    print(json.dumps(result))
    return 0 if result["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
