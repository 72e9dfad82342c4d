"""
### Scones Unlimited: train, evaluate, register, approve and deploy the delivery-vehicle classifier

Stages CIFAR-100's **bicycle** and **motorcycle** images in S3, trains a PyTorch CNN on SageMaker (script
mode, `include/model/`), scores it on the test split with a batch transform, and registers it as a version in
the Model Registry group `scones-vehicle-classifier` (its evaluation as `ModelMetrics`). A version that clears
the accuracy floor and is not worse than the champion (the version behind the endpoint) is approved, by the
rules (`approval=auto`) or by a reviewer under **Browse → Required Actions** (`approval=manual`), and deployed
behind the endpoint `scones-vehicle-classifier` (data capture on). Any other version is rejected, with the
reason or the reviewer's note, and the champion keeps serving.

| Stage | Tasks |
|---|---|
| Plan | `plan`: validate the Params, name every resource after the run |
| ETL | `extract` (download, MD5-verified, cached) → `transform` (PNG + `.lst`) → `add_labelled_images` |
| | (the Review page's labels, a new dataset version) → `load` (S3); `package_code` |
| Train | `build_training_job` → `train` (`SageMakerTrainingOperator`, logs streamed) |
| Evaluate | `build_model_requests` → `create_model` → `batch_transform_test_split` → `evaluate` → |
| | `build_registration` → `register_candidate` |
| Approve | `gate` → (`review`, approval=manual) → `approve_version`, or else `reject_version` |
| Deploy | `create_serving_model` (from the version) → `create_endpoint_config` → `put_rollback_alarms` → |
| | `deploy_endpoint` (create, or a guarded update: canary by default, rolled back on an alarm) → |
| | `record_deployment`; then `prune_registry` |

Runs weekly (`SCONES_TRAINING_SCHEDULE`, only ticks after the DAG is unpaused: unpausing starts nothing), when
a monitoring alert requests it (Asset `scones_retraining_requested`; `SCONES_RETRAIN_ON_ALERT=false` turns that
off), or from the UI with Params; every Param's bounds are shown in the trigger form. The same file runs on AWS
and on the local cloud: only the Airflow connection `aws_default` differs. `scones_teardown` deletes the endpoint.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerEndpointConfigOperator,
    SageMakerModelOperator,
    SageMakerTrainingOperator,
    SageMakerTransformOperator,
)
from airflow.sdk import Asset, AssetOrTimeSchedule, Param, TaskGroup, TriggerRule, chain, dag, task
from airflow.sdk.exceptions import AirflowFailException

from include.scones.dag_defaults import DEFAULT_ARGS, START_DATE, stage
from include.scones.operators import GuardedEndpointOperator, RegisterModelVersionOperator, ReviewOperator
from include.scones.params import with_defaults
from include.scones.review import ANSWER_KEY, NOTE_PARAM, NOTE_SCHEMA, REJECT
from include.scones.settings import ENDPOINT_ASSET_NAME, RETRAINING_ASSET_NAME, parse_time
from include.scones.timetables import UpcomingCronTimetable

PARSE_TIME = parse_time()
AWS_CONN_ID = PARSE_TIME.aws_conn_id
SCHEDULE = AssetOrTimeSchedule(
    timetable=UpcomingCronTimetable(PARSE_TIME.training_schedule, timezone="UTC"),
    assets=Asset(name=RETRAINING_ASSET_NAME),
)
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
def add_labelled_images(channels: str) -> str:
    """Add the images people labelled under Browse → Scones review: a new dataset version, deduplicated by content
    hash, "neither" left out; the test split stays CIFAR's own."""
    from pathlib import Path

    from include.scones import airflow_runtime, training_steps

    return str(training_steps.add_labelled_images(
        airflow_runtime.s3_hook().get_conn(), airflow_runtime.settings(), Path(channels)))  # fmt: skip


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


