"""Upload a local directory to S3 through the provider's S3Hook, skipping objects that already hold the same bytes.

Works the same against AWS and the local cloud: the hook's connection decides where requests go.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


class S3HookLike(Protocol):
    """The subset of `airflow.providers.amazon.aws.hooks.s3.S3Hook` used here."""

    def get_conn(self) -> Any: ...
    def check_for_bucket(self, bucket_name: str | None = None) -> bool: ...
    def create_bucket(self, bucket_name: str | None = None, region_name: str | None = None) -> None: ...
    def load_bytes(self, bytes_data: bytes, key: str, bucket_name: str | None = None, replace: bool = ...) -> None: ...


@dataclass
class SyncReport:
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def ensure_bucket(hook: S3HookLike, bucket: str, region: str | None) -> bool:
    """Create `bucket` unless it exists. Returns True when it was created."""
    if hook.check_for_bucket(bucket):
        return False
    try:
        hook.create_bucket(bucket_name=bucket, region_name=region)
    except Exception as exc:  # a concurrent run created it first
        if "BucketAlreadyOwnedByYou" not in str(exc):
            raise
        return False
    log.info("created bucket s3://%s", bucket)
    return True


def existing_etags(hook: S3HookLike, bucket: str, prefix: str) -> dict[str, str]:
    etags: dict[str, str] = {}
    paginator = hook.get_conn().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            etags[item["Key"]] = item["ETag"].strip('"')
    return etags


def sync_directory(hook: S3HookLike, local_dir: Path, bucket: str, prefix: str, max_workers: int = 8) -> SyncReport:
    """Mirror the files under `local_dir` to `s3://bucket/prefix/...` (never deletes anything remote)."""
    prefix = prefix.strip("/")
    remote = existing_etags(hook, bucket, prefix + "/")
    report = SyncReport()
    pending: list[tuple[str, bytes]] = []
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        key = f"{prefix}/{path.relative_to(local_dir).as_posix()}"
        body = path.read_bytes()
        # Single-part uploads have the MD5 as ETag; anything else (multipart) is simply uploaded again.
        if remote.get(key) == hashlib.md5(body).hexdigest():
            report.skipped.append(key)
        else:
            pending.append((key, body))
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        for key in pool.map(lambda item: _put(hook, bucket, *item), pending):
            report.uploaded.append(key)
    log.info("s3://%s/%s: %d uploaded, %d unchanged", bucket, prefix, len(report.uploaded), len(report.skipped))
    return report


def _put(hook: S3HookLike, bucket: str, key: str, body: bytes) -> str:
    hook.load_bytes(body, key=key, bucket_name=bucket, replace=True)
    return key
