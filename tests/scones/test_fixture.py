"""fixture.build_fixture: a reproducible CIFAR-100-format archive from PNGs, readable by the real reader."""

from __future__ import annotations

import collections
import pickle
import pickletools
import tarfile
from pathlib import Path

import numpy as np
import pytest

from include.scones.cifar import FINE_LABEL_NAMES, read_archive
from include.scones.manifests import read_lst
from tests.scones.helpers import BICYCLE, MOTORCYCLE, write_png_source
from tools.fixture import DISTRACTOR_CLASSES, build_fixture

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REAL_DATASET = PROJECT_ROOT / "datasets" / "cifar100-bicycle-motorcycle"


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "source"
    return root, write_png_source(root, per_class=10)


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_same_input_gives_the_same_bytes(tmp_path: Path, source: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = source
    first = build_fixture(root, tmp_path / "a" / "cifar.tar.gz")
    second = build_fixture(root, tmp_path / "b" / "cifar.tar.gz")
    assert first == second
    assert (tmp_path / "a" / "cifar.tar.gz").read_bytes() == (tmp_path / "b" / "cifar.tar.gz").read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["cifar.tar.gz"]  # no .partial left
    # and the seed matters: another seed gives other distractors, so other bytes
    assert build_fixture(root, tmp_path / "c" / "cifar.tar.gz", seed=1) != first


def test_split_per_class_every_fifth_by_index(tmp_path: Path, source: tuple[Path, dict[str, np.ndarray]]) -> None:
    # Given 10 images per class whose train.lst lists them out of index order
    root, _ = source
    rows = read_lst(root / "train.lst")
    assert [r.index for r in rows] != sorted(r.index for r in rows)
    # When building the archive and reading it back with the restricted reader
    build_fixture(root, tmp_path / "x.tar.gz")
    archive = read_archive(tmp_path / "x.tar.gz")
    # Then per class, positions 0 and 5 of the index-sorted rows are in test, the other 8 in train
    for label, fine in ((0, BICYCLE), (1, MOTORCYCLE)):
        ordered = [r.filename for r in sorted((r for r in rows if r.label == label), key=lambda r: r.index)]
        names = {
            split: [
                n
                for n, f in zip(archive.splits[split].filenames, archive.splits[split].fine_labels, strict=True)
                if f == fine
            ]
            for split in ("train", "test")
        }
        assert sorted(names["test"]) == sorted([ordered[0], ordered[5]])
        assert sorted(names["train"]) == sorted(ordered[1:5] + ordered[6:])
    # And every distractor class is present: 25 each, 5 of them in test
    for split, per_class in (("train", 20), ("test", 5)):
        counts = collections.Counter(FINE_LABEL_NAMES[f] for f in archive.splits[split].fine_labels)
        assert counts == {"bicycle": 8 if split == "train" else 2, "motorcycle": 8 if split == "train" else 2} | {
            name: per_class for name in DISTRACTOR_CLASSES
        }
    assert archive.fine_label_names == list(FINE_LABEL_NAMES)


def test_pixels_round_trip(tmp_path: Path, source: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, rgb_by_name = source
    build_fixture(root, tmp_path / "x.tar.gz")
    archive = read_archive(tmp_path / "x.tar.gz")
    seen = 0
    for split in archive.splits.values():
        for i, name in enumerate(split.filenames):
            if name in rgb_by_name:
                np.testing.assert_array_equal(split.image(i), rgb_by_name[name])  # alpha dropped, RGB exact
                seen += 1
    assert seen == 20


def test_pickles_look_like_the_official_python2_files(
    tmp_path: Path, source: tuple[Path, dict[str, np.ndarray]]
) -> None:
    root, _ = source
    build_fixture(root, tmp_path / "x.tar.gz")
    files = members(tmp_path / "x.tar.gz")
    assert sorted(files) == ["cifar-100-python/meta", "cifar-100-python/test", "cifar-100-python/train"]
    train = files["cifar-100-python/train"]
    ops = list(pickletools.genops(train))
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2
    globals_ = {arg for op, arg, _ in ops if op.name in ("GLOBAL", "STACK_GLOBAL", "INST")}
    assert "numpy.core.multiarray _reconstruct" in globals_
    assert not any("_codecs" in str(arg) for _, arg, _ in ops)
    assert not any("numpy._core" in str(arg) for _, arg, _ in ops)
    # plain pickle reads it the way the official files are read
    loaded = pickle.loads(train, encoding="latin1")
    assert sorted(loaded) == ["batch_label", "coarse_labels", "data", "filenames", "fine_labels"]
    assert loaded["data"].dtype == np.uint8 and loaded["data"].shape == (16 + 4 * 20, 3072)
    assert loaded["batch_label"] == "training batch 1 of 1"
    assert set(loaded["coarse_labels"]) == {18, 19}  # vehicles_1, vehicles_2
    meta = pickle.loads(files["cifar-100-python/meta"], encoding="latin1")
    assert meta["fine_label_names"] == list(FINE_LABEL_NAMES) and len(meta["coarse_label_names"]) == 20


def test_images_may_live_in_a_train_subfolder(tmp_path: Path) -> None:
    write_png_source(tmp_path / "src" / "train", per_class=5)
    (tmp_path / "src" / "train" / "train.lst").rename(tmp_path / "src" / "train.lst")
    build_fixture(tmp_path / "src", tmp_path / "x.tar.gz", distractors_per_class=5)
    archive = read_archive(tmp_path / "x.tar.gz")
    assert len(archive.splits["test"].filenames) == 1 + 1 + 4 * 1


def test_errors_name_the_problem(tmp_path: Path, source: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = source
    with pytest.raises(ValueError, match=r"no CIFAR-100 superclass known for \['apple'\]"):
        build_fixture(root, tmp_path / "x.tar.gz", class_names=("bicycle", "apple"))
    with pytest.raises(ValueError, match=r"train.lst has no rows with label 2 \(bus\)"):
        build_fixture(root, tmp_path / "x.tar.gz", class_names=("bicycle", "motorcycle", "bus"))
    assert not (tmp_path / "x.tar.gz").exists()


def test_rejects_images_that_are_not_32x32(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "src"
    write_png_source(root, per_class=2)
    first = read_lst(root / "train.lst")[0].filename
    Image.new("RGB", (64, 32)).save(root / first)
    with pytest.raises(ValueError, match=rf"{first}: expected a 32x32 image, got 64x32"):
        build_fixture(root, tmp_path / "x.tar.gz")


def test_real_dataset(tmp_path: Path) -> None:
    # Given the project's 1000-image bicycle/motorcycle dataset
    md5 = build_fixture(REAL_DATASET, tmp_path / "cifar-100-python.tar.gz")
    assert len(md5) == 32
    archive = read_archive(tmp_path / "cifar-100-python.tar.gz")
    # Then 4 in 5 images per class are in train, 1 in 5 in test
    for split, expected in (("train", 800), ("test", 200)):
        labels = collections.Counter(archive.splits[split].fine_labels)
        assert labels[BICYCLE] + labels[MOTORCYCLE] == expected
        assert labels[BICYCLE] == labels[MOTORCYCLE] == expected // 2
    # and the tar members carry no timestamps (that is what makes the MD5 stable)
    with tarfile.open(tmp_path / "cifar-100-python.tar.gz", "r:gz") as tar:
        assert [m.mtime for m in tar.getmembers()] == [0, 0, 0]
    assert (tmp_path / "cifar-100-python.tar.gz").read_bytes()[4:8] == b"\0\0\0\0"  # gzip header mtime
