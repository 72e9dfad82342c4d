"""The model part: train `include/model/train.py` with its default hyperparameters on the channels the training
DAG would build, time it, and score the saved model on the held-out test split through its serving hooks.

- Data: the archive named by SCONES_CIFAR_URL/SCONES_CIFAR_MD5 when set (downloaded into the cache, verified),
  otherwise a fixture archive built from `datasets/cifar100-bicycle-motorcycle` (its test split: every 5th image
  per class, never trained on). Either way the DAG's own extract/transform code makes the channels.
- Training runs as a child in `.venv-pytorch` in script mode (SM_CHANNEL_TRAIN/TEST, SM_MODEL_DIR,
  SM_OUTPUT_DATA_DIR), from the code directory, as the toolkit runs it; `train_seconds` is the child's wall time.
- Scoring: `torch_child.py score` runs input_fn -> predict_fn -> output_fn on every test PNG (what the endpoint
  and the batch transform run), then `include/scones/evaluation.py` computes accuracy, the share passing the
  confidence threshold and the accuracy among them, exactly as the DAG's evaluate task does. Nothing is
  hard-coded: every figure comes from the model just trained.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
from pathlib import Path
from typing import Any

from benchmarks.context import MODEL_CODE, TORCH_CHILD, BenchContext, load_average, log, run_child, utc_now
from include.scones import evaluation
from include.scones.cifar import read_archive
from include.scones.manifests import read_lst
from include.scones.params import PARAM_SCHEMAS
from include.scones.transform import write_channels
from tools.cifar_mirror import ARCHIVE_NAME, DATASET
from tools.fixture import build_fixture

CLASSES: list[str] = list(PARAM_SCHEMAS["classes"]["default"])
THRESHOLD = float(PARAM_SCHEMAS["confidence_threshold"]["default"])
METRIC_LINE = re.compile(r"^(?P<name>[a-z_]+)=(?P<value>-?[0-9.]+|nan)$")
EPOCH_LINE = re.compile(r"^epoch=(?P<epoch>\d+) .*\bseconds=(?P<seconds>[0-9.]+)", re.MULTILINE)


def data_source(ctx: BenchContext) -> tuple[Path, str, str]:
    """(archive, md5, description): the user's archive when SCONES_CIFAR_URL is set, else the fixture."""
    url = os.environ.get("SCONES_CIFAR_URL")
    if url:
        from include.scones import settings as scones_settings
        from include.scones.extract import download

        settings = scones_settings.load()
        archive = download(url, settings.cifar_md5, Path(settings.cache_dir))
        return archive, settings.cifar_md5.lower(), f"archive {url} (its test split)"
    archive = ctx.work_dir / "fixture" / ARCHIVE_NAME
    md5 = build_fixture(DATASET, archive)
    return archive, md5, f"fixture archive built from {DATASET.relative_to(DATASET.parents[1])} (held-out test split)"


def channels(ctx: BenchContext) -> tuple[Path, str]:
    """The train/test channel directories (transform is deterministic: an existing output is reused)."""
    archive, md5, description = data_source(ctx)
    out = ctx.work_dir / "channels" / md5
    if not (out / "manifest.json").exists():
        write_channels(read_archive(archive), CLASSES, out, md5)
    return out, description


def parse_metrics(output: str) -> dict[str, float | None]:
    """The `name=value` lines train.py prints at the end (test_accuracy=0.9150 ...); nan (nothing passed the
    threshold) becomes None, which JSON can hold."""
    metrics: dict[str, float | None] = {}
    for line in output.splitlines():
        match = METRIC_LINE.match(line.strip())
        if match:
            metrics[match["name"]] = None if match["value"] == "nan" else float(match["value"])
    return metrics


def member_seconds(output: str) -> list[float]:
    """Wall seconds of each network train.py trained, from its per-epoch lines (`epoch=N ... seconds=S`, S counted
    from the member's start; epoch 1 again means the next ensemble member). Shows how much of a long training
    is the machine's load: members are the same work."""
    members: list[float] = []
    for match in EPOCH_LINE.finditer(output):
        if match["epoch"] == "1":
            members.append(0.0)
        if members:
            members[-1] = round(float(match["seconds"]), 1)
    return members


