"""Input drift: five statistics of each live image (a captured request body) against the training images.

- `image_statistics`: decodes PNG, JPEG, WEBP, BMP or GIF bytes safely and measures, on the image as it is (no
  resizing), with channels scaled to [0, 1] and luma Y = 0.299 R + 0.587 G + 0.114 B:
  - `brightness`: mean of Y;
  - `contrast`: standard deviation of Y;
  - `saturation`: mean HSV saturation, (max - min) / max per pixel, 0 where max is 0;
  - `sharpness`: variance of the 4-neighbour Laplacian of Y over the valid region, 0 below 3x3 pixels;
  - `size`: width * height in pixels (1024 for every CIFAR-100 image).
- `ImageBaseline`: per statistic, the distinct deciles of the training values as inner bin edges and the share of
  training images in each bin, with a JSON round trip. Bins are right-closed, (-inf, e1], (e1, e2], ...,
  (ek, +inf), so a point mass (every size is 1024) gives edges (1024,) and shares (1.0, 0.0): a 64x64 live image
  lands in the empty second bin and drifts.
- `ImageDrift`: counts live images into the baseline's bins (memory O(bins), not O(images)) and reports the PSI of
  each statistic (`stats.psi`, same EPSILON floor); `drift_alerts` turns the report into sentences.
"""

from __future__ import annotations

import io
import math
import pathlib
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from include.scones.monitoring.stats import DIGITS, psi

STATISTICS = ("brightness", "contrast", "saturation", "sharpness", "size")
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
# Checked on the header, before any pixel is decoded. Pillow's own Image.MAX_IMAGE_PIXELS is process-wide, so it
# is left alone; it still refuses anything above twice its value while opening.
MAX_PIXELS = 4096 * 4096
SIGNIFICANT_DIGITS = 9  # of the bin edges, so baseline.json stays readable
_SHARE_SUM_TOLERANCE = 1e-3
# From 0-255 channels straight to luma in [0, 1]; float32 halves the memory of a 16-megapixel image.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32) / np.float32(255)
# What Pillow raises on bytes it cannot open or decode (UnidentifiedImageError is an OSError).
_DECODE_ERRORS = (OSError, ValueError, TypeError, SyntaxError, EOFError, Image.DecompressionBombError)


class BadImage(ValueError):
    """The bytes are not an image this module reads: unreadable, another format, or too many pixels."""


class ImageBaselineError(ValueError):
    pass


def _decode(data: bytes, max_pixels: int) -> np.ndarray:
    """RGB pixels as uint8, shape (height, width, 3)."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except _DECODE_ERRORS as exc:
        raise BadImage(f"not a {'/'.join(FORMATS)} image ({exc!r})") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise BadImage(f"{width}x{height} image has more than {max_pixels} pixels")
        if width * height == 0:
            raise BadImage(f"{width}x{height} image has no pixels")
        try:
            rgb = image.convert("RGB")  # an alpha channel is dropped, not composited
        except _DECODE_ERRORS as exc:
            raise BadImage(f"{image.format} image does not decode ({exc!r})") from None
    return np.asarray(rgb)


def image_statistics(data: bytes, max_pixels: int = MAX_PIXELS) -> dict[str, float]:
    """The `STATISTICS` of one encoded image, in that order (see the module docstring). Raises BadImage."""
    pixels = _decode(data, max_pixels)
    height, width = pixels.shape[:2]
    luma = pixels @ _LUMA
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    # Pairwise maximum/minimum: a reduction over the short channel axis is about 10x slower.
    high = np.maximum(np.maximum(red, green), blue)
    chroma = (high - np.minimum(np.minimum(red, green), blue)).astype(np.float32)  # 1/255 cancels in chroma / high
    saturation = np.divide(chroma, high, out=np.zeros_like(chroma), where=high > 0)
    if height < 3 or width < 3:
        sharpness = 0.0
    else:
        centre = luma[1:-1, 1:-1]
        laplacian = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4 * centre
        sharpness = float(laplacian.var(dtype=np.float64))
    return {
        "brightness": float(luma.mean(dtype=np.float64)),
        "contrast": float(luma.std(dtype=np.float64)),
        "saturation": float(saturation.mean(dtype=np.float64)),
        "sharpness": sharpness,
        "size": float(width * height),
    }


def _significant(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _numbers(values: Any, what: str) -> tuple[float, ...]:
    """Finite numbers (booleans and strings refused), for from_mapping."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise ImageBaselineError(f"image baseline: {what} must be a list of numbers, got {values!r}")
    if not all(isinstance(value, int | float) and not isinstance(value, bool) for value in values):
        raise ImageBaselineError(f"image baseline: {what} must be numbers, got {list(values)}")
    return tuple(float(value) for value in values)


