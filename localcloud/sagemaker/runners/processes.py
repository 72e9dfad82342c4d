"""Process-group helpers every runner shares: signal a group, fingerprint a pid, kill an orphan.

Training toolkits and model servers start with `start_new_session=True`, so each one's pid is also
its process-group id: signalling the group reaches whatever the process spawned. The control plane
records `(pid, start ticks)` of each, so that after a crash it can kill what was left behind
without hitting an unrelated process that reuses the pid."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def signal_group(pid: int, signum: int) -> bool:
    """Send signum to the process group led by pid. Returns False when that group is gone (or not ours)."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def process_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot: tells a live pid from a recycled one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after it are plain.
    return int(stat.rsplit(")", 1)[1].split()[19])


def kill_orphan(pid: int, start_ticks: int | None) -> bool:
    """SIGKILL the process group a crashed server left behind, if that process still exists."""
    current = process_start_ticks(pid)
    if current is None or (start_ticks is not None and current != start_ticks):
        return False
    return signal_group(pid, signal.SIGKILL)
