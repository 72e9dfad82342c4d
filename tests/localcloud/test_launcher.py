"""The launcher: idempotent `up`, a clear message for a busy port, and the local-mode connection. That every
listening socket of the local cloud is on 127.0.0.1 is checked by tests/reliability/test_security.py."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from localcloud import launcher
from localcloud.config import LocalCloudConfig
from tests.conftest import free_port


def test_busy_port_names_the_variable_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        cfg = LocalCloudConfig.from_env(
            {"LOCALCLOUD_HOME": str(tmp_path), "MINISTACK_PORT": str(port), "LOCAL_SAGEMAKER_PORT": str(free_port())}
        )
        ministack = launcher.services(cfg)[0]
        with pytest.raises(launcher.LaunchError, match=f"127.0.0.1:{port} is already in use.*Set MINISTACK_PORT"):
            launcher.start(ministack, cfg)


def test_connection_points_sagemaker_services_at_the_local_sagemaker(tmp_path: Path) -> None:
    cfg = LocalCloudConfig.from_env(
        {"LOCALCLOUD_HOME": str(tmp_path), "MINISTACK_PORT": "5001", "LOCAL_SAGEMAKER_PORT": "5002"}
    )
    connection = json.loads(launcher.environment(cfg)["AIRFLOW_CONN_AWS_DEFAULT"])
    assert connection["conn_type"] == "aws"
    assert connection["extra"]["endpoint_url"] == "http://127.0.0.1:5001"
    assert connection["extra"]["service_config"] == {
        "sagemaker": {"endpoint_url": "http://127.0.0.1:5002"},
        "sagemaker-runtime": {"endpoint_url": "http://127.0.0.1:5002"},
    }
    env_text = launcher.write_env_file(cfg).read_text()
    assert "export AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:5002" in env_text


@pytest.mark.e2e
def test_up_is_idempotent(local_cloud: Any) -> None:
    report = launcher.up(local_cloud.cfg)
    assert [line.split()[1:3] for line in report[:2]] == [["already", "running"], ["already", "running"]]
