"""
### Scones Unlimited: classify every image under an S3 prefix, in one batch

Runs the batch state machine `scones-batch-classification` (deployed by `scones_inference_workflow`): a
Distributed Map lists the objects under the prefix (`ItemReader`) and runs each through the same three Lambdas
as the per-image workflow, as an Express child execution. The results land in S3:

- `s3://<bucket>/batch/<run>/results.jsonl`: a line per image, `{s3_key, status, label, confidence, inferences}`,
  where status is `routed` (confident: the order is routed with no person), `not_routed` or `error`;
- `batch/<run>/summary.json` and `batch/latest.json`: the counts, which the next monitoring report shows.

| Task | What it does |
|---|---|
| `plan` | the live model, the batch machine, the prefix (Param **prefix**; empty: the live model's test images) |
| `start_batch` | starts the execution named after the run, or finds it on a retry (one execution per run) |
| `wait_for_batch` | the provider's `StepFunctionExecutionSensor`: fails if the run does |
| `summarize_batch` | the summary, as a table in the log and as the task's XCom |

Up to 5% of the images may fail (a missing or corrupt object) before the whole run fails; each one is a line with
its error. Trigger it by hand, from the UI form or `airflow dags trigger -c '{"prefix": "..."}'`.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.sensors.step_function import StepFunctionExecutionSensor
from airflow.sdk import Param, chain, dag, task

from include.scones.batch import PARAM_SCHEMAS
from include.scones.dag_defaults import DEFAULT_ARGS, START_DATE
from include.scones.settings import parse_time

PARSE_TIME = parse_time()


@task
def plan(params: dict | None = None, dag_run=None) -> dict:
    """The live model's classes, the deployed batch machine and the request; a bad Param or a missing machine
    fails at once (a retry cannot fix either)."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.scones import airflow_runtime, batch, registry, state_machine_deploy
    from include.scones.records import BatchPlan

    settings = airflow_runtime.settings()
    deployment = registry.live_deployment(airflow_runtime.sagemaker_hook().conn, settings.endpoint_name)
    if deployment is None:
        raise AirflowFailException(f"no deployed model behind {settings.endpoint_name}: run scones_training_pipeline")
    machine_arn = state_machine_deploy.find_state_machine(
        airflow_runtime.step_functions(), state_machine_deploy.BATCH_STATE_MACHINE_NAME
    )
    if machine_arn is None:
        raise AirflowFailException(
            f"state machine {state_machine_deploy.BATCH_STATE_MACHINE_NAME} is not deployed: run "
            "scones_inference_workflow first"
        )
    name = batch.execution_name(dag_run.run_id)
    try:
        request = batch.batch_request(
            settings.bucket, settings.batch_prefix, deployment, batch.validate_params(params or {}), name
        )
    except batch.InvalidBatchParams as exc:
        raise AirflowFailException(str(exc)) from exc
    return BatchPlan(machine_arn=machine_arn, execution_name=name, request=request).to_xcom()


@task
def start_batch(batch_plan: dict) -> str:
    from include.scones import airflow_runtime, batch
    from include.scones.records import BatchPlan

    plan_ = BatchPlan.from_xcom(batch_plan)
    return batch.start_execution(airflow_runtime.step_functions(), plan_.machine_arn, plan_.execution_name,
                                 plan_.request)  # fmt: skip


@task
def summarize_batch(execution_arn: str) -> dict:
    from include.scones import airflow_runtime, batch

    summary = batch.summary_of(airflow_runtime.step_functions().describe_execution(executionArn=execution_arn))
    print(batch.summary_table(summary))
    return summary.to_xcom()


@dag(
    dag_id="scones_batch_classification",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["scones", "stepfunctions", "batch"],
    default_args=DEFAULT_ARGS,
    params={name: Param(**schema) for name, schema in PARAM_SCHEMAS.items()},
)
def scones_batch_classification() -> None:
    started = start_batch(plan())
    waited = StepFunctionExecutionSensor(
        task_id="wait_for_batch",
        execution_arn=started,
        aws_conn_id=PARSE_TIME.aws_conn_id,
        poke_interval=PARSE_TIME.poll_seconds,
        timeout=3600,
        mode="poke",
    )
    chain(waited, summarize_batch(started))


scones_batch_classification()
