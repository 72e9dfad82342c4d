"""Scenario 3, MiniStack restart between the two DAGs: after the training DAG deployed and the workflow DAG ran once,
MiniStack is stopped and started again (`make down`/`make up` of that one service).

Buckets, every object (same ETag), the three functions (same code), the state machine (same definition) and the
capture files must all still be there, and the workflow DAG must complete again, recreating nothing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from include.scones.lambda_deploy import FUNCTIONS
from include.scones.state_machine_deploy import STATE_MACHINE_NAME
from tests.conftest import LocalCloud
from tests.reliability import faults
from tests.reliability.conftest import BUCKET, MEASUREMENTS, Clients
from tests.reliability.dag_runs import LoggedRun, run_dag

pytestmark = pytest.mark.e2e

CAPTURE_PREFIX = "data_capture/"


@dataclass(frozen=True)
class Inventory:
    buckets: frozenset[str]
    objects: dict[str, str]  # key -> ETag, in the project bucket
    functions: dict[str, tuple[str, str]]  # name -> (CodeSha256, State)
    state_machines: dict[str, tuple[str, str]]  # name -> (ARN, definition)

    @property
    def capture_files(self) -> set[str]:
        return {key for key in self.objects if key.startswith(CAPTURE_PREFIX)}


def inventory(aws: Clients) -> Inventory:
    pages = aws.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    functions = {}
    for spec in FUNCTIONS:
        configuration = aws.lambda_.get_function(FunctionName=spec.name)["Configuration"]
        functions[spec.name] = (configuration["CodeSha256"], configuration["State"])
    machines = {}
    for machine in aws.sfn.list_state_machines()["stateMachines"]:
        described = aws.sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])
        machines[machine["name"]] = (machine["stateMachineArn"], described["definition"])
    return Inventory(
        buckets=frozenset(b["Name"] for b in aws.s3.list_buckets()["Buckets"]),
        objects={item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", [])},
        functions=functions,
        state_machines=machines,
    )


def test_a_ministack_restart_between_the_dags_loses_nothing_and_the_workflow_completes(
    cloud: LocalCloud, aws: Clients, first_workflow_run: LoggedRun
) -> None:
    before = inventory(aws)
    assert before.capture_files, "the first workflow run's smoke traffic should have been captured"
    assert set(before.functions) == {spec.name for spec in FUNCTIONS}
    assert STATE_MACHINE_NAME in before.state_machines

    unavailable_s = faults.restart(cloud.cfg, "ministack")

    after = inventory(aws)
    assert after.buckets == before.buckets
    assert after.functions == before.functions
    assert after.state_machines == before.state_machines
    missing = {key for key in before.objects if after.objects.get(key) != before.objects[key]}
    assert missing == set(), f"{len(missing)} object(s) lost or changed, e.g. {sorted(missing)[:3]}"

    second = run_dag("scones_inference_workflow")
    assert second.succeeded, second.states
    assert {f["action"] for f in second.xcom("deploy_lambdas").values()} == {"unchanged"}
    assert second.xcom("deploy_state_machine") == before.state_machines[STATE_MACHINE_NAME][0]
    new_captures = inventory(aws).capture_files - after.capture_files
    assert new_captures, "the second run's smoke traffic should reach the restarted MiniStack's S3"
    MEASUREMENTS["MiniStack restart"] = (
        f"down and up in {unavailable_s:.1f} s; {len(before.objects)} objects ({len(before.capture_files)} capture "
        f"files), {len(before.functions)} functions, {len(before.state_machines)} state machine kept; workflow run "
        f"after it {second.run.state} in {second.seconds:.0f} s, redeploying nothing"
    )
