"""Run a set of long-lived commands together and stop every process they started, whatever they did.

`make airflow` runs Airflow's four components this way instead of through `airflow standalone`, which starts
them in the terminal's process group: Ctrl-C then reached every process at once, including the scheduler's 32
LocalExecutor workers, on top of standalone's own SIGTERM, and the scheduler deadlocked in its signal handler
while logging, leaving orphans behind.

Here each command starts in a session of its own, so the terminal's Ctrl-C reaches only the supervisor. On
stop it sends one SIGTERM to each command, waits up to `grace_s`, then SIGKILLs every process still in those
sessions: workers and task processes too, even those that changed their process group. Output goes to one log
file per command, so the console shows only what a user needs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

KILL_WAIT_S = 5.0  # after SIGKILL, how long to wait for the kernel to end those processes


@dataclass
class Command:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def session(self) -> int | None:
        return None if self.process is None else self.process.pid  # a session leader's id is its pid

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def session_members(sessions: Iterable[int]) -> list[int]:
    """Pids of every live process whose session id is one of `sessions` (the leaders included)."""
    wanted = set(sessions)
    members = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) in wanted:
                members.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Supervisor:
    def __init__(self, commands: list[Command], env: Mapping[str, str], cwd: Path, grace_s: float = 20.0) -> None:
        self.commands = commands
        self.env = dict(env)
        self.cwd = cwd
        self.grace_s = grace_s

    def start(self) -> None:
        for command in self.commands:
            command.log_path.parent.mkdir(parents=True, exist_ok=True)
            command._log = command.log_path.open("ab")
            command.process = subprocess.Popen(
                command.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=command._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # out of the terminal's process group: Ctrl-C is the supervisor's to handle
            )

    def first_exit(self) -> Command | None:
        """A command that has ended (they are all meant to run until stopped), or None."""
        return next((c for c in self.commands if c.exited() is not None), None)

    def sessions(self) -> list[int]:
        return [c.session for c in self.commands if c.session is not None]

    def stop(self) -> list[int]:
        """SIGTERM each command, then SIGKILL whatever is left in their sessions after the grace period.
        Returns the pids that had to be killed."""
        sessions = self.sessions()
        _signal((c.process.pid for c in self.commands if c.process and c.exited() is None), signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline:
            self._reap()
            if not [pid for pid in session_members(sessions) if _alive(pid)]:
                break
            time.sleep(0.2)
        killed = [pid for pid in session_members(sessions) if _alive(pid)]
        _signal(killed, signal.SIGKILL)
        deadline = time.monotonic() + KILL_WAIT_S
        while any(_alive(pid) for pid in killed) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for command in self.commands:
            if command.process is not None:
                try:
                    command.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            if command._log is not None:
                command._log.close()
        return killed

    def _reap(self) -> None:
        for command in self.commands:
            command.exited()  # poll() reaps our own children, so they stop being zombies
