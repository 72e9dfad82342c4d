"""How the defaults of include/model/train.py were chosen: stratified k-fold cross-validation on TRAIN only.

    # 1. the fixture split of the shared dataset, as channel directories (TEST = every 5th image per class)
    .venv-pytorch/bin/python benchmarks/tune_model.py channels /tmp/model-data
    # 2. cross-validate candidate hyperparameters on TRAIN (never on TEST); one JSON line per candidate
    .venv-pytorch/bin/python benchmarks/tune_model.py cv /tmp/model-data/train --set members=1,2 \
        --set learning_rate=0.05,0.1 --set mixup=0,0.2 --out /tmp/tune.jsonl
    # learning curves: train once on TRAIN less a stratified fifth, scored on that fifth after every epoch
    .venv-pytorch/bin/python benchmarks/tune_model.py holdout /tmp/model-data/train --set epochs=60,120

Every candidate trains `folds` models on (k-1)/k of TRAIN with train.py's `fit_ensemble()`, extended by the
experiments of benchmarks/experiments.py (off unless set), and predicts its held-out fold. The pooled out-of-fold
logits give the validation accuracy and the temperature that calibrates them (the `--temperature` default of
train.py, which trains on all of TRAIN). Like train.py, the share the workflow's confidence filter would pass is
reported only for a threshold given as the `confidence_threshold` hyperparameter: `--set confidence_threshold=X`
with X the default of that Param (include/scones/params.py), which this interpreter cannot import (it has no
jsonschema). `--set name=v1,v2` values combine as a grid.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "include" / "model"))

import model as scones_model  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import train as scones_train  # noqa: E402

from benchmarks import experiments  # noqa: E402

DATASET = ROOT / "datasets" / "cifar100-bicycle-motorcycle"
TEST_EVERY = 5  # per class, sorted by CIFAR index: positions 0, 5, 10, ... are TEST


def make_channels(out: Path, dataset: Path = DATASET) -> None:
    """<out>/train and <out>/test channel directories (listing + symlinked images) of the fixture split."""
    rows = []
    for line in (dataset / "train.lst").read_text().splitlines():
        if line.strip():
            index, label, filename = line.split("\t")
            rows.append((int(index), int(label), filename))
    splits: dict[str, list[tuple[int, int, str]]] = {"train": [], "test": []}
    for class_label in sorted({row[1] for row in rows}):
        members = sorted((row for row in rows if row[1] == class_label), key=lambda row: row[0])
        for position, row in enumerate(members):
            splits["test" if position % TEST_EVERY == 0 else "train"].append(row)
    for name, members in splits.items():
        images = out / name / "images"
        images.mkdir(parents=True, exist_ok=True)
        members.sort()
        (out / name / f"{name}.lst").write_text("".join(f"{i}\t{y}\t{f}\n" for i, y, f in members))
        for _, _, filename in members:
            link = images / filename
            if not link.exists():
                link.symlink_to(dataset / "train" / filename)
        print(f"{out / name}: {len(members)} images")


def fold_indices(labels: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Stratified folds: each class shuffled with `seed` and dealt round-robin."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        assignment[members] = np.arange(len(members)) % folds
    return [np.flatnonzero(assignment == fold) for fold in range(folds)]


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


def held_out_logits(
    args: argparse.Namespace, train: scones_train.ImageSet, held_out: scones_train.ImageSet, log_curves: bool = False
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Train a candidate on `train` and predict `held_out`; the history has per-epoch scores on `held_out` when
    `log_curves`."""
    mean, std = scones_model.channel_stats(train.images)
    network, history = experiments.fit_ensemble(
        args, train, mean, std, val=held_out if log_curves else None, log=lambda _line: None
    )
    inputs = scones_model.to_tensor(held_out.images, mean, std)
    return scones_train.evaluate_logits(network, inputs, args.tta_flip, args.channels_last), history


