"""Reproducible archives: the same input files always give the same bytes, so a content hash names a build."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Mapping
from pathlib import Path


def read_tree(root: Path, names: tuple[str, ...] | None = None) -> dict[str, bytes]:
    """Files under `root` (or only `names`), keyed by their POSIX path relative to it; caches are skipped."""
    paths = [root / name for name in names] if names else sorted(p for p in root.rglob("*") if p.is_file())
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in paths
        if "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def content_hash(files: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def tar_gz(files: Mapping[str, bytes]) -> bytes:
    """A .tar.gz with sorted members, zeroed timestamps and owners."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(files):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
                tar.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()
