"""Scale check of the monitoring report: 100,000 synthetic capture records over 24 hours, written as one
.jsonl file per hour in the capture key layout, and 10,000 ground-truth labels in Model Monitor's format (one
file per hour; some for unknown ids, some changed later, some "neither"), then read streaming by a fresh child
process that builds the whole report (summary, three charts, HTML; live accuracy from the merged labels, the
CBPE estimate, input drift of the captured images, the review candidates) and serialises its files.

    .venv/bin/python benchmarks/report_scale.py [--records 100000] [--hours 24] [--labels 10000]

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


LABELS_DIR, INPUTS = "ground_truth", "inputs.json"


def write_labels(root: Path, records: int, labels: int, hours: int, seed: int = 2) -> int:
    """`labels` label lines for random ids of the traffic (seed 1), grouped in one file per hour of labelling:
    5% for ids no capture has, 10% "neither", and every tenth a second, later label for an id labelled before."""
    import random

    from include.scones.monitoring.ground_truth import NEITHER, label_line

    rng = random.Random(seed)
    by_hour: dict[datetime, list[str]] = {}
    given: list[str] = []
    for number in range(labels):
        if given and number % 10 == 9:
            inference_id = rng.choice(given)  # a change of mind
        elif rng.random() < 0.05:
            inference_id = f"unknown-{number}"
        else:
            inference_id = f"synthetic-1-{rng.randrange(records)}"
        given.append(inference_id)
        label = NEITHER if rng.random() < 0.1 else rng.choice(CLASSES)
        when = START + timedelta(seconds=rng.uniform(0, (hours + 1) * 3600))
        by_hour.setdefault(when.replace(minute=0, second=0, microsecond=0), []).append(
            label_line(inference_id, label, when, "bench"))  # fmt: skip
    for hour, lines in by_hour.items():
        folder = root / LABELS_DIR / f"{hour:%Y/%m/%d/%H}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "0000-000000-0badc0de.jsonl").write_text("".join(lines))
    return len(by_hour)


def write_inputs(root: Path) -> None:
    """What training would have recorded: the confidence baseline, the calibration table and the images'
    statistics (of other synthetic images than the traffic's)."""
    import random

    from include.scones import evaluation
    from include.scones.monitoring.image_stats import ImageBaseline, image_statistics
    from tools.synthetic_traffic import Traffic, event_colour, tiny_png

    rng = random.Random(3)
    confidences = [rng.uniform(0.5, 1) for _ in range(400)]
    correct = [rng.random() < c for c in confidences]
    images = [image_statistics(tiny_png(rgb=event_colour(10**6 + i))) for i in range(500)]
    (root / INPUTS).write_text(json.dumps({
        "baseline": Traffic(0, START, classes=tuple(CLASSES)).baseline(),
        "calibration": evaluation.calibration(confidences, correct),
        "image_baseline": ImageBaseline.from_statistics(images).to_dict(),
    }))  # fmt: skip


def measure(root: Path, hours: int) -> dict[str, object]:
    """Runs in the child: everything the monitoring DAG task would do after listing the keys."""
    import resource
    from collections import Counter

    started = time.perf_counter()
    from include.scones.monitoring.capture import Window, keys_in_window
    from include.scones.monitoring.ground_truth import iter_labels
    from include.scones.monitoring.live import LiveInputs
    from include.scones.monitoring.report import build_report, report_files

    window = Window(START, START + timedelta(hours=hours))
    keys = [str(path.relative_to(root)) for path in (root / PREFIX).rglob("*.jsonl")]
    selected = keys_in_window(keys, window.start, window.end)

    def opened():  # one file open at a time, read line by line
        for key in selected:
            with (root / key).open("rb") as handle:
                yield handle

    inputs = json.loads((root / INPUTS).read_text())
    label_files = sorted((root / LABELS_DIR).rglob("*.jsonl"))
    skipped: Counter[str] = Counter()
    sources = ((str(path.relative_to(root)), path.read_bytes().splitlines()) for path in label_files)
    live = LiveInputs(calibration=inputs, image_baseline=inputs["image_baseline"], labels=list(iter_labels(
        sources, skipped)), label_start=window.start, review_capacity=200, label_files=len(label_files),
        label_skipped=skipped)  # fmt: skip
    report = build_report(opened(), inputs["baseline"], CLASSES, 0.93, window, endpoint_name=ENDPOINT, live=live)
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
        "labels": len(list(live.labels)),
        "live_accuracy": {
            k: report.summary["live_accuracy"][k]
            for k in ("labelled", "neither", "unknown_ids", "duplicates", "accuracy")
        },  # fmt: skip
        "estimated_accuracy": report.summary["estimated_accuracy"]["estimated_accuracy"],
        "images_measured": report.summary["input_drift"]["images"],
        "review_queued": report.summary["review_queued"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--labels", type=int, default=10_000)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child's entry point
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.hours)))
        return 0

    from tools.synthetic_traffic import Traffic

    with tempfile.TemporaryDirectory(prefix="report-scale-") as tmp:
        root = Path(tmp)
        generated = time.perf_counter()
        traffic = Traffic(args.records, START, hours=args.hours, seed=1, inference_ids=True)
        paths = traffic.write_files(root, PREFIX, ENDPOINT)
        label_files = write_labels(root, args.records, args.labels, args.hours)
        write_inputs(root)
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
            "label_files": label_files,
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
