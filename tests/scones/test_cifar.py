"""cifar: the restricted unpickler refuses code execution (os.system itself: tests/reliability/test_bad_input.py)
under every pickle protocol, yet reads CIFAR data pickled with protocols 2 to 5 by Python 2 or 3; read_archive
checks the CIFAR-100 structure."""

from __future__ import annotations

import gzip
import os
import pickle
import pickletools
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    ReducePayload,
    ShellPayload,
    global_call_pickle,
    make_split,
    meta_pickle,
    python2_pickle,
    split_pickle,
    write_tar_gz,
)

PROTOCOLS = (2, 3, 4, 5)


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


@pytest.mark.parametrize(
    ("module", "name", "args"),
    [
        ("os", "system", ["true"]),
        ("posix", "system", ["true"]),
        ("builtins", "eval", ["1 + 1"]),
        ("__builtin__", "eval", ["1 + 1"]),
        ("subprocess", "Popen", ["true"]),
        ("_codecs", "decode", ["cHJpbnQoMSk=", "base64"]),  # a codec call that is not the bytes literal
        ("codecs", "encode", ["x", "latin1"]),  # the right function under another name is still another global
        ("_codecs", "lookup", ["latin1"]),
    ],
)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_refuses_every_other_global_under_every_protocol(
    protocol: int, module: str, name: str, args: list[str]
) -> None:
    with pytest.raises(UnsafePickleError, match=rf"refusing to unpickle global '{module}\.{name}'"):
        restricted_loads(global_call_pickle(module, name, args, protocol))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_codecs_encode_rebuilds_a_latin1_bytes_literal(protocol: int) -> None:
    pickled = global_call_pickle("_codecs", "encode", ["\xff\x00ab", "latin1"], protocol)
    assert restricted_loads(pickled) == b"\xff\x00ab"


@pytest.mark.parametrize(
    "args",
    [
        ["x", "rot13"],  # the same function with another codec: a text transform is no bytes literal
        ["eJwrKMrMK9EwBAAMDwLC", "zlib_codec"],
        ["x"],
        ["x", "latin1", "strict"],
    ],
)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_codecs_encode_is_refused_for_anything_but_latin1(protocol: int, args: list[str]) -> None:
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle '_codecs\.encode' with \d arguments"):
        restricted_loads(global_call_pickle("_codecs", "encode", args, protocol))


PAYLOADS: dict[str, Callable[[Path], object]] = {
    "os.system": lambda marker: ShellPayload(f"touch {marker}"),
    "subprocess.Popen": lambda marker: ReducePayload(subprocess.Popen, ["touch", str(marker)]),
    "builtins.eval": lambda marker: ReducePayload(eval, f"open({str(marker)!r}, 'w')"),
}


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pickler_written_payloads_are_refused_and_never_run(tmp_path: Path, protocol: int, payload: str) -> None:
    # Given a payload pickled by Python's own pickler, aimed at a marker file
    marker = tmp_path / "pwned"
    pickled = pickle.dumps(PAYLOADS[payload](marker), protocol=protocol)
    # When loading it, Then it is refused and nothing ran
    with pytest.raises(UnsafePickleError, match="refusing to unpickle global"):
        restricted_loads(pickled)
    assert not marker.exists()


def cifar_dicts() -> dict[str, dict[str, Any]]:
    """meta, train and test as CIFAR holds them (before pickling)."""
    train = make_split([(BICYCLE, "a.png"), (MOTORCYCLE, "b.png"), (3, "c.png")], 1)
    test = make_split([(MOTORCYCLE, "d.png")], 2)
    return {
        "meta": {"fine_label_names": list(FINE_LABEL_NAMES)},
        **{
            name: {"data": split.data, "fine_labels": list(split.fine_labels), "filenames": list(split.filenames)}
            for name, split in (("train", train), ("test", test))
        },
    }


def assert_same_archive(tmp_path: Path, members: dict[str, bytes]) -> None:
    archive = read_archive(write_tar_gz(tmp_path / "c.tar.gz", members))
    expected = cifar_dicts()
    assert archive.fine_label_names == list(FINE_LABEL_NAMES)
    for name in ("train", "test"):
        split = archive.splits[name]
        assert split.fine_labels == expected[name]["fine_labels"] and split.filenames == expected[name]["filenames"]
        assert split.data.dtype == np.uint8
        np.testing.assert_array_equal(split.data, expected[name]["data"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reads_the_same_data_pickled_by_python3_with_every_protocol(tmp_path: Path, protocol: int) -> None:
    members = {name: pickle.dumps(value, protocol=protocol) for name, value in cifar_dicts().items()}
    assert_same_archive(tmp_path, members)


def test_reads_python3_protocol2_bytes_names_and_keys(tmp_path: Path) -> None:
    # Python 3 writes each bytes object under protocol 2 as `_codecs.encode(str, 'latin1')`
    dicts = cifar_dicts()
    members = {
        name: pickle.dumps(
            {k.encode(): [v.encode() for v in value] if k.endswith("names") else value for k, value in d.items()},
            protocol=2,
        )
        for name, d in dicts.items()
    }
    assert "_codecs encode" in {arg for _, arg, _ in pickletools.genops(members["train"])}
    assert_same_archive(tmp_path, members)


def test_reads_python2_shaped_protocol2_pickles(tmp_path: Path) -> None:
    members = {name: python2_pickle(value) for name, value in cifar_dicts().items()}
    # What makes them Python 2's: strings and the array bytes are BINSTRINGs, no unicode or codecs call
    opcodes = {(op.name, arg) for op, arg, _ in pickletools.genops(members["train"])}
    assert {name for name, _ in opcodes} >= {"SHORT_BINSTRING", "BINSTRING"}
    assert not {name for name, _ in opcodes} & {"BINUNICODE", "SHORT_BINUNICODE", "BINBYTES", "SHORT_BINBYTES"}
    assert ("GLOBAL", "_codecs encode") not in opcodes
    assert_same_archive(tmp_path, members)


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
