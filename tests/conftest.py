"""Shared fixtures: the real local cloud (MiniStack + local SageMaker) on free loopback ports,
in a throw-away LOCALCLOUD_HOME, driven only through boto3 as a user would."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# DAG folders that dag.test() may run: it re-parses the DAG's bundle, so every test DAG must live
# in the configured dags folder. One throw-away folder links the project's and the tests' DAGs.
TEST_DAG_FOLDERS = {
    "project": PROJECT_ROOT / "dags",
    "localcloud_tests": PROJECT_ROOT / "tests" / "localcloud" / "provider_dags",
}


def _airflow_home() -> str:
    home = Path(tempfile.mkdtemp(prefix="scones-airflow-home-"))
    dags = home / "dags"
    dags.mkdir()
    for name, folder in TEST_DAG_FOLDERS.items():
        (dags / name).symlink_to(folder)
    return str(home)


# Airflow reads its configuration at import time: point it at a throw-away SQLite home first.
os.environ.setdefault("AIRFLOW_HOME", _airflow_home())
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
# The project's plugins register the DAGs' timetable (plugins/scones_timetables_plugin.py), as in `make airflow`.
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(PROJECT_ROOT / "plugins"))

from localcloud import launcher  # noqa: E402
from localcloud.config import LocalCloudConfig  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalCloud:
    cfg: LocalCloudConfig

    def client(self, service: str, **kwargs: Any) -> Any:
        # AWS_ENDPOINT_URL_* from launcher.environment() route each service; the keys are this cloud's own.
        keys = launcher.install_credentials(self.cfg)
        return boto3.client(
            service, aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key, **kwargs
        )

    def restart_sagemaker(self) -> None:
        sagemaker = launcher.services(self.cfg)[1]
        launcher.stop(sagemaker, self.cfg)
        launcher.start(sagemaker, self.cfg)


@contextlib.contextmanager
def running_local_cloud(home: Path) -> Iterator[LocalCloud]:
    """Both services up on free loopback ports with state under `home`; the process environment points every
    AWS client (and Airflow's connection) at them until the block ends, then both stop."""
    env = {
        "LOCALCLOUD_HOME": str(home),
        "MINISTACK_PORT": str(free_port()),
        "LOCAL_SAGEMAKER_PORT": str(free_port()),
    }
    cfg = LocalCloudConfig.from_env(os.environ | env)
    saved = dict(os.environ)
    os.environ.update(env | launcher.environment(cfg))
    # Each cloud has its own keys, and boto3's default session keeps the first credentials it finds: start afresh.
    boto3.DEFAULT_SESSION = None
    try:
        launcher.up(cfg)
        yield LocalCloud(cfg)
    finally:
        launcher.down(cfg)
        os.environ.clear()
        os.environ.update(saved)
        boto3.DEFAULT_SESSION = None


@pytest.fixture(scope="session")
def local_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with running_local_cloud(tmp_path_factory.mktemp("localcloud")) as cloud:
        yield cloud


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated SQLite metadata DB, needed by dag.test()."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )


@pytest.fixture(scope="session")
def sagemaker(local_cloud: LocalCloud) -> Any:
    return local_cloud.client("sagemaker")


@pytest.fixture(scope="session")
def s3(local_cloud: LocalCloud) -> Any:
    return local_cloud.client("s3")


@pytest.fixture(scope="session")
def runtime(local_cloud: LocalCloud) -> Any:
    return local_cloud.client("sagemaker-runtime")


@pytest.fixture(scope="session")
def logs(local_cloud: LocalCloud) -> Any:
    return local_cloud.client("logs")


@pytest.fixture(scope="session")
def cloudwatch(local_cloud: LocalCloud) -> Any:
    return local_cloud.client("cloudwatch")


ROLE_ARN = "arn:aws:iam::000000000000:role/scones-sagemaker-execution"
PYTORCH_TRAINING_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311"
PYTORCH_INFERENCE_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5-cpu-py311"
