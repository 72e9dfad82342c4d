"""`make airflow` as a newcomer runs it, driven through real headless Chromium (Playwright over Debian's Chromium).

One `make airflow` serves the whole module: its own local cloud (free loopback ports, a throw-away
LOCALCLOUD_HOME), the real scheduler and API server on a free AIRFLOW_PORT, and a PATH without the project's
venv, as in a fresh shell. The tests run in file order, as a user's session would: the form, a run, the
monitoring page, the graph, and last Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from localcloud import launcher
from localcloud.config import REGION, LocalCloudConfig
from tests.conftest import PROJECT_ROOT, free_port

CHROMIUM = Path("/usr/bin/chromium")
READY_LINE = "Airflow is ready on "
STARTUP_TIMEOUT_S = 600
# Settings a user would export for a quick local try (no code change): fast polling, no capture delivery lag.
SCONES_ENV = {
    "SCONES_POLL_SECONDS": "2",
    "SCONES_ROLLOUT_BAKE_SECONDS": "3",
    "SCONES_REPORT_LAG_MINUTES": "0",
    "SCONES_BUCKET": "scones-ui-e2e",
}
CHROMIUM_ARGS = [  # the closed network here refuses Chromium's background connections
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class AirflowUI:
    url: str
    password: str
    process: subprocess.Popen[str]
    cfg: LocalCloudConfig
    output: list[str] = field(default_factory=list)

    def api(self) -> httpx.Client:
        """A REST client logged in as admin, as a script would be."""
        token = httpx.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password}, timeout=30)
        token.raise_for_status()
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        return httpx.Client(base_url=f"{self.url}/api/v2", headers=headers, timeout=30)

    def aws(self, service: str) -> Any:
        """A boto3 client for this session's own local cloud."""
        import boto3

        keys = launcher.install_credentials(self.cfg)
        return boto3.client(
            service,
            endpoint_url=self.cfg.sagemaker_url if service.startswith("sagemaker") else self.cfg.ministack_url,
            aws_access_key_id=keys.access_key_id,
            aws_secret_access_key=keys.secret_access_key,
            region_name=REGION,
        )

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        with self.api() as api:
            response = api.get(f"/dags/{dag_id}/dagRuns", params={"order_by": "run_after"})
            response.raise_for_status()
            return list(response.json()["dag_runs"])

    def wait_for_run(self, dag_id: str, predicate: Any, timeout_s: float) -> dict[str, Any]:
        """The first run of `dag_id` that matches `predicate` once it has finished; fails on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            finished = [r for r in self.runs(dag_id) if predicate(r) and r["state"] in ("success", "failed")]
            if finished:
                return finished[0]
            assert self.process.poll() is None, "make airflow exited:\n" + "".join(self.output[-40:])
            time.sleep(5)
        raise AssertionError(f"no finished {dag_id} run after {timeout_s:.0f} s: {self.runs(dag_id)}")


def newcomer_environment(cfg_env: dict[str, str]) -> dict[str, str]:
    """A fresh shell: none of the test session's Airflow, AWS or project settings, and no venv on PATH."""
    venv_bins = {str(Path(sys.executable).parent), str(PROJECT_ROOT / ".venv" / "bin")}
    prefixes = ("AIRFLOW", "AWS_", "SCONES_", "LOCALCLOUD_", "MINISTACK_", "LOCAL_SAGEMAKER_", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p not in venv_bins)
    return env | cfg_env | SCONES_ENV


def _pump(stream: Any, sink: list[str], log: Path) -> None:
    with log.open("a") as out:
        for line in stream:
            sink.append(line)
            out.write(line)
            out.flush()


@pytest.fixture(scope="package")
def airflow_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowUI]:
    home = tmp_path_factory.mktemp("ui-localcloud")
    cloud_env = {
        "LOCALCLOUD_HOME": str(home),
        "MINISTACK_PORT": str(free_port()),
        "LOCAL_SAGEMAKER_PORT": str(free_port()),
        "AIRFLOW_PORT": str(free_port()),
    }
    cfg = LocalCloudConfig.from_env(os.environ | cloud_env)
    process = subprocess.Popen(
        ["make", "--no-print-directory", "airflow"],
        cwd=PROJECT_ROOT,
        env=newcomer_environment(cloud_env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, which Ctrl-C in a terminal signals as a whole
    )
    ui = AirflowUI(f"http://127.0.0.1:{cloud_env['AIRFLOW_PORT']}", "", process, cfg)
    threading.Thread(target=_pump, args=(process.stdout, ui.output, home / "make-airflow.log"), daemon=True).start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not any(READY_LINE in line for line in ui.output):
            assert process.poll() is None, "make airflow exited before it was ready:\n" + "".join(ui.output[-60:])
            assert time.monotonic() < deadline, "make airflow was not ready in time:\n" + "".join(ui.output[-60:])
            time.sleep(1)
        users = json.loads((home / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
        ui.password = users["admin"]
        yield ui
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        launcher.down(cfg)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def log_in(page: Any, ui: AirflowUI) -> None:
    """Fill Airflow's login form, where any page without a session lands."""
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(ui.password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture(scope="package")
def page(browser: Any, airflow_ui: AirflowUI) -> Iterator[Any]:
    """One logged-in tab at 1600 × 1000, as a user keeps open."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    tab.goto(f"{airflow_ui.url}/")
    log_in(tab, airflow_ui)
    tab.wait_for_url(f"{airflow_ui.url}/**")
    tab.get_by_text("Dags").first.wait_for()
    yield tab
    context.close()
