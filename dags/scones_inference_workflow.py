"""
### Scones Unlimited: the serverless inference workflow and its monitoring report

Deploys three Lambdas (serialize an S3 image → classify it on the endpoint → drop inferences below the
confidence threshold) chained by a Step Functions state machine, proves them with smoke executions on test
images, and turns the endpoint's captured traffic into a monitoring report (PNG charts, HTML, JSON) under
`s3://<bucket>/monitoring/<timestamp>/` and `monitoring/latest/`, shown in the UI under **Scones monitoring**.

| Stage | Tasks |
|---|---|
| Plan | `plan`: the live model from the training DAG's registry (fails clearly if nothing is deployed yet) |
| Deploy | `deploy_lambdas` → `deploy_state_machine`: created if missing, updated only when code or settings change |
| Smoke | `pick_smoke_images` → `start_smoke_execution` (mapped) → `wait_for_smoke_executions` → `check_…` |
| Monitor | `monitoring_report`: captures since the last report; an alert fails it after the upload |

Runs whenever the training DAG deploys a model (Asset `scones_vehicle_classifier_endpoint`) and hourly
(`SCONES_WORKFLOW_SCHEDULE`). It starts unpaused, so it follows the first deploy with no step of yours; a
scheduled run before any model is deployed skips itself. Same file on AWS and on the local cloud: only the
connection differs.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.step_function import StepFunctionStartExecutionOperator
from airflow.sdk import Asset, AssetOrTimeSchedule, PokeReturnValue, TaskGroup, chain, dag, task

from include.scones.dag_defaults import DEFAULT_ARGS, START_DATE, stage
from include.scones.settings import AWS_CONN_ID_VARIABLE, ENDPOINT_ASSET_NAME, POLL_SECONDS_VARIABLE, parse_time_setting
from include.scones.timetables import UpcomingCronTimetable

AWS_CONN_ID = parse_time_setting(AWS_CONN_ID_VARIABLE, "aws_default")
POLL_SECONDS = int(parse_time_setting(POLL_SECONDS_VARIABLE, "30"))
SCHEDULE = AssetOrTimeSchedule(
    timetable=UpcomingCronTimetable(parse_time_setting("SCONES_WORKFLOW_SCHEDULE", "@hourly"), timezone="UTC"),
    assets=Asset(name=ENDPOINT_ASSET_NAME),
)


@task
def plan(dag_run=None) -> dict:
    """The live deployment (endpoint, threshold, test data) and the roles, from settings and the registry."""
    import json

    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from include.scones import airflow_runtime

    settings = airflow_runtime.settings()
    s3 = airflow_runtime.s3_hook()
    if not s3.check_for_key(settings.registry_key, bucket_name=settings.bucket):
        missing = (
            f"no deployed model: s3://{settings.bucket}/{settings.registry_key} is missing; run "
            "scones_training_pipeline first"
        )
        # The hourly schedule runs from the start; until a first deploy there is nothing to check or report on.
        if dag_run is not None and dag_run.run_type == "scheduled":
            raise AirflowSkipException(missing)
        raise AirflowFailException(missing)
    account = airflow_runtime.sagemaker_hook().account_id
    return {
        "registry": json.loads(s3.read_key(settings.registry_key, bucket_name=settings.bucket)),
        "bucket": settings.bucket,
        "lambda_role_arn": settings.role_arn(account, settings.lambda_role),
        "states_role_arn": settings.role_arn(account, settings.states_role),
    }


@task
def deploy_lambdas(run_plan: dict) -> dict:
    """Create or update the three functions (deterministic zips; unchanged code and settings are left alone)."""
    from airflow.providers.amazon.aws.hooks.lambda_function import LambdaHook

    from include.scones import airflow_runtime, workflow_steps

    hook = LambdaHook(aws_conn_id=airflow_runtime.aws_conn_id())
    registry = run_plan["registry"]
    return workflow_steps.deploy_functions(
        hook.conn,
        run_plan["lambda_role_arn"],
        registry["endpoint_name"],
        registry["confidence_threshold"],
        hook.conn_config.extra_config,
    )


@task
def deploy_state_machine(run_plan: dict, functions: dict) -> str:
    """Create or update the state machine from include/scones/state_machine.asl.json."""
    from airflow.providers.amazon.aws.hooks.step_function import StepFunctionHook

    from include.scones import airflow_runtime, workflow_steps

    client = StepFunctionHook(aws_conn_id=airflow_runtime.aws_conn_id()).conn
    definition = workflow_steps.render_definition(functions)
    machine = workflow_steps.ensure_state_machine(
        client, workflow_steps.STATE_MACHINE_NAME, definition, run_plan["states_role_arn"]
    )
    return machine["arn"]


@task
def pick_smoke_images(run_plan: dict) -> list[dict]:
    from include.scones import airflow_runtime, workflow_steps

    count = int(airflow_runtime.settings().smoke_executions)
    return workflow_steps.pick_smoke_images(airflow_runtime.s3_hook(), run_plan["registry"]["data_uri"], count)


@task
def execution_input(image: dict) -> dict:
    return {"s3_bucket": image["s3_bucket"], "s3_key": image["s3_key"]}


@task.sensor(poke_interval=POLL_SECONDS, timeout=900, mode="poke")
def wait_for_smoke_executions(execution_arns: list[str]) -> PokeReturnValue:
    """Done when no execution is RUNNING (a low-confidence end is FAILED by design, so the stock sensor won't do)."""
    from airflow.providers.amazon.aws.hooks.step_function import StepFunctionHook

    from include.scones import airflow_runtime

    client = StepFunctionHook(aws_conn_id=airflow_runtime.aws_conn_id()).conn
    # A slice reads the mapped XComs in one request; iterating them asks past the end and logs "XCom not found".
    statuses = [client.describe_execution(executionArn=arn)["status"] for arn in execution_arns[:]]
    return PokeReturnValue(is_done="RUNNING" not in statuses)


@task
def check_smoke_executions(run_plan: dict, images: list[dict], execution_arns: list[str]) -> list[dict]:
    """Each execution SUCCEEDED or ended in the low-confidence state exactly as the threshold says."""
    from dataclasses import asdict

    from airflow.providers.amazon.aws.hooks.step_function import StepFunctionHook

    from include.scones import airflow_runtime, workflow_steps

    client = StepFunctionHook(aws_conn_id=airflow_runtime.aws_conn_id()).conn
    registry = run_plan["registry"]
    outcomes = [
        workflow_steps.judge_execution(client.describe_execution(executionArn=arn), image, registry["classes"])
        for arn, image in zip(execution_arns[:], images, strict=True)
    ]
    print(workflow_steps.outcome_table(outcomes))
    workflow_steps.check_outcomes(outcomes, registry["confidence_threshold"])
    return [asdict(o) for o in outcomes]


@task
def monitoring_report(run_plan: dict) -> dict:
    """Report on the captures since the last report; an alert fails the task after the report is uploaded."""
    from datetime import UTC, datetime, timedelta

    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from include.scones import airflow_runtime, workflow_steps
    from include.scones.monitoring.report import ReportAlert, check_alerts
    from include.scones.monitoring.stats import Limits

    settings = airflow_runtime.settings()
    limits = Limits(
        low_confidence_share=float(settings.alert_low_confidence_share),
        psi=float(settings.alert_psi),
        min_records=int(settings.alert_min_records),
    )
    try:
        summary = workflow_steps.build_monitoring_report(
            airflow_runtime.s3_hook(), settings.bucket, settings.capture_prefix, run_plan["registry"],
            datetime.now(UTC), limits, timedelta(minutes=float(settings.report_lag_minutes)),
        )  # fmt: skip
    except workflow_steps.NothingNewToReport as exc:
        raise AirflowSkipException(str(exc)) from exc
    try:
        check_alerts(summary, report_uri=summary["report_uri"])
    except ReportAlert as alert:  # a retry would report an empty window and hide the alert
        raise AirflowFailException(str(alert)) from alert
    return summary


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
        run_plan = plan()

    with TaskGroup(**stage("Deploy", "Three Lambdas and the state machine, changed only when needed")):
        state_machine_arn = deploy_state_machine(run_plan, deploy_lambdas(run_plan))

    with TaskGroup(**stage("Smoke", "Test images through the state machine, judged against the threshold")):
        images = pick_smoke_images(run_plan)
        started = StepFunctionStartExecutionOperator.partial(
            task_id="start_smoke_execution", state_machine_arn=state_machine_arn, aws_conn_id=AWS_CONN_ID
        ).expand(state_machine_input=execution_input.expand(image=images))
        waited = wait_for_smoke_executions(started.output)
        checked = check_smoke_executions(run_plan, images, started.output)

    with TaskGroup(**stage("Monitor", "Captured traffic → charts, drift and alerts")):
        report = monitoring_report(run_plan)

    chain(waited, checked, report)


scones_inference_workflow()
