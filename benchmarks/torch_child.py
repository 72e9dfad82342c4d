"""Runs under the framework interpreter (.venv-pytorch), like the serving worker: loads a model directory's
`code/inference.py` and calls its hooks directly, with no HTTP in between. Standard library + the model's code.

    <pytorch python> benchmarks/torch_child.py score   --model-dir DIR --channel DIR/test
    <pytorch python> benchmarks/torch_child.py forward --model-dir DIR --image PNG [--warmup 20]   # then N\n...

`score` prints {"<filename>": [probabilities]} for every image of the channel's `.lst`, through
input_fn -> predict_fn -> output_fn exactly as the endpoint runs them. `forward` answers each line N on stdin
with per-call timings (ms) of N calls of predict_fn alone on one already-decoded image (the bare forward the
endpoint's overhead is measured against) and of the whole hook chain on the PNG bytes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

IMAGE_TYPE = "image/png"
ACCEPT = "application/json"


def load_hooks(model_dir: Path) -> tuple[Any, Any]:
    """The model's inference module and the loaded model, the way serving_worker.py loads them."""
    sys.path.insert(0, str(model_dir / "code"))
    module = importlib.import_module("inference")
    return module, module.model_fn(str(model_dir))


def score(model_dir: Path, channel: Path) -> dict[str, list[float]]:
    module, model = load_hooks(model_dir)
    listings = sorted(channel.glob("*.lst"))
    if len(listings) != 1:
        raise SystemExit(f"expected one .lst file in {channel}, found {[p.name for p in listings]}")
    predictions = {}
    for line in listings[0].read_text().splitlines():
        if not line.strip():
            continue
        filename = line.split("\t")[2]
        body = (channel / "images" / filename).read_bytes()
        output = module.output_fn(module.predict_fn(module.input_fn(body, IMAGE_TYPE), model), ACCEPT)
        predictions[filename] = json.loads(output[0] if isinstance(output, tuple) else output)
    return predictions


def forward_server(model_dir: Path, image: Path, warmup: int) -> None:
    """Load the model once, then for every line `N` on stdin time N calls and print one JSON line: predict_fn
    alone on the decoded image (`forward_ms`) and the whole hook chain on the PNG bytes (`hooks_ms`). Kept
    running between batches so the parent can interleave them with its InvokeEndpoint batches: both then see
    the same load on a shared machine."""
    module, model = load_hooks(model_dir)
    body = image.read_bytes()
    decoded = module.input_fn(body, IMAGE_TYPE)

    def timed(count: int) -> dict[str, list[float]]:
        forward_ms, hooks_ms = [], []
        for _ in range(count):
            began = time.perf_counter()
            module.predict_fn(decoded, model)
            middle = time.perf_counter()
            module.output_fn(module.predict_fn(module.input_fn(body, IMAGE_TYPE), model), ACCEPT)
            forward_ms.append((middle - began) * 1000)
            hooks_ms.append((time.perf_counter() - middle) * 1000)
        return {"forward_ms": forward_ms, "hooks_ms": hooks_ms}

    timed(warmup)
    import torch  # only to report the thread count the timings ran with (the worker's default too)

    print(json.dumps({"ready": True, "torch_threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        print(json.dumps(timed(int(line))), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    scoring = commands.add_parser("score")
    scoring.add_argument("--model-dir", type=Path, required=True)
    scoring.add_argument("--channel", type=Path, required=True)
    timing = commands.add_parser("forward")
    timing.add_argument("--model-dir", type=Path, required=True)
    timing.add_argument("--image", type=Path, required=True)
    timing.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args(argv)
    if args.command == "score":
        print(json.dumps(score(args.model_dir, args.channel)))
    else:
        forward_server(args.model_dir, args.image, args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
