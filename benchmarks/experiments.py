"""Training experiments that the production recipe of include/model/train.py leaves out, for benchmarks/tune_model.py.

Cross-validation tried each of them and none beat the production recipe (README: "How the model's defaults were
chosen"), so the training job does not carry them: train.py is the recipe and this module extends its `Trainer`.
Every experiment is a hyperparameter next to train.py's own, and all are off by default, so with none given this
trains exactly the network train.py trains for the same seed.

    scale_jitter, rotation   a random zoom and rotation of each image before its flip and crop
    cutout                   a random square of each image zeroed after its crop
    mixup                    every batch blended with a shuffled copy of itself, in place of CutMix
    label_smoothing          the loss's targets smoothed towards the uniform distribution
    ema                      an exponential moving average of the weights as the final network

Runs under the framework interpreter (.venv-pytorch), like train.py.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "include" / "model"))

import model as scones_model  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import train as scones_train  # noqa: E402
from torch import nn  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """train.py's hyperparameters and paths, plus the experiments' (same two spellings, all off by default)."""
    parser = argparse.ArgumentParser(description="Train the classifier with train.py's recipe plus experiments.")
    add = functools.partial(scones_train.add_hyperparameter, parser)
    add("scale_jitter", type=float, default=0.0, help="random zoom by a factor in [1/(1+s), 1+s]; 0 disables it")
    add("rotation", type=float, default=0.0, help="random rotation within +-this many degrees; 0 disables it")
    add("cutout", type=int, default=0, help="side of a random square zeroed per training image; 0 disables it")
    add("mixup", type=float, default=0.0, help="mixup Beta(alpha, alpha) parameter, in place of CutMix; 0 disables it")
    add("label_smoothing", type=float, default=0.0, help="share of each target spread over all classes; 0 disables it")
    add(
        "ema",
        type=float,
        default=0.0,
        help="decay of an exponential moving average of the weights used as the final model; 0 disables it",
    )
    return scones_train.parse_args(argv, parser)


def zoom_and_rotate(
    batch: torch.Tensor, scale_jitter: float, rotation: float, generator: torch.Generator
) -> torch.Tensor:
    """Each image zoomed by a random factor in [1/(1+scale_jitter), 1+scale_jitter] and rotated by a random angle
    within +-`rotation` degrees about its centre; what moves in from outside is zero (the mean colour)."""
    n, channels, height, width = batch.shape
    log_scale = math.log1p(scale_jitter) * (2 * torch.rand(n, generator=generator) - 1)
    angle = math.radians(rotation) * (2 * torch.rand(n, generator=generator) - 1)
    inverse_scale = torch.exp(-log_scale)  # affine_grid maps output to input coordinates
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(angle) * inverse_scale
    theta[:, 0, 1] = -torch.sin(angle) * inverse_scale
    theta[:, 1, 0] = torch.sin(angle) * inverse_scale
    grid = F.affine_grid(theta, [n, channels, height, width], align_corners=False)
    return F.grid_sample(batch.contiguous(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def cutout(batch: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A `size` x `size` square of each image set to zero. The square's centre may lie anywhere, so it is sometimes
    clipped by the border (DeVries & Taylor 2017)."""
    n, _, height, width = batch.shape
    cy = torch.randint(0, height, (n, 1, 1, 1), generator=generator)
    cx = torch.randint(0, width, (n, 1, 1, 1), generator=generator)
    ys = torch.arange(height).view(1, 1, height, 1)
    xs = torch.arange(width).view(1, 1, 1, width)
    inside = ((ys - cy).abs() * 2 < size) & ((xs - cx).abs() * 2 < size)
    return batch.masked_fill(inside, 0.0)


class ExperimentTrainer(scones_train.Trainer):
    """train.py's `Trainer` with the experiments switched on by the hyperparameters; given `val`, every epoch's
    record also holds the loss and accuracy on it (learning curves, for tune_model.py's holdout command)."""

    def __init__(
        self,
        args: argparse.Namespace,
        train: scones_train.ImageSet,
        mean: Sequence[float],
        std: Sequence[float],
        val: scones_train.ImageSet | None = None,
    ) -> None:
        super().__init__(args, train, mean, std)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
        self.val = (
            (scones_model.to_tensor(val.images, mean, std), torch.from_numpy(val.labels)) if val is not None else None
        )
        # The average starts from the initial weights; a short warm-up of its decay keeps them from dominating.
        self.ema_state = (
            {key: value.detach().clone() for key, value in self.network.state_dict().items()} if args.ema > 0 else None
        )
        self.steps = 0

    def augment(self, batch: torch.Tensor) -> torch.Tensor:
        batch = self.recolour(batch)
        if self.args.scale_jitter > 0 or self.args.rotation > 0:
            batch = zoom_and_rotate(batch, self.args.scale_jitter, self.args.rotation, self.generator)
        batch = scones_train.flip_and_crop(batch, self.args.crop_padding, self.generator)
        if self.args.cutout > 0:
            batch = cutout(batch, self.args.cutout, self.generator)
        return batch

    def mix(self, batch: torch.Tensor) -> tuple[torch.Tensor, float, torch.Tensor | None]:
        if self.args.mixup <= 0:
            return super().mix(batch)
        lam = float(self.mix_rng.beta(self.args.mixup, self.args.mixup))
        partner = torch.randperm(len(batch), generator=self.generator)
        return lam * batch + (1 - lam) * batch[partner], lam, partner

    def train_step(self, index: torch.Tensor) -> tuple[float, int]:
        result = super().train_step(index)
        self.steps += 1
        if self.ema_state is not None:
            decay = min(self.args.ema, (1 + self.steps) / (10 + self.steps))
            with torch.no_grad():
                for key, value in self.network.state_dict().items():
                    if value.is_floating_point():
                        self.ema_state[key].mul_(decay).add_(value.detach(), alpha=1 - decay)
                    else:
                        self.ema_state[key].copy_(value)
        return result

    def train_epoch(self, epoch: int, started: float) -> dict[str, float]:
        record = super().train_epoch(epoch, started)
        if self.val is not None:
            inputs, targets = self.val
            logits = scones_train.evaluate_logits(self.network, inputs, self.args.tta_flip, self.args.channels_last)
            record["val_loss"] = float(F.cross_entropy(logits, targets))
            record["val_accuracy"] = float((logits.argmax(1) == targets).float().mean())
        return record

    def finish(self) -> nn.Module:
        """The averaged weights in place of the last ones; train.py's batch-norm recalibration then gives them
        statistics that match them (the running averages were collected with other weights)."""
        if self.ema_state is not None:
            self.network.load_state_dict(self.ema_state)
        return super().finish()


def fit_ensemble(
    args: argparse.Namespace,
    train: scones_train.ImageSet,
    mean: Sequence[float],
    std: Sequence[float],
    val: scones_train.ImageSet | None = None,
    log: Callable[[str], Any] = print,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """train.py's `fit_ensemble` with `ExperimentTrainer`: `args` from this module's `parse_args`."""
    trainer = functools.partial(ExperimentTrainer, val=val)
    return scones_train.fit_ensemble(args, train, mean, std, log=log, trainer=trainer)
