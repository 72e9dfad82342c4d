"""DAG integrity rules, applied to any DAG folder so a test can prove they catch a broken one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REQUIRED_TAG = "scones"
MIN_RETRIES = 2
# Importing a DAG file must stay cheap: no ML or plotting stacks, and no AWS clients (network, credentials).
HEAVY_MODULES = ("torch", "matplotlib", "PIL", "numpy", "pandas")

_IMPORT_PROBE = """
import json, sys, importlib.util
import boto3, botocore.session
def refuse(*args, **kwargs):
    raise RuntimeError("an AWS client was created while the DAG file was imported")
boto3.client = boto3.resource = refuse
boto3.session.Session.client = boto3.session.Session.resource = refuse
botocore.session.Session.create_client = refuse
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
error = None
try:
    spec.loader.exec_module(module)
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
print(json.dumps({"error": error, "heavy": [m for m in json.loads(sys.argv[2]) if m in sys.modules]}))
"""


def load(dag_folder: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(dag_folder))


def dag_problems(dag: Any) -> list[str]:
    problems = []
    where = f"{dag.dag_id}:"
    if REQUIRED_TAG not in dag.tags:
        problems.append(f"{where} missing tag '{REQUIRED_TAG}'")
    if not (dag.doc_md or "").strip():
        problems.append(f"{where} no doc_md")
    if dag.catchup:
        problems.append(f"{where} catchup must be False")
    if dag.start_date is None or dag.start_date.tzinfo is None:
        problems.append(f"{where} start_date must be fixed and timezone-aware")
    if dag.timetable is None:
        problems.append(f"{where} no valid schedule")
    for task in dag.tasks:
        if task.owner in (None, "", "airflow"):
            problems.append(f"{where} task {task.task_id} has no owner")
        if (task.retries or 0) < MIN_RETRIES:
            problems.append(f"{where} task {task.task_id} has retries {task.retries} < {MIN_RETRIES}")
    for name in dag.params:
        if dag.params.get_param(name).resolve(suppress_exception=True) is None:
            problems.append(f"{where} Param '{name}' has no default")
    try:
        dag.check_cycle() if hasattr(dag, "check_cycle") else dag.topological_sort()
    except Exception as exc:  # AirflowDagCycleException
        problems.append(f"{where} cycle: {exc}")
    return problems


def import_problems(dag_file: Path) -> list[str]:
    """Import the file in a fresh interpreter, as the DAG processor does, and look at what it pulled in."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, str(dag_file), json.dumps(HEAVY_MODULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return [f"{dag_file.name}: import probe crashed: {result.stderr[-500:]}"]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    problems = [f"{dag_file.name}: {report['error']}"] if report["error"] else []
    problems += [f"{dag_file.name}: imports {module} at parse time" for module in report["heavy"]]
    return problems
