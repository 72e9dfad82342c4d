"""`make demo` with an unreachable CIFAR-100 URL (issue #4's bad input): the extract task fails once, without
Airflow retries, with a message naming the URL and SCONES_CIFAR_URL/SCONES_CIFAR_MD5; the demo stops with a
non-zero exit; the local cloud keeps running for the next attempt.

tests/scones/test_extract.py covers the downloader's message and backoff alone; this runs the real demo
(tools/demo.py, what `make demo` runs after `make up`) against the real local cloud."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from localcloud import launcher
from tests.scones.helpers import closed_port_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"


@pytest.mark.e2e
def test_demo_with_an_unreachable_cifar_url_names_the_url_and_settings_and_leaves_the_cloud_up(
    local_cloud: Any, tmp_path: Path
) -> None:
    url = closed_port_url()
    # The session's local cloud (its LOCALCLOUD_HOME and ports are in os.environ): the demo finds it running. An
    # empty cache, so no earlier download can stand in for the unreachable one.
    env = os.environ | {"SCONES_CIFAR_URL": url, "SCONES_CIFAR_MD5": OFFICIAL_MD5, "SCONES_CACHE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "tools/demo.py"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "demo stopped: `airflow dags test scones_training_pipeline` failed" in output
    reason = f"could not download the CIFAR-100 archive from {url}: "
    failure = [line for line in output.splitlines() if line.startswith("airflow.sdk.exceptions.AirflowFailException")]
    assert failure and reason in failure[0], output[-3000:]
    assert "SCONES_CIFAR_URL" in failure[0] and "SCONES_CIFAR_MD5" in failure[0]
    # The downloader's three attempts, and no Airflow retry of the task on top of them.
    assert output.count(f"downloading {url} (attempt") == 3
    # The next `make demo` (with a good URL) reuses the running local cloud.
    assert [line.split()[1] for line in launcher.status(local_cloud.cfg)] == ["healthy", "healthy"]
