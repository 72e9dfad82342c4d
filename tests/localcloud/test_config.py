"""LOCALCLOUD_BIND_HOST: the local cloud listens on 127.0.0.1 unless a container's compose file says 0.0.0.0; no
other value is accepted, and clients keep connecting through loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from localcloud import config
from localcloud.config import BIND_HOST_VARIABLE, bind_host

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_the_default_is_loopback() -> None:
    assert bind_host({}) == "127.0.0.1"
    assert bind_host({BIND_HOST_VARIABLE: ""}) == "127.0.0.1"
    assert config.BIND_HOST == "127.0.0.1", "the test run itself must not widen the local cloud"


def test_containers_may_ask_for_every_interface() -> None:
    assert bind_host({BIND_HOST_VARIABLE: "0.0.0.0"}) == "0.0.0.0"
    assert bind_host({BIND_HOST_VARIABLE: " 127.0.0.1 "}) == "127.0.0.1"


@pytest.mark.parametrize("value", ["192.168.1.10", "localhost", "::", "127.0.0.2", "0.0.0.0:4566", "*"])
def test_anything_else_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError) as raised:
        bind_host({BIND_HOST_VARIABLE: value})
    assert str(raised.value) == (
        f"LOCALCLOUD_BIND_HOST must be 127.0.0.1 (the default) or 0.0.0.0 (inside a container), got {value!r}"
    )


def _import_config(env_value: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter: BIND_HOST is read once, when localcloud.config is imported."""
    code = textwrap.dedent(
        """
        from localcloud import config
        cfg = config.LocalCloudConfig.from_env({"MINISTACK_PORT": "5001", "LOCAL_SAGEMAKER_PORT": "5002"})
        print(config.BIND_HOST, cfg.ministack_url, cfg.sagemaker_url)
        """
    )
    env = os.environ | {BIND_HOST_VARIABLE: env_value, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_a_wildcard_listener_is_still_reached_through_loopback() -> None:
    result = _import_config("0.0.0.0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.0.0.0", "http://127.0.0.1:5001", "http://127.0.0.1:5002"]


def test_a_bad_value_stops_the_import_with_the_reason() -> None:
    result = _import_config("10.0.0.5")
    assert result.returncode != 0
    assert "LOCALCLOUD_BIND_HOST must be 127.0.0.1 (the default) or 0.0.0.0 (inside a container), got '10.0.0.5'" in (
        result.stderr
    )


# Runs the real server in a network namespace of its own (only its own loopback exists there), so listening on
# 0.0.0.0 reaches nothing outside the test.
NAMESPACE_DRIVER = """
import subprocess, sys, time, urllib.request
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
port, home, python = sys.argv[1], sys.argv[2], sys.argv[3]
server = subprocess.Popen([python, "-m", "localcloud.sagemaker.server", "--port", port, "--home", home,
                           "--ministack-url", "http://127.0.0.1:1", "--pytorch-python", python])
try:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_localcloud/health", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the local SageMaker did not become healthy (exit {server.poll()})")
            time.sleep(0.2)
    print(subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout)
finally:
    server.terminate()
    server.wait(timeout=30)
"""


@pytest.mark.e2e
def test_the_local_sagemaker_listens_where_the_variable_says(tmp_path: Path) -> None:
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here (unshare --net: {probe.stderr.strip()})")
    port = "4567"  # the namespace is new and empty: any port is free
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", NAMESPACE_DRIVER, port, str(tmp_path), sys.executable],
        cwd=PROJECT_ROOT,
        env=os.environ | {BIND_HOST_VARIABLE: "0.0.0.0", "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    listening = [line.split()[3] for line in result.stdout.splitlines() if line.strip()]
    assert listening == [f"0.0.0.0:{port}"]
