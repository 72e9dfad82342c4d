"""The next training set: the CIFAR channels plus the images people labelled on the Review page (labelling.py).

`collect` reads every queued inference's current label (the last one given) and its captured image; `write`
makes a new dataset version from the CIFAR channels directory:

- each labelled image becomes `train/images/labelled-<sha256[:16]>.png` (a 32x32 RGB PNG, as CIFAR's) with a
  row in train.lst (index from LABELLED_INDEX_BASE up, in content-hash order, so re-runs write the same bytes);
- duplicates by content hash (SHA-256 of the captured bytes) are kept once: the same image labelled twice, or
  an image that is already one of CIFAR's (train or test: a test image never enters training, so the
  evaluation's test split stays untouched and runs stay comparable);
- "neither" labels, labels of classes this run does not train, and images that do not decode are left out and
  counted;
- the manifest says which dataset it grew from (`base_dataset_id`) and what was added (`labelled`); its
  dataset id is content-derived like CIFAR's, so the same labels give the same version.

With no usable label, the CIFAR channels are the training set, unchanged.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include.scones.labelling import ReviewStore
from include.scones.manifests import LstRow, format_lst, read_lst
from include.scones.monitoring.ground_truth import NEITHER

LABELLED_INDEX_BASE = 1_000_000  # train.lst indices of labelled images: clear of CIFAR's (< 50,000)
IMAGE_SIZE = (32, 32)
MAX_PIXELS = 4096 * 4096
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")


@dataclass(frozen=True)
class LabelledImage:
    inference_id: str
    label: str
    image: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.image).hexdigest()


def collect(store: ReviewStore) -> tuple[list[LabelledImage], Counter[str]]:
    """Every current label with its captured image; what could not be used, counted by reason."""
    images, dropped = [], Counter[str]()
    for state in store.current_labels():
        item = store.item(state.inference_id)
        if item is None:
            dropped["item_missing"] += 1
            continue
        images.append(LabelledImage(state.inference_id, state.label, item.image_bytes()))
    return images, dropped


def normalise(data: bytes) -> bytes:
    """The captured image as the training images are: a 32x32 RGB PNG (resized when it is not 32x32). Raises
    ValueError for bytes that are not a small-enough image of an allowed format."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"{image.width}x{image.height} is over {MAX_PIXELS} pixels")
            rgb = image.convert("RGB")
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"not an image: {error}") from None
    if rgb.size != IMAGE_SIZE:
        rgb = rgb.resize(IMAGE_SIZE, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    return buffer.getvalue()


def write(base_dir: Path, labelled: Sequence[LabelledImage], dropped: Counter[str], output_dir: Path,
          source: str) -> dict[str, Any] | None:  # fmt: skip
    """The new dataset version in `output_dir` (replaced atomically), or None when no label is usable (train on
    `base_dir` as it is). `source` says where the labels came from, for the manifest."""
    from include.scones.transform import seal, write_atomically

    base = json.loads((base_dir / "manifest.json").read_text())
    classes = sorted(base["classes"], key=base["classes"].__getitem__)
    known = {digest for name, digest in base["files"].items() if name.endswith(".png")}
    skipped = Counter(dropped)
    chosen: dict[str, tuple[LabelledImage, bytes]] = {}
    for image in labelled:
        if image.label == NEITHER:
            skipped["neither"] += 1
        elif image.label not in base["classes"]:
            skipped["class_not_trained"] += 1
        elif image.sha256 in known:
            skipped["already_in_cifar"] += 1
        elif image.sha256 in chosen:
            skipped["duplicate"] += 1
        else:
            try:
                chosen[image.sha256] = (image, normalise(image.image))
            except ValueError:
                skipped["unreadable"] += 1
    if not chosen:
        return None

    def build(staging: Path) -> dict[str, Any]:
        shutil.copytree(base_dir, staging)
        (staging / "manifest.json").unlink()
        rows = read_lst(staging / "train" / "train.lst")
        by_class: Counter[str] = Counter()
        for number, digest in enumerate(sorted(chosen)):
            image, png = chosen[digest]
            filename = f"labelled-{digest[:16]}.png"
            (staging / "train" / "images" / filename).write_bytes(png)
            rows.append(LstRow(LABELLED_INDEX_BASE + number, base["classes"][image.label], filename))
            by_class[image.label] += 1
        (staging / "train" / "train.lst").write_text(format_lst(rows))
        counts = {**base["counts"], "train": {n: base["counts"]["train"][n] + by_class[n] for n in classes}}
        fields = {
            "counts": counts,
            "source_md5": base["source_md5"],
            "base_dataset_id": base["dataset_id"],
            "labelled": {
                "source": source,
                "images": len(chosen),
                "by_class": {name: by_class[name] for name in classes},
                "left_out": dict(sorted(skipped.items())),
                "files": sorted(f"train/images/labelled-{digest[:16]}.png" for digest in chosen),
            },
        }
        return seal(staging, classes, fields)

    return write_atomically(output_dir, build)
