"""
### Scones Unlimited: tear down the paid resources, or prune the old ones

Two modes, chosen with the Param **mode** (`choose_mode` runs one branch and skips the other):

- **all** (the default, what a trigger without the form does): deletes the inference workflow (state machines
  `scones-image-classification` and `scones-batch-classification`, and the four `scones-*` Lambdas), then the
  endpoint `scones-vehicle-classifier` (billed per hour on AWS), every endpoint config and model the training DAG
  created for it (`scones-YYYYmmdd-HHMMSS-xxxxxxxx`, `…-serving`), so the next training run deploys from scratch,
  and the Model Registry's rejected and superseded versions beyond the newest `SCONES_REGISTRY_KEEP_LAST` (the
  group and those versions stay: the record of what was trained and decided), and the two CloudWatch alarms the
  rollout watches.
- **prune**: the endpoint and the workflow keep running. Keeps the config the endpoint serves (and the one an
  update is deploying), the models it serves, and the newest **keep_last** other configs with their models
  (rollback candidates); deletes every other endpoint config and model made for this endpoint, and prunes the
  registry as above (never the live version). The task log says what was kept and why.

Data, model artifacts, monitoring reports and batch results in S3 are kept in both modes. Trigger it by hand; it
never runs on a schedule, and not while a training run is deploying. Safe to run twice: the second run deletes nothing.
"""

from __future__ import annotations

from airflow.sdk import Param, chain, dag, task

from include.scones.dag_defaults import DEFAULT_ARGS, START_DATE
from include.scones.settings import parse_time
from include.scones.teardown import PARAM_SCHEMAS, TeardownParams

POLL_SECONDS = parse_time().poll_seconds  # SCONES_POLL_SECONDS: the endpoint_deleted waiter's Delay


def _params(params: dict | None) -> TeardownParams:
    from airflow.sdk.exceptions import AirflowFailException

    from include.scones import teardown

    try:
        return teardown.validate_params(params or {})
    except teardown.InvalidTeardownParams as exc:  # a retry cannot fix a bad Param
        raise AirflowFailException(str(exc)) from exc


@task.branch
def choose_mode(params: dict | None = None) -> str:
    """mode all: delete the workflow, then the endpoint and everything else; mode prune: prune only."""
    return "delete_workflow" if _params(params).mode == "all" else "prune_configs_and_models"


@task
def delete_endpoint_and_models() -> dict:
    """Endpoint first (and wait until it is gone), then configs, models, old registry versions and the alarms."""
    from include.scones import airflow_runtime, teardown

    settings = airflow_runtime.settings()
    deleted = teardown.teardown(
        airflow_runtime.sagemaker_hook().conn,
        endpoint_name=settings.endpoint_name,
        package_group=settings.model_package_group,
        keep_versions=settings.registry_keep_last,
        poll_s=POLL_SECONDS,
    )
    return deleted | {"alarms": teardown.delete_alarms(airflow_runtime.cloudwatch(), settings.endpoint_name)}


@task
def delete_workflow() -> dict:
    """The inference workflow's two state machines (per image and batch) and its four Lambdas."""
    from include.scones import airflow_runtime, lambda_deploy, state_machine_deploy, teardown

    return teardown.teardown_workflow(
        airflow_runtime.lambda_hook().conn,
        airflow_runtime.step_functions(),
        [state_machine_deploy.STATE_MACHINE_NAME, state_machine_deploy.BATCH_STATE_MACHINE_NAME],
        [spec.name for spec in lambda_deploy.FUNCTIONS],
    )


@task
def prune_configs_and_models(params: dict | None = None) -> dict:
    """Keep the live config and models and the newest keep_last configs; delete the other configs and models."""
    from include.scones import airflow_runtime, teardown

    settings = airflow_runtime.settings()
    return teardown.prune(
        airflow_runtime.sagemaker_hook().conn,
        settings.endpoint_name,
        keep_last=_params(params).keep_last,
        package_group=settings.model_package_group,
        keep_versions=settings.registry_keep_last,
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
    params={name: Param(**schema) for name, schema in PARAM_SCHEMAS.items()},
)
def scones_teardown() -> None:
    mode = choose_mode()
    # TEARDOWN: the workflow first, so nothing invokes the endpoint while it goes away
    chain(mode, delete_workflow(), delete_endpoint_and_models())
    chain(mode, prune_configs_and_models())


scones_teardown()
