"""Scenario 6, idempotency: each DAG runs again after a successful run of its own.

The training DAG's second run leaves exactly one endpoint (updated blue/green onto the new config) and one endpoint
config per deploy; the workflow DAG's next run changes nothing at all: the four functions and the two state machines
are described exactly as before (code, configuration, definition, modification times)."""

from __future__ import annotations

from typing import Any

import pytest

from include.scones import registry
from include.scones.lambda_deploy import FUNCTIONS
from include.scones.records import DeploymentRecord
from include.scones.state_machine_deploy import BATCH_STATE_MACHINE_NAME, STATE_MACHINE_NAME
from tests.reliability.conftest import MEASUREMENTS, TRAINING_PARAMS, Clients, TrainingCrash
from tests.reliability.dag_runs import LoggedRun, run_dag

pytestmark = pytest.mark.e2e

ENDPOINT = "scones-vehicle-classifier"


def live_group(live: DeploymentRecord) -> str:
    return live.model_package_arn.split(":model-package/", 1)[1].rsplit("/", 1)[0]


def run_named(listing: dict[str, Any], kind: str) -> set[str]:
    """Names in a List<kind>s answer (the training DAG names what it creates `scones-<run>`)."""
    return {item[f"{kind}Name"] for item in listing[f"{kind}s"]}


def test_the_training_dag_run_again_keeps_one_endpoint_and_one_config_per_deploy(
    aws: Clients, training_crash: TrainingCrash, deployment: dict[str, Any], dag_settings: dict
) -> None:
    again = run_dag("scones_training_pipeline", TRAINING_PARAMS)
    assert again.succeeded, again.states
    runs = [training_crash.logged, again]
    deploys = {run.xcom("plan")["name"] for run in runs if run.states["create_endpoint_config"] == "success"}
    assert again.xcom("plan")["name"] in deploys  # a seeded retrain scores the same, so the gate lets it deploy

    endpoints = aws.sagemaker.list_endpoints(NameContains=ENDPOINT)["Endpoints"]
    assert [(e["EndpointName"], e["EndpointStatus"]) for e in endpoints] == [(ENDPOINT, "InService")]
    described = aws.sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointConfigName"] == again.xcom("plan")["name"]
    configs = run_named(aws.sagemaker.list_endpoint_configs(NameContains="scones-"), "EndpointConfig")
    assert configs == deploys
    models = run_named(aws.sagemaker.list_models(NameContains="scones-"), "Model")
    # one evaluated model per run, deployed or not, and one serving model (from its version) per deploy
    assert models == {run.xcom("plan")["name"] for run in runs} | {f"{name}-serving" for name in deploys}
    live = registry.live_deployment(aws.sagemaker, ENDPOINT)
    assert live is not None and live.endpoint_config_name == described["EndpointConfigName"]
    # one registry version per run: the retried tasks of the crashed run registered once
    arns = {run.xcom("register_candidate") for run in runs}
    assert len(arns) == 2 and arns <= {v["ModelPackageArn"] for v in registry.versions(aws.sagemaker, live_group(live))}
    # The same data and code were reused, not uploaded again under new keys.
    assert again.xcom("load") == training_crash.logged.xcom("load")
    assert again.xcom("package_code") == training_crash.logged.xcom("package_code")
    MEASUREMENTS["idempotency (training)"] = (
        f"2 runs, {len(deploys)} deploys: {len(endpoints)} endpoint, {len(configs)} endpoint configs, "
        f"{len(models)} models; second run {again.seconds:.0f} s"
    )


def workflow_resources(aws: Clients) -> dict[str, Any]:
    """Everything the workflow DAG deploys, as described by the services (request metadata left out)."""
    functions = {
        f["FunctionName"]: aws.lambda_.get_function(FunctionName=f["FunctionName"])["Configuration"]
        for f in aws.lambda_.list_functions()["Functions"]
        if f["FunctionName"].startswith("scones-")
    }
    machines = {
        m["name"]: {
            k: v
            for k, v in aws.sfn.describe_state_machine(stateMachineArn=m["stateMachineArn"]).items()
            if k != "ResponseMetadata"
        }
        for m in aws.sfn.list_state_machines()["stateMachines"]
    }
    return {"functions": functions, "state_machines": machines}


def test_the_workflow_dag_run_again_changes_nothing(aws: Clients, first_workflow_run: LoggedRun) -> None:
    before = workflow_resources(aws)
    assert sorted(before["functions"]) == sorted(spec.name for spec in FUNCTIONS)
    assert sorted(before["state_machines"]) == sorted([STATE_MACHINE_NAME, BATCH_STATE_MACHINE_NAME])

    again = run_dag("scones_inference_workflow")

    assert again.succeeded, again.states
    assert {f["action"] for f in again.xcom("deploy_lambdas").values()} == {"unchanged"}
    assert workflow_resources(aws) == before
    MEASUREMENTS["idempotency (workflow)"] = (
        f"run again in {again.seconds:.0f} s: {len(before['functions'])} functions and "
        f"{len(before['state_machines'])} state machines described exactly as before"
    )
