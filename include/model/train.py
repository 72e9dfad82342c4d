"""SageMaker script-mode training entry point for the bicycle-vs-motorcycle classifier.

Owns the training side: reading the channel directories (`<split>.lst` + `images/`, optional `classes.json`),
the hyperparameters (CLI flags as the SageMaker training toolkit passes them, SM_* environment defaults),
augmentation, the training loop, calibration, and writing the model artifact:

    <SM_MODEL_DIR>/model.pth           plain state_dict (torch.save)
    <SM_MODEL_DIR>/model_config.json   class names, architecture, mean/std, temperature
    <SM_MODEL_DIR>/code/               inference.py, model.py, requirements.txt (the serving code)
    <SM_OUTPUT_DATA_DIR>/metrics.json  final metrics, when SM_OUTPUT_DATA_DIR is set

The network and preprocessing come from `model.py` next to this file. Run as
`python train.py --epochs 120 ...` from this directory, as the toolkit does.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # model.py sits next to this file
import model as scones_model  # noqa: E402

CONFIDENCE_THRESHOLD = 0.93  # the workflow's confidence filter: predictions below it go to a human


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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Hyperparameters and paths. Each hyperparameter accepts the underscore and the hyphen spelling; the
    defaults are the tuned recipe (see benchmarks/tune_model.py), so a job without hyperparameters is good."""
    parser = argparse.ArgumentParser(description="Train the bicycle-vs-motorcycle classifier.")

    def add(name: str, **kwargs: Any) -> None:
        flags = [f"--{name}"]
        if "_" in name:
            flags.append(f"--{name.replace('_', '-')}")
        parser.add_argument(*flags, dest=name, **kwargs)

    # Tuned defaults: chosen on cross-validation folds of TRAIN only, never on TEST.
    add("epochs", type=int, default=120)
    add("learning_rate", type=float, default=0.05, help="peak learning rate of the one-cycle schedule")
    add("batch_size", type=int, default=64)
    add("seed", type=int, default=42)
    add("weight_decay", type=float, default=5e-4)
    add("momentum", type=float, default=0.9)
    add("label_smoothing", type=float, default=0.0)
    add("width", type=int, default=scones_model.DEFAULT_WIDTH, help="channels of the first conv stage")
    add("members", type=int, default=2, help="networks trained with seeds seed, seed+1, ...; their logits are averaged")
    add("crop_padding", type=int, default=4, help="pixels of zero padding for the random crop; 0 disables it")
    add("scale_jitter", type=float, default=0.0, help="random zoom by a factor in [1/(1+s), 1+s]; 0 disables it")
    add("rotation", type=float, default=0.0, help="random rotation within +-this many degrees; 0 disables it")
    add("color_jitter", type=float, default=0.4, help="brightness/contrast/saturation jitter; 0 disables it")
    add("grayscale", type=float, default=0.2, help="probability of turning a training image grey")
    add("cutmix", type=float, default=0.5, help="probability of CutMix for a batch; 0 disables it")
    add("cutout", type=int, default=0, help="side of a random square zeroed per training image; 0 disables it")
    add("mixup", type=float, default=0.0, help="mixup Beta(alpha, alpha) parameter; 0 disables it")
    add(
        "ema",
        type=float,
        default=0.0,
        help="decay of an exponential moving average of the weights used as the final model; 0 disables it",
    )
    add(
        "bn_recalibrate",
        type=_bool,
        default=True,
        help="re-estimate batch-norm statistics on the un-augmented training images after training",
    )
    add(
        "val_fraction",
        type=float,
        default=0.0,
        help="stratified share of TRAIN held out for validation and for fitting the temperature; 0 trains on all",
    )
    add(
        "temperature",
        type=float,
        default=0.71,
        # Fitted (minimum NLL) on the pooled out-of-fold logits of 5-fold CV of the default recipe on TRAIN:
        # CutMix and colour jitter leave the network under-confident, so the calibrated temperature is below 1.
        help="softmax temperature saved for inference when no validation split is held out to fit one",
    )
    add("tta_flip", type=_bool, default=True, help="average logits with the mirrored image at prediction time")
    add("channels_last", type=_bool, default=True, help="NHWC memory format: faster convolutions on CPU")
    add("num_threads", type=int, default=_env_int("SM_NUM_CPUS", os.cpu_count() or 1))

    add("model_dir", default=os.environ.get("SM_MODEL_DIR", "model"))
    add("train", default=os.environ.get("SM_CHANNEL_TRAIN"))
    add("test", default=os.environ.get("SM_CHANNEL_TEST"))
    add("output_data_dir", default=os.environ.get("SM_OUTPUT_DATA_DIR"))
    args = parser.parse_args(argv)
    if not args.train:
        parser.error("no training channel: pass --train or set SM_CHANNEL_TRAIN")
    if args.members < 1:
        parser.error("--members must be at least 1")
    if not 0.0 <= args.val_fraction < 1.0:
        parser.error("--val_fraction must be in [0, 1)")
    return args


