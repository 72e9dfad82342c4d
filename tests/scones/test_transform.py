"""transform: PNG channels, .lst manifests, classes.json and manifest.json from a CIFAR archive."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from include.scones.cifar import CifarArchive, CifarFormatError, CifarSplit, read_archive
from include.scones.transform import select_labels, write_channels
from tests.scones.helpers import BICYCLE, BUS, MOTORCYCLE, make_archive, tree_bytes, write_png_source
from tools.fixture import build_fixture

TRAIN = [
    (BICYCLE, "bike_s_000010.png"),
    (BUS, "bus_s_000001.png"),
    (MOTORCYCLE, "moto_s_000003.png"),
    (MOTORCYCLE, "moto_s_000004.png"),
    (BICYCLE, "bike_s_000011.png"),
    (BICYCLE, "bike_s_000012.png"),
]
TEST = [(MOTORCYCLE, "moto_s_000100.png"), (BUS, "bus_s_000100.png"), (BICYCLE, "bike_s_000100.png")]
MD5 = "0123456789abcdef0123456789abcdef"


def png_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        assert image.mode == "RGB" and image.size == (32, 32)
        return np.asarray(image)


@pytest.fixture
def archive() -> CifarArchive:
    return make_archive(TRAIN, TEST)


def test_writes_images_lst_and_classes(tmp_path: Path, archive: CifarArchive) -> None:
    # When transforming for bicycle (label 0) and motorcycle (label 1)
    out = tmp_path / "channels"
    manifest = write_channels(archive, ["bicycle", "motorcycle"], out, MD5)
    # Then the counts and the .lst rows (CIFAR index, our label, file name) are exact, sorted by index
    assert manifest["counts"] == {"train": {"bicycle": 3, "motorcycle": 2}, "test": {"bicycle": 1, "motorcycle": 1}}
    assert (out / "train" / "train.lst").read_text() == (
        "0\t0\tbike_s_000010.png\n2\t1\tmoto_s_000003.png\n3\t1\tmoto_s_000004.png\n"
        "4\t0\tbike_s_000011.png\n5\t0\tbike_s_000012.png\n"
    )
    assert (out / "test" / "test.lst").read_text() == "0\t1\tmoto_s_000100.png\n2\t0\tbike_s_000100.png\n"
    assert json.loads((out / "train" / "classes.json").read_text()) == ["bicycle", "motorcycle"]
    assert (out / "test" / "classes.json").read_text() == '["bicycle", "motorcycle"]\n'
    # Only the selected classes became images, and each PNG holds its row's pixels
    assert sorted(p.name for p in (out / "train" / "images").iterdir()) == sorted(
        name for label, name in TRAIN if label != BUS
    )
    np.testing.assert_array_equal(
        png_rgb(out / "train" / "images" / "moto_s_000004.png"), archive.splits["train"].image(3)
    )
    np.testing.assert_array_equal(
        png_rgb(out / "test" / "images" / "bike_s_000100.png"), archive.splits["test"].image(2)
    )
    assert manifest["classes"] == {"bicycle": 0, "motorcycle": 1}
    assert manifest["source_md5"] == MD5


def test_labels_follow_the_class_list_order(tmp_path: Path, archive: CifarArchive) -> None:
    a = write_channels(archive, ["bicycle", "motorcycle"], tmp_path / "a", MD5)
    b = write_channels(archive, ["motorcycle", "bicycle"], tmp_path / "b", MD5)
    assert (tmp_path / "b" / "test" / "test.lst").read_text() == "0\t0\tmoto_s_000100.png\n2\t1\tbike_s_000100.png\n"
    assert b["classes"] == {"motorcycle": 0, "bicycle": 1}
    assert json.loads((tmp_path / "b" / "train" / "classes.json").read_text()) == ["motorcycle", "bicycle"]
    assert a["dataset_id"] != b["dataset_id"]  # same images, other labels: another dataset


def test_manifest_checksums_match_the_files(tmp_path: Path, archive: CifarArchive) -> None:
    out = tmp_path / "channels"
    manifest = write_channels(archive, ["bicycle", "motorcycle"], out, MD5)
    on_disk = {
        path: hashlib.sha256(body).hexdigest() for path, body in tree_bytes(out).items() if path != "manifest.json"
    }
    assert manifest["files"] == on_disk
    assert len(on_disk) == 5 + 2 + 2 * 2 + 1  # images, a .lst and classes.json per split, image_baseline.json
    baseline = json.loads((out / "image_baseline.json").read_text())
    assert baseline["images"] == sum(manifest["counts"]["train"].values())  # the training images only
    assert set(baseline["statistics"]) == {"brightness", "contrast", "saturation", "sharpness", "size"}
    assert json.loads((out / "manifest.json").read_text()) == manifest
    content = json.dumps({"classes": ["bicycle", "motorcycle"], "files": on_disk}, sort_keys=True).encode()
    assert manifest["dataset_id"] == hashlib.sha256(content).hexdigest()[:16]


def test_rerun_is_byte_identical_and_replaces_the_tree(tmp_path: Path, archive: CifarArchive) -> None:
    out = tmp_path / "channels"
    first = write_channels(archive, ["bicycle", "motorcycle"], out, MD5)
    before = tree_bytes(out)
    (out / "stale.txt").write_text("left over")
    second = write_channels(archive, ["bicycle", "motorcycle"], out, MD5)
    assert tree_bytes(out) == before
    assert first == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["channels"]  # no staging dir left


def test_select_labels_maps_fine_ids_to_positions(archive: CifarArchive) -> None:
    assert select_labels(archive, ["motorcycle", "bicycle", "bus"]) == {MOTORCYCLE: 0, BICYCLE: 1, BUS: 2}


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (["bicycle", "unicorn"], "unknown CIFAR-100 classes ['unicorn']"),
        (["bicycle"], "need at least two distinct classes, got ['bicycle']"),
        (["bicycle", "bicycle"], "need at least two distinct classes, got ['bicycle', 'bicycle']"),
        ([], "need at least two distinct classes, got []"),
    ],
)
def test_bad_class_lists(tmp_path: Path, archive: CifarArchive, classes: list[str], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        write_channels(archive, classes, tmp_path / "out", MD5)
    assert message in str(raised.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", ["../evil.png", "/tmp/evil.png", "sub/evil.png", ".hidden.png", "evil.exe"])
def test_unsafe_file_names_are_refused(tmp_path: Path, bad: str) -> None:
    # Given an archive whose pickle names a selected image with a path, not a plain .png name
    archive = make_archive(TRAIN, [(BICYCLE, "ok.png"), (MOTORCYCLE, bad)])
    out = tmp_path / "work" / "channels"
    # When transforming, Then it is refused and no channels directory appears
    with pytest.raises(CifarFormatError) as raised:
        write_channels(archive, ["bicycle", "motorcycle"], out, MD5)
    assert f"test[1]: refusing file name {bad!r}" in str(raised.value)
    assert not out.exists()
    assert not (tmp_path / "work" / "evil.png").exists() and not (tmp_path / "evil.png").exists()


def test_unsafe_names_of_unselected_classes_are_ignored(tmp_path: Path) -> None:
    archive = make_archive(TRAIN, [*TEST, (BUS, "../bus.png")])
    manifest = write_channels(archive, ["bicycle", "motorcycle"], tmp_path / "out", MD5)
    assert manifest["counts"]["test"] == {"bicycle": 1, "motorcycle": 1}


def test_duplicate_file_names_are_refused(tmp_path: Path) -> None:
    archive = make_archive(TRAIN, [(BICYCLE, "same.png"), (MOTORCYCLE, "same.png")])
    with pytest.raises(CifarFormatError, match=r"test: file name 'same.png' appears twice"):
        write_channels(archive, ["bicycle", "motorcycle"], tmp_path / "out", MD5)
    assert not (tmp_path / "out").exists()


def test_fixture_archive_end_to_end(tmp_path: Path) -> None:
    # The builder's archive, read by the restricted reader, transformed: 8 + 8 train and 2 + 2 test images
    rgb = write_png_source(tmp_path / "src", per_class=10)
    md5 = build_fixture(tmp_path / "src", tmp_path / "c.tar.gz")
    manifest = write_channels(read_archive(tmp_path / "c.tar.gz"), ["bicycle", "motorcycle"], tmp_path / "out", md5)
    assert manifest["counts"] == {"train": {"bicycle": 8, "motorcycle": 8}, "test": {"bicycle": 2, "motorcycle": 2}}
    for split in ("train", "test"):
        for line in (tmp_path / "out" / split / f"{split}.lst").read_text().splitlines():
            _, label, name = line.split("\t")
            assert name.startswith(f"class{label}_")  # label 0 = the source's class 0 = bicycle
            np.testing.assert_array_equal(png_rgb(tmp_path / "out" / split / "images" / name), rgb[name])


def test_png_bytes_are_plain_rgb(tmp_path: Path) -> None:
    from PIL import Image

    data = np.zeros((2, 3072), np.uint8)
    data[0, :1024] = 255  # a red image
    archive = CifarArchive(
        fine_label_names=make_archive([], []).fine_label_names,
        splits={
            "train": CifarSplit(data=data, fine_labels=[BICYCLE, MOTORCYCLE], filenames=["r.png", "k.png"]),
            "test": CifarSplit(data=data, fine_labels=[BICYCLE, MOTORCYCLE], filenames=["r.png", "k.png"]),
        },
    )
    write_channels(archive, ["bicycle", "motorcycle"], tmp_path / "out", MD5)
    with Image.open(io.BytesIO((tmp_path / "out" / "train" / "images" / "r.png").read_bytes())) as image:
        assert image.getpixel((5, 7)) == (255, 0, 0)
