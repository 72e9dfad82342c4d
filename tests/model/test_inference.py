"""include/model/inference.py: the four serving hooks, called as the SageMaker PyTorch serving container calls
them (<model_dir>/code on sys.path, `import inference`), on a model that train.py just trained. A probe script runs
every case once in the framework's interpreter and reports JSON; the tests check that report. The last test serves
the artifact through the local serving worker over HTTP. Images over the pixel budget are real, valid PNGs of a few
KB (decompression bombs), refused from their header."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVING_WORKER = PROJECT_ROOT / "localcloud" / "sagemaker" / "runners" / "serving_worker.py"

PIXEL_BUDGET = 4096 * 4096
# Smallest first, the order the probe tries them: ru_maxrss is a high-water mark, so each measurement only sees a
# decode that needs more than the ones before it.
BOMBS = {"over-budget.png": (4096, 4097), "bomb.png": (13000, 13000), "beyond-pillow.png": (20000, 20000)}

PROBE = r'''
import json, os, resource, shutil, sys, time, traceback
from pathlib import Path

model_dir, images, scratch = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
sys.path.insert(0, str(model_dir / "code"))
import numpy as np
import torch
import inference
import model as scones_model

report = {}

def case(name, call):
    try:
        report[name] = {"value": call()}
    except Exception as error:
        report[name] = {"error": type(error).__name__, "message": str(error)}

def body(name):
    return (images / name).read_bytes()

# First, while the process's peak memory is still that of the imports: what input_fn costs on a bomb.
for name in ["over-budget.png", "bomb.png", "beyond-pillow.png"]:
    data = body(name)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.perf_counter()
    case(f"pixel budget {name}", lambda: inference.input_fn(data, "image/png").shape and "decoded")
    report[f"pixel budget {name}"].update(
        seconds=time.perf_counter() - started,
        peak_growth_mib=(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024,
    )

served = inference.model_fn(str(model_dir))

def invoke(data, content_type, accept="application/json"):
    return inference.output_fn(inference.predict_fn(inference.input_fn(data, content_type), served), accept)

for name, content_type in [("rgba.png", "image/png"), ("rgb.jpg", "image/jpeg"), ("rgba.png", "application/x-image"),
                           ("grey.png", "image/png"), ("large.jpg", "image/jpeg"), ("at-budget.png", "image/png")]:
    case(f"{content_type} {name}", lambda: invoke(body(name), content_type))
for accept in [None, "*/*", "application/json", "text/csv"]:
    case(f"accept {accept}", lambda: invoke(body("rgba.png"), "image/png", accept))
case("content type text/csv", lambda: invoke(body("rgba.png"), "text/csv"))
case("content type application/json", lambda: invoke('{"image": 1}', "application/json"))
case("garbage bytes", lambda: invoke(b"definitely not an image", "image/png"))
case("truncated png", lambda: invoke(body("rgba.png")[:60], "image/png"))

def predict_state():
    served["network"].train()  # predict_fn must switch to eval mode itself
    probs = inference.predict_fn(inference.input_fn(body("rgba.png"), "image/png"), served)
    return {"training": served["network"].training, "requires_grad": probs.requires_grad,
            "shape": list(probs.shape), "repeatable": invoke(body("rgba.png"), "image/png")
            == invoke(body("rgba.png"), "image/png")}
case("predict state", predict_state)

def preprocess():
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    rgba = scones_model.preprocess(body("rgba.png"), mean, std)
    rgb = scones_model.preprocess(body("rgb.png"), mean, std)
    pixel = np.asarray(scones_model.decode_image(body("rgb.png")))[3, 5] / 255.0
    expected = [(pixel[c] - mean[c]) / std[c] for c in range(3)]
    return {"shape": list(rgba.shape), "dtype": str(rgba.dtype), "rgba_equals_rgb": bool(torch.equal(rgba, rgb)),
            "normalised": bool(np.allclose(rgb[:, 3, 5].numpy(), expected, atol=1e-5)),
            "grey_shape": list(scones_model.preprocess(body("grey.png"), mean, std).shape),
            "large_shape": list(scones_model.preprocess(body("large.jpg"), mean, std).shape)}
case("preprocess", preprocess)

class Exploit:
    """Unpickling this runs os.mkdir(marker): what a tampered model.pth could do without weights_only."""
    def __reduce__(self):
        return (os.mkdir, (str(scratch / "exploited"),))

evil = scratch / "evil_model"
shutil.copytree(model_dir, evil)
torch.save({"weights": Exploit()}, evil / "model.pth")
case("pickled object", lambda: inference.model_fn(str(evil)) and "loaded")
report["exploit ran"] = (scratch / "exploited").exists()
print(json.dumps(report))
'''


def blank_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit greyscale PNG, built row by row without Pillow: a few KB on disk whatever it claims,
    width*height bytes once Pillow decodes it (mode "1") and three times that as RGB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # filter type 0, then the packed pixels
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, make_image) -> Path:
    folder = tmp_path_factory.mktemp("images")
    (folder / "rgba.png").write_bytes(make_image(1, seed=5, fmt="PNG", mode="RGBA"))
    (folder / "rgb.png").write_bytes(make_image(1, seed=5, fmt="PNG", mode="RGB"))
    (folder / "rgb.jpg").write_bytes(make_image(0, seed=6, fmt="JPEG", mode="RGB"))
    (folder / "grey.png").write_bytes(make_image(0, seed=7, fmt="PNG", mode="L"))
    from PIL import Image  # a client photo of another size: served after resizing

    large = Image.new("RGB", (64, 48), (200, 30, 30))
    large.save(folder / "large.jpg", format="JPEG")
    for name, (width, height) in BOMBS.items():
        (folder / name).write_bytes(blank_png(width, height))
    (folder / "at-budget.png").write_bytes(blank_png(4096, 4096))
    return folder


@pytest.fixture(scope="module")
def report(trained, images: Path, pytorch_runner, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    scratch = tmp_path_factory.mktemp("probe")
    result = pytorch_runner(["-c", PROBE, str(trained.model_dir), str(images), str(scratch)], cwd=scratch)
    assert result.returncode == 0, f"probe failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_probabilities(payload: str) -> None:
    probs = json.loads(payload)
    assert isinstance(probs, list) and len(probs) == 2, payload
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in probs), payload
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "name",
    [
        "image/png rgba.png",
        "image/jpeg rgb.jpg",
        "application/x-image rgba.png",
        "image/png grey.png",
        "image/jpeg large.jpg",
        "image/png at-budget.png",  # exactly MAX_IMAGE_PIXELS: still served
    ],
)
def test_image_requests_answer_json_probabilities(report: dict[str, Any], name: str) -> None:
    assert "value" in report[name], report[name]
    assert_probabilities(report[name]["value"])


def test_accept_json_by_default_and_refuse_others(report: dict[str, Any]) -> None:
    answers = {accept: report[f"accept {accept}"] for accept in ("None", "*/*", "application/json")}
    assert all("value" in answer for answer in answers.values()), answers
    assert len({answer["value"] for answer in answers.values()}) == 1  # the same JSON body in each case
    assert report["accept text/csv"]["error"] == "ValueError"
    assert "application/json" in report["accept text/csv"]["message"]


@pytest.mark.parametrize("content_type", ["text/csv", "application/json"])
def test_unsupported_content_type_names_supported_ones(report: dict[str, Any], content_type: str) -> None:
    outcome = report[f"content type {content_type}"]
    assert outcome.get("error") == "ValueError", outcome
    for supported in ("image/png", "image/jpeg", "application/x-image"):
        assert supported in outcome["message"]


@pytest.mark.parametrize("name", ["garbage bytes", "truncated png"])
def test_undecodable_body_is_a_clear_value_error(report: dict[str, Any], name: str) -> None:
    assert report[name].get("error") == "ValueError", report[name]
    assert "could not decode" in report[name]["message"]


def test_blank_png_is_the_image_it_claims(images: Path) -> None:
    from PIL import Image

    bomb = (images / "bomb.png").read_bytes()
    assert len(bomb) < 64 * 1024
    with Image.open(images / "at-budget.png") as image:  # small enough to decode here: a real, valid PNG
        image.load()
        assert (image.size, image.mode, image.getextrema()) == ((4096, 4096), "1", (0, 0))


@pytest.mark.parametrize("name", list(BOMBS))
def test_images_over_the_pixel_budget_are_refused_from_the_header(report: dict[str, Any], name: str) -> None:
    # Given a small PNG whose header claims more than 4096x4096 pixels, When input_fn reads it
    outcome = report[f"pixel budget {name}"]
    # Then it is the hooks' client error, naming the budget, and nothing was decoded: no time, no memory
    assert outcome.get("error") == "ValueError", outcome
    assert f"pixel budget of {PIXEL_BUDGET:,} (4096x4096)" in outcome["message"]
    assert outcome["seconds"] < 0.5, outcome
    assert outcome["peak_growth_mib"] < 16, outcome  # decoding takes width*height bytes (> 16 MiB), then 3x that


def test_the_refusal_names_the_claimed_size(report: dict[str, Any]) -> None:
    assert "13000x13000 = 169,000,000 pixels" in report["pixel budget bomb.png"]["message"]
    assert "4096x4097 = 16,781,312 pixels" in report["pixel budget over-budget.png"]["message"]
    # Beyond twice Pillow's own limit, open() refuses before the size is known: Pillow's count is quoted
    assert "400000000 pixels" in report["pixel budget beyond-pillow.png"]["message"]


def test_predict_runs_in_eval_mode_without_gradients(report: dict[str, Any]) -> None:
    state = report["predict state"]["value"]
    assert state == {"training": False, "requires_grad": False, "shape": [1, 2], "repeatable": True}


def test_preprocessing_makes_normalised_rgb_32x32(report: dict[str, Any]) -> None:
    assert report["preprocess"]["value"] == {
        "shape": [3, 32, 32],
        "dtype": "torch.float32",
        "rgba_equals_rgb": True,
        "normalised": True,
        "grey_shape": [3, 32, 32],
        "large_shape": [3, 32, 32],
    }


def test_model_fn_refuses_pickled_objects(report: dict[str, Any]) -> None:
    assert report["exploit ran"] is False
    assert report["pickled object"].get("error") == "UnpicklingError", report["pickled object"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(port: int, body: bytes, content_type: str) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=body,
        method="POST",
        headers={"Content-Type": content_type, "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_served_by_the_local_serving_container(trained, images: Path, pytorch_python: Path) -> None:
    port = _free_port()
    worker = subprocess.Popen(
        [str(pytorch_python), str(SERVING_WORKER), "--model-dir", str(trained.model_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert worker.poll() is None, worker.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "the serving worker never answered /ping"
            time.sleep(0.2)
        status, payload = _post(port, (images / "rgba.png").read_bytes(), "image/png")
        assert status == 200, payload
        assert_probabilities(payload)
        status, payload = _post(port, b"flavour,rating\nplain,5\n", "text/csv")
        assert status == 500 and "image/png" in payload
        status, payload = _post(port, (images / "bomb.png").read_bytes(), "image/png")  # the caller sees why
        assert status == 500 and f"pixel budget of {PIXEL_BUDGET:,}" in payload and "13000x13000" in payload
    finally:
        worker.terminate()
        worker.wait(timeout=10)
