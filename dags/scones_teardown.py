"""
### Scones Unlimited: tear down the paid resources

Deletes the inference workflow (state machine `scones-image-classification` and the three `scones-*`
Lambdas), then the endpoint `scones-vehicle-classifier` (billed per hour on AWS), every endpoint config and
model the training DAG created for it (`scones-YYYYmmdd-HHMMSS-xxxxxxxx`), and the deployment registry entry, so
the next training run deploys from scratch. Data, model artifacts and monitoring reports in S3 are kept.

Trigger it by hand; it never runs on a schedule. Safe to run twice: the second run deletes nothing.
"""

from __future__ import annotations

from airflow.sdk import chain, dag, task

from include.scones.dag_defaults import DEFAULT_ARGS, START_DATE
from include.scones.settings import POLL_SECONDS_VARIABLE, parse_time_setting

POLL_SECONDS = float(parse_time_setting(POLL_SECONDS_VARIABLE, "30"))


@task
def delete_endpoint_and_models() -> dict:
    """Endpoint first (and wait until it is gone), then configs, models and the registry entry."""
    from include.scones import airflow_runtime, teardown

    settings = airflow_runtime.settings()
    return teardown.teardown(
        airflow_runtime.sagemaker_hook().conn,
        airflow_runtime.s3_hook(),
        endpoint_name=settings.endpoint_name,
        bucket=settings.bucket,
        registry_key=settings.registry_key,
        poll_s=POLL_SECONDS,
    )


@task
def delete_workflow() -> dict:
    """The inference workflow's state machine and its three Lambdas."""
    from airflow.providers.amazon.aws.hooks.lambda_function import LambdaHook
    from airflow.providers.amazon.aws.hooks.step_function import StepFunctionHook

    from include.scones import airflow_runtime, teardown, workflow_steps

    conn_id = airflow_runtime.aws_conn_id()
    return teardown.teardown_workflow(
        LambdaHook(aws_conn_id=conn_id).conn,
        StepFunctionHook(aws_conn_id=conn_id).conn,
        workflow_steps.STATE_MACHINE_NAME,
        [spec.name for spec in workflow_steps.FUNCTIONS],
    )


@dag(
    dag_id="scones_teardown",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["scones", "sagemaker", "teardown"],
    default_args=DEFAULT_ARGS,
)
def scones_teardown() -> None:
    # TEARDOWN: the workflow first, so nothing invokes the endpoint while it goes away
    chain(delete_workflow(), delete_endpoint_and_models())


scones_teardown()
