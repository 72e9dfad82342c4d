"""End-to-end fixtures: a CIFAR-100 mirror served over real HTTP from a fixture archive built from the vendored
dataset, and the project settings pointing the DAGs at it and at a throw-away cache and bucket."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.cifar_mirror import ARCHIVE_NAME, DATASET, serve_archive
from tools.fixture import build_fixture


@dataclass(frozen=True)
class CifarMirror:
    url: str
    md5: str
    archive: Path


@pytest.fixture(scope="session")
def cifar_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CifarMirror]:
    archive = tmp_path_factory.mktemp("cifar-mirror") / ARCHIVE_NAME
    md5 = build_fixture(DATASET, archive)
    with serve_archive(archive) as url:
        yield CifarMirror(url, md5, archive)


def scones_settings(mirror: CifarMirror, cache_dir: Path, bucket: str) -> dict[str, str]:
    """Settings for the DAGs, as a user would export them for an offline mirror (env vars, no code change)."""
    return {
        "SCONES_CIFAR_URL": mirror.url,
        "SCONES_CIFAR_MD5": mirror.md5,
        "SCONES_CACHE_DIR": str(cache_dir),
        "SCONES_BUCKET": bucket,
        "SCONES_POLL_SECONDS": "2",
        # Canary bakes of seconds, not minutes: an update waits for its bake and its final bake.
        "SCONES_ROLLOUT_BAKE_SECONDS": "3",
        # The local cloud flushes captures within seconds; AWS needs the default 15 minutes.
        "SCONES_REPORT_LAG_MINUTES": "0",
    }


@pytest.fixture(scope="session")
def scones_env(local_cloud, cifar_mirror: CifarMirror, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    env = scones_settings(cifar_mirror, tmp_path_factory.mktemp("scones-cache"), "scones-e2e")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
