"""SageMaker PyTorch serving hooks for the bicycle-vs-motorcycle classifier.

Only the four hooks the serving container calls live here (model_fn once at start, then input_fn ->
predict_fn -> output_fn per request); the network and preprocessing come from `model.py`, which train.py copies
into the same `code/` directory of the model artifact. A request body is one image (PNG or JPEG bytes); the
response is the JSON list of class probabilities in label order, e.g. "[0.97, 0.03]". Besides the hooks, only the
request's pixel budget: an image whose header claims more than MAX_IMAGE_PIXELS is refused before it is decoded.
"""

from __future__ import annotations

import io
import json
import os
import sys
import warnings
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # model.py sits next to this file
import model as scones_model  # noqa: E402

IMAGE_CONTENT_TYPES = ("image/png", "image/jpeg", "application/x-image")
JSON_CONTENT_TYPE = "application/json"
# The network sees 32x32 (CIFAR); bigger images are shrunk, so a client's photo still gets an answer, and a
# 12-megapixel phone photo (4032x3024) fits this budget with room to spare. Past it nothing is decoded: a PNG of
# 500 KB can claim 13000x13000, which cost the worker 1.5 GB and 8 s to decode before being shrunk to 32x32.
MAX_IMAGE_SIDE = 4096
MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE  # 16,777,216


def model_fn(model_dir: str) -> dict[str, Any]:
    """The network in eval mode plus its config (mean/std, temperature, class names) from `model_dir`.

    weights_only=True: model.pth is a plain state_dict, and refusing pickled objects means a tampered
    artifact cannot run code in the endpoint."""
    config = scones_model.load_config(model_dir)
    network = scones_model.build_model(config)
    state = torch.load(os.path.join(model_dir, scones_model.MODEL_FILENAME), map_location="cpu", weights_only=True)
    network.load_state_dict(state)
    network.eval()
    return {"network": network, "config": config}


def input_fn(request_body: bytes, content_type: str) -> torch.Tensor:
    """Image bytes -> a normalised batch of one, (1, 3, 32, 32)."""
    media_type = (content_type or "").split(";")[0].strip().lower()  # ignore parameters such as charset
    if media_type not in IMAGE_CONTENT_TYPES:
        raise ValueError(f"unsupported content type {content_type!r}; send one of {', '.join(IMAGE_CONTENT_TYPES)}")
    if isinstance(request_body, str):  # only JSON and CSV bodies arrive as str, but be lenient
        request_body = request_body.encode("latin-1")
    # No config here (the hook has no model argument): the constants are applied in predict_fn, so this only
    # decodes; raising ValueError on garbage is decode_image's job.
    _refuse_over_pixel_budget(bytes(request_body))
    image = scones_model.decode_image(bytes(request_body))
    return torch.from_numpy(image).unsqueeze(0)  # uint8 (1, 32, 32, 3)


def _refuse_over_pixel_budget(data: bytes) -> None:
    """ValueError (the hooks' client error, so the caller gets the message) for an image whose header claims more
    than MAX_IMAGE_PIXELS. Image.open reads only the header; bytes it cannot identify are left to decode_image."""
    refusal = f"refusing an image over the pixel budget of {MAX_IMAGE_PIXELS:,} ({MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE})"
    try:
        # The catch swaps the process's warning filters: safe, the serving worker runs one request at a time.
        with warnings.catch_warnings():
            # Pillow's own bomb check (89 Mpx) is looser than ours, so its warning would only add a log line
            # about an image refused here anyway.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError as error:  # over twice Pillow's limit: open() refuses before any size
        raise ValueError(f"{refusal} before decoding it: {error}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"{refusal} before decoding it: its header says {width}x{height} = {width * height:,} pixels; "
            "send a smaller image"
        )


def predict_fn(input_data: torch.Tensor, model: dict[str, Any]) -> torch.Tensor:
    """Calibrated class probabilities (batch, num_classes) for uint8 images (batch, 32, 32, 3)."""
    config = model["config"]
    network = model["network"]
    network.eval()
    batch = scones_model.to_tensor(input_data.numpy(), config["mean"], config["std"])
    with torch.no_grad():
        logits = scones_model.predict_logits(network, batch, bool(config.get("tta_flip", True)))
        return scones_model.probabilities(logits, float(config.get("temperature", 1.0)))


def output_fn(prediction: torch.Tensor, accept: str | None) -> str:
    """The probabilities of the (single) image as a JSON list in label order."""
    media_type = (accept or JSON_CONTENT_TYPE).split(";")[0].strip().lower()
    if media_type not in (JSON_CONTENT_TYPE, "*/*"):
        raise ValueError(f"unsupported accept type {accept!r}; this model answers {JSON_CONTENT_TYPE}")
    probs = prediction[0] if prediction.dim() == 2 else prediction
    return json.dumps([float(p) for p in probs])
