"""Start, stop and describe the local cloud: MiniStack and the local SageMaker, both on 127.0.0.1.

`up` is idempotent (a healthy service is left alone), waits until both answer their health
checks, creates the execution roles the README documents (localcloud/roles.py), and writes `<home>/env`
(mode 0600): the install's credentials (localcloud/credentials.py), the Airflow
connection for local mode and the standard AWS variables, for the other make targets to source. Both services
start with a clean AWS environment: none of the shell's `AWS_*` variables (a session token, a profile) reach
them, or through MiniStack the Lambdas; only the local cloud's own keys do. `down` stops the SageMaker first so its
data-capture buffers flush into MiniStack's S3 before MiniStack stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from localcloud import credentials
from localcloud.config import BIND_HOST, PROJECT_ROOT, REGION, LocalCloudConfig
from localcloud.credentials import Credentials

HEALTH_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
ROLES_TIMEOUT_S = 120.0


class LaunchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    port_variable: str
    health_url: str
    command: list[str]
    env: dict[str, str]
    directories: tuple[Path, ...] = ()  # made before start: the service expects them to exist

    def pid_file(self, cfg: LocalCloudConfig) -> Path:
        return cfg.run_dir / f"{self.name}.pid"

    def log_file(self, cfg: LocalCloudConfig) -> Path:
        return cfg.home / "logs" / f"{self.name}.log"


def install_credentials(cfg: LocalCloudConfig) -> Credentials:
    return credentials.load_or_create(cfg.env_file)


def services(cfg: LocalCloudConfig) -> list[Service]:
    keys = install_credentials(cfg)
    state_dir, s3_dir, tmp_dir = (cfg.ministack_home / d for d in ("state", "s3", "tmp"))
    ministack = Service(
        name="ministack",
        port=cfg.ministack_port,
        port_variable="MINISTACK_PORT",
        health_url=f"{cfg.ministack_url}/_ministack/health",
        # MiniStack's own server behind the browser-isolation guard (localcloud/ministack/serve.py); `-m` finds
        # `localcloud` in the working directory, PROJECT_ROOT, without a PYTHONPATH the Lambdas would inherit.
        command=[str(cfg.ministack_venv / "bin" / "python"), "-m", "localcloud.ministack.serve"],
        env={
            "GATEWAY_PORT": str(cfg.ministack_port),
            "BIND_HOST": BIND_HOST,
            "PERSIST_STATE": "1",
            "STATE_DIR": str(state_dir),
            "S3_PERSIST": "1",
            "S3_DATA_DIR": str(s3_dir),
            "TMPDIR": str(tmp_dir),
            "LOG_LEVEL": "WARNING",
            # The secret MiniStack hands its Lambdas (with its account id as the key): see credentials.py.
            "AWS_ACCESS_KEY_ID": keys.access_key_id,
            "AWS_SECRET_ACCESS_KEY": keys.secret_access_key,
            **keys.as_env(),
        },
        directories=(state_dir, s3_dir, tmp_dir),
    )
    sagemaker = Service(
        name="sagemaker",
        port=cfg.sagemaker_port,
        port_variable="LOCAL_SAGEMAKER_PORT",
        health_url=f"{cfg.sagemaker_url}/_localcloud/health",
        command=[
            sys.executable,
            "-m",
            "localcloud.sagemaker.server",
            "--port",
            str(cfg.sagemaker_port),
            "--home",
            str(cfg.sagemaker_home),
            "--ministack-url",
            cfg.ministack_url,
            "--pytorch-python",
            str(cfg.pytorch_venv / "bin" / "python"),
        ],
        env={"PYTHONPATH": str(PROJECT_ROOT), **keys.as_env()},
    )
    return [ministack, sagemaker]


def service_environment(service: Service, parent: dict[str, str] | None = None) -> dict[str, str]:
    """The launcher's environment without any `AWS_*` variable, then the service's own settings."""
    inherited = dict(os.environ if parent is None else parent)
    return {k: v for k, v in inherited.items() if not k.startswith("AWS_")} | service.env


def is_healthy(service: Service) -> bool:
    try:
        with urllib.request.urlopen(service.health_url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((BIND_HOST, port))
        except OSError:
            return False
    return True


def _reap_if_our_child(pid: int) -> None:
    """A service started by this very process (as in tests) lingers as a zombie until reaped."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def read_pid(path: Path) -> int | None:
    """The pid in a pid file if that process is still alive, else None."""
    try:
        pid = int(path.read_text().strip())
        _reap_if_our_child(pid)
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(service: Service, cfg: LocalCloudConfig) -> str:
    if is_healthy(service):
        return "already running"
    if not port_is_free(service.port):
        raise LaunchError(
            f"{BIND_HOST}:{service.port} is already in use by another program, so {service.name} cannot start. "
            f"Set {service.port_variable} to another port (e.g. {service.port_variable}={service.port + 100})."
        )
    if not Path(service.command[0]).exists():
        raise LaunchError(f"{service.command[0]} is missing: run `make venvs` first.")
    for directory in (cfg.run_dir, service.log_file(cfg).parent, *service.directories):
        directory.mkdir(parents=True, exist_ok=True)
    with service.log_file(cfg).open("ab") as log:
        process = subprocess.Popen(
            service.command,
            cwd=PROJECT_ROOT,
            env=service_environment(service),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the make target that started it
        )
    service.pid_file(cfg).write_text(str(process.pid))
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LaunchError(f"{service.name} exited with code {process.returncode}; see {service.log_file(cfg)}")
        if is_healthy(service):
            return f"started (pid {process.pid})"
        time.sleep(0.2)
    raise LaunchError(f"{service.name} did not become healthy in {HEALTH_TIMEOUT_S:.0f}s; see {service.log_file(cfg)}")


