"""images.pytorch_image: the AWS Deep Learning Container URI per region."""

from __future__ import annotations

import pytest

from include.scones.images import UnknownRegion, pytorch_image


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


@pytest.mark.parametrize("region", ["mars-north-1", "", "US-EAST-1"])
def test_unknown_region_names_the_override_settings(region: str) -> None:
    with pytest.raises(UnknownRegion) as raised:
        pytorch_image(region, "training", "2.5.1", "py311")
    message = str(raised.value)
    assert f"region {region!r}" in message
    assert "SCONES_TRAINING_IMAGE" in message and "SCONES_INFERENCE_IMAGE" in message
