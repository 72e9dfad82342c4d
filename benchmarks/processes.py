"""CPU time of the local cloud's processes, read from /proc: unlike latency, CPU seconds per request barely move
with the load other people put on a shared machine, so they show what a change to the request path saves."""

from __future__ import annotations

import os
from pathlib import Path

from localcloud import launcher
from localcloud.config import LocalCloudConfig

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime: fields 14 and 15 of stat(5)


def sagemaker_server_pid(cfg: LocalCloudConfig) -> int | None:
    service = launcher.services(cfg)[1]
    return launcher.read_pid(service.pid_file(cfg))


def endpoint_worker_pids(cfg: LocalCloudConfig, endpoint_name: str) -> list[int]:
    """The serving_worker.py processes whose model directory belongs to the endpoint."""
    marker = f"{cfg.sagemaker_home}/endpoints/{endpoint_name}/"
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "serving_worker.py" in cmdline and marker in cmdline:
            pids.append(int(proc.name))
    return sorted(pids)


class CpuMeter:
    """CPU seconds used by a set of processes between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self._started: dict[str, float] = {}

    def start(self) -> None:
        self._started = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self.pids.items()}

    def stop(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(pid) for pid in pids) - self._started[name] for name, pids in self.pids.items()}
