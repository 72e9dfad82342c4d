"""The bicycle-vs-motorcycle classifier: the network, image decoding/normalisation and shared constants.

This module is the single definition of the network and of the preprocessing that training and serving share,
so a model trained by `train.py` is served by `inference.py` with exactly the same code (both files are copied
into the model artifact's `code/` directory next to this one). It depends on torch, numpy, pillow and the
standard library only, because it runs inside the SageMaker PyTorch framework container.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

IMAGE_SIZE = 32  # CIFAR images; anything else is resized to this before it reaches the network
DEFAULT_CLASS_NAMES = ("bicycle", "motorcycle")  # label order: 0 = bicycle, 1 = motorcycle
DEFAULT_WIDTH = 16  # channels of the first stage; the stages double it
DEFAULT_MEMBERS = 1  # networks in the ensemble a config describes (train.py sets its own default)
MODEL_FILENAME = "model.pth"  # a plain state_dict, loaded with weights_only=True
CONFIG_FILENAME = "model_config.json"  # class names, architecture and preprocessing/calibration constants
CLASSES_FILENAME = "classes.json"  # optional in a channel: a JSON list of class names in label order
CODE_FILES = ("inference.py", "model.py", "requirements.txt")  # what train.py copies into <model_dir>/code/


class ConvBlock(nn.Sequential):
    """3x3 convolution, batch norm, ReLU: the unit every stage is built from."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),  # BN supplies the bias
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SconesNet(nn.Module):
    """A small VGG-style CNN for 32x32 RGB: three stages of two conv blocks (32, 16 and 8 pixels wide,
    `width`, 2x and 4x channels) with max pooling between them, then global average pooling and a linear
    classifier. Cross-validation on ~640 images found no gain from wider nets, residual blocks, a fourth stage
    or a whitening stem (benchmarks/tune_model.py): with this little data the augmentation and the length of
    training matter, so the net is kept small enough to train long on two CPU cores."""

    def __init__(self, num_classes: int = len(DEFAULT_CLASS_NAMES), width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        w1, w2, w3 = width, 2 * width, 4 * width
        self.features = nn.Sequential(
            ConvBlock(3, w1),
            ConvBlock(w1, w1),
            nn.MaxPool2d(2),
            ConvBlock(w1, w2),
            ConvBlock(w2, w2),
            nn.MaxPool2d(2),
            ConvBlock(w2, w3),
            ConvBlock(w3, w3),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, num_classes) for normalised images of shape (batch, 3, 32, 32)."""
        return self.classifier(self.features(x))


class SconesEnsemble(nn.Module):
    """Independently trained networks whose logits are averaged. With ~800 training images one network's
    accuracy moves by about two points with its random seed alone; the average of a few is both more accurate
    and better calibrated, so more correct answers clear the confidence threshold."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(0)


def build_model(config: dict[str, Any]) -> nn.Module:
    """The network described by a model config (as `make_config` writes it): one SconesNet, or an ensemble of
    `members` of them."""
    num_classes, width = len(config["class_names"]), int(config.get("width", DEFAULT_WIDTH))
    members = int(config.get("members", DEFAULT_MEMBERS))
    if members == 1:
        return SconesNet(num_classes=num_classes, width=width)
    return SconesEnsemble([SconesNet(num_classes=num_classes, width=width) for _ in range(members)])


def make_config(
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    width: int,
    temperature: float = 1.0,
    tta_flip: bool = True,
    members: int = DEFAULT_MEMBERS,
) -> dict[str, Any]:
    """Everything besides the weights that inference needs to rebuild the model and reproduce its outputs."""
    return {
        "class_names": list(class_names),
        "image_size": IMAGE_SIZE,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "width": int(width),
        "members": int(members),
        "temperature": float(temperature),
        "tta_flip": bool(tta_flip),
    }


def save_config(config: dict[str, Any], model_dir: str | Path) -> Path:
    path = Path(model_dir) / CONFIG_FILENAME
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def load_config(model_dir: str | Path) -> dict[str, Any]:
    return dict(json.loads((Path(model_dir) / CONFIG_FILENAME).read_text()))


# --- images ---------------------------------------------------------------------------------------------
def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG (or any format pillow reads) bytes -> uint8 array (32, 32, 3).

    Alpha is dropped (the CIFAR PNGs are RGBA with an opaque alpha channel), grey and palette images become RGB,
    and other sizes are resized so a client's photo still gets an answer. Raises ValueError on bytes that are not
    an image, so the serving hooks can report a clear client error."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decode now: a truncated file must fail here, not later
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"could not decode the request body as an image ({len(data)} bytes): {error}") from error
    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def load_image_file(path: str | Path) -> np.ndarray:
    return decode_image(Path(path).read_bytes())


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std, on the 0..1 scale, of uint8 images shaped (N, H, W, 3)."""
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    return pixels.mean(axis=0).tolist(), pixels.std(axis=0).tolist()


def to_tensor(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images (H, W, 3) or (N, H, W, 3) -> normalised float32 tensor (3, H, W) or (N, 3, H, W)."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    tensor = tensor.movedim(-1, -3)  # channels first
    shape = (3, 1, 1)
    return ((tensor - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)).contiguous()


def preprocess(data: bytes, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Image bytes -> the normalised float tensor (3, 32, 32) the network takes."""
    return to_tensor(decode_image(data), mean, std)


# --- prediction -----------------------------------------------------------------------------------------
def predict_logits(model: nn.Module, batch: torch.Tensor, tta_flip: bool = True) -> torch.Tensor:
    """Logits for a normalised batch (N, 3, 32, 32), averaged with the horizontally flipped batch when
    `tta_flip`: flips are part of the training augmentation, so the average is a cheap gain in accuracy that
    also smooths the confidence. Callers set eval mode and no_grad. The images and their mirrors go through the
    network as one batch: the same logits (eval-mode layers treat each image alone) for half the passes, which for
    one image at the endpoint is 8 % of the forward time."""
    if not tta_flip:
        return model(batch)
    both = model(torch.cat([batch, batch.flip(-1)]))
    count = batch.shape[0]
    return (both[:count] + both[count:]) / 2


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Temperature-scaled softmax; the temperature is the calibration constant train.py saved."""
    return torch.softmax(logits / temperature, dim=-1)
