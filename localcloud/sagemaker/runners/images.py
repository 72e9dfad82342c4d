"""Map SageMaker framework image URIs to the project-managed Python environments that stand in
for those containers. An image we cannot run is refused with a reason; it never "succeeds"."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# <registry>/<repository>:<tag>; the repository names the framework and the job kind.
_IMAGE = re.compile(r"^(?:[^/]+/)*(?P<repository>[a-z0-9._-]+)(?::(?P<tag>[\w.-]+))?(?:@sha256:[0-9a-f]+)?$")

SUPPORTED_REPOSITORIES = {
    "training": ("pytorch-training",),
    "inference": ("pytorch-inference", "pytorch-training"),  # SDK deploys of a training image also serve
}


class UnsupportedImage(ValueError):
    pass


@dataclass(frozen=True)
class Framework:
    name: str
    python: Path


def resolve(image_uri: str, kind: str, pytorch_python: Path) -> Framework:
    """Return the environment that runs `image_uri` for `kind` ("training" or "inference")."""
    match = _IMAGE.match(image_uri or "")
    repository = match.group("repository") if match else ""
    if repository not in SUPPORTED_REPOSITORIES[kind]:
        supported = ", ".join(f"<registry>/{r}:<tag>" for r in SUPPORTED_REPOSITORIES[kind])
        raise UnsupportedImage(
            f"The local cloud cannot run image '{image_uri}' for {kind}. Supported images: {supported} "
            f"(run in {pytorch_python.parent.parent.name})."
        )
    return Framework(name="pytorch", python=pytorch_python)
