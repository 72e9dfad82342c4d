"""s3_sync and training_steps' uploads against the real local cloud, through Airflow's S3Hook."""

from __future__ import annotations

import io
import tarfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from include.scones import s3_sync, training_steps
from include.scones.settings import load
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e

CODE_FILES = {
    "train.py": b"print('train')\n",
    "inference.py": b"def model_fn(d):\n    return d\n",
    "model.py": b"WIDTH = 32\n",
    "requirements.txt": b"pillow\n",
}


def unique_bucket() -> str:
    return f"scones-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def hook(local_cloud: LocalCloud) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id="aws_default")


class CountingHook:
    """Wraps the real S3Hook and counts uploads."""

    def __init__(self, hook: Any) -> None:
        self.hook, self.uploads = hook, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.hook, name)

    def load_bytes(self, bytes_data: bytes, key: str, bucket_name: str | None = None, replace: bool = False) -> None:
        self.uploads.append(key)
        self.hook.load_bytes(bytes_data, key=key, bucket_name=bucket_name, replace=replace)


def keys(s3: Any, bucket: str, prefix: str = "") -> dict[str, str]:
    """{key: ETag} from a listing."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", [])}


def test_ensure_bucket_creates_once(hook: Any, s3: Any) -> None:
    bucket = unique_bucket()
    assert s3_sync.ensure_bucket(hook, bucket, "us-east-1") is True
    assert s3_sync.ensure_bucket(hook, bucket, "us-east-1") is False
    assert bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_sync_uploads_then_skips_then_uploads_only_the_change(hook: Any, s3: Any, tmp_path: Path) -> None:
    # Given a local tree and an empty bucket
    bucket = unique_bucket()
    s3_sync.ensure_bucket(hook, bucket, "us-east-1")
    for name, body in {"a.txt": b"a", "train/images/x.png": b"x" * 1000, "train/train.lst": b"0\t0\tx.png\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(body)
    expected = ["ds/1/a.txt", "ds/1/train/images/x.png", "ds/1/train/train.lst"]
    # When syncing the first time, Then everything is uploaded
    first = s3_sync.sync_directory(hook, tmp_path, bucket, "/ds/1/")
    assert (sorted(first.uploaded), first.skipped) == (expected, [])
    assert sorted(keys(s3, bucket)) == expected
    assert s3.get_object(Bucket=bucket, Key="ds/1/train/images/x.png")["Body"].read() == b"x" * 1000
    # When syncing again, Then nothing is uploaded
    second = s3_sync.sync_directory(hook, tmp_path, bucket, "ds/1")
    assert (second.uploaded, second.skipped) == ([], expected)
    # When one file changes, Then only it is uploaded again
    (tmp_path / "train" / "train.lst").write_bytes(b"0\t1\tx.png\n")
    third = s3_sync.sync_directory(hook, tmp_path, bucket, "ds/1")
    assert third.uploaded == ["ds/1/train/train.lst"]
    assert sorted(third.skipped) == ["ds/1/a.txt", "ds/1/train/images/x.png"]
    assert s3.get_object(Bucket=bucket, Key="ds/1/train/train.lst")["Body"].read() == b"0\t1\tx.png\n"
    # And a different prefix is a different destination
    other = s3_sync.sync_directory(hook, tmp_path, bucket, "ds/2")
    assert len(other.uploaded) == 3


def test_package_code_uploads_once_under_a_content_hash(hook: Any, s3: Any, tmp_path: Path) -> None:
    # Given a code directory with the four model files (plus a cache that must not be packaged)
    code = tmp_path / "code"
    code.mkdir()
    for name, body in CODE_FILES.items():
        (code / name).write_bytes(body)
    (code / "notes.md").write_text("not packaged")
    settings = load(env={"SCONES_BUCKET": unique_bucket()})
    plan = training_steps.plan_run(settings, {}, "manual__1", datetime(2025, 1, 1), "us-east-1", "000000000000")
    counting = CountingHook(hook)
    # When packaging twice
    first = training_steps.package_code(counting, plan, settings, code_dir=code)
    second = training_steps.package_code(counting, plan, settings, code_dir=code)
    # Then both name the same object, which was uploaded once
    assert first == second
    assert first.startswith(f"s3://{plan.bucket}/code/") and first.endswith("/sourcedir.tar.gz")
    key = first.removeprefix(f"s3://{plan.bucket}/")
    assert list(keys(s3, plan.bucket, "code/")) == [key]
    assert counting.uploads == [key]
    body = s3.get_object(Bucket=plan.bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == sorted(CODE_FILES)
        assert {n: tar.extractfile(n).read() for n in tar.getnames()} == CODE_FILES  # type: ignore[union-attr]
    # And changed code gets a new key
    (code / "train.py").write_bytes(b"print('train v2')\n")
    third = training_steps.package_code(counting, plan, settings, code_dir=code)
    assert third != first
    assert sorted(keys(s3, plan.bucket, "code/")) == sorted([key, third.removeprefix(f"s3://{plan.bucket}/")])


def test_load_channels_uses_the_dataset_id_as_prefix(hook: Any, s3: Any, tmp_path: Path) -> None:
    from include.scones.transform import write_channels
    from tests.scones.helpers import BICYCLE, MOTORCYCLE, make_archive

    archive = make_archive([(BICYCLE, "a.png"), (MOTORCYCLE, "b.png")], [(BICYCLE, "c.png"), (MOTORCYCLE, "d.png")])
    manifest = write_channels(archive, ["bicycle", "motorcycle"], tmp_path / "channels", "md5")
    settings = load(env={"SCONES_BUCKET": unique_bucket()})
    plan = training_steps.plan_run(settings, {}, "manual__1", datetime(2025, 1, 1), "us-east-1", "000000000000")
    uri = training_steps.load_channels(hook, plan, settings, tmp_path / "channels")
    assert uri == f"s3://{plan.bucket}/datasets/cifar100/{manifest['dataset_id']}/"
    prefix = f"datasets/cifar100/{manifest['dataset_id']}/"
    assert sorted(k.removeprefix(prefix) for k in keys(s3, plan.bucket)) == sorted(
        [*manifest["files"], "manifest.json"]
    )
    assert training_steps.load_channels(hook, plan, settings, tmp_path / "channels") == uri  # idempotent
