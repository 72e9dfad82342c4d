"""monitoring.image_stats: statistics checked by hand on tiny images, baselines, and drift of seeded synthetic
images against a baseline drawn the same way."""

from __future__ import annotations

import copy
import io
import json
import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from include.scones.monitoring.image_stats import (
    MAX_PIXELS,
    STATISTICS,
    BadImage,
    ImageBaseline,
    ImageBaselineError,
    ImageDrift,
    baseline_from_directory,
    drift_alerts,
    image_statistics,
)
from include.scones.monitoring.stats import EPSILON

LIMIT = 0.25


def encode(pixels: np.ndarray, image_format: str = "PNG") -> bytes:
    """uint8 pixels (height, width, 3), or floats in [0, 1], as image bytes."""
    if pixels.dtype != np.uint8:
        pixels = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format)
    return buffer.getvalue()


def uniform(rgb: tuple[int, int, int], width: int = 5, height: int = 4) -> np.ndarray:
    return np.tile(np.array(rgb, dtype=np.uint8), (height, width, 1))


def cifar_like(rng: np.random.Generator, side: int = 32) -> np.ndarray:
    """Floats in [0, 1]: a random base colour, a vertical brightness ramp and pixel noise of random strength."""
    base = rng.uniform(0.2, 0.8, size=3)
    ramp = np.linspace(-1, 1, side)[:, None, None] * rng.uniform(-0.2, 0.2)
    noise = rng.normal(0, rng.uniform(0.03, 0.2), size=(side, side, 3))
    return np.clip(base + ramp + noise, 0, 1)


