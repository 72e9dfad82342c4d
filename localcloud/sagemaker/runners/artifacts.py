"""S3 transfers and archive handling shared by training, hosting and transform runners.

Archives come from users, so extraction refuses members that would land outside the target
directory (absolute paths, `..`, links pointing out) instead of trusting the tar file."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class UnsafeArchive(ValueError):
    pass


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"Not an S3 URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def list_keys(s3: Any, uri: str) -> list[str]:
    bucket, prefix = parse_s3_uri(uri)
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


def download_prefix(s3: Any, uri: str, dest: Path) -> int:
    """Download every object under an S3 prefix (or one object) into dest, keeping relative paths."""
    bucket, prefix = parse_s3_uri(uri)
    count = 0
    for key in list_keys(s3, uri):
        relative = key[len(prefix) :].lstrip("/") or os.path.basename(key)
        target = (dest / relative).resolve()
        if not target.is_relative_to(dest.resolve()):
            raise UnsafeArchive(f"S3 key {key!r} would be written outside {dest}")
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
        count += 1
    return count


def download_object(s3: Any, uri: str, dest: Path) -> Path:
    bucket, key = parse_s3_uri(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(dest))
    return dest


def upload_file(s3: Any, path: Path, uri: str) -> str:
    bucket, key = parse_s3_uri(uri)
    s3.upload_file(str(path), bucket, key)
    return uri


def safe_extract_tar(archive: Path, dest: Path) -> None:
    dest = dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if not target.is_relative_to(dest):
                raise UnsafeArchive(f"Archive member {member.name!r} would escape the extraction directory")
            if member.issym() or member.islnk():
                link = (target.parent / member.linkname).resolve()
                if not link.is_relative_to(dest):
                    raise UnsafeArchive(f"Archive link {member.name!r} points outside the extraction directory")
            if member.isdev():
                raise UnsafeArchive(f"Archive member {member.name!r} is a device file")
        tar.extractall(dest, filter="data")


def make_tar_gz(source_dir: Path, archive: Path) -> Path:
    """Pack the *contents* of source_dir at the archive root, as SageMaker packs model/."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for entry in sorted(source_dir.iterdir()):
            tar.add(entry, arcname=entry.name)
    return archive
