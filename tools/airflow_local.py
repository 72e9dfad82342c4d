"""Run any `airflow` command wired to the local cloud: `python tools/airflow_local.py standalone`.

The Airflow home (SQLite) is `.localcloud/airflow`, the DAGs are the project's `dags/`, and the AWS connection
is the one `make up` wrote. The API server and UI bind 127.0.0.1 only. Without SCONES_CIFAR_URL the DAGs get the
fixture archive from a loopback mirror that lives as long as this command, as in `make demo`, so runs triggered
from the UI work offline too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from localcloud import launcher  # noqa: E402
from localcloud.config import BIND_HOST, LocalCloudConfig  # noqa: E402
from tools.cifar_mirror import configured_or_fixture_source  # noqa: E402


def environment(cfg: LocalCloudConfig) -> dict[str, str]:
    return {
        **launcher.environment(cfg),
        "AIRFLOW_HOME": str(cfg.home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__API__HOST": BIND_HOST,
        "AIRFLOW__API__PORT": os.environ.get("AIRFLOW_PORT") or "8080",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        "SCONES_CACHE_DIR": os.environ.get("SCONES_CACHE_DIR") or str(cfg.home / "cache"),
    }


def main() -> int:
    cfg = LocalCloudConfig.from_env()
    with configured_or_fixture_source(cfg.home / "fixtures") as data_env:
        try:
            command = [sys.executable, "-m", "airflow", *sys.argv[1:]]
            return subprocess.run(command, env=os.environ | environment(cfg) | data_env).returncode
        except KeyboardInterrupt:  # Ctrl-C stops `airflow standalone`, which is how users leave it
            return 0


if __name__ == "__main__":
    sys.exit(main())
