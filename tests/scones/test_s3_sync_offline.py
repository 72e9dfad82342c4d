"""s3_sync.ensure_bucket's race handling, with a stand-in hook (the real uploads are in test_s3_sync.py)."""

from __future__ import annotations

from typing import Any

import pytest

from include.scones import s3_sync


class RacingHook:
    def __init__(self, error: Exception) -> None:
        self.error, self.created = error, 0

    def check_for_bucket(self, bucket_name: str | None = None) -> bool:
        return False

    def create_bucket(self, bucket_name: str | None = None, region_name: str | None = None) -> None:
        self.created += 1
        raise self.error

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected call {name}")


def test_a_bucket_created_concurrently_is_fine() -> None:
    hook = RacingHook(RuntimeError("An error occurred (BucketAlreadyOwnedByYou) when calling CreateBucket"))
    assert s3_sync.ensure_bucket(hook, "b", "eu-west-1") is False  # another run created it
    assert hook.created == 1


def test_other_create_errors_propagate() -> None:
    hook = RacingHook(RuntimeError("An error occurred (BucketAlreadyExists): owned by another account"))
    with pytest.raises(RuntimeError, match=r"BucketAlreadyExists\)"):
        s3_sync.ensure_bucket(hook, "b", "eu-west-1")
