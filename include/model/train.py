"""SageMaker script-mode training entry point for the bicycle-vs-motorcycle classifier.

Owns the training side: reading the channel directories (`<split>.lst` + `images/`, optional `classes.json`),
the hyperparameters (CLI flags as the SageMaker training toolkit passes them, SM_* environment defaults),
augmentation, the training loop, and writing the model artifact:

    <SM_MODEL_DIR>/model.pth           plain state_dict (torch.save)
    <SM_MODEL_DIR>/model_config.json   class names, architecture, mean/std, temperature
    <SM_MODEL_DIR>/code/               inference.py, model.py, requirements.txt (the serving code)
    <SM_OUTPUT_DATA_DIR>/metrics.json  final metrics, when SM_OUTPUT_DATA_DIR is set

This is the production recipe only. What cross-validation tried and left out (mixup, EMA, zoom, rotation,
cutout, label smoothing, a held-out validation split) lives in benchmarks/experiments.py, which extends the
`Trainer` here; the training job ships this directory alone, so nothing here imports from outside it.

The workflow's confidence threshold is the `confidence_threshold` hyperparameter, sent by the training DAG from its
Param. It changes nothing in training: it only says which share of the test images the workflow's filter would
pass (`test_pass_share`, `test_pass_accuracy`). Without it the job still trains and reports the test accuracy and
NLL, but no pass share, rather than one at a threshold the workflow may not use.

The network and preprocessing come from `model.py` next to this file. Run as
`python train.py --epochs 120 ...` from this directory, as the toolkit does.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # model.py sits next to this file
import model as scones_model  # noqa: E402


# --- arguments ------------------------------------------------------------------------------------------
def _bool(value: str) -> bool:
    """Booleans as the toolkit passes them on the command line ("True"/"False"), or 1/0, yes/no."""
    lowered = str(value).strip().lower()
    if lowered in {"1", "true", "yes", "y", "on"}:
        return True
    if lowered in {"0", "false", "no", "n", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {value!r}")


def _env_int(name: str, fallback: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else fallback


def add_hyperparameter(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """A flag under both spellings the toolkit may use, `--learning_rate` and `--learning-rate`."""
    flags = [f"--{name}"]
    if "_" in name:
        flags.append(f"--{name.replace('_', '-')}")
    parser.add_argument(*flags, dest=name, **kwargs)


def parse_args(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Hyperparameters and paths. The defaults are the tuned recipe (see benchmarks/tune_model.py), so a job
    without hyperparameters is good. `parser` may already hold more flags: benchmarks/experiments.py adds its own."""
    parser = parser or argparse.ArgumentParser(description="Train the bicycle-vs-motorcycle classifier.")
    add = functools.partial(add_hyperparameter, parser)

    # Tuned defaults: chosen on cross-validation folds of TRAIN only, never on TEST.
    add("epochs", type=int, default=120)
    add("learning_rate", type=float, default=0.05, help="peak learning rate of the one-cycle schedule")
    add("batch_size", type=int, default=64)
    add("seed", type=int, default=42)
    add("weight_decay", type=float, default=5e-4)
    add("momentum", type=float, default=0.9)
    add("width", type=int, default=scones_model.DEFAULT_WIDTH, help="channels of the first conv stage")
    add("members", type=int, default=2, help="networks trained with seeds seed, seed+1, ...; their logits are averaged")
    add("crop_padding", type=int, default=4, help="pixels of zero padding for the random crop; 0 disables it")
    add("color_jitter", type=float, default=0.4, help="brightness/contrast/saturation jitter; 0 disables it")
    add("grayscale", type=float, default=0.2, help="probability of turning a training image grey")
    add("cutmix", type=float, default=0.5, help="probability of CutMix for a batch; 0 disables it")
    add(
        "bn_recalibrate",
        type=_bool,
        default=True,
        help="re-estimate batch-norm statistics on the un-augmented training images after training",
    )
    add(
        "temperature",
        type=float,
        default=0.71,
        # Fitted (minimum NLL) on the pooled out-of-fold logits of 5-fold CV of the default recipe on TRAIN:
        # CutMix and colour jitter leave the network under-confident, so the calibrated temperature is below 1.
        help="softmax temperature saved for inference",
    )
    add("tta_flip", type=_bool, default=True, help="average logits with the mirrored image at prediction time")
    add("channels_last", type=_bool, default=True, help="NHWC memory format: faster convolutions on CPU")
    add("num_threads", type=int, default=_env_int("SM_NUM_CPUS", os.cpu_count() or 1))
    add(
        "confidence_threshold",
        type=float,
        default=None,
        help="the workflow's confidence filter, for reporting the share of test images passing it; unset: not reported",
    )

    add("model_dir", default=os.environ.get("SM_MODEL_DIR", "model"))
    add("train", default=os.environ.get("SM_CHANNEL_TRAIN"))
    add("test", default=os.environ.get("SM_CHANNEL_TEST"))
    add("output_data_dir", default=os.environ.get("SM_OUTPUT_DATA_DIR"))
    args = parser.parse_args(argv)
    if not args.train:
        parser.error("no training channel: pass --train or set SM_CHANNEL_TRAIN")
    if args.members < 1:
        parser.error("--members must be at least 1")
    if args.confidence_threshold is not None and not 0.0 <= args.confidence_threshold <= 1.0:
        parser.error("--confidence_threshold must be in [0, 1]")
    return args


