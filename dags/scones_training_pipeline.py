"""
### Scones Unlimited: train, evaluate and deploy the delivery-vehicle classifier

Stages CIFAR-100's **bicycle** and **motorcycle** images in S3, trains a PyTorch CNN on SageMaker (script
mode, `include/model/`), scores it on the test split with a batch transform, and deploys it behind the
endpoint `scones-vehicle-classifier` (data capture on) only if it clears the accuracy floor and is not
worse than the live model.

| Stage | Tasks |
|---|---|
| Plan | `plan`: validate the Params, name every resource after the run |
| ETL | `extract` (download, MD5-verified, cached) → `transform` (PNG + `.lst`) → `load` (S3); `package_code` |
| Train | `build_training_job` → `train` (`SageMakerTrainingOperator`, logs streamed) |
| Evaluate | `build_model_requests` → `create_model` → `batch_transform_test_split` → `evaluate` → `gate` |
| Deploy | `create_endpoint_config` → `deploy_endpoint` (create, or blue/green update) → `record_deployment` |

Runs weekly (`SCONES_TRAINING_SCHEDULE`, only ticks after the DAG is unpaused: unpausing starts nothing) or
from the UI with Params; every Param's bounds are shown in the trigger form. The same file runs on AWS and on the
local cloud: only the Airflow connection `aws_default` differs. `scones_teardown` deletes the endpoint.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerEndpointConfigOperator,
    SageMakerEndpointOperator,
    SageMakerModelOperator,
    SageMakerTrainingOperator,
    SageMakerTransformOperator,
)
from airflow.sdk import Asset, Param, TaskGroup, chain, dag, task
from airflow.sdk.exceptions import AirflowFailException

from include.scones.dag_defaults import DEFAULT_ARGS, START_DATE, stage
from include.scones.params import PARAM_SCHEMAS
from include.scones.settings import ENDPOINT_ASSET_NAME, parse_time
from include.scones.timetables import UpcomingCronTimetable

PARSE_TIME = parse_time()
AWS_CONN_ID = PARSE_TIME.aws_conn_id
SCHEDULE = UpcomingCronTimetable(PARSE_TIME.training_schedule, timezone="UTC")
SAGEMAKER = {"aws_conn_id": AWS_CONN_ID, "check_interval": PARSE_TIME.poll_seconds}


@task
def plan(params: dict | None = None, run_id: str | None = None, dag_run=None) -> dict:
    """Validate the Params and fix the run's resource names, role and images (no AWS call before this)."""
    from include.scones import airflow_runtime, training_steps
    from include.scones.params import InvalidParams, validate

    try:
        validate(params or {})  # before the hook's first AWS call (STS); a retry cannot fix a bad Param
    except InvalidParams as exc:
        raise AirflowFailException(str(exc)) from exc
    hook = airflow_runtime.sagemaker_hook()
    return training_steps.plan_run(
        airflow_runtime.settings(), params or {}, run_id, dag_run.run_after, hook.conn_region_name, hook.account_id
    ).to_xcom()


@task
def extract() -> dict:
    """Download the CIFAR-100 archive (or reuse the cached copy) and verify its MD5."""
    from pathlib import Path

    from include.scones import airflow_runtime
    from include.scones.extract import ExtractError, download

    settings = airflow_runtime.settings()
    try:
        path = download(settings.cifar_url, settings.cifar_md5, Path(settings.cache_dir) / "archives")
    except ExtractError as exc:  # the downloader already retried; an Airflow retry would repeat the same failure
        raise AirflowFailException(str(exc)) from exc
    return {"path": str(path), "md5": settings.cifar_md5.lower()}


@task
def transform(run_plan: dict, archive: dict) -> str:
    """Write PNGs, train.lst/test.lst and manifest.json for the selected classes."""
    from pathlib import Path

    from include.scones import airflow_runtime, training_steps
    from include.scones.cifar import read_archive
    from include.scones.records import RunPlan
    from include.scones.transform import write_channels

    classes = list(RunPlan.from_xcom(run_plan).params.classes)
    target = training_steps.channels_dir(airflow_runtime.settings(), archive["md5"], classes)
    manifest = write_channels(read_archive(Path(archive["path"])), classes, target, archive["md5"])
    print(f"dataset {manifest['dataset_id']}: {manifest['counts']}")
    return str(target)


@task
def load(run_plan: dict, channels: str) -> str:
    """Upload the channels to S3 (bucket created if missing; unchanged objects skipped)."""
    from pathlib import Path

    from include.scones import airflow_runtime, training_steps
    from include.scones.records import RunPlan

    return training_steps.load_channels(
        airflow_runtime.s3_hook(), RunPlan.from_xcom(run_plan), airflow_runtime.settings(), Path(channels)
    )


@task
def package_code(run_plan: dict) -> str:
    """Upload include/model as sourcedir.tar.gz under a content-hash key."""
    from include.scones import airflow_runtime, training_steps
    from include.scones.records import RunPlan

    return training_steps.package_code(
        airflow_runtime.s3_hook(), RunPlan.from_xcom(run_plan), airflow_runtime.settings()
    )


