"""AWS Deep Learning Container image URIs for PyTorch, per region.

The `sagemaker` SDK can resolve these (`sagemaker.image_uris.retrieve`), but it pins boto3, numpy and protobuf
ranges that conflict with Airflow's, so this small table stands in for it. Source: the SDK's
`image_uri_config/pytorch.json`. Any other registry or tag: set SCONES_TRAINING_IMAGE / SCONES_INFERENCE_IMAGE.
"""

from __future__ import annotations

DEFAULT_REGISTRY_ACCOUNT = "763104351884"
REGISTRY_ACCOUNTS = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "eu-south-1": "692866216735",
    "me-south-1": "217643126080",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "us-gov-west-1": "442386744353",
}
STANDARD_REGIONS = (
    "us-east-1 us-east-2 us-west-1 us-west-2 ca-central-1 sa-east-1 eu-west-1 eu-west-2 eu-west-3 eu-central-1 "
    "eu-north-1 ap-south-1 ap-northeast-1 ap-northeast-2 ap-northeast-3 ap-southeast-1 ap-southeast-2"
).split()


class UnknownRegion(ValueError):
    pass


def pytorch_image(region: str, job: str, pytorch_version: str, python_version: str) -> str:
    """`job` is "training" or "inference"; images are the CPU builds (the DAG offers CPU instance types only)."""
    if region in REGISTRY_ACCOUNTS:
        account = REGISTRY_ACCOUNTS[region]
    elif region in STANDARD_REGIONS:
        account = DEFAULT_REGISTRY_ACCOUNT
    else:
        raise UnknownRegion(
            f"no PyTorch container registry known for region {region!r}; set SCONES_TRAINING_IMAGE and "
            f"SCONES_INFERENCE_IMAGE to image URIs for it"
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/pytorch-{job}:{pytorch_version}-cpu-{python_version}"
