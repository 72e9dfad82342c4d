"""`make demo`: run the mission end to end on the local cloud with `airflow dags test`, then print a summary.

- The Airflow home (SQLite) lives in `.localcloud/airflow`; the DAGs are the project's own `dags/`.
- Data: `SCONES_CIFAR_URL`/`SCONES_CIFAR_MD5` when set (the official archive or your mirror). Otherwise a
  CIFAR-format archive built from `datasets/cifar100-bicycle-motorcycle` is served on 127.0.0.1, because
  the CIFAR host is not reachable everywhere (CI, air-gapped machines).
- Nothing here branches on local versus AWS: the DAGs see only the Airflow connection that `make up` wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from include.scones import registry  # noqa: E402
from include.scones import settings as scones_settings  # noqa: E402
from include.scones.monitoring.layout import LATEST, REPORT_HTML, SUMMARY_JSON, report_key  # noqa: E402
from localcloud import launcher  # noqa: E402
from localcloud.config import LocalCloudConfig  # noqa: E402
from tools import airflow_local, load_generator  # noqa: E402
from tools.cifar_mirror import configured_or_fixture_source  # noqa: E402

# The warning lines a successful demo prints, and why; Airflow's other known warnings are silenced by
# tools/airflow_local.py (KNOWN_AIRFLOW_WARNINGS). The README lists them too.
EXPECTED_WARNINGS = (
    "expected warnings above, if any: on a re-run, the provider's \"cannot create already existing endpoint ..., "
    'updating it" and "Provided tags will be ignored" are the blue/green update of the live endpoint, which keeps '
    "its tags"
)
BURST_EXECUTIONS = 40
BURST_RATE_PER_S = 10.0


def airflow_environment(cfg: LocalCloudConfig) -> dict[str, str]:
    return airflow_local.environment(cfg) | {
        "SCONES_POLL_SECONDS": os.environ.get("SCONES_POLL_SECONDS") or "5",
        # A canary baked for seconds, not the default five minutes, so a retraining demo stays short.
        "SCONES_ROLLOUT_BAKE_SECONDS": os.environ.get("SCONES_ROLLOUT_BAKE_SECONDS") or "10",
        # The local cloud writes captures within seconds; AWS needs the default 15-minute delivery lag.
        "SCONES_REPORT_LAG_MINUTES": os.environ.get("SCONES_REPORT_LAG_MINUTES") or "0",
    }


def airflow(env: dict[str, str], *args: str) -> None:
    command = [sys.executable, "-m", "airflow", *args]
    print(f"$ airflow {' '.join(args)}", flush=True)
    result = subprocess.run(command, env=os.environ | env, cwd=PROJECT_ROOT)
    if result.returncode != 0:
        raise SystemExit(f"demo stopped: `airflow {' '.join(args)}` failed (exit {result.returncode}); see above")


def run_dag(env: dict[str, str], dag_id: str, conf: dict | None = None) -> None:
    args = ["dags", "test", dag_id]
    if conf:
        args += ["--conf", json.dumps(conf)]
    airflow(env, *args)


def summary(cfg: LocalCloudConfig, burst: dict) -> list[str]:
    import boto3

    settings = scones_settings.load()
    s3 = boto3.client("s3")
    sagemaker = boto3.client("sagemaker")
    deployment = registry.live_deployment(sagemaker, settings.endpoint_name)
    if deployment is None:
        raise SystemExit(f"endpoint {settings.endpoint_name} serves no version of the Model Registry")
    endpoint = sagemaker.describe_endpoint(EndpointName=settings.endpoint_name)
    report = json.loads(s3.get_object(Bucket=settings.bucket, Key=report_key(LATEST, SUMMARY_JSON))["Body"].read())
    local_copy = cfg.home / "reports" / REPORT_HTML
    local_copy.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(settings.bucket, report_key(LATEST, REPORT_HTML), str(local_copy))
    outcomes = burst["outcomes"]
    return [
        f"endpoint          {settings.endpoint_name} ({endpoint['EndpointStatus']}), version "
        f"{deployment.version_label}",
        f"test accuracy     {deployment.accuracy:.4f}",
        f"at threshold {deployment.confidence_threshold}  {deployment.pass_share_at_threshold:.1%} of test images "
        f"pass, accuracy among them {deployment.accuracy_among_passed}",
        f"executions        {burst['executions']} in {burst['seconds']} s: {outcomes.get('SUCCEEDED', 0)} passed, "
        f"{outcomes.get('LOW_CONFIDENCE', 0)} filtered (low confidence), "
        f"{burst['executions'] - outcomes.get('SUCCEEDED', 0) - outcomes.get('LOW_CONFIDENCE', 0)} other",
        f"monitoring report {report['report_uri']} ({report['totals']['records']} inferences)",
        f"                  also s3://{settings.bucket}/monitoring/latest/, local copy {local_copy}",
        "                  and in the Airflow UI: `make airflow`, then Browse → Scones monitoring",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default="{}", help="JSON Params for scones_training_pipeline")
    args = parser.parse_args(argv)
    started = time.monotonic()
    cfg = LocalCloudConfig.from_env()
    for line in launcher.up(cfg):
        print(line)
    env = airflow_environment(cfg)
    airflow(env, "db", "migrate")
    with configured_or_fixture_source(cfg.home / "fixtures") as data_env:
        env |= data_env
        run_dag(env, "scones_training_pipeline", json.loads(args.conf))
    run_dag(env, "scones_inference_workflow")
    # Traffic for the monitoring report: a burst through the state machine, then the workflow again (it
    # redeploys nothing, and reports on the burst).
    os.environ.update(env)
    print(f"$ python -m tools.load_generator --count {BURST_EXECUTIONS} --rate {BURST_RATE_PER_S}")
    burst = load_generator.run(BURST_EXECUTIONS, BURST_RATE_PER_S)
    print(json.dumps(burst))
    run_dag(env, "scones_inference_workflow")
    print("\n== Scones Unlimited demo summary ==")
    for line in summary(cfg, burst):
        print(line)
    print(f"wall time         {time.monotonic() - started:.0f} s\n(the local cloud keeps running: `make down`)")
    print(f"({EXPECTED_WARNINGS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
