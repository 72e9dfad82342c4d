"""The dags part: how long Airflow takes to parse each file in dags/, best of 5 fresh interpreters.

Each run is a new `.venv` interpreter with the environment `make airflow` gives Airflow (AIRFLOW_HOME,
DAGS_FOLDER, PYTHONPATH), that does what the DAG processor does for one file: import Airflow, pre-import the
`airflow.*` modules the file names (`[dag_processor] parsing_pre_import_modules`, on by default), then load the
file into a DagBag. `parse_seconds` is the DagBag's own FileLoadStat duration for the file, the figure
`airflow dags report` shows. Recorded beside it: `cold_parse_seconds`, the same load with no pre-import (so
provider imports count), and the interpreter's baseline, `import airflow.sdk`, which every parse process has
already paid and is not part of a file's parse time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from benchmarks.context import ROOT, BenchContext, log, run_child, utc_now

DAGS_DIR = ROOT / "dags"
RUNS = 5

_PROBE = r"""
import json, sys, time
began = time.perf_counter()
import airflow, airflow.sdk
airflow_import = time.perf_counter() - began
path, pre_import = sys.argv[1], sys.argv[2] == "1"
began = time.perf_counter()
if pre_import:
    import importlib
    from airflow.utils.file import iter_airflow_imports
    for module in iter_airflow_imports(path):
        importlib.import_module(module)
pre_imported = time.perf_counter() - began
from airflow.dag_processing.dagbag import DagBag
began = time.perf_counter()
bag = DagBag(dag_folder=path)
dagbag = time.perf_counter() - began
stat = bag.dagbag_stats[0] if bag.dagbag_stats else None
print(json.dumps({
    "airflow_import_seconds": airflow_import,
    "pre_import_seconds": pre_imported,
    "parse_seconds": stat.duration.total_seconds() if stat else None,
    "dagbag_seconds": dagbag,
    "dags": sorted(bag.dags),
    "import_errors": {str(k): str(v)[-300:] for k, v in bag.import_errors.items()},
}))
"""


def parse_environment(ctx: BenchContext) -> dict[str, str]:
    from tools.airflow_local import environment

    return os.environ | environment(ctx.cfg)


def probe(ctx: BenchContext, dag_file: Path, pre_import: bool) -> dict[str, Any]:
    output, _ = run_child(
        [ctx.project_python, "-c", _PROBE, str(dag_file), "1" if pre_import else "0"], env=parse_environment(ctx)
    )
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    if result["import_errors"] or result["parse_seconds"] is None:
        raise RuntimeError(f"{dag_file.name} did not parse: {result['import_errors']}")
    return result


def best_of(ctx: BenchContext, dag_file: Path, runs: int = RUNS) -> dict[str, Any]:
    warm = [probe(ctx, dag_file, pre_import=True) for _ in range(runs)]
    cold = [probe(ctx, dag_file, pre_import=False) for _ in range(runs)]
    return {
        "parse_seconds": round(min(r["parse_seconds"] for r in warm), 3),
        "cold_parse_seconds": round(min(r["parse_seconds"] for r in cold), 3),
        "pre_import_seconds": round(min(r["pre_import_seconds"] for r in warm), 3),
        "airflow_import_seconds": round(min(r["airflow_import_seconds"] for r in warm + cold), 3),
        "dags": warm[0]["dags"],
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    measured_at = utc_now()
    files = {}
    for dag_file in sorted(DAGS_DIR.glob("*.py")):
        log(f"parsing dags/{dag_file.name}, best of {RUNS} fresh interpreters (with and without pre-import)")
        files[dag_file.name] = best_of(ctx, dag_file)
    return {
        "measured_at": measured_at,
        "files": files,
        "max_parse_seconds": max(entry["parse_seconds"] for entry in files.values()),
        "airflow_import_seconds": min(entry["airflow_import_seconds"] for entry in files.values()),
        "runs": RUNS,
        "method": "DagBag FileLoadStat duration after the DAG processor's pre-import, best of 5",
    }