@task
def build_training_job(run_plan: dict, data_uri: str, code_uri: str) -> dict:
    from include.scones import sagemaker_requests
    from include.scones.records import RunPlan

    return sagemaker_requests.training_job(RunPlan.from_xcom(run_plan), data_uri, code_uri)


@task(multiple_outputs=True)
def build_model_requests(run_plan: dict, data_uri: str, training: dict) -> dict:
    """Model, batch transform and endpoint requests for the artifact the training job produced."""
    from include.scones import sagemaker_requests
    from include.scones.manifests import SplitKeys
    from include.scones.records import RunPlan

    plan_ = RunPlan.from_xcom(run_plan)
    job = training["Training"]
    test_images = SplitKeys(data_uri, "test").images
    return {
        "model": sagemaker_requests.model(plan_, job["ModelArtifacts"]["S3ModelArtifacts"]),
        "transform": sagemaker_requests.transform_job(plan_, test_images, job["TrainingJobName"]),
        "endpoint_config": sagemaker_requests.endpoint_config(plan_),
        "endpoint": sagemaker_requests.endpoint(plan_),
    }


@task
def evaluate(run_plan: dict, data_uri: str, training: dict) -> dict:
    """Accuracy, per-class precision/recall, confusion matrix and threshold pass share → evaluation.json."""
    from include.scones import airflow_runtime, training_steps
    from include.scones.records import RunPlan

    return training_steps.evaluate_model(
        airflow_runtime.s3_hook(), RunPlan.from_xcom(run_plan), data_uri, training["Training"]
    ).to_xcom()


@task.branch
def gate(run_plan: dict, result: dict) -> str:
    """Champion/challenger: deploy only above the floor and not worse than the model behind the endpoint."""
    from include.scones import airflow_runtime, training_steps
    from include.scones.records import EvaluationResult, RunPlan

    decision = training_steps.decide_deployment(
        airflow_runtime.s3_hook(),
        airflow_runtime.sagemaker_hook().conn,
        RunPlan.from_xcom(run_plan),
        EvaluationResult.from_xcom(result),
    )
    return "create_endpoint_config" if decision.deploy else "keep_live_model"


@task
def keep_live_model() -> None:
    """The gate kept the current model; the reason is in the gate task's log."""


@task(outlets=[Asset(name=ENDPOINT_ASSET_NAME)])
def record_deployment(run_plan: dict, result: dict) -> dict:
    """Record the live model (the next gate's champion, the monitoring baseline) and publish the Asset."""
    from include.scones import airflow_runtime, training_steps
    from include.scones.records import EvaluationResult, RunPlan

    record = training_steps.record_deployment(
        airflow_runtime.s3_hook(), RunPlan.from_xcom(run_plan), EvaluationResult.from_xcom(result)
    )
    return record.to_xcom()


@dag(
    dag_id="scones_training_pipeline",
    schedule=SCHEDULE,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["scones", "sagemaker", "training"],
    default_args=DEFAULT_ARGS,
    params={name: Param(**schema) for name, schema in PARAM_SCHEMAS.items()},
)
def scones_training_pipeline() -> None:
    # One TaskGroup per stage, so the graph reads Plan → ETL → Train → Evaluate → Deploy; task ids keep no prefix.
    with TaskGroup(**stage("Plan", "Validate the Params and name every resource after the run")):
        run_plan = plan()

    with TaskGroup(**stage("ETL", "CIFAR-100 → PNG channels → S3, and the training code")):
        archive = extract()
        channels = transform(run_plan, archive)
        data_uri = load(run_plan, channels)
        code_uri = package_code(run_plan)

    with TaskGroup(**stage("Train", "SageMaker script-mode training job, logs streamed")):
        train = SageMakerTrainingOperator(
            task_id="train", config=build_training_job(run_plan, data_uri, code_uri), print_log=True, **SAGEMAKER
        )

    with TaskGroup(**stage("Evaluate", "Batch-transform the test split, score it, decide whether to deploy")):
        model_requests = build_model_requests(run_plan, data_uri, train.output)
        create_model = SageMakerModelOperator(
            task_id="create_model", config=model_requests["model"], aws_conn_id=AWS_CONN_ID
        )
        batch_transform = SageMakerTransformOperator(
            task_id="batch_transform_test_split", config=model_requests["transform"], **SAGEMAKER
        )
        result = evaluate(run_plan, data_uri, train.output)
        decision = gate(run_plan, result)
        kept = keep_live_model()

    with TaskGroup(**stage("Deploy", "Endpoint config with data capture, endpoint create or blue/green update")):
        endpoint_config = SageMakerEndpointConfigOperator(
            task_id="create_endpoint_config", config=model_requests["endpoint_config"], aws_conn_id=AWS_CONN_ID
        )
        deploy = SageMakerEndpointOperator(task_id="deploy_endpoint", config=model_requests["endpoint"], **SAGEMAKER)
        recorded = record_deployment(run_plan, result)

    chain(run_plan, archive)  # Params are validated before anything is downloaded
    chain(create_model, batch_transform, result)
    chain(decision, [endpoint_config, kept])
    chain(endpoint_config, deploy, recorded)


scones_training_pipeline()