def cross_validate(data: scones_train.ImageSet, args: argparse.Namespace, folds: int, fold_seed: int) -> dict[str, Any]:
    oof_logits = torch.zeros(len(data.labels), len(data.class_names))
    fold_accuracy, seconds = [], []
    for held_out in fold_indices(data.labels, folds, fold_seed):
        train_idx = np.setdiff1d(np.arange(len(data.labels)), held_out)
        started = time.monotonic()
        logits, _ = held_out_logits(args, data.subset(train_idx), data.subset(held_out))
        seconds.append(time.monotonic() - started)
        oof_logits[held_out] = logits
        fold_accuracy.append(float((logits.argmax(1) == torch.from_numpy(data.labels[held_out])).float().mean()))
    labels = torch.from_numpy(data.labels)
    temperature = fit_temperature(oof_logits, labels)
    threshold = args.confidence_threshold
    raw = scones_train.classification_metrics(scones_model.probabilities(oof_logits), labels, threshold)
    calibrated = scones_train.classification_metrics(
        scones_model.probabilities(oof_logits, temperature), labels, threshold
    )
    result: dict[str, Any] = {
        "cv_accuracy": calibrated["accuracy"],
        "fold_accuracy": fold_accuracy,
        "temperature": temperature,
        "nll_t1": raw["nll"],
        "nll_calibrated": calibrated["nll"],
    }
    if threshold is not None:
        result |= {
            "pass_share_t1": raw["pass_share"],
            "pass_accuracy_t1": raw["pass_accuracy"],
            "pass_share": calibrated["pass_share"],
            "pass_accuracy": calibrated["pass_accuracy"],
        }
    return result | {"fit_seconds_per_fold": float(np.mean(seconds))}


def holdout(data: scones_train.ImageSet, args: argparse.Namespace, fraction: float) -> dict[str, Any]:
    """Train on TRAIN less a stratified `fraction` (chosen with the candidate's seed) and score that part after
    every epoch: the learning curves cross-validation does not show, and the temperature fitted on the part."""
    train_idx, val_idx = stratified_split(data.labels, fraction, args.seed)
    if not len(val_idx):
        raise SystemExit(f"--val_fraction {fraction} holds out no image")
    val = data.subset(val_idx)
    logits, history = held_out_logits(args, data.subset(train_idx), val, log_curves=True)
    labels = torch.from_numpy(val.labels)
    temperature = fit_temperature(logits, labels)
    metrics = scones_train.classification_metrics(
        scones_model.probabilities(logits, temperature), labels, args.confidence_threshold
    )
    return {
        "train_images": len(train_idx),
        "val_images": len(val_idx),
        "temperature": temperature,
        **{f"validation_{key}": value for key, value in metrics.items()},
        "history": history,
    }


def candidates(train: Path, settings: list[str]) -> Iterator[tuple[dict[str, str], argparse.Namespace]]:
    """(overrides, hyperparameters) for every combination of the `--set name=v1,v2` values."""
    grid = {}
    for item in settings:
        name, _, values = item.partition("=")
        grid[name] = values.split(",")
    for combination in itertools.product(*grid.values()):
        overrides = dict(zip(grid, combination, strict=True))
        argv = ["--train", str(train)]
        for name, value in overrides.items():
            argv += [f"--{name}", value]
        yield overrides, experiments.parse_args(argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    channels = commands.add_parser("channels", help="write the train/test channel directories")
    channels.add_argument("out", type=Path)
    channels.add_argument("--dataset", type=Path, default=DATASET)
    cv = commands.add_parser("cv", help="cross-validate hyperparameter candidates on a TRAIN channel")
    split = commands.add_parser("holdout", help="learning curves of candidates on a held-out share of TRAIN")
    for command in (cv, split):
        command.add_argument("train", type=Path)
        command.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="NAME=V1,V2",
            help="a hyperparameter of train.py or benchmarks/experiments.py and its candidate values",
        )
        command.add_argument("--out", type=Path, help="append one JSON line per candidate here")
    cv.add_argument("--folds", type=int, default=5)
    cv.add_argument("--fold_seed", type=int, default=0)
    split.add_argument("--val_fraction", type=float, default=0.2, help="share of each class held out (one CV fold)")
    options = parser.parse_args()

    if options.command == "channels":
        make_channels(options.out, options.dataset)
        return
    if options.command == "holdout" and not 0.0 < options.val_fraction < 1.0:
        parser.error("--val_fraction must be in (0, 1)")
    data = scones_train.read_channel(options.train)
    for overrides, args in candidates(options.train, options.set):
        torch.set_num_threads(max(1, args.num_threads))
        if options.command == "cv":
            result = cross_validate(data, args, options.folds, options.fold_seed)
        else:
            result = holdout(data, args, options.val_fraction)
        line = json.dumps({"overrides": overrides, **result})
        print(line, flush=True)
        if options.out:
            with options.out.open("a") as handle:
                handle.write(line + "\n")


if __name__ == "__main__":
    main()