def stop(service: Service, cfg: LocalCloudConfig) -> str:
    pid = read_pid(service.pid_file(cfg))
    if pid is None:
        service.pid_file(cfg).unlink(missing_ok=True)
        return "not running"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and read_pid(service.pid_file(cfg)) is not None:
        time.sleep(0.1)
    if read_pid(service.pid_file(cfg)) is not None:
        os.killpg(pid, signal.SIGKILL)
        result = f"killed (pid {pid}) after {STOP_TIMEOUT_S:.0f}s"
    else:
        result = f"stopped (pid {pid})"
    service.pid_file(cfg).unlink(missing_ok=True)
    return result


def connection_uri_json(cfg: LocalCloudConfig) -> str:
    """The Airflow AWS connection for local mode: MiniStack for everything, SageMaker per service."""
    keys = install_credentials(cfg)
    sagemaker = {"endpoint_url": cfg.sagemaker_url}
    extra = {
        "region_name": REGION,
        "endpoint_url": cfg.ministack_url,
        "service_config": {"sagemaker": sagemaker, "sagemaker-runtime": sagemaker},
        # botocore sends StartSyncExecution to `sync-<endpoint host>` (AWS's sync-states endpoint); the local
        # cloud has one host for every service.
        "config_kwargs": {"inject_host_prefix": False},
    }
    connection = {"conn_type": "aws", "login": keys.access_key_id, "password": keys.secret_access_key, "extra": extra}
    return json.dumps(connection)


def environment(cfg: LocalCloudConfig) -> dict[str, str]:
    keys = install_credentials(cfg)
    return {
        **keys.as_env(),
        "AIRFLOW_CONN_AWS_DEFAULT": connection_uri_json(cfg),
        "AWS_ACCESS_KEY_ID": keys.access_key_id,
        "AWS_SECRET_ACCESS_KEY": keys.secret_access_key,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": cfg.ministack_url,
        "AWS_ENDPOINT_URL_SAGEMAKER": cfg.sagemaker_url,
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": cfg.sagemaker_url,
        "AWS_DISABLE_HOST_PREFIX_INJECTION": "true",  # the connection's inject_host_prefix: false, for plain boto3
        "LOCALCLOUD_HOME": str(cfg.home),
    }


def write_env_file(cfg: LocalCloudConfig) -> Path:
    header = (
        "# Written by `make up`: source it to point AWS clients at the local cloud. It holds the local cloud's\n"
        "# own credentials (not AWS's), which every request to it must be signed with: keep it private (0600).\n"
    )
    credentials.write_private(cfg.env_file, header + credentials.exports(environment(cfg)))
    return cfg.env_file


def ensure_roles(cfg: LocalCloudConfig) -> str:
    """Run localcloud/roles.py with the env file's environment (and none of the shell's AWS_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | environment(cfg)
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "localcloud.roles"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=ROLES_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise LaunchError(f"could not create the execution roles:\n{done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


def up(cfg: LocalCloudConfig) -> list[str]:
    report = [f"{s.name:<10} {start(s, cfg)} on http://{BIND_HOST}:{s.port}" for s in services(cfg)]
    report.append(f"roles      {ensure_roles(cfg)}")
    report.append(f"env file   {write_env_file(cfg)}")
    return report


def write_credentials(cfg: LocalCloudConfig) -> list[str]:
    """`make credentials`: the env file without starting anything (docker compose reads the keys from it)."""
    return [f"env file   {write_env_file(cfg)}"]


def down(cfg: LocalCloudConfig) -> list[str]:
    # Reverse order: SageMaker flushes captured data into MiniStack's S3 before MiniStack stops.
    return [f"{s.name:<10} {stop(s, cfg)}" for s in reversed(services(cfg))]


def status(cfg: LocalCloudConfig) -> list[str]:
    return [
        f"{s.name:<10} {'healthy' if is_healthy(s) else 'down'} on http://{BIND_HOST}:{s.port}" for s in services(cfg)
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    commands = {"up": up, "down": down, "status": status, "credentials": write_credentials}
    if len(args) != 1 or args[0] not in commands:
        print("usage: python -m localcloud {up|down|status|credentials}", file=sys.stderr)
        return 2
    try:
        for line in commands[args[0]](LocalCloudConfig.from_env()):
            print(line)
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
