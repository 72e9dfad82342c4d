"""The environment a job's or a model's process starts with: clean, like a fresh container's.

A training job and a model server run user code. They get the few basics a process needs, the user's
`Environment`, and the local cloud's endpoints with its keys, and nothing else of the local SageMaker's own
environment: the shell of `make up` may hold real AWS credentials (`AWS_SESSION_TOKEN`, `AWS_PROFILE`, ...) or
other secrets, which user code must not read and its boto3 must not use to reach real AWS."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from localcloud.config import REGION
from localcloud.credentials import Credentials

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def process_basics(python: Path) -> dict[str, str]:
    """PATH with the framework's interpreter first (as in its image), HOME, TMPDIR, a UTF-8 locale and unbuffered
    output (lines must reach CloudWatch while the process runs)."""
    basics = {
        "PATH": f"{python.parent}:{os.environ.get('PATH', DEFAULT_PATH)}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    if "TMPDIR" in os.environ:  # where this machine wants scratch files; a container has its own /tmp
        basics["TMPDIR"] = os.environ["TMPDIR"]
    return basics


def local_cloud_aws(endpoint_url: str) -> dict[str, str]:
    """The AWS SDK settings that send every boto3 call of user code to the local cloud, signed with the install's
    keys from this process's environment (on SageMaker the instance role plays this part). Never the user's own
    AWS credentials: the launcher starts the local SageMaker without any `AWS_*` variable."""
    keys = Credentials.from_env()
    return {
        "S3_ENDPOINT_URL": endpoint_url,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": keys.access_key_id,
        "AWS_SECRET_ACCESS_KEY": keys.secret_access_key,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


def clean_environment(
    python: Path, endpoint_url: str, user: Mapping[str, str], defaults: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The basics, then `defaults`, then the user's `Environment`, then the local cloud's AWS settings: an
    Environment may change the basics and defaults, never where boto3 goes nor with which keys, so a model or job
    cannot be pointed at real AWS by accident. Callers add their own platform variables (job name, ...) on top."""
    return process_basics(python) | dict(defaults or {}) | dict(user) | local_cloud_aws(endpoint_url)
