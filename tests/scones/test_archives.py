"""archives: reproducible .tar.gz bytes and content hashes."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

from include.scones.archives import content_hash, read_tree, tar_gz

FILES = {"train.py": b"print('train')\n", "model.py": b"# model\n", "sub/requirements.txt": b"pillow\n"}


def test_tar_gz_bytes_ignore_insertion_order() -> None:
    reversed_files = dict(reversed(list(FILES.items())))
    assert list(reversed_files) != list(FILES)
    assert tar_gz(reversed_files) == tar_gz(FILES)


def test_tar_gz_members_are_sorted_with_zero_times() -> None:
    with tarfile.open(fileobj=io.BytesIO(tar_gz(FILES)), mode="r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["model.py", "sub/requirements.txt", "train.py"]
        assert {(m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0o644, 0, 0, "", "")}
        assert tar.extractfile("train.py").read() == FILES["train.py"]  # type: ignore[union-attr]


def test_files_on_disk_give_the_same_bytes_whatever_their_mtime(tmp_path: Path) -> None:
    for root, stamp in ((tmp_path / "a", 1_000_000), (tmp_path / "b", time.time())):
        for name, body in FILES.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(body)
            os.utime(root / name, (stamp, stamp))
    assert tar_gz(read_tree(tmp_path / "a")) == tar_gz(read_tree(tmp_path / "b"))


def test_content_hash_changes_with_one_byte_or_a_name() -> None:
    base = content_hash(FILES)
    assert len(base) == 64 and base == content_hash(dict(reversed(list(FILES.items()))))
    assert content_hash(FILES | {"train.py": b"print('trainX')\n"}) != base
    assert content_hash(FILES | {"train.py": b"print('train')\r"}) != base
    renamed = {("serve.py" if k == "train.py" else k): v for k, v in FILES.items()}
    assert content_hash(renamed) != base
    assert content_hash(FILES | {"extra": b""}) != base


def test_read_tree_skips_caches(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "stray.pyc").write_bytes(b"\0")
    (tmp_path / "pkg" / "m.py").write_bytes(b"x = 1\n")
    (tmp_path / "a.txt").write_bytes(b"a")
    assert read_tree(tmp_path) == {"a.txt": b"a", "pkg/m.py": b"x = 1\n"}


def test_read_tree_with_names_reads_only_those(tmp_path: Path) -> None:
    for name, body in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(body)
    assert read_tree(tmp_path, ("train.py", "sub/requirements.txt")) == {
        "train.py": FILES["train.py"],
        "sub/requirements.txt": FILES["sub/requirements.txt"],
    }
