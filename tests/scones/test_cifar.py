"""cifar: the restricted unpickler refuses code execution (os.system itself: tests/reliability/test_bad_input.py);
read_archive checks the CIFAR-100 structure."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from include.scones.cifar import (
    FINE_LABEL_NAMES,
    CifarFormatError,
    UnsafePickleError,
    read_archive,
    restricted_loads,
)
from tests.scones.helpers import (
    BICYCLE,
    MOTORCYCLE,
    EvalPayload,
    ShellPayload,
    make_split,
    meta_pickle,
    split_pickle,
    write_tar_gz,
)


def touch_payload(marker: Path) -> bytes:
    return pickle.dumps(ShellPayload(f"touch {marker}"), protocol=2)


def test_refuses_builtins_eval() -> None:
    with pytest.raises(UnsafePickleError, match=r"'builtins\.eval'"):
        restricted_loads(pickle.dumps(EvalPayload(), protocol=4))
    # protocol 2 spells it the Python 2 way; refused all the same
    with pytest.raises(UnsafePickleError, match=r"'__builtin__\.eval'"):
        restricted_loads(pickle.dumps(EvalPayload(), protocol=2))


def test_refuses_arbitrary_classes_but_is_an_unpickling_error() -> None:
    from collections import OrderedDict

    with pytest.raises(pickle.UnpicklingError, match=r"'collections\.OrderedDict'"):
        restricted_loads(pickle.dumps(OrderedDict(a=1), protocol=2))


@pytest.mark.parametrize("protocol", [3, 4])
def test_allows_uint8_arrays_and_plain_containers(protocol: int) -> None:
    array = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    loaded = restricted_loads(pickle.dumps({"data": array, "names": ["a.png"], "n": [1, 2]}, protocol=protocol))
    assert loaded["names"] == ["a.png"] and loaded["n"] == [1, 2]
    assert loaded["data"].dtype == np.uint8
    np.testing.assert_array_equal(loaded["data"], array)


def valid_members() -> dict[str, bytes]:
    return {
        "meta": meta_pickle(),
        "train": split_pickle(make_split([(BICYCLE, "a.png"), (MOTORCYCLE, "b.png"), (3, "c.png")], 1)),
        "test": split_pickle(make_split([(MOTORCYCLE, "d.png")], 2)),
    }


def test_read_archive_reads_meta_and_both_splits(tmp_path: Path) -> None:
    archive = read_archive(write_tar_gz(tmp_path / "c.tar.gz", valid_members()))
    assert archive.fine_label_names == list(FINE_LABEL_NAMES)
    train, test = archive.splits["train"], archive.splits["test"]
    assert train.fine_labels == [BICYCLE, MOTORCYCLE, 3] and train.filenames == ["a.png", "b.png", "c.png"]
    assert test.fine_labels == [MOTORCYCLE] and test.filenames == ["d.png"]
    np.testing.assert_array_equal(train.data, make_split([(0, "")] * 3, 1).data)
    # Split.image: the row is the R plane, then G, then B
    assert train.image(0).shape == (32, 32, 3)
    assert train.image(0)[0, 1].tolist() == [train.data[0, 1], train.data[0, 1025], train.data[0, 2049]]


def test_read_archive_decodes_python2_style_byte_keys_and_names(tmp_path: Path) -> None:
    split = make_split([(BICYCLE, "a.png")])
    members = valid_members() | {
        "meta": pickle.dumps({b"fine_label_names": [n.encode() for n in FINE_LABEL_NAMES]}, protocol=3),
        "train": pickle.dumps({b"data": split.data, b"fine_labels": [BICYCLE], b"filenames": [b"a.png"]}, protocol=3),
    }
    archive = read_archive(write_tar_gz(tmp_path / "c.tar.gz", members))
    assert archive.fine_label_names[BICYCLE] == "bicycle"
    assert archive.splits["train"].filenames == ["a.png"]


def test_tampered_train_member_is_refused(tmp_path: Path) -> None:
    # Given an archive whose `train` member is a shell payload
    marker = tmp_path / "pwned"
    path = write_tar_gz(tmp_path / "evil.tar.gz", valid_members() | {"train": touch_payload(marker)})
    # When reading it, Then the unpickler refuses it and nothing ran
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system"):
        read_archive(path)
    assert not marker.exists()


def test_archive_without_meta_is_a_format_error(tmp_path: Path) -> None:
    members = valid_members()
    del members["meta"]
    with pytest.raises(CifarFormatError, match=r"archive has no 'cifar-100-python/meta'"):
        read_archive(write_tar_gz(tmp_path / "c.tar.gz", members))


def test_garbage_gz_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "c.tar.gz"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CifarFormatError, match=r"cannot read CIFAR archive .*c\.tar\.gz"):
        read_archive(path)


def test_gzip_of_non_tar_bytes_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "c.tar.gz"
    path.write_bytes(gzip.compress(b"this is not a tar file" * 100))
    with pytest.raises(CifarFormatError, match="cannot read CIFAR archive"):
        read_archive(path)


def test_missing_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(CifarFormatError, match="cannot read CIFAR archive"):
        read_archive(tmp_path / "absent.tar.gz")


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (pickle.dumps([1, 2, 3], protocol=2), "'train' pickle holds list, expected a dict"),
        (pickle.dumps({"data": np.zeros((1, 3072), np.uint8)}, protocol=4), "lacks ['filenames', 'fine_labels']"),
        (
            pickle.dumps({"data": np.zeros((1, 3071), np.uint8), "fine_labels": [1], "filenames": ["a"]}, protocol=4),
            "'train' data must be a uint8 array of shape (N, 3072)",
        ),
        (
            pickle.dumps({"data": np.zeros((1, 3072), np.int64), "fine_labels": [1], "filenames": ["a"]}, protocol=4),
            "'train' data must be a uint8 array of shape (N, 3072)",
        ),
        (
            pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "fine_labels": [1], "filenames": ["a"]}, protocol=4),
            "'train' has 2 images, 1 labels, 1 names",
        ),
    ],
)
def test_split_structure_is_checked(tmp_path: Path, train: bytes, message: str) -> None:
    path = write_tar_gz(tmp_path / "c.tar.gz", valid_members() | {"train": train})
    with pytest.raises(CifarFormatError) as raised:
        read_archive(path)
    assert message in str(raised.value)


def test_meta_without_label_names_is_a_format_error(tmp_path: Path) -> None:
    path = write_tar_gz(tmp_path / "c.tar.gz", valid_members() | {"meta": pickle.dumps({"x": 1}, protocol=2)})
    with pytest.raises(CifarFormatError, match="'meta' pickle lacks fine_label_names"):
        read_archive(path)


def test_corrupt_pickle_member_is_a_format_error(tmp_path: Path) -> None:
    path = write_tar_gz(tmp_path / "c.tar.gz", valid_members() | {"train": b"garbage!"})
    with pytest.raises(CifarFormatError):
        read_archive(path)