def png_header(width: int, height: int) -> bytes:
    """A PNG (8-bit RGB) that claims any size and holds almost no pixel data: cheap to build, opens, never loads."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def baseline() -> ImageBaseline:
    rng = np.random.default_rng(1)
    return ImageBaseline.from_statistics([image_statistics(encode(cifar_like(rng))) for _ in range(600)])


def live(baseline: ImageBaseline, images: list[np.ndarray]) -> ImageDrift:
    drift = ImageDrift(baseline)
    for pixels in images:
        assert drift.add(encode(pixels))
    return drift


# image_statistics


def test_uniform_grey_has_no_contrast_sharpness_or_saturation() -> None:
    stats = image_statistics(encode(uniform((100, 100, 100))))

    assert list(stats) == list(STATISTICS)
    assert stats["brightness"] == pytest.approx(100 / 255, abs=1e-6)
    assert stats["contrast"] == pytest.approx(0, abs=1e-9)
    assert stats["saturation"] == 0
    assert stats["sharpness"] == pytest.approx(0, abs=1e-9)
    assert stats["size"] == 20


def test_pure_red_is_fully_saturated() -> None:
    stats = image_statistics(encode(uniform((255, 0, 0))))

    assert stats["saturation"] == pytest.approx(1)
    assert stats["brightness"] == pytest.approx(0.299, abs=1e-6)


def test_saturation_is_zero_on_black_and_chroma_over_max_elsewhere() -> None:
    pixels = np.array([[[200, 100, 50], [0, 0, 0]]], dtype=np.uint8)  # (200 - 50) / 200 = 0.75, black 0

    stats = image_statistics(encode(pixels))

    assert stats["saturation"] == pytest.approx(0.375)
    luma = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    assert stats["brightness"] == pytest.approx(luma / 2, abs=1e-6)
    assert stats["contrast"] == pytest.approx(luma / 2, abs=1e-6)


def test_checkerboard_is_sharp() -> None:
    # Luma alternates 0 and 1, so the Laplacian is +4 on black and -4 on white: variance 16.
    board = (np.indices((6, 6)).sum(axis=0) % 2 * 255).astype(np.uint8)
    stats = image_statistics(encode(np.repeat(board[:, :, None], 3, axis=2)))

    assert stats["sharpness"] == pytest.approx(16, rel=1e-5)
    assert stats["contrast"] == pytest.approx(0.5, rel=1e-5)
    assert stats["brightness"] == pytest.approx(0.5, rel=1e-5)


def test_size_is_width_times_height_and_tiny_images_have_no_sharpness() -> None:
    assert image_statistics(encode(uniform((1, 2, 3), width=7, height=5)))["size"] == 35.0
    board = np.array([[[0, 0, 0], [255, 255, 255]], [[255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    assert image_statistics(encode(board))["sharpness"] == 0.0


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_every_allowed_format_reads(image_format: str) -> None:
    stats = image_statistics(encode(uniform((128, 128, 128), width=16, height=16), image_format))

    assert stats["brightness"] == pytest.approx(128 / 255, abs=0.02)  # JPEG and WEBP are lossy
    assert stats["size"] == 256


def test_greyscale_and_alpha_pngs_are_read_as_rgb() -> None:
    grey, rgba = io.BytesIO(), io.BytesIO()
    Image.new("L", (3, 3), 51).save(grey, "PNG")
    Image.new("RGBA", (3, 3), (255, 0, 0, 10)).save(rgba, "PNG")

    assert image_statistics(grey.getvalue())["brightness"] == pytest.approx(0.2, abs=1e-6)
    assert image_statistics(rgba.getvalue())["saturation"] == pytest.approx(1)  # alpha dropped, not composited


def truncated_png() -> bytes:
    data = encode(np.random.default_rng(0).uniform(size=(32, 32, 3)))
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "data",
    [b"", b"junk", b"\x89PNG\r\n\x1a\n", truncated_png(), encode(uniform((1, 2, 3)), "PPM")],
    ids=["empty", "junk", "png_signature_only", "truncated_png", "ppm_not_allowed"],
)
def test_unreadable_bytes_are_bad_images(data: bytes) -> None:
    with pytest.raises(BadImage):
        image_statistics(data)


def test_too_many_pixels_is_refused_from_the_header() -> None:
    with pytest.raises(BadImage, match="5000x5000 image has more than"):
        image_statistics(png_header(5000, 5000))
    with pytest.raises(BadImage):  # Pillow's own decompression-bomb check, above 2 * Image.MAX_IMAGE_PIXELS
        image_statistics(png_header(20000, 20000))
    with pytest.raises(BadImage, match=f"more than {99}"):
        image_statistics(encode(uniform((1, 2, 3), width=10, height=10)), max_pixels=99)
    assert image_statistics(encode(uniform((1, 2, 3), width=10, height=10)), max_pixels=100)["size"] == 100
    assert MAX_PIXELS == 4096 * 4096


# ImageBaseline


def rows(**columns: list[float]) -> list[dict[str, float]]:
    """Statistics rows where the named statistics take the given values and the others are 0."""
    count = len(next(iter(columns.values())))
    return [{name: columns.get(name, [0.0] * count)[i] for name in STATISTICS} for i in range(count)]


def test_a_point_mass_gives_one_edge_and_an_empty_upper_bin() -> None:
    baseline = ImageBaseline.from_statistics(rows(size=[1024.0] * 5))

    assert baseline.images == 5
    assert baseline.edges["size"] == (1024.0,)
    assert baseline.shares["size"] == (1.0, 0.0)


def test_a_spread_gives_deciles_with_a_tenth_in_each_bin() -> None:
    # numpy's linear quantiles of 1..10 are 1.9, 2.8, ..., 9.1; each value then sits alone in its bin.
    baseline = ImageBaseline.from_statistics(rows(brightness=[float(value) for value in range(1, 11)]))

    assert baseline.edges["brightness"] == pytest.approx([1.9 + 0.9 * i for i in range(9)])
    assert baseline.shares["brightness"] == pytest.approx([0.1] * 10)


def test_repeated_quantiles_are_deduplicated_and_bins_are_right_closed() -> None:
    # Quartiles of five 0s and five 1s are 0, 0.5 and 1: 0 lands in (-inf, 0], 1 in (0.5, 1].
    baseline = ImageBaseline.from_statistics(rows(contrast=[0.0] * 5 + [1.0] * 5), quantiles=4)

    assert baseline.edges["contrast"] == (0.0, 0.5, 1.0)
    assert baseline.shares["contrast"] == (0.5, 0.0, 0.5, 0.0)


def test_from_statistics_refuses_no_rows_too_few_quantiles_and_missing_statistics() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        ImageBaseline.from_statistics([])
    with pytest.raises(ValueError, match="quantiles"):
        ImageBaseline.from_statistics(rows(size=[1.0]), quantiles=1)
    with pytest.raises(ValueError, match="'sharpness'"):
        ImageBaseline.from_statistics([{"brightness": 0.5, "contrast": 0.1, "saturation": 0.2, "size": 1.0}])


def test_to_dict_round_trips_through_json(baseline: ImageBaseline) -> None:
    data = json.loads(json.dumps(baseline.to_dict(), allow_nan=False))

    assert ImageBaseline.from_mapping(data) == baseline
    assert ImageBaseline.from_mapping({"image_baseline": data, "other": 1}) == baseline
    assert list(data["statistics"]) == list(STATISTICS)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = data
        for key in parents:
            target = target[key]
        target[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda data: data["statistics"].pop("sharpness"), "'sharpness'"),
        (lambda data: data.pop("statistics"), "statistics"),
        (lambda data: data.pop("images"), "images"),
        (_set("images", 0), "positive integer"),
        (_set("images", True), "positive integer"),
        (_set("statistics.size", [1024]), "size must be a mapping"),
        (_set("statistics.size.shares", [1.0]), "1 shares for 2 bins"),
        (_set("statistics.size.shares", [0.5, 0.2]), "sum to"),
        (_set("statistics.size.shares", [1.5, -0.5]), ">= 0"),
        (_set("statistics.size.edges", [float("nan")]), "finite"),
        (_set("statistics.size.edges", []), "finite"),
        (_set("statistics.size.shares", [float("inf"), 0.0]), "finite"),
        (_set("statistics.brightness.edges", [0.1, 0.3, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9]), "must increase"),
        (_set("statistics.size.edges", ["1024"]), "must be numbers"),
        (_set("statistics.size.edges", 1024), "list of numbers"),
    ],
)
def test_malformed_baselines_are_refused(
    baseline: ImageBaseline, change: Callable[[dict[str, Any]], Any], message: str
) -> None:
    data = copy.deepcopy(baseline.to_dict())
    change(data)

    with pytest.raises(ImageBaselineError, match=message):
        ImageBaseline.from_mapping(data)


def test_from_mapping_refuses_what_is_not_a_mapping() -> None:
    with pytest.raises(ImageBaselineError, match="expected a mapping"):
        ImageBaseline.from_mapping([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ImageBaselineError, match="expected a mapping"):
        ImageBaseline.from_mapping({"image_baseline": "none"})


def test_baseline_from_directory_reads_the_matching_files(tmp_path: Path) -> None:
    for index, grey in enumerate((10, 20, 30)):
        (tmp_path / f"{index}.png").write_bytes(encode(uniform((grey, grey, grey))))
    (tmp_path / "notes.txt").write_text("not an image")

    baseline = baseline_from_directory(tmp_path)

    assert baseline.images == 3
    assert baseline.shares["size"] == (1.0, 0.0)
    with pytest.raises(ValueError, match="no file matches"):
        baseline_from_directory(tmp_path, "*.jpg")
    (tmp_path / "3.png").write_bytes(b"junk")
    with pytest.raises(BadImage, match="3.png"):
        baseline_from_directory(tmp_path)


# ImageDrift


def test_images_drawn_like_the_baseline_do_not_drift(baseline: ImageBaseline) -> None:
    rng = np.random.default_rng(2)
    drift = live(baseline, [cifar_like(rng) for _ in range(400)]).to_dict(LIMIT, min_images=50)

    assert drift["drifted"] == []
    for name in STATISTICS:
        assert drift["statistics"][name]["psi"] < 0.1, name
    assert drift["statistics"]["size"]["psi"] == 0.0
    assert drift_alerts(drift) == []


def test_darkened_images_drift_in_brightness(baseline: ImageBaseline) -> None:
    rng = np.random.default_rng(3)
    drift = live(baseline, [cifar_like(rng) * 0.4 for _ in range(200)]).to_dict(LIMIT, min_images=50)

    assert drift["statistics"]["brightness"]["psi"] > LIMIT
    assert "brightness" in drift["drifted"]
    assert "size" not in drift["drifted"]


def test_greyscale_images_drift_in_saturation(baseline: ImageBaseline) -> None:
    rng = np.random.default_rng(4)
    greys = [np.repeat(cifar_like(rng).mean(axis=2, keepdims=True), 3, axis=2) for _ in range(200)]
    drift = live(baseline, greys).to_dict(LIMIT, min_images=50)

    assert drift["statistics"]["saturation"]["psi"] > LIMIT
    assert drift["statistics"]["saturation"]["live_mean"] == 0.0
    assert "saturation" in drift["drifted"]


def test_larger_images_drift_in_size_and_alert(baseline: ImageBaseline) -> None:
    rng = np.random.default_rng(5)
    drift = live(baseline, [cifar_like(rng, side=64) for _ in range(200)]).to_dict(LIMIT, min_images=50)

    assert drift["drifted"] == ["size"]
    size = drift["statistics"]["size"]
    expected_psi = 2 * (1 - EPSILON) * math.log(1 / EPSILON)  # shares (1, 0) against (0, 1)
    assert size["psi"] == pytest.approx(expected_psi, abs=1e-6)
    assert size["baseline_shares"] == [1.0, 0.0]
    assert size["live_shares"] == [0.0, 1.0]
    assert size["live_mean"] == 4096.0
    assert size["over_limit"] is True
    assert drift["held_back"] is False
    assert drift_alerts(drift) == [
        f"input drift: image size moved from the training images: PSI {expected_psi:.3f} is above the limit 0.25 "
        "(live mean 4096 over 200 images)"
    ]


def test_too_few_images_are_held_back_but_still_reported(baseline: ImageBaseline) -> None:
    rng = np.random.default_rng(6)
    drift = live(baseline, [cifar_like(rng, side=64) for _ in range(5)]).to_dict(LIMIT, min_images=50)

    assert drift["held_back"] is True
    assert drift["statistics"]["size"]["over_limit"] is True
    assert "size" in drift["drifted"]  # the caller decides; drift_alerts raises nothing
    assert drift_alerts(drift) == []


def test_unreadable_bodies_are_counted_and_an_empty_report_is_json(baseline: ImageBaseline) -> None:
    drift = ImageDrift(baseline)

    assert drift.add(b"junk") is False
    assert drift.add(png_header(5000, 5000)) is False
    report = drift.to_dict(LIMIT, min_images=1)

    assert (drift.images, drift.unreadable) == (0, 2)
    assert (report["images"], report["unreadable"], report["held_back"], report["drifted"]) == (0, 2, True, [])
    for name in STATISTICS:
        row = report["statistics"][name]
        assert (row["psi"], row["live_mean"], row["live_shares"], row["over_limit"]) == (None, None, None, False)
        assert row["baseline_shares"] == pytest.approx(baseline.shares[name], abs=1e-6)
    json.dumps(report, allow_nan=False)


def test_a_full_report_is_json_with_rounded_numbers(baseline: ImageBaseline) -> None:
    rng = np.random.default_rng(7)
    drift = live(baseline, [cifar_like(rng) for _ in range(20)])
    assert drift.add(b"junk") is False
    report = drift.to_dict(LIMIT, min_images=10)

    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report
    assert (report["images"], report["unreadable"], report["limit"], report["min_images"]) == (20, 1, LIMIT, 10)
    assert list(report["statistics"]) == list(STATISTICS)
    for row in report["statistics"].values():
        assert sum(row["live_shares"]) == pytest.approx(1, abs=1e-5)
        assert row["psi"] == round(row["psi"], 6)
        assert len(row["live_shares"]) == len(row["baseline_shares"])
