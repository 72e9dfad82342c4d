"""`make airflow`: the Airflow UI and its components on loopback, wired to the local cloud.

    python tools/airflow_local.py serve          # what `make airflow` runs (after `make up`)
    python tools/airflow_local.py dags list      # any other `airflow` command, with the same configuration

`serve` migrates the SQLite database under `.localcloud/airflow` and runs the API server (UI, REST and
Execution API), the scheduler (LocalExecutor), the DAG processor and the triggerer, each in a session of its own
(tools/supervisor.py), until Ctrl-C or SIGTERM; then every process they started is gone within 30 s.

- The UI is on http://127.0.0.1:8080, or `AIRFLOW_PORT`; tasks report to the Execution API on that same port.
- Every socket is on 127.0.0.1: the log servers of the scheduler and triggerer are not started (the API server
  reads task logs from the shared log folder on this machine, so nothing needs them).
- The DAGs are the project's `dags/`, the plugins its `plugins/`, and the AWS connection the one `make up` wrote.
- Without SCONES_CIFAR_URL the DAGs get the fixture archive from a loopback mirror that lives as long as this
  command, as in `make demo`, so runs triggered from the UI work offline too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from localcloud import launcher  # noqa: E402
from localcloud.config import LOOPBACK_HOST, LocalCloudConfig  # noqa: E402
from tools.cifar_mirror import configured_or_fixture_source  # noqa: E402
from tools.supervisor import Command, Supervisor  # noqa: E402

DEFAULT_PORT = 8080
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
READY_TIMEOUT_S = 300.0
# The components `airflow standalone` runs; the log servers stay off (module docstring).
COMPONENTS = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
# Warnings that Airflow 3.3.2 and its providers raise from their own code in every command (`dags test` included).
# They say nothing about this project, so they are silenced: a warning line in `make demo` is then one of ours.
KNOWN_AIRFLOW_WARNINGS = (
    "Using `httpx` with `starlette.testclient` is deprecated",  # Airflow imports FastAPI's test client
    "Could not import graphviz",  # only needed to render a DAG to an image, which nothing here does
    "The `airflow.utils.operator_helpers.determine_kwargs` attribute is deprecated",  # the standard provider
)


def python_warnings() -> str:
    """PYTHONWARNINGS with the known warnings ignored (by message prefix), after whatever the user set."""
    return ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), *(f"ignore:{m}" for m in KNOWN_AIRFLOW_WARNINGS)]))


def port() -> int:
    value = os.environ.get("AIRFLOW_PORT") or str(DEFAULT_PORT)
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SystemExit(f"AIRFLOW_PORT must be a TCP port number, not {value!r}")
    return int(value)


def base_url(api_port: int) -> str:
    return f"http://{LOOPBACK_HOST}:{api_port}"


def environment(cfg: LocalCloudConfig, api_port: int | None = None) -> dict[str, str]:
    api_port = port() if api_port is None else api_port
    venv_bin = str(Path(sys.executable).parent)
    return {
        **launcher.environment(cfg),
        # Anything that starts `airflow` by name (as `airflow standalone` does) finds this venv's.
        "PATH": os.pathsep.join(filter(None, [venv_bin, os.environ.get("PATH")])),
        "AIRFLOW_HOME": str(cfg.home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        # LocalExecutor forks `parallelism` workers up front (32 by default); 8 is plenty for these DAGs.
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM") or "8",
        "AIRFLOW__API__HOST": LOOPBACK_HOST,
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": base_url(api_port),
        # Tasks report here; Airflow's default is localhost:8080 whatever port the API server is on.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url(api_port)}/execution/",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        "PYTHONWARNINGS": python_warnings(),
        "SCONES_CACHE_DIR": os.environ.get("SCONES_CACHE_DIR") or str(cfg.home / "cache"),
    }


def _airflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


def _health(url: str) -> dict[str, str]:
    try:
        body = httpx.get(f"{url}/api/v2/monitor/health", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return {name: str((body.get(name) or {}).get("status")) for name in HEALTH_COMPONENTS}


def wait_until_ready(supervisor: Supervisor, url: str, timeout_s: float = READY_TIMEOUT_S) -> str | None:
    """None once every component reports healthy; otherwise why not (a component exited, or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ended = supervisor.first_exit()
        if ended is not None:
            return f"{ended.name} exited with code {ended.exited()}; end of {ended.log_path}:\n{ended.log_tail()}"
        statuses = _health(url)
        if statuses and all(status == "healthy" for status in statuses.values()):
            return None
        time.sleep(1)
    return f"not every component was healthy after {timeout_s:.0f} s: {_health(url) or 'the API server did not answer'}"


def admin_password(airflow_home: Path) -> str | None:
    try:
        users = json.loads((airflow_home / "simple_auth_manager_passwords.json.generated").read_text())
    except (OSError, ValueError):
        return None
    return users.get("admin")


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def serve(cfg: LocalCloudConfig, env: dict[str, str]) -> int:
    api_port = int(env["AIRFLOW__API__PORT"])
    with socket.socket() as probe:
        if probe.connect_ex((LOOPBACK_HOST, api_port)) == 0:
            raise SystemExit(f"{LOOPBACK_HOST}:{api_port} is already in use: stop that program or set AIRFLOW_PORT")
    airflow_home = Path(env["AIRFLOW_HOME"])
    logs = airflow_home / "components"
    print(f"airflow: migrating the metadata database in {airflow_home} ...", flush=True)
    migrated = subprocess.run(_airflow("db", "migrate"), env=env, cwd=PROJECT_ROOT, capture_output=True, text=True)
    if migrated.returncode != 0:
        print(migrated.stdout[-3000:] + migrated.stderr[-3000:], file=sys.stderr)
        return migrated.returncode
    commands = [Command(name, _airflow(*args), logs / f"{name}.log") for name, args in COMPONENTS.items()]
    supervisor = Supervisor(commands, env, PROJECT_ROOT)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_stop)
    url = base_url(api_port)
    status = 0
    try:
        supervisor.start()
        print(f"airflow: starting {', '.join(COMPONENTS)} (logs in {logs}/) ...", flush=True)
        problem = wait_until_ready(supervisor, url)
        if problem:
            print(f"airflow: {problem}", file=sys.stderr, flush=True)
            status = 1
        else:
            password = admin_password(airflow_home)
            login = f"user admin, password {password}" if password else "user admin"
            print(
                f"\nAirflow is ready on {url}/ ({login}; kept in "
                f"{airflow_home / 'simple_auth_manager_passwords.json.generated'}).\n"
                "Press Ctrl-C to stop Airflow; the local cloud keeps running (make down).\n",
                flush=True,
            )
            while (ended := supervisor.first_exit()) is None:
                time.sleep(1)
            print(f"airflow: {ended.name} exited with code {ended.exited()}:\n{ended.log_tail()}", file=sys.stderr)
            status = 1
    except _Stop as stop:
        print(f"\nairflow: {stop}: stopping", flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        killed = supervisor.stop()
        note = f" ({len(killed)} processes had to be killed)" if killed else ""
        print(f"airflow: stopped{note}", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cfg = LocalCloudConfig.from_env()
    with configured_or_fixture_source(cfg.home / "fixtures") as data_env:
        env = os.environ | environment(cfg) | data_env
        if args == ["serve"]:
            return serve(cfg, env)
        try:
            return subprocess.run(_airflow(*args), env=env).returncode
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main())
