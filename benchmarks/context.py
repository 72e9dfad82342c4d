"""What every bench part shares: project paths and interpreters, the local cloud's configuration and boto3
clients, the bench's work directory (`<LOCALCLOUD_HOME>/bench/`), child processes, and the machine's load."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from localcloud import launcher  # noqa: E402
from localcloud.config import ACCOUNT_ID, LocalCloudConfig  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
MODEL_CODE = ROOT / "include" / "model"
TORCH_CHILD = BENCH_DIR / "torch_child.py"
# Separate from the demo's names, so a bench run never redeploys or reconfigures the user's own workflow.
BUCKET = "scones-bench"
ENDPOINT_NAME = "scones-bench-classifier"
INFERENCE_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311"
SAGEMAKER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/scones-sagemaker-execution"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


class ChildFailed(RuntimeError):
    pass


def run_child(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    echo: Callable[[str], None] | None = None,
    timeout_s: float | None = None,
) -> tuple[str, float]:
    """Run a child to completion; returns (its stdout, wall seconds). Lines are passed to `echo` as they
    arrive (progress for long children); stderr goes to ours. A non-zero exit raises ChildFailed with the tail."""
    began = time.perf_counter()
    process = subprocess.Popen(
        list(command), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT if echo else None, text=True
    )
    assert process.stdout is not None
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if echo is not None:
                echo(line.rstrip("\n"))
        process.wait(timeout=timeout_s)
    except BaseException:
        process.kill()
        process.wait()
        raise
    seconds = time.perf_counter() - began
    output = "".join(lines)
    if process.returncode != 0:
        raise ChildFailed(f"{' '.join(map(str, command[:3]))} … exited with {process.returncode}:\n{output[-3000:]}")
    return output, seconds


@dataclass
class BenchContext:
    """One bench run. Parts put what later parts reuse here (the trained model, the deployed endpoint)."""

    cfg: LocalCloudConfig
    work_dir: Path
    facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls) -> BenchContext:
        cfg = LocalCloudConfig.from_env()
        work_dir = cfg.home / "bench"
        work_dir.mkdir(parents=True, exist_ok=True)
        return cls(cfg=cfg, work_dir=work_dir)

    @property
    def pytorch_python(self) -> Path:
        return self.cfg.pytorch_venv / "bin" / "python"

    @property
    def project_python(self) -> str:
        return sys.executable

    def start_local_cloud(self) -> None:
        """Idempotent (`make bench` already ran `make up`); points this process's AWS clients at it."""
        for line in launcher.up(self.cfg):
            log(line)
        os.environ.update(launcher.environment(self.cfg))

    def client(self, service: str, **kwargs: Any) -> Any:
        import boto3

        return boto3.client(service, **kwargs)

    @cached_property
    def s3(self) -> Any:
        return self.client("s3")

    def ensure_bucket(self) -> str:
        try:
            self.s3.head_bucket(Bucket=BUCKET)
        except self.s3.exceptions.ClientError:
            self.s3.create_bucket(Bucket=BUCKET)
        return BUCKET
