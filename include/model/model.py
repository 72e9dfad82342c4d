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
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import nn

IMAGE_SIZE = 32  # CIFAR images; anything else is resized to this before it reaches the network
DEFAULT_CLASS_NAMES = ("bicycle", "motorcycle")  # label order: 0 = bicycle, 1 = motorcycle
DEFAULT_WIDTH = 32  # channels of the first stage; the stages double it
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


class ResidualBlock(nn.Module):
    """Two conv blocks with an identity shortcut (ResNet basic block, ReLU after the sum)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBlock(channels, channels),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.body(x))


class SconesNet(nn.Module):
    """A small VGG-style CNN for 32x32 RGB: three stages of two conv blocks (32, 16 and 8 pixels wide,
    `width`, 2x and 4x channels) with max pooling between them, then global average pooling and a linear
    classifier. Small enough to train from scratch on ~800 images in well under three minutes on two CPU cores;
    batch norm makes it insensitive to the learning rate, and global pooling keeps the parameter count low."""

    def __init__(
        self,
        num_classes: int = len(DEFAULT_CLASS_NAMES),
        width: int = DEFAULT_WIDTH,
        dropout: float = 0.0,
        blocks: int = 0,
        stages: int = 3,
        whiten: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        self.whiten: nn.Conv2d | None = None
        if whiten:
            # Fixed ZCA whitening of 3x3 patches, fitted to the training images by `fit_whitening`.
            self.whiten = nn.Conv2d(3, 27, kernel_size=3, padding=1, bias=True)
            self.whiten.requires_grad_(False)
            layers.append(self.whiten)
            in_channels = 27
        for stage in range(stages):
            out = width * 2**stage
            if stage:
                layers.append(nn.MaxPool2d(2))
            layers.append(ConvBlock(in_channels, out))
            layers.extend([ResidualBlock(out) for _ in range(blocks)] if blocks else [ConvBlock(out, out)])
            in_channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_channels, num_classes)

    @torch.no_grad()
    def fit_whitening(self, images: torch.Tensor, eps: float = 1e-2) -> None:
        """Set the whitening filters from normalised training images (N, 3, 32, 32)."""
        assert self.whiten is not None
        patches = F.unfold(images.float(), kernel_size=3, padding=1).transpose(1, 2).reshape(-1, 27).double()
        mean = patches.mean(0)
        cov = torch.cov((patches - mean).T)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        zca = eigenvectors @ torch.diag((eigenvalues.clamp_min(0) + eps).rsqrt()) @ eigenvectors.T
        self.whiten.weight.copy_(zca.float().view(27, 3, 3, 3))
        self.whiten.bias.copy_(-(zca @ mean).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, num_classes) for normalised images of shape (batch, 3, 32, 32)."""
        return self.classifier(self.dropout(self.features(x)))


def build_model(config: dict[str, Any]) -> SconesNet:
    """The network described by a model config (as `make_config` writes it); dropout only matters in training."""
    return SconesNet(
        num_classes=len(config["class_names"]),
        width=int(config.get("width", DEFAULT_WIDTH)),
        dropout=float(config.get("dropout", 0.0)),
        blocks=int(config.get("blocks", 0)),
        stages=int(config.get("stages", 3)),
        whiten=bool(config.get("whiten", False)),
    )


def make_config(
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    width: int,
    temperature: float = 1.0,
    dropout: float = 0.0,
    tta_flip: bool = True,
) -> dict[str, Any]:
    """Everything besides the weights that inference needs to rebuild the model and reproduce its outputs."""
    return {
        "class_names": list(class_names),
        "image_size": IMAGE_SIZE,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "width": int(width),
        "dropout": float(dropout),
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
    `tta_flip`: flips are part of the training augmentation, so the average is a cheap, reliable gain in
    accuracy and smooths the confidence. Callers set eval mode and no_grad."""
    logits = model(batch)
    if tta_flip:
        logits = (logits + model(batch.flip(-1))) / 2
    return logits


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Temperature-scaled softmax; the temperature is the calibration constant train.py saved."""
    return torch.softmax(logits / temperature, dim=-1)
