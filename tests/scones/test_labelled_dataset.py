"""labelled_dataset: the CIFAR channels plus the Review page's labelled images, as a new dataset version; and the
training step that reads the labels from the real local S3."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from include.scones import labelled_dataset, labelling, training_steps
from include.scones.labelled_dataset import LabelledImage
from include.scones.manifests import read_lst
from include.scones.monitoring.capture import CaptureRecord
from include.scones.settings import load
from include.scones.transform import write_channels
from tests.scones.helpers import BICYCLE, MOTORCYCLE, make_archive

CLASSES = ["bicycle", "motorcycle"]
TRAIN = [(BICYCLE, "bike_s_000010.png"), (MOTORCYCLE, "moto_s_000003.png"), (BICYCLE, "bike_s_000011.png")]
TEST = [(MOTORCYCLE, "moto_s_000100.png"), (BICYCLE, "bike_s_000100.png")]


def png(seed: int, size: int = 32) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def base(tmp_path: Path) -> Path:
    target = tmp_path / "channels"
    write_channels(make_archive(TRAIN, TEST), CLASSES, target, "0" * 32)
    return target


def test_labelled_images_join_the_training_split_only(base: Path, tmp_path: Path) -> None:
    test_image = (base / "test" / "images" / "bike_s_000100.png").read_bytes()
    labelled = [
        LabelledImage("a", "motorcycle", png(1)),
        LabelledImage("b", "bicycle", png(2, size=64)),  # resized to 32x32
        LabelledImage("c", "bicycle", png(1)),  # the same bytes as "a": kept once (the first label)
        LabelledImage("d", "neither", png(3)),
        LabelledImage("e", "bus", png(4)),  # a class this run does not train
        LabelledImage("f", "bicycle", test_image),  # a CIFAR test image: never trained on
        LabelledImage("g", "bicycle", b"not an image"),
    ]
    out = tmp_path / "labelled"
    manifest = labelled_dataset.write(base, labelled, Counter({"item_missing": 1}), out, "s3://b/review/labels/")
    assert manifest is not None
    base_manifest = json.loads((base / "manifest.json").read_text())
    assert manifest["base_dataset_id"] == base_manifest["dataset_id"] != manifest["dataset_id"]
    added = manifest["labelled"]
    assert (added["images"], added["by_class"]) == (2, {"bicycle": 1, "motorcycle": 1})
    assert added["left_out"] == {"already_in_cifar": 1, "class_not_trained": 1, "duplicate": 1, "item_missing": 1,
                                 "neither": 1, "unreadable": 1}  # fmt: skip
    assert manifest["counts"]["train"] == {"bicycle": 3, "motorcycle": 2}
    assert manifest["counts"]["test"] == base_manifest["counts"]["test"]
    # the test split is CIFAR's, byte for byte
    for name, digest in base_manifest["files"].items():
        if name.startswith("test/"):
            assert manifest["files"][name] == digest
    rows = read_lst(out / "train" / "train.lst")
    new = [row for row in rows if row.filename.startswith("labelled-")]
    assert sorted(f"train/images/{row.filename}" for row in new) == added["files"]
    assert {row.label for row in new} == {0, 1} and min(row.index for row in new) >= 1_000_000
    digest_a = hashlib.sha256(png(1)).hexdigest()[:16]
    assert next(row for row in new if row.filename == f"labelled-{digest_a}.png").label == 1  # motorcycle
    for row in new:
        with Image.open(out / "train" / "images" / row.filename) as image:
            assert (image.format, image.size, image.mode) == ("PNG", (32, 32), "RGB")
    baseline = json.loads((out / "image_baseline.json").read_text())
    assert baseline["images"] == 5  # the training images with the labelled ones
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_the_same_labels_give_the_same_version(base: Path, tmp_path: Path) -> None:
    labelled = [LabelledImage("a", "motorcycle", png(1)), LabelledImage("b", "bicycle", png(2))]
    first = labelled_dataset.write(base, labelled, Counter(), tmp_path / "one", "s3://b/")
    second = labelled_dataset.write(base, labelled[::-1], Counter(), tmp_path / "two", "s3://b/")
    assert first is not None and second is not None and first["dataset_id"] == second["dataset_id"]


def test_no_usable_label_keeps_the_cifar_channels(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "labelled"
    labelled = [LabelledImage("d", "neither", png(3))]
    assert labelled_dataset.write(base, labelled, Counter(), out, "s3://b/") is None
    assert not out.exists()


def test_the_training_step_reads_the_current_labels_from_s3(base: Path, s3: Any) -> None:
    bucket = "labelled-dataset-step"
    s3.create_bucket(Bucket=bucket)
    settings = load(env={"SCONES_BUCKET": bucket})
    assert training_steps.add_labelled_images(s3, settings, base) == base  # nothing labelled yet

    when = datetime(2026, 12, 4, 12, tzinfo=UTC)
    records = [CaptureRecord(when, (0.6, 0.4), f"e{n}", f"i{n}", base64.b64encode(png(10 + n)).decode())
               for n in range(3)]  # fmt: skip
    items = [labelling.ReviewItem.from_record(record, CLASSES, "ep") for record in records]
    labelling.publish_queue(s3, bucket, items)
    store = labelling.ReviewStore(bucket, lambda: s3)
    key = labelling.signing_key("k")
    for inference_id, answers in (("i0", ["bicycle", "motorcycle"]), ("i1", ["neither"]), ("i2", ["bicycle"])):
        for answer in answers:
            current = store.label(inference_id)
            ticket = labelling.LabelTicket.issue(key, "u", inference_id, current.event_id if current else "")
            store.save_label(key, "u", inference_id, answer, ticket)

    target = training_steps.add_labelled_images(s3, settings, base)
    manifest = json.loads((target / "manifest.json").read_text())
    assert target != base and manifest["labelled"]["by_class"] == {"bicycle": 1, "motorcycle": 1}
    assert manifest["labelled"]["left_out"] == {"neither": 1}
    assert manifest["labelled"]["source"] == f"s3://{bucket}/review/labels/"
