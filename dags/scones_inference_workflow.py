"""
### Scones Unlimited: the serverless inference workflow and its monitoring report

Deploys three Lambdas (serialize an S3 image → classify it on the endpoint → drop inferences below the
confidence threshold) chained by a Step Functions **Express** state machine, the per-image path (a caller runs
one image with `StartSyncExecution` and gets its end in the answer), and the Standard batch machine that runs
them over every image under an S3 prefix (a Distributed Map, with a fourth Lambda that collects the results;
`scones_batch_classification` starts it). It proves the per-image machine with smoke executions on test images,
and turns the endpoint's captured traffic into a monitoring report (PNG charts, HTML, JSON) under
`s3://<bucket>/monitoring/<timestamp>/` and `monitoring/latest/`, shown in the UI under **Scones monitoring**.

| Stage | Tasks |
|---|---|
| Plan | `plan`: the live version from the Model Registry (fails clearly if nothing is deployed yet) |
| Deploy | `deploy_lambdas` → `deploy_state_machine`, `deploy_batch_state_machine`: created if missing, updated only |
| | when code or settings change (a machine of the other type is replaced) |
| Smoke | `pick_smoke_images` → `run_smoke_execution` (mapped, `StartSyncExecution`) → `check_smoke_executions` |
| Monitor | `monitoring_report` (captures since the last report, and the latest batch run; queues the filtered |
| | ones for review) → `request_retraining` (an alert updates Asset `scones_retraining_requested`) → |
| | `check_alerts` (fails on one) |

Runs whenever the training DAG deploys a model (Asset `scones_vehicle_classifier_endpoint`) and hourly
(`SCONES_WORKFLOW_SCHEDULE`). It starts unpaused, so it follows the first deploy with no step of yours; a
scheduled run before any model is deployed skips itself. Same file on AWS and on the local cloud: only the
connection differs.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetOrTimeSchedule, TaskGroup, chain, dag, task

from include.scones.dag_defaults import DEFAULT_ARGS, START_DATE, stage
from include.scones.settings import ENDPOINT_ASSET_NAME, RETRAINING_ASSET_NAME, parse_time
from include.scones.timetables import UpcomingCronTimetable

PARSE_TIME = parse_time()
SCHEDULE = AssetOrTimeSchedule(
    timetable=UpcomingCronTimetable(PARSE_TIME.workflow_schedule, timezone="UTC"),
    assets=Asset(name=ENDPOINT_ASSET_NAME),
)


@task
def plan(dag_run=None) -> dict:
    """The live deployment (endpoint, threshold, test data): the Model Registry version behind the endpoint."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from include.scones import airflow_runtime, registry
    from include.scones.records import WorkflowPlan

    settings = airflow_runtime.settings()
    hook = airflow_runtime.sagemaker_hook()
    deployment = registry.live_deployment(hook.conn, settings.endpoint_name)
    if deployment is None:
        missing = (
            f"no deployed model: endpoint {settings.endpoint_name} does not serve a version of the Model Registry "
            f"group {settings.model_package_group}; run scones_training_pipeline first"
        )
        # The hourly schedule runs from the start; until a first deploy there is nothing to check or report on.
        if dag_run is not None and dag_run.run_type == "scheduled":
            raise AirflowSkipException(missing)
        raise AirflowFailException(missing)
    account = hook.account_id
    return WorkflowPlan(
        deployment=deployment,
        bucket=settings.bucket,
        lambda_role_arn=settings.role_arn(account, settings.lambda_role),
        states_role_arn=settings.role_arn(account, settings.states_role),
    ).to_xcom()


@task
def deploy_lambdas(workflow_plan: dict) -> dict:
    """Create or update the four functions (deterministic zips; unchanged code and settings are left alone)."""
    from include.scones import airflow_runtime, lambda_deploy
    from include.scones.records import WorkflowPlan

    plan_ = WorkflowPlan.from_xcom(workflow_plan)
    hook = airflow_runtime.lambda_hook()
    return lambda_deploy.deploy_functions(
        hook.conn,
        plan_.lambda_role_arn,
        plan_.deployment.endpoint_name,
        plan_.deployment.confidence_threshold,
        hook.conn_config.extra_config,
    )


@task
def deploy_state_machine(workflow_plan: dict, functions: dict) -> str:
    """Create or update the Express machine from include/scones/state_machine.asl.json (a Standard one of the
    same name, from before the per-image path was Express, is replaced)."""
    from include.scones import airflow_runtime, state_machine_deploy
    from include.scones.records import WorkflowPlan

    definition = state_machine_deploy.render_definition(functions)
    machine = state_machine_deploy.ensure_state_machine(
        airflow_runtime.step_functions(),
        state_machine_deploy.STATE_MACHINE_NAME,
        definition,
        WorkflowPlan.from_xcom(workflow_plan).states_role_arn,
        machine_type=state_machine_deploy.STATE_MACHINE_TYPE,
        replace_other_type=True,
    )
    return machine["arn"]


@task
def deploy_batch_state_machine(workflow_plan: dict, functions: dict) -> str:
    """Create or update the batch machine: batch_state_machine.asl.json around the per-image Task states."""
    from include.scones import airflow_runtime, state_machine_deploy
    from include.scones.records import WorkflowPlan

    machine = state_machine_deploy.ensure_state_machine(
        airflow_runtime.step_functions(),
        state_machine_deploy.BATCH_STATE_MACHINE_NAME,
        state_machine_deploy.render_batch_definition(functions),
        WorkflowPlan.from_xcom(workflow_plan).states_role_arn,
        machine_type=state_machine_deploy.BATCH_STATE_MACHINE_TYPE,
    )
    return machine["arn"]


