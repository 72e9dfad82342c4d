"""AWS Deep Learning Container image URIs for PyTorch, resolved by the SageMaker SDK's own registry table.

`sagemaker-core` (the core of SageMaker Python SDK v3) ships `image_uris.retrieve` with the registry account of
every region and the versions each image exists for, so no hand-copied table goes stale here. It moves none of
requirements.txt's pins (it only holds protobuf, rich and importlib-metadata a major version below what Airflow
alone resolves). Importing it takes about two seconds and loads pandas and scipy, so it is imported inside
`pytorch_image`, never when a DAG file is parsed. Any other registry or tag: set SCONES_TRAINING_IMAGE /
SCONES_INFERENCE_IMAGE.
"""

from __future__ import annotations

FRAMEWORK = "pytorch"
JOBS = ("training", "inference")
# The SDK picks the image's processor (cpu or gpu) from an instance type; only its family matters, and the DAG
# offers CPU instance types only.
CPU_INSTANCE_TYPE = "ml.m5.large"


class UnknownRegion(ValueError):
    pass


class UnsupportedVersion(ValueError):
    pass


def pytorch_image(region: str, job: str, pytorch_version: str, python_version: str) -> str:
    """`job` is "training" or "inference"; images are the CPU builds (the DAG offers CPU instance types only)."""
    if job not in JOBS:
        raise ValueError(f"job must be one of {', '.join(JOBS)}, got {job!r}")
    from sagemaker.core import image_uris

    try:
        return image_uris.retrieve(
            FRAMEWORK,
            region,
            version=pytorch_version,
            py_version=python_version,
            instance_type=CPU_INSTANCE_TYPE,
            image_scope=job,
        )
    except ValueError as error:
        # The SDK raises a bare ValueError for an unknown version, Python version or region alike; its public
        # listings tell which, so the user is pointed at the setting to change.
        raise _explain(region, job, pytorch_version, python_version) from error


def _explain(region: str, job: str, pytorch_version: str, python_version: str) -> ValueError:
    from sagemaker.core import image_uris

    versions = image_uris.list_versions(FRAMEWORK, job)
    if pytorch_version not in versions:
        return UnsupportedVersion(
            f"no PyTorch {pytorch_version!r} {job} container is known (the newest: {', '.join(versions[-4:])}); "
            f"set SCONES_PYTORCH_VERSION to one of them, or SCONES_TRAINING_IMAGE and SCONES_INFERENCE_IMAGE to "
            f"image URIs"
        )
    py_versions = image_uris.list_py_versions(FRAMEWORK, pytorch_version, job)
    if python_version not in py_versions:
        return UnsupportedVersion(
            f"no PyTorch {pytorch_version} {job} container is known for Python {python_version!r} (known: "
            f"{', '.join(py_versions)}); set SCONES_PYTHON_VERSION to one of them, or SCONES_TRAINING_IMAGE and "
            f"SCONES_INFERENCE_IMAGE to image URIs"
        )
    return UnknownRegion(
        f"no PyTorch container registry known for region {region!r}; set SCONES_TRAINING_IMAGE and "
        f"SCONES_INFERENCE_IMAGE to image URIs for it"
    )
