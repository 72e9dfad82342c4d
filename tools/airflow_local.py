"""Run any `airflow` command wired to the local cloud: `python tools/airflow_local.py standalone`.

The Airflow home (SQLite) is `.localcloud/airflow`, the DAGs are the project's `dags/`, and the AWS connection
is the one `make up` wrote. The API server and UI bind 127.0.0.1 only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from localcloud import launcher  # noqa: E402
from localcloud.config import BIND_HOST, LocalCloudConfig  # noqa: E402


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


def main() -> None:
    env = os.environ | environment(LocalCloudConfig.from_env())
    os.execve(sys.executable, [sys.executable, "-m", "airflow", *sys.argv[1:]], env)


if __name__ == "__main__":
    main()