@dataclass(frozen=True)
class ImageBaseline:
    """Per statistic, the inner bin `edges` (increasing) and the training `shares` of the len(edges) + 1 bins."""

    edges: Mapping[str, tuple[float, ...]]
    shares: Mapping[str, tuple[float, ...]]
    images: int

    def __post_init__(self) -> None:
        if isinstance(self.images, bool) or not isinstance(self.images, int) or self.images < 1:
            raise ImageBaselineError(f"image baseline: images must be a positive integer, got {self.images!r}")
        for name in STATISTICS:
            if name not in self.edges or name not in self.shares:
                raise ImageBaselineError(f"image baseline: statistic {name!r} is missing")
            edges, shares = self.edges[name], self.shares[name]
            if not edges or not all(math.isfinite(edge) for edge in edges):
                raise ImageBaselineError(f"image baseline: {name} edges must be finite numbers, got {list(edges)}")
            if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
                raise ImageBaselineError(f"image baseline: {name} edges must increase, got {list(edges)}")
            if len(shares) != len(edges) + 1:
                raise ImageBaselineError(f"image baseline: {name} has {len(shares)} shares for {len(edges) + 1} bins")
            if not all(math.isfinite(share) and share >= 0 for share in shares):
                raise ImageBaselineError(f"image baseline: {name} shares must be finite and >= 0, got {list(shares)}")
            if abs(sum(shares) - 1) > _SHARE_SUM_TOLERANCE:
                raise ImageBaselineError(f"image baseline: {name} shares sum to {sum(shares)}, not 1")

    @classmethod
    def from_statistics(cls, rows: Sequence[Mapping[str, float]], quantiles: int = 10) -> ImageBaseline:
        """From `image_statistics` of every training image: the distinct 1/q ... (q-1)/q quantiles as edges."""
        if not rows:
            raise ValueError("an image baseline needs at least one image")
        if quantiles < 2:
            raise ValueError(f"quantiles must be at least 2, got {quantiles}")
        levels = np.arange(1, quantiles) / quantiles
        edges: dict[str, tuple[float, ...]] = {}
        shares: dict[str, tuple[float, ...]] = {}
        for name in STATISTICS:
            try:
                values = np.array([float(row[name]) for row in rows])
            except KeyError:
                raise ValueError(f"a statistics row has no {name!r}") from None
            if not np.isfinite(values).all():
                raise ValueError(f"{name} values must be finite")
            edges[name] = tuple(sorted({_significant(float(value)) for value in np.quantile(values, levels)}))
            # searchsorted side="left" is bisect_left, the bin rule of ImageDrift.add.
            counts = np.bincount(np.searchsorted(edges[name], values, side="left"), minlength=len(edges[name]) + 1)
            shares[name] = tuple(float(count) / len(rows) for count in counts)
        return cls(edges, shares, len(rows))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ImageBaseline:
        """From `to_dict`'s output, or from a mapping holding it under `image_baseline`. Other statistics than
        `STATISTICS` are ignored."""
        if not isinstance(data, Mapping):
            raise ImageBaselineError(f"image baseline: expected a mapping, got {type(data).__name__}")
        data = data.get("image_baseline", data)
        if not isinstance(data, Mapping) or "images" not in data or not isinstance(data.get("statistics"), Mapping):
            raise ImageBaselineError("image baseline: expected a mapping with `images` and `statistics`")
        statistics = data["statistics"]
        missing = [name for name in STATISTICS if name not in statistics]
        if missing:
            raise ImageBaselineError(f"image baseline: statistics {missing} are missing")
        edges, shares = {}, {}
        for name in STATISTICS:
            entry = statistics[name]
            if not isinstance(entry, Mapping) or "edges" not in entry or "shares" not in entry:
                raise ImageBaselineError(f"image baseline: {name} must be a mapping with `edges` and `shares`")
            edges[name] = _numbers(entry["edges"], f"{name} edges")
            shares[name] = _numbers(entry["shares"], f"{name} shares")
        return cls(edges, shares, data["images"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "statistics": {
                name: {"edges": list(self.edges[name]), "shares": list(self.shares[name])} for name in STATISTICS
            },
        }


def baseline_from_directory(images_dir: pathlib.Path, pattern: str = "*.png") -> ImageBaseline:
    """The baseline of every file in `images_dir` matching `pattern`, read in sorted order. A training image
    that does not decode raises BadImage naming the file: the baseline should not silently skip any."""
    paths = sorted(path for path in images_dir.glob(pattern) if path.is_file())
    if not paths:
        raise ValueError(f"no file matches {pattern!r} in {images_dir}")
    rows = []
    for path in paths:
        try:
            rows.append(image_statistics(path.read_bytes()))
        except BadImage as exc:
            raise BadImage(f"{path}: {exc}") from None
    return ImageBaseline.from_statistics(rows)


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(value, DIGITS) for value in values]


