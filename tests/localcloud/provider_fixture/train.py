"""A tiny script-mode training job: 'learns' a constant answer and ships its own inference code.

It follows the same contract as the project's real train.py: read SM_* variables, write the model
into SM_MODEL_DIR, and copy the inference code into SM_MODEL_DIR/code/."""

import argparse
import json
import os
import shutil

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--answer", type=str, default="unset")
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
    args = parser.parse_args()
    samples = sorted(os.listdir(args.train))
    print(f"training on {len(samples)} files with answer={args.answer}", flush=True)
    with open(os.path.join(args.model_dir, "model.json"), "w") as handle:
        json.dump({"answer": args.answer, "samples": len(samples)}, handle)
    code_dir = os.path.join(args.model_dir, "code")
    os.makedirs(code_dir, exist_ok=True)
    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "inference.py"), code_dir)
