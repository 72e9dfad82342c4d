"""A training job's own `/opt/ml`, as its container has on SageMaker, without a container engine.

On SageMaker every job's container sees its input, config, code and model directories under `/opt/ml`, and
scripts (the SageMaker Python SDK v3's generated `sm_train.sh` among them) hard-code those paths. Here each job
has a work directory under the local cloud's home instead; its process starts in a private mount namespace
(util-linux `unshare --mount`, private propagation) in which that directory is bind-mounted on `/opt/ml`. The
mount exists only for the job's process tree and disappears with it: other jobs, the server and the rest of
the machine see `/opt/ml` unchanged, so jobs can run side by side. `unshare` execs (no fork), so the job's pid
is the process the runner started and stop/kill reach it as before.

What it needs: `unshare` and `mount` (util-linux), and either root (the local SageMaker then creates the empty
mount point `/opt/ml`) or unprivileged user namespaces plus an existing `/opt/ml` directory (`sudo mkdir /opt/ml`
once). In a container (compose), the local SageMaker's service needs `cap_add: [SYS_ADMIN]`. `probe()` tells
whether this machine can; where it cannot, the runner falls back to the toolkit's `SAGEMAKER_BASE_DIR` and
refuses only jobs that name a `ContainerEntrypoint`, saying why."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

CONTAINER_ROOT = Path("/opt/ml")
PROBE_TIMEOUT_S = 10.0
PROBE_MARKER = ".localcloud-probe"
# $0 is the job's directory, "$@" the job's command: sh -c binds, enters and becomes the command (exec).
_ENTER = f'mount --bind -- "$0" {CONTAINER_ROOT} && cd {CONTAINER_ROOT} && exec "$@"'


def _namespace_prefix() -> list[str]:
    prefix = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        # Root of its own user namespace, as a container's process is root of its container.
        prefix[1:1] = ["--user", "--map-root-user"]
    return prefix


def command_in_container(job_dir: Path, command: list[str]) -> list[str]:
    """`command`, run so that it sees `job_dir` as /opt/ml (see the module docstring)."""
    return [*_namespace_prefix(), "/bin/sh", "-c", _ENTER, str(job_dir), *command]


def _ensure_mount_point() -> str | None:
    if CONTAINER_ROOT.is_dir():
        return None
    try:
        CONTAINER_ROOT.mkdir(mode=0o755, parents=True)
    except OSError as error:
        return (
            f"{CONTAINER_ROOT} does not exist and cannot be created ({error.strerror}); "
            f"create it once (sudo mkdir {CONTAINER_ROOT})"
        )
    return None


@functools.cache
def unavailable_reason() -> str | None:
    """None when jobs can have their own /opt/ml here, else why not (checked once per server, at its first job)."""
    reason = probe()
    if reason is not None:
        log.warning(
            "training jobs get no private %s here (%s): toolkit jobs use SAGEMAKER_BASE_DIR, and jobs "
            "with a ContainerEntrypoint are refused",
            CONTAINER_ROOT,
            reason,
        )
    return reason


def probe() -> str | None:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "util-linux's unshare and mount are not installed"
    if (problem := _ensure_mount_point()) is not None:
        return problem
    with tempfile.TemporaryDirectory(prefix="localcloud-opt-ml-probe-") as scratch:
        (Path(scratch) / PROBE_MARKER).write_text("ok")
        check = ["/bin/sh", "-c", f"test -f {CONTAINER_ROOT / PROBE_MARKER}"]
        try:
            result = subprocess.run(
                command_in_container(Path(scratch), check),
                capture_output=True,
                text=True,
                timeout=PROBE_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"a private mount namespace could not be made ({error})"
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip() or f"exit code {result.returncode}"
        return f"a private mount namespace could not be made: {detail}"
    if (CONTAINER_ROOT / PROBE_MARKER).exists():  # the bind leaked out: never run jobs like that
        return "the bind mount on /opt/ml was visible outside the job's namespace"
    return None
