"""Where the local cloud lives and listens: one place for every path, port and env var name."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK_HOST = "127.0.0.1"
WILDCARD_HOST = "0.0.0.0"
BIND_HOST_VARIABLE = "LOCALCLOUD_BIND_HOST"
REGION = "us-east-1"
ACCOUNT_ID = "000000000000"  # MiniStack's default account


def aws_managed_s3_key_arn(region: str = REGION, account: str = ACCOUNT_ID) -> str:
    """The ARN of the account's AWS managed KMS key `aws/s3`: what S3 uses for an `aws:kms` write that names no key.
    Derived as localcloud/ministack/patches/s3-kms-default-key.patch derives it in MiniStack (a test checks they
    agree), so the local SageMaker names the key MiniStack's S3 answers."""
    key_id = uuid.uuid5(uuid.NAMESPACE_URL, f"arn:aws:kms:{region}:{account}:alias/aws/s3")
    return f"arn:aws:kms:{region}:{account}:key/{key_id}"


def bind_host(env: Mapping[str, str] | None = None) -> str:
    """Where the local cloud's services listen: 127.0.0.1, unless LOCALCLOUD_BIND_HOST says 0.0.0.0.

    Only docker-compose.yaml sets 0.0.0.0: inside a container, a service on 127.0.0.1 cannot be reached from
    the other containers (Airflow, and the Lambdas that MiniStack runs call the local SageMaker). The container's
    own network namespace, with ports published on the host's 127.0.0.1 only, keeps it private there. On a
    machine itself the local cloud must never be reachable from outside, so nothing else is accepted."""
    value = ((os.environ if env is None else env).get(BIND_HOST_VARIABLE) or LOOPBACK_HOST).strip()
    if value not in (LOOPBACK_HOST, WILDCARD_HOST):
        raise ValueError(
            f"{BIND_HOST_VARIABLE} must be {LOOPBACK_HOST} (the default) or {WILDCARD_HOST} (inside a container), "
            f"got {value!r}"
        )
    return value


BIND_HOST = bind_host()
# The address clients on the same host use: 0.0.0.0 is where to listen, not where to connect.
CONNECT_HOST = LOOPBACK_HOST if BIND_HOST == WILDCARD_HOST else BIND_HOST


@dataclass(frozen=True)
class LocalCloudConfig:
    home: Path
    ministack_port: int
    sagemaker_port: int
    ministack_venv: Path
    pytorch_venv: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LocalCloudConfig:
        env = dict(os.environ if env is None else env)
        return cls(
            home=Path(env.get("LOCALCLOUD_HOME") or PROJECT_ROOT / ".localcloud").resolve(),
            ministack_port=int(env.get("MINISTACK_PORT") or 4566),
            sagemaker_port=int(env.get("LOCAL_SAGEMAKER_PORT") or 4567),
            ministack_venv=Path(env.get("LOCALCLOUD_MINISTACK_VENV") or PROJECT_ROOT / ".venv-ministack"),
            pytorch_venv=Path(env.get("LOCALCLOUD_PYTORCH_VENV") or PROJECT_ROOT / ".venv-pytorch"),
        )

    @property
    def ministack_url(self) -> str:
        return f"http://{CONNECT_HOST}:{self.ministack_port}"

    @property
    def sagemaker_url(self) -> str:
        return f"http://{CONNECT_HOST}:{self.sagemaker_port}"

    @property
    def sagemaker_home(self) -> Path:
        return self.home / "sagemaker"

    @property
    def ministack_home(self) -> Path:
        return self.home / "ministack"

    @property
    def env_file(self) -> Path:
        """Shell-sourceable file with the Airflow connection and AWS variables for local mode."""
        return self.home / "env"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"