class ImageDrift:
    """Feed live request bodies with `add`; read the drift with `to_dict`."""

    def __init__(self, baseline: ImageBaseline) -> None:
        self.baseline = baseline
        self.images = 0
        self.unreadable = 0
        self._counts = {name: [0] * (len(baseline.edges[name]) + 1) for name in STATISTICS}
        self._sums = dict.fromkeys(STATISTICS, 0.0)

    def add(self, data: bytes) -> bool:
        """Count one image; False (and counted as unreadable) when it is not an image this module reads."""
        try:
            statistics = image_statistics(data)
        except BadImage:
            self.unreadable += 1
            return False
        self.images += 1
        for name, value in statistics.items():
            self._counts[name][bisect_left(self.baseline.edges[name], value)] += 1
            self._sums[name] += value
        return True

    def to_dict(self, limit: float, min_images: int) -> dict[str, Any]:
        """The drift of every statistic, JSON-serialisable (undefined numbers are null, never NaN).

        `over_limit` is PSI > `limit` and `drifted` lists those statistics even when `held_back` (fewer than
        `min_images` images, where PSI is noise): the numbers are reported either way, and the caller decides
        whether to act. `drift_alerts` raises nothing for a held-back report."""
        if not math.isfinite(limit):
            raise ValueError(f"limit must be finite, got {limit}")
        statistics: dict[str, dict[str, Any]] = {}
        for name in STATISTICS:
            baseline_shares = self.baseline.shares[name]
            live_shares = [count / self.images for count in self._counts[name]] if self.images else None
            value = None if live_shares is None else round(psi(baseline_shares, live_shares), DIGITS)
            statistics[name] = {
                "psi": value,
                "live_mean": round(self._sums[name] / self.images, DIGITS) if self.images else None,
                "baseline_shares": _rounded(baseline_shares),
                "live_shares": None if live_shares is None else _rounded(live_shares),
                "over_limit": value is not None and value > limit,
            }
        return {
            "images": self.images,
            "unreadable": self.unreadable,
            "limit": limit,
            "min_images": min_images,
            "statistics": statistics,
            "drifted": [name for name in STATISTICS if statistics[name]["over_limit"]],
            "held_back": self.images < min_images,
        }


def drift_alerts(drift: Mapping[str, Any]) -> list[str]:
    """One sentence per drifted statistic of `ImageDrift.to_dict`'s output; none when it is held back."""
    if drift["held_back"]:
        return []
    found = []
    for name in drift["drifted"]:
        row = drift["statistics"][name]
        found.append(
            f"input drift: image {name} moved from the training images: PSI {row['psi']:.3f} is above the limit "
            f"{drift['limit']} (live mean {row['live_mean']:.4g} over {drift['images']} images)"
        )
    return found
