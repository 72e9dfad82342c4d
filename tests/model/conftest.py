"""Fixtures for the model code's tests. The project's test venv has no torch, so the scripts run in a subprocess
under the PyTorch framework's interpreter (SCONES_PYTORCH_PYTHON, default <repo>/.venv-pytorch/bin/python), the way
the local SageMaker runs them; the tests themselves only use the standard library, numpy and pillow."""

from __future__ import annotations

import functools
import io
import json
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL_CODE = PROJECT_ROOT / "include" / "model"
PYTORCH_PYTHON = Path(os.environ.get("SCONES_PYTORCH_PYTHON") or PROJECT_ROOT / ".venv-pytorch" / "bin" / "python")
SUBPROCESS_TIMEOUT_S = 120


@pytest.fixture(scope="session")
def pytorch_python() -> Path:
    if not PYTORCH_PYTHON.exists():
        pytest.fail(f"no PyTorch interpreter at {PYTORCH_PYTHON}: run `make venvs` or set SCONES_PYTORCH_PYTHON")
    return PYTORCH_PYTHON


def run_pytorch(
    python: Path, args: Sequence[str], env: dict[str, str] | None = None, cwd: Path = MODEL_CODE
) -> subprocess.CompletedProcess[str]:
    """Run the framework interpreter like the training toolkit does: from the code directory, with a clean
    environment plus `env` (so no SM_* variable of the caller leaks in)."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [str(python), *args],
        cwd=cwd,
        env=base | (env or {}),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )


def image_bytes(label: int, seed: int, fmt: str = "PNG", mode: str = "RGBA") -> bytes:
    """A 32x32 test image whose colour depends on its label (so 1 epoch can already learn something)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 96, size=(32, 32, 3), dtype=np.uint8)
    pixels[..., 2 * label % 3] += 150
    image = Image.fromarray(pixels, "RGB").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def make_channel(
    directory: Path, per_class: int, class_names: Sequence[str] | None = None, split: str = "train", seed: int = 0
) -> Path:
    """A channel directory as the transform step writes it: `<split>.lst` rows "index<TAB>label<TAB>file" and
    RGBA PNGs under images/; `classes.json` only when class names are given."""
    images = directory / "images"
    images.mkdir(parents=True)
    num_classes = len(class_names) if class_names else 2
    rows = []
    for label in range(num_classes):
        for i in range(per_class):
            index = seed * 1000 + label * per_class + i
            filename = f"class{label}_s_{index:06d}.png"
            (images / filename).write_bytes(image_bytes(label, index))
            rows.append(f"{index}\t{label}\t{filename}\n")
    (directory / f"{split}.lst").write_text("".join(rows))
    if class_names:
        (directory / "classes.json").write_text(json.dumps(list(class_names)))
    return directory


@dataclass
class TrainingRun:
    model_dir: Path
    output_dir: Path
    result: subprocess.CompletedProcess[str]


def train(
    python: Path,
    root: Path,
    *flags: str,
    class_names: Sequence[str] | None = None,
    test_channel: bool = True,
    env: dict[str, str] | None = None,
) -> TrainingRun:
    """train.py on a tiny generated channel, configured through SM_* variables as on a training instance."""
    root.mkdir(parents=True, exist_ok=True)
    sm_env = {
        "SM_MODEL_DIR": str(root / "model"),
        "SM_CHANNEL_TRAIN": str(make_channel(root / "train", 8, class_names)),
        "SM_OUTPUT_DATA_DIR": str(root / "output"),
        "SM_NUM_CPUS": "1",
    }
    if test_channel:
        sm_env["SM_CHANNEL_TEST"] = str(make_channel(root / "test", 2, class_names, split="test", seed=1))
    result = run_pytorch(python, ["train.py", "--epochs", "1", "--batch_size", "8", *flags], env=sm_env | (env or {}))
    assert result.returncode == 0, f"train.py failed:\n{result.stdout}\n{result.stderr}"
    return TrainingRun(root / "model", root / "output", result)


# The helpers reach the test modules as fixtures: tests/model is no package, so they cannot import this file.
@pytest.fixture(scope="session")
def pytorch_runner(pytorch_python: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    return functools.partial(run_pytorch, pytorch_python)


@pytest.fixture(scope="session")
def train_job(pytorch_python: Path) -> Callable[..., TrainingRun]:
    return functools.partial(train, pytorch_python)


@pytest.fixture(scope="session")
def channel_factory() -> Callable[..., Path]:
    return make_channel


@pytest.fixture(scope="session")
def make_image() -> Callable[..., bytes]:
    return image_bytes


@pytest.fixture(scope="session")
def trained(pytorch_python: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    """One short training job with the default hyperparameters apart from epochs, shared by the tests."""
    return train(pytorch_python, tmp_path_factory.mktemp("trained"))