@task
def pick_smoke_images(workflow_plan: dict) -> list[dict]:
    from include.scones import airflow_runtime, smoke
    from include.scones.records import WorkflowPlan

    data_uri = WorkflowPlan.from_xcom(workflow_plan).deployment.data_uri
    return smoke.pick_smoke_images(airflow_runtime.s3_hook(), data_uri, airflow_runtime.settings().smoke_executions)


@task
def run_smoke_execution(state_machine_arn: str, image: dict) -> dict:
    """One test image through the Express machine with StartSyncExecution: the answer is the execution's end
    (status, error, cause, output), the only record Express keeps. A low-confidence end is an answer too."""
    from include.scones import airflow_runtime, state_machine_deploy

    payload = state_machine_deploy.execution_input(image["s3_bucket"], image["s3_key"])
    return state_machine_deploy.run_sync_execution(airflow_runtime.express_step_functions(), state_machine_arn, payload)


@task
def check_smoke_executions(workflow_plan: dict, images: list[dict], executions: list[dict]) -> list[dict]:
    """Each execution SUCCEEDED or ended in the low-confidence state exactly as the threshold says."""
    from dataclasses import asdict

    from include.scones import smoke
    from include.scones.records import WorkflowPlan

    deployment = WorkflowPlan.from_xcom(workflow_plan).deployment
    # A slice reads the mapped XComs in one request; iterating them asks past the end and logs "XCom not found".
    outcomes = [
        smoke.judge_execution(ended, image, list(deployment.classes))
        for ended, image in zip(executions[:], images, strict=True)
    ]
    print(smoke.outcome_table(outcomes))
    smoke.check_outcomes(outcomes, deployment.confidence_threshold)
    return [asdict(o) for o in outcomes]


@task
def monitoring_report(workflow_plan: dict) -> dict:
    """Report on the captures since the last report (people's labels merged in), queue the filtered inferences
    for review, and upload it; the alerts are the next tasks' to act on."""
    from datetime import UTC, datetime, timedelta

    from airflow.sdk.exceptions import AirflowSkipException

    from include.scones import airflow_runtime
    from include.scones.monitoring.publish import NothingNewToReport, build_monitoring_report
    from include.scones.monitoring.stats import Limits
    from include.scones.records import WorkflowPlan

    settings = airflow_runtime.settings()
    limits = Limits(
        low_confidence_share=settings.alert_low_confidence_share,
        psi=settings.alert_psi,
        image_psi=settings.alert_image_psi,
        min_records=settings.alert_min_records,
    )
    try:
        summary = build_monitoring_report(
            airflow_runtime.s3_hook(), settings.bucket, settings.capture_prefix,
            WorkflowPlan.from_xcom(workflow_plan).deployment, datetime.now(UTC), limits,
            timedelta(minutes=settings.report_lag_minutes),
            label_lookback=timedelta(hours=settings.label_lookback_hours),
            review_capacity=settings.review_queue_per_report, batch_prefix=settings.batch_prefix,
        )  # fmt: skip
    except NothingNewToReport as exc:
        raise AirflowSkipException(str(exc)) from exc
    return summary


@task(outlets=[Asset(name=RETRAINING_ASSET_NAME)])
def request_retraining(summary: dict, outlet_events=None) -> list[str]:
    """An alert requests a training run: the Asset event (with the alerts and the report) that the training DAG
    is scheduled on. Skipped without an alert, or when SCONES_RETRAIN_ON_ALERT is false."""
    from airflow.sdk.exceptions import AirflowSkipException

    from include.scones import airflow_runtime
    from include.scones.monitoring.report import retraining_request

    request = retraining_request(summary, enabled=airflow_runtime.settings().retrain_on_alert)
    if request.skip_reason:
        raise AirflowSkipException(request.skip_reason)
    outlet_events[Asset(name=RETRAINING_ASSET_NAME)].extra = request.extra
    return request.alerts


@task(trigger_rule="none_failed_min_one_success")  # after request_retraining, skipped or not
def check_alerts(summary: dict) -> None:
    """Fail the run on an alert, after the report is stored and retraining is requested, so it shows as red."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.scones.monitoring.report import ReportAlert
    from include.scones.monitoring.report import check_alerts as raise_alerts

    try:
        raise_alerts(summary, report_uri=summary["report_uri"])
    except ReportAlert as alert:
        raise AirflowFailException(str(alert)) from alert


@dag(
    dag_id="scones_inference_workflow",
    schedule=SCHEDULE,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,  # follows the training DAG's deploys without a manual unpause
    doc_md=__doc__,
    tags=["scones", "lambda", "stepfunctions", "monitoring"],
    default_args=DEFAULT_ARGS,
)
def scones_inference_workflow() -> None:
    # One TaskGroup per stage, so the graph reads Plan → Deploy → Smoke → Monitor; task ids keep no prefix.
    with TaskGroup(**stage("Plan", "The live model from the training DAG's registry")):
        workflow_plan = plan()

    with TaskGroup(**stage("Deploy", "Four Lambdas and the two state machines, changed only when needed")):
        functions = deploy_lambdas(workflow_plan)
        state_machine_arn = deploy_state_machine(workflow_plan, functions)
        deploy_batch_state_machine(workflow_plan, functions)

    with TaskGroup(**stage("Smoke", "Test images through the Express machine, judged against the threshold")):
        images = pick_smoke_images(workflow_plan)
        executions = run_smoke_execution.partial(state_machine_arn=state_machine_arn).expand(image=images)
        checked = check_smoke_executions(workflow_plan, images, executions)

    with TaskGroup(**stage("Monitor", "Captured traffic → charts, drift, review queue, alerts → retraining")):
        report = monitoring_report(workflow_plan)
        chain(report, request_retraining(report), check_alerts(report))

    chain(checked, report)


scones_inference_workflow()
