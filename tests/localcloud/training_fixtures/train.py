"""A tiny script-mode job: reads its channel and hyperparameters, saves them as the "model"."""

import argparse
import json
import os
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--model-dir", default=os.environ["SM_MODEL_DIR"])
    parser.add_argument("--train", default=os.environ["SM_CHANNEL_TRAIN"])
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    files = sorted(p.name for p in Path(args.train).iterdir())
    summary = {"epochs": args.epochs, "learning_rate": args.learning_rate, "train_files": files}
    Path(args.model_dir, "hyperparameters.json").write_text(json.dumps(summary))
    Path(os.environ["SM_OUTPUT_DATA_DIR"], "metrics.json").write_text(json.dumps({"loss": 0.5}))
    print(f"scones-train finished: epochs={args.epochs} learning_rate={args.learning_rate} files={files}")