def train(
    ctx: BenchContext, channel_dir: Path, model_dir: Path
) -> tuple[dict[str, float | None], float, float, list[float]]:
    """Run train.py with its defaults and, as the training DAG sends it, the Param's confidence threshold (so its
    printed test_pass_share is at the same threshold as the hooks' score); returns (the metrics it printed, wall
    seconds, CPU seconds of the child, wall seconds per ensemble member)."""
    shutil.rmtree(model_dir, ignore_errors=True)
    output_dir = model_dir.parent / "output-data"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "SM_CHANNEL_TRAIN": str(channel_dir / "train"),
        "SM_CHANNEL_TEST": str(channel_dir / "test"),
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(output_dir),
    }
    cpu_before = _children_cpu_seconds()
    output, seconds = run_child(
        [str(ctx.pytorch_python), "train.py", "--confidence_threshold", str(THRESHOLD)],
        env=env,
        cwd=MODEL_CODE,
        echo=lambda line: log(f"train.py: {line}"),
    )
    return parse_metrics(output), seconds, _children_cpu_seconds() - cpu_before, member_seconds(output)


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # children this process has waited for
    return usage.ru_utime + usage.ru_stime


def score(ctx: BenchContext, model_dir: Path, channel_dir: Path) -> dict[str, Any]:
    """Evaluation of the saved model on the test split, through its serving hooks."""
    test = channel_dir / "test"
    output, _ = run_child(
        [str(ctx.pytorch_python), str(TORCH_CHILD), "score", "--model-dir", str(model_dir), "--channel", str(test)]
    )
    predictions = json.loads(output)
    classes = json.loads((test / "classes.json").read_text())
    return evaluation.evaluate(predictions, read_lst(test / "test.lst"), classes, THRESHOLD)


def trained_model(ctx: BenchContext) -> Path:
    """The model this run trained, or (for `--only endpoint,workflow`) the last one a bench trained; trains one
    if there is none."""
    if "model_dir" in ctx.facts:
        return Path(ctx.facts["model_dir"])
    model_dir = ctx.work_dir / "model"
    if not (model_dir / "model.pth").exists():
        log("no trained model yet: training one first (not timed)")
        channel_dir, _ = channels(ctx)
        train(ctx, channel_dir, model_dir)
    ctx.facts["model_dir"] = model_dir
    return model_dir


def run(ctx: BenchContext) -> dict[str, Any]:
    measured_at = utc_now()
    channel_dir, description = channels(ctx)
    model_dir = ctx.work_dir / "model"
    load_before = load_average()
    log(f"training include/model/train.py (default hyperparameters) on {description}")
    printed, seconds, cpu_seconds, members = train(ctx, channel_dir, model_dir)
    load_after = load_average()
    ctx.facts["model_dir"] = model_dir
    scored = score(ctx, model_dir, channel_dir)
    result = {
        "measured_at": measured_at,
        "data": description,
        "test_images": scored["images"],
        "train_images": sum(json.loads((channel_dir / "manifest.json").read_text())["counts"]["train"].values()),
        "test_accuracy": scored["accuracy"],
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "member_train_seconds": members,
        "fastest_member_train_seconds": min(members) if members else None,
        "threshold": THRESHOLD,
        "pass_share_at_threshold": scored["pass_share_at_threshold"],
        "accuracy_among_passed": scored["accuracy_among_passed"],
        "expected_calibration_error": scored["expected_calibration_error"],
        "per_class": scored["per_class"],
        # What train.py itself printed, for cross-checking the hooks' figures and its in-script timing.
        "train_script_metrics": printed,
        "load_average_before_after": [load_before, load_after],
    }
    printed_accuracy = printed.get("test_accuracy")
    if printed_accuracy is not None and abs(printed_accuracy - scored["accuracy"]) > 1e-3:
        result["note"] = "train.py's test_accuracy differs from the serving hooks' score; the hooks' is reported"
    return result
