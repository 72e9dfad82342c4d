"""Build a CIFAR-100-format archive (`meta`, `train`, `test` pickles) from a folder of PNGs and an `.lst` file.

The CIFAR host is often unreachable (CI, air-gapped networks). Serving this archive from a local HTTP server
and pointing `SCONES_CIFAR_URL`/`SCONES_CIFAR_MD5` at it lets the real extract and transform code run offline.

- The pickles mirror the official Python 2 files, opcode for opcode where it matters: protocol 2, the image
  bytes as a latin1 string inside `numpy.core.multiarray._reconstruct`, so the restricted unpickler reads
  both the same way.
- The split is deterministic: per class, rows sorted by their original CIFAR index, every `test_every`-th row
  (positions 0, N, 2N, ...) goes to `test`, the rest to `train`.
- Distractor images of other vehicle classes (synthetic, seeded) make class selection meaningful.
- Output bytes are reproducible (fixed tar and gzip timestamps), so the MD5 is stable for a given input.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from include.scones.cifar import ARCHIVE_ROOT
from include.scones.cifar_labels import COARSE_LABEL_NAMES, FINE_LABEL_NAMES
from include.scones.manifests import read_lst

DEFAULT_CLASSES = ("bicycle", "motorcycle")
DISTRACTOR_CLASSES = ("bus", "pickup_truck", "streetcar", "tractor")
# CIFAR-100's superclasses of the vehicle classes this builder knows.
_COARSE = {
    "bicycle": "vehicles_1", "bus": "vehicles_1", "motorcycle": "vehicles_1", "pickup_truck": "vehicles_1",
    "train": "vehicles_1", "lawn_mower": "vehicles_2", "rocket": "vehicles_2", "streetcar": "vehicles_2",
    "tank": "vehicles_2", "tractor": "vehicles_2",
}  # fmt: skip


class _Py2ArrayPickler(pickle.Pickler):
    """Pickle uint8 arrays the way Python 2 numpy did: raw bytes as a (latin1) str, no `_codecs.encode`."""

    def reducer_override(self, obj: Any) -> Any:
        if not isinstance(obj, np.ndarray):
            return NotImplemented
        reconstruct = obj.__reduce__()[0]
        state = (1, obj.shape, obj.dtype, False, np.ascontiguousarray(obj).tobytes().decode("latin1"))
        return reconstruct, (np.ndarray, (0,), "b"), state


def _dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _Py2ArrayPickler(buffer, protocol=2).dump(obj)
    # numpy 2 names its module numpy._core; the official files say numpy.core. GLOBAL opcodes hold the name as
    # newline-terminated text, so renaming is an exact byte substitution.
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _load_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if rgb.shape != (32, 32, 3):
        raise ValueError(f"{path}: expected a 32x32 image, got {rgb.shape[1]}x{rgb.shape[0]}")
    return rgb


def _synthetic_image(rng: np.random.Generator) -> np.ndarray:
    # Smooth colour blobs: upsampled 4x4 noise, so PNGs compress like photos rather than like static.
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    return np.kron(small, np.ones((8, 8, 1), dtype=np.uint8))


@dataclass
class _Rows:
    data: list[np.ndarray]
    fine: list[int]
    coarse: list[int]
    names: list[str]

    def add(self, image: np.ndarray, class_name: str, filename: str) -> None:
        self.data.append(image.transpose(2, 0, 1).reshape(-1))  # HWC -> the CIFAR row: R plane, G, B
        self.fine.append(FINE_LABEL_NAMES.index(class_name))
        self.coarse.append(COARSE_LABEL_NAMES.index(_COARSE[class_name]))
        self.names.append(filename)

    def pickle(self, split: str, seed: int) -> bytes:
        order = np.random.default_rng(seed).permutation(len(self.names))  # CIFAR interleaves classes
        return _dumps({
            "filenames": [self.names[i] for i in order],
            "batch_label": f"{split} batch 1 of 1",
            "fine_labels": [self.fine[i] for i in order],
            "coarse_labels": [self.coarse[i] for i in order],
            "data": np.stack([self.data[i] for i in order]).astype(np.uint8),
        })  # fmt: skip


def _tar_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(f"{ARCHIVE_ROOT}/{name}")
    info.size, info.mtime, info.mode = len(payload), 0, 0o644
    tar.addfile(info, io.BytesIO(payload))


def build_fixture(
    source_dir: Path,
    output: Path,
    lst_name: str = "train.lst",
    class_names: Sequence[str] = DEFAULT_CLASSES,
    test_every: int = 5,
    distractors_per_class: int = 25,
    seed: int = 0,
) -> str:
    """Write the archive to `output` and return its MD5 (hex)."""
    unknown = [name for name in (*class_names, *DISTRACTOR_CLASSES) if name not in _COARSE]
    if unknown:
        raise ValueError(f"no CIFAR-100 superclass known for {unknown}; known: {sorted(_COARSE)}")
    rows = read_lst(source_dir / lst_name)
    splits = {"train": _Rows([], [], [], []), "test": _Rows([], [], [], [])}
    for label, class_name in enumerate(class_names):
        ordered = sorted((row for row in rows if row.label == label), key=lambda row: row.index)
        if not ordered:
            raise ValueError(f"{lst_name} has no rows with label {label} ({class_name})")
        for position, row in enumerate(ordered):
            split = "test" if position % test_every == 0 else "train"
            image_path = source_dir / row.filename
            if not image_path.exists():
                image_path = source_dir / "train" / row.filename  # the shared dataset keeps images in train/
            splits[split].add(_load_png(image_path), class_name, row.filename)
    rng = np.random.default_rng(seed)
    for class_name in DISTRACTOR_CLASSES:
        for number in range(distractors_per_class):
            split = "test" if number % test_every == 0 else "train"
            splits[split].add(_synthetic_image(rng), class_name, f"{class_name}_s_{number:06d}.png")

    meta = _dumps({"fine_label_names": list(FINE_LABEL_NAMES), "coarse_label_names": list(COARSE_LABEL_NAMES)})
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".partial")
    with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            _tar_member(tar, "meta", meta)
            _tar_member(tar, "train", splits["train"].pickle("training", seed))
            _tar_member(tar, "test", splits["test"].pickle("testing", seed + 1))
    tmp.replace(output)
    return hashlib.md5(output.read_bytes()).hexdigest()


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Build a CIFAR-100-format fixture archive and print its MD5.")
    parser.add_argument("--source", type=Path, default=Path("datasets/cifar100-bicycle-motorcycle"))
    parser.add_argument("--lst", default="train.lst", help="the .lst file inside --source")
    parser.add_argument("--output", type=Path, default=Path(".localcloud/fixtures/cifar-100-python.tar.gz"))
    parser.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES), help="names of labels 0, 1, ...")
    args = parser.parse_args(argv)
    md5 = build_fixture(args.source, args.output, args.lst, args.classes)
    print(f"{args.output}\nmd5 {md5}")


if __name__ == "__main__":
    main()
