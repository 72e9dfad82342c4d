"""The end of the session `make airflow` serves (tests/ui/conftest.py): every socket it opened is on loopback, and
Ctrl-C stops every process it started. Last in the package's file order."""

from __future__ import annotations

import os
import re
import signal
import time

import psutil
import pytest

from tests.ui.conftest import AirflowUI

pytestmark = pytest.mark.e2e


def running(process: psutil.Process) -> bool:
    """Alive and not a zombie (an orphan's exit status may wait for a reaper that never comes in a container)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def own_processes(ui: AirflowUI) -> list[psutil.Process]:
    """`make airflow` and everything under it: the supervisor, the components, workers and task processes."""
    root = psutil.Process(ui.process.pid)
    return [root, *root.children(recursive=True)]


def mirror_ports(ui: AirflowUI) -> set[int]:
    """The port of the fixture archive's loopback mirror, from the line `make airflow` prints about it."""
    return {int(port) for line in ui.output for port in re.findall(r"served at http://127\.0\.0\.1:(\d+)/", line)}


def test_every_socket_it_opens_is_on_loopback(airflow_ui: AirflowUI) -> None:
    listening = []
    for process in own_processes(airflow_ui):
        try:
            sockets = process.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        listening += [(process.name(), s.laddr) for s in sockets if s.status == psutil.CONN_LISTEN]
    assert listening, "the API server listens somewhere"
    assert all(address.ip in ("127.0.0.1", "::1") for _, address in listening), listening
    # The API server and the offline CIFAR mirror `make airflow` serves, and nothing else: no log server either
    expected = {int(airflow_ui.url.rsplit(":", 1)[1]), *mirror_ports(airflow_ui)}
    assert {address.port for _, address in listening} == expected, listening


def test_ctrl_c_stops_every_process_it_started_within_30_s(airflow_ui: AirflowUI) -> None:
    processes = own_processes(airflow_ui)
    assert len(processes) > 5  # make, the supervisor, four components and their children
    started = time.monotonic()
    os.killpg(airflow_ui.process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    airflow_ui.process.wait(timeout=30)
    alive = processes
    while alive and time.monotonic() - started < 30:
        alive = [p for p in alive if running(p)]
        time.sleep(0.2)
    assert alive == [], [(p.pid, p.name()) for p in alive]
    assert time.monotonic() - started < 30
    assert any("airflow: stopped" in line for line in airflow_ui.output), "".join(airflow_ui.output[-20:])
