"""images.pytorch_image: the AWS Deep Learning Container URI per region, as the SageMaker SDK resolves it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from include.scones.images import UnknownRegion, UnsupportedVersion, pytorch_image
from include.scones.settings import load

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_standard_region() -> None:
    assert (
        pytorch_image("us-east-1", "training", "2.5.1", "py311")
        == "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-cpu-py311"
    )
    assert (
        pytorch_image("eu-west-1", "inference", "2.5.1", "py311")
        == "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311"
    )


def test_regions_with_their_own_registry_account() -> None:
    assert (
        pytorch_image("af-south-1", "training", "2.5.1", "py311")
        == "626614931356.dkr.ecr.af-south-1.amazonaws.com/pytorch-training:2.5.1-cpu-py311"
    )
    assert (
        pytorch_image("cn-north-1", "inference", "2.5.1", "py311")
        == "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/pytorch-inference:2.5.1-cpu-py311"
    )


@pytest.mark.parametrize(
    ("region", "account", "domain"),
    [  # the rest of the table this module held before it asked the SDK
        ("ap-east-1", "871362719292", "amazonaws.com"),
        ("eu-south-1", "692866216735", "amazonaws.com"),
        ("me-south-1", "217643126080", "amazonaws.com"),
        ("cn-northwest-1", "727897471807", "amazonaws.com.cn"),
        ("us-gov-west-1", "442386744353", "amazonaws.com"),
    ],
)
def test_the_sdk_agrees_with_the_former_table(region: str, account: str, domain: str) -> None:
    for job in ("training", "inference"):
        assert pytorch_image(region, job, "2.5.1", "py311") == (
            f"{account}.dkr.ecr.{region}.{domain}/pytorch-{job}:2.5.1-cpu-py311"
        )


def test_the_default_versions_have_cpu_images_for_both_jobs() -> None:
    settings = load(env={})
    for job in ("training", "inference"):
        image = pytorch_image("us-west-2", job, settings.pytorch_version, settings.python_version)
        assert image.endswith(f"/pytorch-{job}:{settings.pytorch_version}-cpu-{settings.python_version}")


@pytest.mark.parametrize("region", ["mars-north-1", "", "US-EAST-1"])
def test_unknown_region_names_the_override_settings(region: str) -> None:
    with pytest.raises(UnknownRegion) as raised:
        pytorch_image(region, "training", "2.5.1", "py311")
    message = str(raised.value)
    assert f"region {region!r}" in message
    assert "SCONES_TRAINING_IMAGE" in message and "SCONES_INFERENCE_IMAGE" in message


def test_unknown_pytorch_version_names_the_version_not_the_region() -> None:
    # An unknown version is reported as such even in a region the SDK does not know either
    with pytest.raises(UnsupportedVersion) as raised:
        pytorch_image("mars-north-1", "inference", "9.9.9", "py311")
    assert not isinstance(raised.value, UnknownRegion)
    message = str(raised.value)
    assert "PyTorch '9.9.9' inference" in message
    assert "SCONES_PYTORCH_VERSION" in message and "SCONES_TRAINING_IMAGE" in message


def test_unknown_python_version_names_it() -> None:
    with pytest.raises(UnsupportedVersion) as raised:
        pytorch_image("us-east-1", "training", "2.5.1", "py27")
    message = str(raised.value)
    assert "Python 'py27'" in message and "py311" in message and "SCONES_PYTHON_VERSION" in message


def test_unknown_job_is_refused() -> None:
    with pytest.raises(ValueError, match="job must be one of training, inference, got 'serving'"):
        pytorch_image("us-east-1", "serving", "2.5.1", "py311")


def test_importing_the_module_does_not_import_the_sdk() -> None:
    # DAG files import include/scones modules at parse time; the SDK (seconds, pandas, scipy) loads on first use.
    # The second listing proves the check would see the SDK had the import loaded it.
    script = (
        "import json, sys\n"
        "def sdk(): return sorted(m for m in sys.modules if m == 'sagemaker' or m.startswith('sagemaker.'))\n"
        "import include.scones.images as images\n"
        "before = sdk()\n"
        "images.pytorch_image('us-east-1', 'training', '2.5.1', 'py311')\n"
        "print(json.dumps([before, 'sagemaker.core.image_uris' in sdk()]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    before, loaded_on_use = json.loads(result.stdout.strip().splitlines()[-1])
    assert before == []
    assert loaded_on_use
