"""tools/supervisor.py with real processes: each command runs in a session of its own, out of reach of the
terminal's Ctrl-C, and stop() leaves nothing behind, even a grandchild that ignores SIGTERM and left its
process group (as Airflow's task processes do)."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import psutil

from tools.supervisor import Command, Supervisor, session_members

# A parent that forks a stubborn grandchild into a process group of its own, then waits.
STUBBORN_TREE = textwrap.dedent(
    """
    import os, signal, sys, time
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("grandchild", os.getpid(), flush=True)
        while True:
            time.sleep(1)
    print("parent", os.getpid(), flush=True)
    time.sleep(3600)
    """
)


def wait_for_lines(path: Path, count: int, timeout_s: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{path} has fewer than {count} lines")


def test_stop_kills_what_sigterm_does_not(tmp_path: Path) -> None:
    log = tmp_path / "tree.log"
    supervisor = Supervisor([Command("tree", [sys.executable, "-c", STUBBORN_TREE], log)], os.environ, tmp_path, 1.0)
    supervisor.start()
    pids = {name: int(pid) for name, pid in (line.split() for line in wait_for_lines(log, 2))}
    leader = supervisor.commands[0].process
    assert leader is not None
    # Each command leads a session of its own, so a Ctrl-C for the supervisor's terminal never reaches it
    assert os.getsid(leader.pid) == leader.pid != os.getsid(0)
    assert set(session_members(supervisor.sessions())) >= {leader.pid, pids["grandchild"]}

    started = time.monotonic()
    killed = supervisor.stop()
    assert time.monotonic() - started < 5
    assert killed == [pids["grandchild"]]  # SIGTERM ended the parent; only the stubborn one needed SIGKILL
    assert [pid for pid in [*pids.values(), *session_members(supervisor.sessions())] if running(pid)] == []


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # an orphan's zombie waits for init
    except psutil.NoSuchProcess:
        return False


def test_a_command_that_ends_is_reported(tmp_path: Path) -> None:
    log = tmp_path / "quick.log"
    supervisor = Supervisor(
        [
            Command("quick", [sys.executable, "-c", "print('bye'); raise SystemExit(3)"], log),
            Command("slow", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "slow.log"),
        ],
        os.environ,
        tmp_path,
    )
    supervisor.start()
    deadline = time.monotonic() + 20
    while (ended := supervisor.first_exit()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ended is not None and ended.name == "quick" and ended.exited() == 3
    assert ended.log_tail() == "bye"
    assert supervisor.stop() == []  # the slow one ended on SIGTERM
