"""Fault injection for the reliability suite: crash a local-cloud service the way `kill -9` does, restart one
the way `make down`/`make up` do, and find the processes a crash leaves behind. Works on any running local cloud
(its pid files and state directory), so each scenario injects exactly one fault and observes the rest."""

from __future__ import annotations

import os
import signal
import time

from localcloud import launcher
from localcloud.config import LocalCloudConfig
from tests.localcloud.helpers import live_processes, process_gone


def service(cfg: LocalCloudConfig, name: str) -> launcher.Service:
    return next(s for s in launcher.services(cfg) if s.name == name)


def crash(cfg: LocalCloudConfig, name: str) -> int:
    """SIGKILL the service's own process only, as a crash would: no shutdown hook runs, so whatever it had
    started (training toolkits, model servers) is orphaned. Returns the pid once it is gone."""
    target = service(cfg, name)
    pid = launcher.read_pid(target.pid_file(cfg))
    if pid is None:
        raise RuntimeError(f"{name} is not running, so it cannot crash")
    os.kill(pid, signal.SIGKILL)
    # read_pid reaps the process when this test process started it (otherwise it lingers as a zombie).
    deadline = time.monotonic() + 10
    while launcher.read_pid(target.pid_file(cfg)) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_gone(pid, timeout_s=1), f"{name} (pid {pid}) survived SIGKILL"
    return pid


def restart(cfg: LocalCloudConfig, name: str) -> float:
    """Stop the service cleanly and start it again, as `make down` + `make up` do for one service; returns
    the seconds it was unavailable."""
    target = service(cfg, name)
    began = time.monotonic()
    launcher.stop(target, cfg)
    launcher.start(target, cfg)
    return time.monotonic() - began


def processes_of_job(job_name: str) -> set[int]:
    """Live processes of a training job (its toolkit and script): the platform gives each TRAINING_JOB_NAME. Their
    working directory says nothing here, since every job sees its own directory as /opt/ml."""
    marker = f"TRAINING_JOB_NAME={job_name}\0".encode()
    return live_processes(lambda proc: marker in (proc / "environ").read_bytes())
