"""benchmarks/experiments.py and benchmarks/tune_model.py, which reach the experiments train.py leaves out. Both
need torch, which the test venv lacks, so they run under the framework interpreter (SCONES_PYTORCH_PYTHON, default
<repo>/.venv-pytorch/bin/python) on tiny data: one epoch of a narrow network, a few seconds per run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
PYTORCH_PYTHON = Path(os.environ.get("SCONES_PYTORCH_PYTHON") or ROOT / ".venv-pytorch" / "bin" / "python")
TINY = ["--set", "width=8", "--set", "members=1", "--set", "num_threads=1"]  # tune_model.py candidates

# In-memory data whose colour follows the label, the hyperparameters of a tiny run, and a digest of weights.
PRELUDE = """
import hashlib, json, sys
import numpy as np, torch
from benchmarks import experiments
import train
rng = np.random.default_rng(0)
labels = np.repeat(np.arange(2), 24)
images = rng.integers(0, 96, size=(48, 32, 32, 3), dtype=np.uint8)
images[labels == 1, :, :, 2] += 150
data = train.ImageSet(images, labels)
mean, std = [0.3, 0.3, 0.4], [0.2, 0.2, 0.3]
ARGS = ["--train", "unused", "--epochs", "1", "--batch_size", "16", "--width", "8", "--members", "2"]

def digest(network):
    state = network.state_dict()
    assert all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())
    return hashlib.sha256(b"".join(v.contiguous().numpy().tobytes() for v in state.values())).hexdigest()

def quiet(_line):
    pass
"""


def run_pytorch(*args: str) -> subprocess.CompletedProcess[str]:
    if not PYTORCH_PYTHON.exists():
        pytest.fail(f"no PyTorch interpreter at {PYTORCH_PYTHON}: run `make venvs` or set SCONES_PYTORCH_PYTHON")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    result = subprocess.run(
        [str(PYTORCH_PYTHON), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=200
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def run_script(body: str) -> Any:
    """`body` after PRELUDE, from the repository root with include/model importable; its last line is JSON."""
    script = "import sys; sys.path.insert(0, 'include/model')\n" + PRELUDE + body
    return json.loads(run_pytorch("-c", script).stdout.splitlines()[-1])


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_with_no_experiment_it_trains_exactly_what_train_py_trains() -> None:
    result = run_script("""
plain, plain_history = train.fit_ensemble(train.parse_args(ARGS), data, mean, std, log=quiet)
extended, extended_history = experiments.fit_ensemble(experiments.parse_args(ARGS), data, mean, std, log=quiet)
strip = lambda history: [{k: v for k, v in r.items() if k != "seconds"} for r in history]
print(json.dumps([digest(plain) == digest(extended), strip(plain_history) == strip(extended_history)]))
""")
    assert result == [True, True]


def test_every_experiment_changes_the_training() -> None:
    result = run_script("""
baseline = digest(experiments.fit_ensemble(experiments.parse_args(ARGS), data, mean, std, log=quiet)[0])
changed = {}
for flags in (["--scale-jitter", "0.2"], ["--rotation", "15"], ["--cutout", "8"], ["--mixup", "0.4"],
              ["--label_smoothing", "0.1"], ["--ema", "0.9"]):
    network, _ = experiments.fit_ensemble(experiments.parse_args(ARGS + flags), data, mean, std, log=quiet)
    changed[flags[0]] = digest(network) != baseline
print(json.dumps(changed))
""")
    assert result == dict.fromkeys(
        ["--scale-jitter", "--rotation", "--cutout", "--mixup", "--label_smoothing", "--ema"], True
    )


def test_augmentations_keep_the_image_or_blank_a_square() -> None:
    result = run_script("""
generator = torch.Generator().manual_seed(0)
batch = torch.randn(64, 3, 32, 32)
still = experiments.zoom_and_rotate(batch, 0.0, 0.0, generator)
blanked = experiments.cutout(torch.ones(64, 3, 32, 32), 8, generator)
zeros = (blanked[:, 0] == 0).sum((1, 2))
print(json.dumps([bool(torch.allclose(still, batch, atol=1e-5)), int(zeros.max()), int(zeros.min()),
                  bool((blanked[:, 0] == blanked[:, 2]).all())]))
""")
    identity, most, fewest, same_in_every_channel = result
    assert identity  # no zoom and no rotation: the sampling grid is the image's own
    assert 0 < fewest < most <= 8 * 8  # every image loses a square, some of them clipped by the border
    assert same_in_every_channel


def test_cv_reports_the_pass_share_only_at_a_given_threshold(tmp_path: Path) -> None:
    run_pytorch("benchmarks/tune_model.py", "channels", str(tmp_path))
    out = tmp_path / "tune.jsonl"
    cv = ["benchmarks/tune_model.py", "cv", str(tmp_path / "train"), "--folds", "2", *TINY, "--set", "epochs=1"]
    run_pytorch(*cv, "--set", "mixup=0,0.3", "--set", "confidence_threshold=0", "--out", str(out))
    first, second = json_lines(out.read_text())
    assert [first["overrides"]["mixup"], second["overrides"]["mixup"]] == ["0", "0.3"]
    assert len(first["fold_accuracy"]) == 2 and 0 < first["temperature"]
    assert first["pass_share"] == first["pass_share_t1"] == 1.0  # every image reaches a threshold of 0
    assert first["pass_accuracy"] == first["cv_accuracy"]

    (unthresholded,) = json_lines(run_pytorch(*cv).stdout)
    assert "cv_accuracy" in unthresholded
    assert not any(key.startswith("pass_") for key in unthresholded)


def test_holdout_scores_the_held_out_share_every_epoch(tmp_path: Path) -> None:
    run_pytorch("benchmarks/tune_model.py", "channels", str(tmp_path))
    holdout = ["benchmarks/tune_model.py", "holdout", str(tmp_path / "train"), "--val_fraction", "0.25", *TINY]
    output = run_pytorch(*holdout, "--set", "epochs=2", "--set", "confidence-threshold=0.5").stdout
    (result,) = json_lines(output)
    assert (result["train_images"], result["val_images"]) == (600, 200)  # 25% of each class's 400 images
    assert [record["epoch"] for record in result["history"]] == [1, 2]
    assert all({"val_loss", "val_accuracy"} <= set(record) for record in result["history"])
    assert 0 < result["temperature"]  # fitted on the held-out logits
    assert result["validation_pass_share"] == 1.0  # two classes: the top probability is at least 0.5
    assert 0.0 <= result["validation_accuracy"] <= 1.0
