"""Where the local cloud lives and listens: one place for every path, port and env var name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIND_HOST = "127.0.0.1"  # never anything else: the local cloud must not be reachable from outside
REGION = "us-east-1"
ACCOUNT_ID = "000000000000"  # MiniStack's default account
DUMMY_ACCESS_KEY = "test"  # not a secret: MiniStack and the local SageMaker accept any signature
DUMMY_SECRET_KEY = "test"


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
        return f"http://{BIND_HOST}:{self.ministack_port}"

    @property
    def sagemaker_url(self) -> str:
        return f"http://{BIND_HOST}:{self.sagemaker_port}"

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
