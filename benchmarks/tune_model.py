"""How the defaults of include/model/train.py were chosen: stratified k-fold cross-validation on TRAIN only.

    # 1. the fixture split of the shared dataset, as channel directories (TEST = every 5th image per class)
    .venv-pytorch/bin/python benchmarks/tune_model.py channels /tmp/model-data
    # 2. cross-validate candidate hyperparameters on TRAIN (never on TEST); one JSON line per candidate
    .venv-pytorch/bin/python benchmarks/tune_model.py cv /tmp/model-data/train --set members=1,2 \
        --set learning_rate=0.05,0.1 --out /tmp/tune.jsonl

Every candidate trains `folds` models on (k-1)/k of TRAIN with the exact `fit_ensemble()` of train.py and predicts its
held-out fold. The pooled out-of-fold logits give the validation accuracy, the temperature that calibrates them
(the `--temperature` default of train.py, which trains on all of TRAIN), and what the 0.93 confidence filter
would pass. `--set name=v1,v2` values combine as a grid.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "include" / "model"))

import model as scones_model  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import train as scones_train  # noqa: E402

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


def cross_validate(data: scones_train.Split, args: argparse.Namespace, folds: int, fold_seed: int) -> dict[str, Any]:
    oof_logits = torch.zeros(len(data.labels), len(data.class_names))
    fold_accuracy, seconds = [], []
    for held_out in fold_indices(data.labels, folds, fold_seed):
        train_idx = np.setdiff1d(np.arange(len(data.labels)), held_out)
        train, val = data.subset(train_idx), data.subset(held_out)
        mean, std = scones_model.channel_stats(train.images)
        started = time.monotonic()
        network, _ = scones_train.fit_ensemble(args, train, mean, std, log=lambda _line: None)
        seconds.append(time.monotonic() - started)
        logits = scones_train.evaluate_logits(
            network, scones_model.to_tensor(val.images, mean, std), args.tta_flip, args.channels_last
        )
        oof_logits[held_out] = logits
        fold_accuracy.append(float((logits.argmax(1) == torch.from_numpy(val.labels)).float().mean()))
    labels = torch.from_numpy(data.labels)
    temperature = scones_train.fit_temperature(oof_logits, labels)
    raw = scones_train.classification_metrics(scones_model.probabilities(oof_logits), labels)
    calibrated = scones_train.classification_metrics(scones_model.probabilities(oof_logits, temperature), labels)
    return {
        "cv_accuracy": calibrated["accuracy"],
        "fold_accuracy": fold_accuracy,
        "temperature": temperature,
        "nll_t1": raw["nll"],
        "nll_calibrated": calibrated["nll"],
        "pass_share_t1": raw["pass_share"],
        "pass_accuracy_t1": raw["pass_accuracy"],
        "pass_share": calibrated["pass_share"],
        "pass_accuracy": calibrated["pass_accuracy"],
        "fit_seconds_per_fold": float(np.mean(seconds)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    channels = commands.add_parser("channels", help="write the train/test channel directories")
    channels.add_argument("out", type=Path)
    channels.add_argument("--dataset", type=Path, default=DATASET)
    cv = commands.add_parser("cv", help="cross-validate hyperparameter candidates on a TRAIN channel")
    cv.add_argument("train", type=Path)
    cv.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="a train.py hyperparameter and its candidate values",
    )
    cv.add_argument("--folds", type=int, default=5)
    cv.add_argument("--fold_seed", type=int, default=0)
    cv.add_argument("--out", type=Path, help="append one JSON line per candidate here")
    options = parser.parse_args()

    if options.command == "channels":
        make_channels(options.out, options.dataset)
        return
    grid = {}
    for item in options.set:
        name, _, values = item.partition("=")
        grid[name] = values.split(",")
    data = scones_train.read_channel(options.train)
    for values in itertools.product(*grid.values()):
        overrides = dict(zip(grid, values, strict=True))
        argv = ["--train", str(options.train)]
        for name, value in overrides.items():
            argv += [f"--{name}", value]
        args = scones_train.parse_args(argv)
        torch.set_num_threads(max(1, args.num_threads))
        result = {"overrides": overrides, **cross_validate(data, args, options.folds, options.fold_seed)}
        line = json.dumps(result)
        print(line, flush=True)
        if options.out:
            with options.out.open("a") as handle:
                handle.write(line + "\n")


if __name__ == "__main__":
    main()