@task(multiple_outputs=True)
def build_registration(run_plan: dict, result: dict, training: dict) -> dict:
    """The candidate's version: inference spec, evaluation.json as its metrics, its run and scores as metadata."""
    from include.scones import sagemaker_requests
    from include.scones.records import EvaluationResult, RunPlan

    artifact = training["Training"]["ModelArtifacts"]["S3ModelArtifacts"]
    return sagemaker_requests.model_package(RunPlan.from_xcom(run_plan), EvaluationResult.from_xcom(result), artifact)


@task.branch
def gate(run_plan: dict, result: dict, package_arn: str, ti=None) -> str | None:
    """Champion/challenger on the version (the champion is the version behind the endpoint); then auto-approve,
    ask a reviewer (approval=manual), or reject."""
    from dataclasses import asdict

    from include.scones import airflow_runtime, training_steps
    from include.scones.records import EvaluationResult, RunPlan

    outcome = training_steps.gate_candidate(
        airflow_runtime.s3_hook(),
        airflow_runtime.sagemaker_hook().conn,
        RunPlan.from_xcom(run_plan),
        EvaluationResult.from_xcom(result),
        package_arn,
    )
    ti.xcom_push(key="decision", value=asdict(outcome.decision))
    for name, text in (outcome.review or {}).items():
        ti.xcom_push(key=f"review_{name}", value=text)
    return outcome.route


@task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
def approve_version(run_plan: dict, package_arn: str, ti=None) -> dict:
    """Approved by the gate (approval=auto) or the reviewer, with their note; returns the serving model request.
    A Reject in the review skips this task."""
    from include.scones import airflow_runtime, training_steps
    from include.scones.records import RunPlan

    return training_steps.approve_version(
        airflow_runtime.sagemaker_hook().conn,
        RunPlan.from_xcom(run_plan),
        package_arn,
        ti.xcom_pull(task_ids="gate", key="decision")["reason"],
        ti.xcom_pull(task_ids="review", key=ANSWER_KEY),  # None when approval=auto
    )


@task(trigger_rule=TriggerRule.ALL_SKIPPED)
def reject_version(ti=None) -> str:
    """Runs when approve_version was skipped: the gate's rules or the reviewer (or the review timeout) said no.
    The version is Rejected with the reason or note; nothing is deployed and the champion keeps serving.
    XComs are pulled here, not passed in: an argument would make this task wait for its producer, not the skip."""
    from include.scones import airflow_runtime, training_steps
    from include.scones.gate import Decision

    return training_steps.reject_version(
        airflow_runtime.sagemaker_hook().conn,
        ti.xcom_pull(task_ids="register_candidate"),
        Decision(**ti.xcom_pull(task_ids="gate", key="decision")),
        ti.xcom_pull(task_ids="review", key=ANSWER_KEY),
    )


@task
def put_rollback_alarms(run_plan: dict) -> list[str]:
    """Create or update the alarms the rollout watches (5XX errors, model latency of this run's config), starting
    OK; a re-run leaves one of each."""
    from include.scones import airflow_runtime, training_steps
    from include.scones.records import RunPlan

    return training_steps.put_rollback_alarms(
        airflow_runtime.cloudwatch(), RunPlan.from_xcom(run_plan), airflow_runtime.settings().latency_alarm_ms
    )


@task(outlets=[Asset(name=ENDPOINT_ASSET_NAME)])
def record_deployment(run_plan: dict, package_arn: str) -> dict:
    """Check the endpoint serves this run's version (the champion from now on) and publish the Asset."""
    from include.scones import airflow_runtime, training_steps
    from include.scones.records import RunPlan

    return training_steps.record_deployment(
        airflow_runtime.sagemaker_hook().conn, RunPlan.from_xcom(run_plan), package_arn
    ).to_xcom()


@task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
def prune_registry() -> list[str]:
    """Delete rejected and superseded versions beyond the newest SCONES_REGISTRY_KEEP_LAST; never the live one."""
    from include.scones import airflow_runtime, training_steps

    return training_steps.prune_registry(airflow_runtime.sagemaker_hook().conn, airflow_runtime.settings())