# --- data -----------------------------------------------------------------------------------------------
@dataclass
class ImageSet:
    images: np.ndarray  # uint8 (N, 32, 32, 3)
    labels: np.ndarray  # int64 (N,)
    class_names: list[str] = field(default_factory=lambda: list(scones_model.DEFAULT_CLASS_NAMES))

    def subset(self, indices: np.ndarray) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices], self.class_names)


def read_channel(channel: str | Path) -> ImageSet:
    """The images and labels of a channel directory: its single `*.lst` file (tab-separated
    `index, label, filename`) and `images/<filename>`; class names from `classes.json` if present."""
    channel = Path(channel)
    listings = sorted(channel.glob("*.lst"))
    if len(listings) != 1:
        raise ValueError(f"expected exactly one *.lst file in {channel}, found {[p.name for p in listings]}")
    classes_file = channel / scones_model.CLASSES_FILENAME
    class_names = (
        json.loads(classes_file.read_text()) if classes_file.exists() else list(scones_model.DEFAULT_CLASS_NAMES)
    )
    images, labels = [], []
    for line_no, line in enumerate(listings[0].read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{listings[0]}:{line_no}: expected 'index<TAB>label<TAB>filename', got {line!r}")
        label = int(float(fields[1]))  # im2rec-style listings may write labels as floats
        if not 0 <= label < len(class_names):
            raise ValueError(f"{listings[0]}:{line_no}: label {label} outside the {len(class_names)} classes")
        images.append(scones_model.load_image_file(channel / "images" / fields[2]))
        labels.append(label)
    if not images:
        raise ValueError(f"{listings[0]} lists no images")
    return ImageSet(np.stack(images), np.asarray(labels, dtype=np.int64), [str(name) for name in class_names])


# --- augmentation ---------------------------------------------------------------------------------------
def flip_and_crop(batch: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random crop with zero padding (zero = the mean colour after normalisation),
    per image, vectorised over the batch (no torchvision in the container)."""
    n, channels, height, width = batch.shape
    flip = torch.rand(n, generator=generator) < 0.5
    batch = torch.where(flip.view(n, 1, 1, 1), batch.flip(-1), batch)
    if padding > 0:
        padded = F.pad(batch, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (dy.view(n, 1) + torch.arange(height)).view(n, 1, height, 1)
        cols = (dx.view(n, 1) + torch.arange(width)).view(n, 1, 1, width)
        batch = padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(channels).view(1, channels, 1, 1), rows, cols]
    return batch


def color_jitter(
    batch: torch.Tensor,
    strength: float,
    grayscale: float,
    mean: Sequence[float],
    std: Sequence[float],
    generator: torch.Generator,
) -> torch.Tensor:
    """Random brightness, contrast and saturation (each by a factor in [1 - strength, 1 + strength]) and random
    greyscale with probability `grayscale`, applied to normalised images on the 0..1 scale."""
    n = batch.shape[0]
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    rgb = batch * s + m

    def factor() -> torch.Tensor:
        return (1 + strength * (2 * torch.rand(n, 1, 1, 1, generator=generator) - 1)).clamp_min(0)

    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    rgb = rgb * factor()
    grey_level = (rgb * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    rgb = (rgb - grey_level) * factor() + grey_level
    grey = (rgb * luma).sum(1, keepdim=True)
    rgb = (rgb - grey) * factor() + grey
    to_grey = torch.rand(n, 1, 1, 1, generator=generator) < grayscale
    rgb = torch.where(to_grey, grey.expand_as(rgb), rgb).clamp(0, 1)
    return (rgb - m) / s


def cutmix(
    batch: torch.Tensor, partner: torch.Tensor, lam: float, rng: np.random.Generator
) -> tuple[torch.Tensor, float]:
    """CutMix (Yun et al. 2019): paste a box covering about 1 - lam of each image from its partner; returns the
    mixed batch and the exact share of the original image that is left."""
    _, _, height, width = batch.shape
    cut_h, cut_w = int(height * math.sqrt(1 - lam)), int(width * math.sqrt(1 - lam))
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    mixed = batch.clone()
    mixed[:, :, top:bottom, left:right] = batch[partner, :, top:bottom, left:right]
    return mixed, 1 - (bottom - top) * (right - left) / (height * width)


# --- training -------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def sgd_one_cycle(
    network: nn.Module, args: argparse.Namespace, steps_per_epoch: int
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.OneCycleLR]:
    """SGD with Nesterov momentum under a one-cycle schedule: with batch norm it converges in few epochs, and the
    annealed tail gives a stable final model, so no early stopping (which would need a validation split)."""
    # No weight decay on batch-norm parameters and biases: decaying them only fights the normalisation.
    trainable = [p for p in network.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim > 1]
    no_decay = [p for p in trainable if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.learning_rate,
        momentum=args.momentum,
        nesterov=True,
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.learning_rate, total_steps=args.epochs * steps_per_epoch, pct_start=0.25
    )
    return optimizer, scheduler


class Trainer:
    """One network trained with the production recipe: `train_epoch` once per epoch, then `finish`.

    Every training batch is recoloured (colour jitter, greyscale), flipped and cropped, CutMixed a share `cutmix`
    of the time, and takes one optimiser step; benchmarks/experiments.py overrides these steps to try what the
    recipe leaves out. The seed fixes the initialisation, `generator` (order, augmentation, mixing partners) and
    `mix_rng` (whether and how much to mix), so a seed always gives the same network."""

    def __init__(self, args: argparse.Namespace, train: ImageSet, mean: Sequence[float], std: Sequence[float]) -> None:
        seed_everything(args.seed)
        self.args, self.mean, self.std = args, mean, std
        self.generator = torch.Generator().manual_seed(args.seed)
        self.mix_rng = np.random.default_rng(args.seed)
        self.memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
        network = scones_model.SconesNet(len(train.class_names), width=args.width)
        self.network = network.to(memory_format=self.memory_format)
        self.inputs = scones_model.to_tensor(train.images, mean, std)
        self.targets = torch.from_numpy(train.labels)
        # Drop the ragged last batch: a batch of a few images gives batch norm noisy statistics.
        self.steps_per_epoch = max(1, len(self.inputs) // args.batch_size)
        self.optimizer, self.scheduler = sgd_one_cycle(self.network, args, self.steps_per_epoch)
        self.criterion = nn.CrossEntropyLoss()

    def recolour(self, batch: torch.Tensor) -> torch.Tensor:
        """Colour jitter and greyscale; skipped when both are off, so they draw nothing from the generator."""
        if self.args.color_jitter > 0 or self.args.grayscale > 0:
            batch = color_jitter(
                batch, self.args.color_jitter, self.args.grayscale, self.mean, self.std, self.generator
            )
        return batch

    def augment(self, batch: torch.Tensor) -> torch.Tensor:
        return flip_and_crop(self.recolour(batch), self.args.crop_padding, self.generator)

    def mix(self, batch: torch.Tensor) -> tuple[torch.Tensor, float, torch.Tensor | None]:
        """(mixed batch, share of each image that is its own, the partner of each image or None if unmixed)."""
        if self.args.cutmix > 0 and self.mix_rng.random() < self.args.cutmix:
            partner = torch.randperm(len(batch), generator=self.generator)
            mixed, lam = cutmix(batch, partner, float(self.mix_rng.random()), self.mix_rng)
            return mixed, lam, partner
        return batch, 1.0, None

    def train_step(self, index: torch.Tensor) -> tuple[float, int]:
        """One optimiser step on the images at `index`; returns their summed loss and how many were right."""
        labels = self.targets[index]
        batch, lam, partner = self.mix(self.augment(self.inputs[index]))
        logits = self.network(batch.contiguous(memory_format=self.memory_format))
        loss = self.criterion(logits, labels)
        if partner is not None:
            loss = lam * loss + (1 - lam) * self.criterion(logits, labels[partner])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.item() * len(index), int((logits.argmax(1) == labels).sum())

    def train_epoch(self, epoch: int, started: float) -> dict[str, float]:
        """One pass over the training images in a fresh random order; the epoch's record for the history."""
        self.network.train()
        order = torch.randperm(len(self.inputs), generator=self.generator)
        batch_size = self.args.batch_size
        total_loss, correct, seen = 0.0, 0, 0
        for step in range(self.steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            loss, right = self.train_step(index)
            total_loss += loss
            correct += right
            seen += len(index)
        return {
            "epoch": epoch,
            "train_loss": total_loss / seen,
            "train_accuracy": correct / seen,
            "seconds": time.monotonic() - started,
        }

    def finish(self) -> nn.Module:
        """The trained network, in eval mode."""
        if self.args.bn_recalibrate:
            recalibrate_batch_norm(self.network, self.inputs, self.args.batch_size, self.memory_format)
        self.network.eval()
        return self.network


TrainerFactory = Callable[[argparse.Namespace, ImageSet, Sequence[float], Sequence[float]], Trainer]


def recalibrate_batch_norm(
    network: nn.Module, inputs: torch.Tensor, batch_size: int, memory_format: torch.memory_format
) -> None:
    """Replace the batch-norm running statistics by exact averages over `inputs`. The running averages
    (momentum 0.1) only remember the last few augmented batches, and with ~12 batches an epoch they make the
    evaluated model jump by several points of accuracy from one epoch to the next."""
    norms = [module for module in network.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: every batch counts equally
    network.train()
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            network(inputs[start : start + batch_size].contiguous(memory_format=memory_format))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum


def format_record(record: dict[str, float]) -> str:
    """`epoch=3 train_loss=0.4123 ...`: the line SageMaker's metric definitions read."""
    return " ".join(
        f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}" for key, value in record.items()
    )


def fit(
    args: argparse.Namespace,
    train: ImageSet,
    mean: Sequence[float],
    std: Sequence[float],
    log: Callable[[str], Any] = print,
    trainer: TrainerFactory = Trainer,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train one network for `args.epochs` epochs with `trainer`; returns it and the per-epoch history."""
    run = trainer(args, train, mean, std)
    history: list[dict[str, float]] = []
    started = time.monotonic()
    for epoch in range(1, args.epochs + 1):
        history.append(run.train_epoch(epoch, started))
        log(format_record(history[-1]))
    return run.finish(), history


def fit_ensemble(
    args: argparse.Namespace,
    train: ImageSet,
    mean: Sequence[float],
    std: Sequence[float],
    log: Callable[[str], Any] = print,
    trainer: TrainerFactory = Trainer,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """`args.members` networks trained by `fit` with seeds seed, seed+1, ... (a different initialisation and
    augmentation stream each), as one model averaging their logits; one network when members is 1. The history
    holds every member's epochs, with `member` numbered from 1 and `seconds` counted from the first member's start."""
    members: list[nn.Module] = []
    history: list[dict[str, float]] = []
    started = time.monotonic()
    for member in range(args.members):
        offset = time.monotonic() - started
        if args.members > 1:
            log(f"member={member + 1}/{args.members} seed={args.seed + member}")
        member_args = argparse.Namespace(**{**vars(args), "seed": args.seed + member})
        network, member_history = fit(member_args, train, mean, std, log=log, trainer=trainer)
        members.append(network)
        history.extend(
            {"member": member + 1, **record, "seconds": record["seconds"] + offset} for record in member_history
        )
    if len(members) == 1:
        return members[0], history
    ensemble = scones_model.SconesEnsemble(members)
    ensemble.eval()
    return ensemble, history


# --- evaluation -----------------------------------------------------------------------------------------
def evaluate_logits(
    network: nn.Module, inputs: torch.Tensor, tta_flip: bool, channels_last: bool, batch_size: int = 256
) -> torch.Tensor:
    """Logits for already-normalised inputs, in eval mode (the caller's mode is restored)."""
    was_training = network.training
    network.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size]
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            outputs.append(scones_model.predict_logits(network, batch, tta_flip))
    network.train(was_training)
    return torch.cat(outputs)


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, threshold: float | None) -> dict[str, float]:
    """Accuracy and NLL and, given the workflow's confidence `threshold`, what its filter sees: the share of
    images whose top probability reaches it, and the accuracy among those."""
    confidence, predicted = probs.max(1)
    correct = predicted == labels
    metrics = {
        "accuracy": float(correct.float().mean()),
        "nll": float(F.nll_loss(torch.log(probs.clamp_min(1e-12)), labels)),
    }
    if threshold is not None:
        passed = confidence >= threshold
        metrics["pass_share"] = float(passed.float().mean())
        metrics["pass_accuracy"] = float(correct[passed].float().mean()) if bool(passed.any()) else float("nan")
    return metrics


def score(
    network: nn.Module, split: ImageSet, mean: Sequence[float], std: Sequence[float], args: argparse.Namespace
) -> dict[str, float]:
    """`classification_metrics` of a split, with the temperature the artifact is saved with."""
    logits = evaluate_logits(
        network, scones_model.to_tensor(split.images, mean, std), args.tta_flip, args.channels_last
    )
    probs = scones_model.probabilities(logits, args.temperature)
    return classification_metrics(probs, torch.from_numpy(split.labels), args.confidence_threshold)


# --- artifact -------------------------------------------------------------------------------------------
def save_artifact(network: nn.Module, config: dict[str, Any], model_dir: str | Path) -> None:
    """model.pth (contiguous plain tensors, so weights_only loading and any memory format work), the
    config JSON, and the serving code under code/ (SageMaker serves <model.tar.gz>/code/inference.py)."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().contiguous() for key, value in network.state_dict().items()}
    torch.save(state, model_dir / scones_model.MODEL_FILENAME)
    scones_model.save_config(config, model_dir)
    code_dir = model_dir / "code"
    code_dir.mkdir(exist_ok=True)
    here = Path(__file__).resolve().parent
    for name in scones_model.CODE_FILES:
        if (here / name).exists():
            shutil.copy2(here / name, code_dir / name)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    started = time.monotonic()
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.num_threads))
    print(f"hyperparameters: {json.dumps(vars(args), sort_keys=True)}", flush=True)

    train = read_channel(args.train)
    mean, std = scones_model.channel_stats(train.images)
    print(
        f"train={len(train.labels)} classes={train.class_names} threads={torch.get_num_threads()} "
        f"load_seconds={time.monotonic() - started:.1f}",
        flush=True,
    )

    network, history = fit_ensemble(args, train, mean, std, log=lambda line: print(line, flush=True))

    metrics: dict[str, Any] = {"train_seconds": history[-1]["seconds"], "temperature": args.temperature}
    if args.test:
        test = score(network, read_channel(args.test), mean, std, args)
        metrics.update({f"test_{key}": value for key, value in test.items()})

    config = scones_model.make_config(
        train.class_names,
        mean,
        std,
        args.width,
        temperature=args.temperature,
        tta_flip=args.tta_flip,
        members=args.members,
    )
    save_artifact(network, config, args.model_dir)
    metrics["total_seconds"] = time.monotonic() - started
    for key, value in metrics.items():
        print(f"{key}={value:.4f}", flush=True)
    if args.output_data_dir:
        output = Path(args.output_data_dir)
        output.mkdir(parents=True, exist_ok=True)
        (output / "metrics.json").write_text(json.dumps({"metrics": metrics, "history": history}, indent=2))
    return metrics


if __name__ == "__main__":
    main()
