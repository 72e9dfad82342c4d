"""include/scones/batch.py: the batch DAG's Params, the machine's input, the idempotent start, reading the summary
back, and the latest run for the report. Fake clients here; the DAG itself runs in tests/e2e."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from include.scones import batch
from include.scones.records import BatchRequest, BatchSummary
from tests.scones.helpers import deployment_record

MACHINE = "arn:aws:states:us-east-1:000000000000:stateMachine:scones-batch-classification"
SUMMARY = {
    "s3_bucket": "bkt", "prefix": "datasets/cifar100/ds1/test/images/", "results_key": "batch/run/results.jsonl",
    "map_run_arn": "arn:map", "finished_at": "2026-12-05T10:00:00+00:00", "images": 4, "routed": 3,
    "not_routed": 1, "errors": 0, "routed_by_label": {"bicycle": 2, "motorcycle": 1},
}  # fmt: skip


def test_the_prefix_defaults_to_the_live_models_test_images() -> None:
    request = batch.batch_request("bkt", "batch", deployment_record(), batch.validate_params({}), "run-1")
    assert request == BatchRequest(
        s3_bucket="bkt", prefix="datasets/cifar100/ds1/test/images/", results_prefix="batch/run-1",
        latest_key="batch/latest.json", classes=("bicycle", "motorcycle"),
    )  # fmt: skip
    given = batch.batch_request("bkt", "batch/", deployment_record(), batch.validate_params({"prefix": "in/"}), "r")
    assert (given.prefix, given.results_prefix) == ("in/", "batch/r")


@pytest.mark.parametrize("prefix", ["batch/", "batch/run-1/", "bat", "b"])
def test_a_prefix_that_overlaps_the_results_is_refused(prefix: str) -> None:
    with pytest.raises(batch.InvalidBatchParams, match="overlaps the results under 'batch/'"):
        batch.batch_request("bkt", "batch", deployment_record(), batch.validate_params({"prefix": prefix}), "r")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"prefix": "s3://bkt/images/"}, "must be a key prefix inside the bucket"),
        ({"prefix": "/images/"}, "must be a key prefix inside the bucket"),
        ({"prefix": 7}, "prefix: 7 is not of type 'string'"),
        ({"prefix": "x" * 1025}, "is too long"),
    ],
)
def test_a_bad_param_is_refused_by_name(params: dict[str, Any], message: str) -> None:
    with pytest.raises(batch.InvalidBatchParams, match=message):
        batch.validate_params(params)


def test_the_execution_name_is_the_run_id_made_legal_and_stable() -> None:
    name = batch.execution_name("manual__2026-12-05T10:00:00.123456+00:00")
    assert name == "manual__2026-12-05T10-00-00-123456-00-00"
    assert batch.execution_name("manual__2026-12-05T10:00:00.123456+00:00") == name
    assert len(batch.execution_name("x" * 200)) == 80


class FakeStepFunctions:
    """start_execution that remembers names (a second start of a name is ExecutionAlreadyExists, as on AWS once
    the input differs or the execution has ended, and always on MiniStack)."""

    class ExecutionAlreadyExists(Exception):
        pass

    def __init__(self) -> None:
        self.exceptions = SimpleNamespace(ExecutionAlreadyExists=self.ExecutionAlreadyExists)
        self.executions: dict[str, dict[str, Any]] = {}

    def start_execution(self, stateMachineArn: str, name: str, input: str) -> dict[str, str]:  # noqa: N803, A002
        arn = f"{stateMachineArn.replace(':stateMachine:', ':execution:')}:{name}"
        if arn in self.executions:
            raise self.ExecutionAlreadyExists(arn)
        self.executions[arn] = {"executionArn": arn, "input": input, "status": "RUNNING"}
        return {"executionArn": arn}

    def describe_execution(self, executionArn: str) -> dict[str, Any]:  # noqa: N803
        return self.executions[executionArn]


def test_a_retried_start_finds_the_execution_its_first_try_started() -> None:
    client = FakeStepFunctions()
    request = batch.batch_request("bkt", "batch", deployment_record(), batch.validate_params({}), "run-1")
    first = batch.start_execution(client, MACHINE, "run-1", request)
    assert first == "arn:aws:states:us-east-1:000000000000:execution:scones-batch-classification:run-1"
    assert batch.start_execution(client, MACHINE, "run-1", request) == first
    assert len(client.executions) == 1 and json.loads(client.executions[first]["input"])["prefix"] == request.prefix
    other = batch.batch_request("bkt", "batch", deployment_record(), batch.validate_params({"prefix": "in/"}), "run-1")
    with pytest.raises(FakeStepFunctions.ExecutionAlreadyExists):
        batch.start_execution(client, MACHINE, "run-1", other)  # the same name for other work is an error


def test_the_summary_is_read_from_a_succeeded_execution_and_a_failed_one_says_why() -> None:
    summary = batch.summary_of({"status": "SUCCEEDED", "output": json.dumps(SUMMARY)})
    assert summary.results_uri == "s3://bkt/batch/run/results.jsonl" and summary.routed_share == 0.75
    table = batch.summary_table(summary)
    assert "routed (confident)             3 (75.0%)" in table and "routed as motorcycle" in table
    failed = {"status": "FAILED", "executionArn": "arn:x", "error": "States.ExceedToleratedFailureThreshold",
              "cause": "The specified tolerated failure threshold was exceeded"}  # fmt: skip
    with pytest.raises(RuntimeError, match="arn:x is FAILED: States.ExceedToleratedFailureThreshold"):
        batch.summary_of(failed)


class MemoryHook:
    def __init__(self, objects: dict[str, str]) -> None:
        self.objects = objects

    def check_for_key(self, key: str, bucket_name: str) -> bool:
        return key in self.objects

    def read_key(self, key: str, bucket_name: str) -> str:
        return self.objects[key]


def test_the_latest_run_is_read_for_the_report_and_none_before_any_run() -> None:
    assert batch.read_latest(MemoryHook({}), "bkt", "batch") is None
    latest = batch.read_latest(
        MemoryHook({"batch/latest.json": json.dumps(SUMMARY | {"new_field": 1})}), "bkt", "batch"
    )
    assert latest == BatchSummary.from_xcom(SUMMARY)  # a field from a newer Lambda is ignored