# --- data -----------------------------------------------------------------------------------------------
@dataclass
class Split:
    images: np.ndarray  # uint8 (N, 32, 32, 3)
    labels: np.ndarray  # int64 (N,)
    class_names: list[str] = field(default_factory=lambda: list(scones_model.DEFAULT_CLASS_NAMES))

    def subset(self, indices: np.ndarray) -> Split:
        return Split(self.images[indices], self.labels[indices], self.class_names)


def read_channel(channel: str | Path) -> Split:
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
    return Split(np.stack(images), np.asarray(labels, dtype=np.int64), [str(name) for name in class_names])


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held_out), holding out `fraction` of every class, chosen reproducibly from `seed`."""
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = int(round(fraction * len(members)))
        held_out.extend(rng.permutation(members)[:count].tolist())
    mask = np.zeros(len(labels), dtype=bool)
    mask[held_out] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


# --- augmentation ---------------------------------------------------------------------------------------
def augment(
    batch: torch.Tensor,
    padding: int,
    generator: torch.Generator,
    cutout: int = 0,
    scale_jitter: float = 0.0,
    rotation: float = 0.0,
) -> torch.Tensor:
    """Random horizontal flip, random crop with zero padding (zero = the mean colour after normalisation) and
    optionally a random zoom/rotation and cutout, per image, vectorised over the batch (no torchvision in the
    container)."""
    n, channels, height, width = batch.shape
    if scale_jitter > 0 or rotation > 0:
        log_scale = math.log1p(scale_jitter) * (2 * torch.rand(n, generator=generator) - 1)
        angle = math.radians(rotation) * (2 * torch.rand(n, generator=generator) - 1)
        inverse_scale = torch.exp(-log_scale)  # affine_grid maps output to input coordinates
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(angle) * inverse_scale
        theta[:, 0, 1] = -torch.sin(angle) * inverse_scale
        theta[:, 1, 0] = torch.sin(angle) * inverse_scale
        grid = F.affine_grid(theta, [n, channels, height, width], align_corners=False)
        batch = F.grid_sample(batch.contiguous(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    flip = torch.rand(n, generator=generator) < 0.5
    batch = torch.where(flip.view(n, 1, 1, 1), batch.flip(-1), batch)
    if padding > 0:
        padded = F.pad(batch, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (dy.view(n, 1) + torch.arange(height)).view(n, 1, height, 1)
        cols = (dx.view(n, 1) + torch.arange(width)).view(n, 1, 1, width)
        batch = padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(channels).view(1, channels, 1, 1), rows, cols]
    if cutout > 0:
        # The square's centre may lie anywhere, so it is sometimes clipped by the border (DeVries & Taylor 2017).
        cy = torch.randint(0, height, (n, 1, 1, 1), generator=generator)
        cx = torch.randint(0, width, (n, 1, 1, 1), generator=generator)
        ys = torch.arange(height).view(1, 1, height, 1)
        xs = torch.arange(width).view(1, 1, 1, width)
        inside = ((ys - cy).abs() * 2 < cutout) & ((xs - cx).abs() * 2 < cutout)
        batch = batch.masked_fill(inside, 0.0)
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


def fit(
    args: argparse.Namespace,
    train: Split,
    mean: Sequence[float],
    std: Sequence[float],
    val: Split | None = None,
    log: Any = print,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train a fresh network on `train` with the hyperparameters in `args`; returns it and per-epoch history.

    SGD with Nesterov momentum under a one-cycle schedule: with batch norm it converges in few epochs, and the
    annealed tail gives a stable final model, so no early stopping (which would need a validation split)."""
    seed_everything(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    network = scones_model.SconesNet(len(train.class_names), width=args.width)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    network = network.to(memory_format=memory_format)
    inputs = scones_model.to_tensor(train.images, mean, std)
    targets = torch.from_numpy(train.labels)
    val_inputs = scones_model.to_tensor(val.images, mean, std) if val is not None and len(val.labels) else None

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
    # Drop the ragged last batch: a batch of a few images gives batch norm noisy statistics.
    steps_per_epoch = max(1, len(inputs) // args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.learning_rate, total_steps=args.epochs * steps_per_epoch, pct_start=0.25
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    mix_rng = np.random.default_rng(args.seed)
    ema_state = {key: value.detach().clone() for key, value in network.state_dict().items()} if args.ema > 0 else None
    step_count = 0
    history: list[dict[str, float]] = []
    started = time.monotonic()
    for epoch in range(1, args.epochs + 1):
        network.train()
        order = torch.randperm(len(inputs), generator=generator)
        total_loss, correct, seen = 0.0, 0, 0
        for step in range(steps_per_epoch):
            index = order[step * args.batch_size : (step + 1) * args.batch_size]
            batch = inputs[index]
            if args.color_jitter > 0 or args.grayscale > 0:
                batch = color_jitter(batch, args.color_jitter, args.grayscale, mean, std, generator)
            batch = augment(batch, args.crop_padding, generator, args.cutout, args.scale_jitter, args.rotation)
            labels = targets[index]
            lam, partner = 1.0, None
            if args.mixup > 0:
                lam = float(mix_rng.beta(args.mixup, args.mixup))
                partner = torch.randperm(len(index), generator=generator)
                batch = lam * batch + (1 - lam) * batch[partner]
            elif args.cutmix > 0 and mix_rng.random() < args.cutmix:
                partner = torch.randperm(len(index), generator=generator)
                batch, lam = cutmix(batch, partner, float(mix_rng.random()), mix_rng)
            logits = network(batch.contiguous(memory_format=memory_format))
            if partner is not None:
                loss = lam * criterion(logits, labels) + (1 - lam) * criterion(logits, labels[partner])
            else:
                loss = criterion(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step_count += 1
            if ema_state is not None:
                # Short warm-up so the average is not dominated by the random initial weights.
                ema_decay = min(args.ema, (1 + step_count) / (10 + step_count))
                with torch.no_grad():
                    for key, value in network.state_dict().items():
                        if value.is_floating_point():
                            ema_state[key].mul_(ema_decay).add_(value.detach(), alpha=1 - ema_decay)
                        else:
                            ema_state[key].copy_(value)
            total_loss += loss.item() * len(index)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(index)
        record = {
            "epoch": epoch,
            "train_loss": total_loss / seen,
            "train_accuracy": correct / seen,
            "seconds": time.monotonic() - started,
        }
        if val_inputs is not None and val is not None:
            val_logits = evaluate_logits(network, val_inputs, args.tta_flip, args.channels_last)
            val_targets = torch.from_numpy(val.labels)
            record["val_loss"] = float(F.cross_entropy(val_logits, val_targets))
            record["val_accuracy"] = float((val_logits.argmax(1) == val_targets).float().mean())
        history.append(record)
        log(
            " ".join(
                f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}" for key, value in record.items()
            )
        )
    if ema_state is not None:
        network.load_state_dict(ema_state)
    if args.bn_recalibrate:
        recalibrate_batch_norm(network, inputs, args.batch_size, memory_format)
    network.eval()
    return network, history


def fit_ensemble(
    args: argparse.Namespace,
    train: Split,
    mean: Sequence[float],
    std: Sequence[float],
    val: Split | None = None,
    log: Any = print,
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
        network, member_history = fit(member_args, train, mean, std, val, log=log)
        members.append(network)
        history.extend(
            {"member": member + 1, **record, "seconds": record["seconds"] + offset} for record in member_history
        )
    if len(members) == 1:
        return members[0], history
    ensemble = scones_model.SconesEnsemble(members)
    ensemble.eval()
    return ensemble, history


def recalibrate_batch_norm(
    network: nn.Module, inputs: torch.Tensor, batch_size: int, memory_format: torch.memory_format
) -> None:
    """Replace the batch-norm running statistics by exact averages over `inputs`. The running averages
    (momentum 0.1) only remember the last few augmented batches, and with ~12 batches an epoch they make the
    evaluated model jump by several points of accuracy from one epoch to the next; averaged weights (EMA)
    also need statistics that match them."""
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


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The softmax temperature minimising held-out negative log-likelihood (temperature scaling, Guo et al.
    2017). A dense grid in log space then a finer one around the best: deterministic and never diverges,
    unlike an LBFGS fit on a few hundred examples."""

    def nll(temperature: float) -> float:
        return float(F.cross_entropy(logits / temperature, labels))

    grid = np.exp(np.linspace(math.log(0.05), math.log(20.0), 241))
    best = float(min(grid, key=nll))
    fine = best * np.exp(np.linspace(-0.05, 0.05, 41))
    return float(min(fine, key=nll))


def classification_metrics(
    probs: torch.Tensor, labels: torch.Tensor, threshold: float = CONFIDENCE_THRESHOLD
) -> dict[str, float]:
    """Accuracy and NLL, plus what the workflow's confidence filter sees: the share of images whose top
    probability reaches `threshold`, and the accuracy among those."""
    confidence, predicted = probs.max(1)
    correct = predicted == labels
    passed = confidence >= threshold
    return {
        "accuracy": float(correct.float().mean()),
        "nll": float(F.nll_loss(torch.log(probs.clamp_min(1e-12)), labels)),
        "pass_share": float(passed.float().mean()),
        "pass_accuracy": float(correct[passed].float().mean()) if bool(passed.any()) else float("nan"),
    }


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

    data = read_channel(args.train)
    train, val = data, None
    if args.val_fraction > 0:
        train_idx, val_idx = stratified_split(data.labels, args.val_fraction, args.seed)
        train, val = data.subset(train_idx), data.subset(val_idx)
    mean, std = scones_model.channel_stats(train.images)  # from the images trained on only
    print(
        f"train={len(train.labels)} val={0 if val is None else len(val.labels)} classes={data.class_names} "
        f"threads={torch.get_num_threads()} load_seconds={time.monotonic() - started:.1f}",
        flush=True,
    )

    network, history = fit_ensemble(args, train, mean, std, val, log=lambda line: print(line, flush=True))

    metrics: dict[str, Any] = {"train_seconds": history[-1]["seconds"] if history else 0.0}
    temperature = args.temperature
    if val is not None:
        # Calibrate on the held-out split: the training images are fitted too well to say how sure to be.
        val_logits = evaluate_logits(
            network, scones_model.to_tensor(val.images, mean, std), args.tta_flip, args.channels_last
        )
        val_labels = torch.from_numpy(val.labels)
        temperature = fit_temperature(val_logits, val_labels)
        val_metrics = classification_metrics(scones_model.probabilities(val_logits, temperature), val_labels)
        metrics.update({f"validation_{key}": value for key, value in val_metrics.items()})
    metrics["temperature"] = temperature

    if args.test:
        test = read_channel(args.test)
        test_logits = evaluate_logits(
            network, scones_model.to_tensor(test.images, mean, std), args.tta_flip, args.channels_last
        )
        test_metrics = classification_metrics(
            scones_model.probabilities(test_logits, temperature), torch.from_numpy(test.labels)
        )
        metrics.update({f"test_{key}": value for key, value in test_metrics.items()})

    config = scones_model.make_config(
        data.class_names, mean, std, args.width, temperature=temperature, tta_flip=args.tta_flip, members=args.members
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