@dag(
    dag_id="scones_training_pipeline",
    schedule=SCHEDULE,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["scones", "sagemaker", "training"],
    default_args=DEFAULT_ARGS,
    params={
        name: Param(**schema)
        for name, schema in with_defaults({"bake_seconds": PARSE_TIME.rollout_bake_seconds}).items()
    },
)
def scones_training_pipeline() -> None:
    # One TaskGroup per stage, so the graph reads Plan → ETL → Train → Evaluate → Deploy; task ids keep no prefix.
    with TaskGroup(**stage("Plan", "Validate the Params and name every resource after the run")):
        run_plan = plan()

    with TaskGroup(**stage("ETL", "CIFAR-100 → PNG channels → S3, and the training code")):
        archive = extract()
        channels = add_labelled_images(transform(run_plan, archive))
        data_uri = load(run_plan, channels)
        code_uri = package_code(run_plan)

    with TaskGroup(**stage("Train", "SageMaker script-mode training job, logs streamed")):
        train = SageMakerTrainingOperator(
            task_id="train", config=build_training_job(run_plan, data_uri, code_uri), print_log=True, **SAGEMAKER
        )

    with TaskGroup(**stage("Evaluate", "Batch-transform the test split, score it, register the version")):
        model_requests = build_model_requests(run_plan, data_uri, train.output)
        create_model = SageMakerModelOperator(
            task_id="create_model", config=model_requests["model"], aws_conn_id=AWS_CONN_ID
        )
        batch_transform = SageMakerTransformOperator(
            task_id="batch_transform_test_split", config=model_requests["transform"], **SAGEMAKER
        )
        result = evaluate(run_plan, data_uri, train.output)
        registration = build_registration(run_plan, result, train.output)
        register = RegisterModelVersionOperator(
            task_id="register_candidate",
            image_uri=registration["image_uri"],
            model_url=registration["model_url"],
            package_group_name=registration["package_group_name"],
            package_desc=registration["package_desc"],
            extras=registration["extras"],
            aws_conn_id=AWS_CONN_ID,
        )

    with TaskGroup(**stage("Approve", "The gate's rules, then a reviewer (approval=manual); approve or reject")):
        decision = gate(run_plan, result, register.output)
        review = ReviewOperator(
            task_id="review",
            subject=decision["review_subject"],
            body=decision["review_body"],
            params={NOTE_PARAM: Param(**NOTE_SCHEMA)},
            defaults=REJECT,  # no answer in time: rejected, and the run still succeeds
            response_timeout=timedelta(hours=PARSE_TIME.review_timeout_hours),
        )
        approved = approve_version(run_plan, register.output)
        rejected = reject_version()

    with TaskGroup(**stage("Deploy", "Model from the approved version, endpoint config with data capture, deploy")):
        serving_model = SageMakerModelOperator(task_id="create_serving_model", config=approved, aws_conn_id=AWS_CONN_ID)
        endpoint_config = SageMakerEndpointConfigOperator(
            task_id="create_endpoint_config", config=model_requests["endpoint_config"], aws_conn_id=AWS_CONN_ID
        )
        alarms = put_rollback_alarms(run_plan)
        deploy = GuardedEndpointOperator(
            task_id="deploy_endpoint",
            config=model_requests["endpoint"],
            model_package_arn=register.output,
            **SAGEMAKER,
        )
        recorded = record_deployment(run_plan, register.output)
        pruned = prune_registry()

    chain(run_plan, archive)  # Params are validated before anything is downloaded
    chain(create_model, batch_transform, result)
    chain(decision, [review, approved])
    chain(review, approved, rejected)
    chain(serving_model, endpoint_config, alarms, deploy, recorded)
    chain([recorded, rejected], pruned)


scones_training_pipeline()
