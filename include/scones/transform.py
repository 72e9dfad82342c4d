"""Turn a CIFAR-100 archive into SageMaker channels: PNG images, `.lst` manifests and a JSON manifest.

Layout written under the output directory (the S3 layout mirrors it):

    <split>/images/<cifar filename>.png    one PNG per selected image
    <split>/<split>.lst                    index (in the CIFAR split), label (position in the class list), filename
    <split>/classes.json                   class names in label order
    image_baseline.json                    the training images' statistics (monitoring's input drift)
    manifest.json                          classes, counts, checksums, and a content-derived dataset id

The output is a pure function of the archive and the class list: re-running writes identical bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from include.scones.cifar import SPLITS, CifarArchive, CifarFormatError
from include.scones.manifests import LstRow, format_lst

T = TypeVar("T")

# File names come from the (untrusted) pickle and become paths: only plain base names are accepted.
_SAFE_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.png$")


def select_labels(archive: CifarArchive, class_names: Sequence[str]) -> dict[int, int]:
    """Map CIFAR fine-label ids to our labels (the position of each name in `class_names`)."""
    if len(class_names) < 2 or len(set(class_names)) != len(class_names):
        raise ValueError(f"need at least two distinct classes, got {list(class_names)}")
    unknown = [name for name in class_names if name not in archive.fine_label_names]
    if unknown:
        raise ValueError(f"unknown CIFAR-100 classes {unknown}; valid names include {archive.fine_label_names[:8]}…")
    return {archive.fine_label_names.index(name): label for label, name in enumerate(class_names)}


def _png(rgb: Any) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _write_split(archive: CifarArchive, split: str, labels: dict[int, int], root: Path) -> list[LstRow]:
    data = archive.splits[split]
    images = root / split / "images"
    images.mkdir(parents=True)
    rows: list[LstRow] = []
    for index, fine_label in enumerate(data.fine_labels):
        if fine_label not in labels:
            continue
        filename = data.filenames[index]
        if not _SAFE_FILENAME.match(filename):
            raise CifarFormatError(f"{split}[{index}]: refusing file name {filename!r} (not a plain .png name)")
        target = images / filename
        if target.exists():
            raise CifarFormatError(f"{split}: file name {filename!r} appears twice")
        target.write_bytes(_png(data.image(index)))
        rows.append(LstRow(index=index, label=labels[fine_label], filename=filename))
    return rows


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_channels(
    archive: CifarArchive, class_names: Sequence[str], output_dir: Path, archive_md5: str
) -> dict[str, Any]:
    """Write the channels to `output_dir` (replaced atomically) and return the manifest."""
    labels = select_labels(archive, class_names)
    return write_atomically(output_dir, lambda staging: _write_staging(archive, class_names, labels, staging,
                                                                       archive_md5))  # fmt: skip


def write_atomically(output_dir: Path, build: Callable[[Path], T]) -> T:
    """Build a directory in `<output_dir>.partial`, then put it in place of `output_dir`: a failure leaves the old
    directory (or none), never a half-written one."""
    staging = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        result = build(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(output_dir, ignore_errors=True)
    staging.replace(output_dir)
    return result


def _write_staging(
    archive: CifarArchive, class_names: Sequence[str], labels: dict[int, int], staging: Path, archive_md5: str
) -> dict[str, Any]:
    counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        rows = _write_split(archive, split, labels, staging)
        (staging / split / f"{split}.lst").write_text(format_lst(rows))
        (staging / split / "classes.json").write_text(json.dumps(list(class_names)) + "\n")
        counts[split] = {name: sum(1 for r in rows if r.label == label) for label, name in enumerate(class_names)}
    return seal(staging, class_names, {"counts": counts, "source_md5": archive_md5})


def seal(staging: Path, class_names: Sequence[str], fields: dict[str, Any]) -> dict[str, Any]:
    """Finish a channels directory: the training images' statistics (image_baseline.json, what monitoring
    measures input drift against), then manifest.json with every file's checksum and the content-derived id."""
    from include.scones.monitoring.image_stats import baseline_from_directory
    from include.scones.monitoring.publish import IMAGE_BASELINE_FILE

    baseline = baseline_from_directory(staging / "train" / "images")
    (staging / IMAGE_BASELINE_FILE).write_text(json.dumps(baseline.to_dict(), indent=2, sort_keys=True) + "\n")
    files = {
        path.relative_to(staging).as_posix(): _sha256(path)
        for path in sorted(staging.rglob("*"))
        if path.is_file() and path.name != "manifest.json"
    }
    content = json.dumps({"classes": list(class_names), "files": files}, sort_keys=True).encode()
    manifest = {
        "dataset_id": hashlib.sha256(content).hexdigest()[:16],
        "classes": {name: label for label, name in enumerate(class_names)},
        **fields,
        "files": files,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
