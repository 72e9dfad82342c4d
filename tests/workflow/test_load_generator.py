"""load_generator, offline: executions paced by a fake clock, outcomes tallied, the state machine found by name
across pages, and run() end to end over fake boto3 clients."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace
from typing import Any

import pytest

from include.scones.records import CandidateMetadata
from tests.scones.helpers import FakeRegistry, deployment_record
from tools import load_generator
from tools.load_generator import start_burst, state_machine_arn, tally

MACHINE_ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:scones-image-classification"
INPUTS = [{"s3_bucket": "data", "s3_key": f"test/images/{name}.png"} for name in ("a", "b", "c")]


class FakeClock:
    """monotonic() and sleep() over one fake timeline; each start_execution may take `latency` seconds."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


class FakeStepFunctions:
    def __init__(self, clock: FakeClock | None = None, latency: float = 0.0) -> None:
        self.clock, self.latency = clock, latency
        self.started: list[dict[str, Any]] = []

    def start_execution(self, stateMachineArn: str, input: str) -> dict[str, str]:
        at = self.clock() if self.clock else None
        self.started.append({"stateMachineArn": stateMachineArn, "input": input, "at": at})
        if self.clock:
            self.clock.now += self.latency
        return {"executionArn": f"{stateMachineArn}:exec-{len(self.started) - 1}"}


def test_start_burst_paces_executions_at_the_rate_and_cycles_the_inputs() -> None:
    clock = FakeClock()
    sfn = FakeStepFunctions(clock)
    arns = start_burst(sfn, MACHINE_ARN, INPUTS, count=10, rate_per_s=5, clock=clock, sleep=clock.sleep)
    assert arns == [f"{MACHINE_ARN}:exec-{n}" for n in range(10)]
    assert clock.sleeps == pytest.approx([0.2] * 9)
    assert [s["at"] for s in sfn.started] == pytest.approx([n * 0.2 for n in range(10)])
    assert [json.loads(s["input"]) for s in sfn.started] == (INPUTS * 4)[:10]
    assert {s["stateMachineArn"] for s in sfn.started} == {MACHINE_ARN}


def test_start_burst_counts_the_time_spent_starting_against_the_interval() -> None:
    clock = FakeClock()
    sfn = FakeStepFunctions(clock, latency=0.05)
    start_burst(sfn, MACHINE_ARN, INPUTS, count=4, rate_per_s=5, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == pytest.approx([0.15] * 3)
    assert [s["at"] for s in sfn.started] == pytest.approx([0.0, 0.2, 0.4, 0.6])


def test_start_burst_does_not_sleep_when_starting_is_slower_than_the_rate() -> None:
    clock = FakeClock()
    sfn = FakeStepFunctions(clock, latency=0.5)
    assert len(start_burst(sfn, MACHINE_ARN, INPUTS, count=3, rate_per_s=5, clock=clock, sleep=clock.sleep)) == 3
    assert clock.sleeps == []


def test_start_burst_of_none_starts_nothing() -> None:
    clock = FakeClock()
    sfn = FakeStepFunctions(clock)
    assert start_burst(sfn, MACHINE_ARN, INPUTS, count=0, rate_per_s=5, clock=clock, sleep=clock.sleep) == []
    assert sfn.started == [] and clock.sleeps == []


@pytest.mark.parametrize(("count", "rate"), [(10, 0), (10, -1.0), (-1, 5)])
def test_start_burst_refuses_a_non_positive_rate_or_negative_count(count: int, rate: float) -> None:
    sfn = FakeStepFunctions()
    with pytest.raises(ValueError, match="count must be ≥ 0, rate > 0"):
        start_burst(sfn, MACHINE_ARN, INPUTS, count=count, rate_per_s=rate, clock=FakeClock(), sleep=FakeClock().sleep)
    assert sfn.started == []


def test_tally_counts_successes_low_confidence_and_other_ends() -> None:
    descriptions = [
        {"status": "SUCCEEDED"},
        {"status": "SUCCEEDED"},
        {"status": "FAILED", "error": "ThresholdConfidenceNotMet", "cause": "{}"},
        {"status": "FAILED", "error": "ThresholdConfidenceNotMet"},
        {"status": "FAILED", "error": "InvalidEvent"},
        {"status": "FAILED"},
        {"status": "TIMED_OUT"},
        {"status": "ABORTED", "error": "ThresholdConfidenceNotMet"},  # only a FAILED end is low confidence
    ]
    assert tally(descriptions) == {"SUCCEEDED": 2, "LOW_CONFIDENCE": 2, "FAILED": 2, "TIMED_OUT": 1, "ABORTED": 1}
    assert tally([]) == {}


class Paginated:
    def __init__(self, pages: list[list[str]]) -> None:
        self.pages = pages

    def get_paginator(self, operation: str) -> Any:
        assert operation == "list_state_machines"
        pages = [
            {"stateMachines": [{"name": n, "stateMachineArn": f"arn:aws:states:::stateMachine:{n}"} for n in page]}
            for page in self.pages
        ]
        return SimpleNamespace(paginate=lambda: iter(pages))


def test_state_machine_arn_is_found_on_any_page() -> None:
    sfn = Paginated([["other", "scones-image-classification-old"], [], ["scones-image-classification"]])
    assert state_machine_arn(sfn) == "arn:aws:states:::stateMachine:scones-image-classification"
    assert state_machine_arn(sfn, "other") == "arn:aws:states:::stateMachine:other"


def test_state_machine_arn_names_the_dag_to_run_when_missing() -> None:
    with pytest.raises(LookupError) as raised:
        state_machine_arn(Paginated([["other"], []]))
    assert str(raised.value) == (
        "no state machine named scones-image-classification: run scones_inference_workflow first"
    )
    with pytest.raises(LookupError, match="no state machine named elsewhere"):
        state_machine_arn(Paginated([]), "elsewhere")


# --- run(), over fake boto3 clients ------------------------------------------------------------------------
class FakeS3:
    def __init__(self, objects: dict[tuple[str, str], bytes]) -> None:
        self.objects = objects

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}


class FakeRunStepFunctions(Paginated):
    def __init__(self) -> None:
        super().__init__([["scones-image-classification"]])
        self.inputs: list[dict[str, str]] = []

    def start_execution(self, stateMachineArn: str, input: str) -> dict[str, str]:
        self.inputs.append(json.loads(input))
        return {"executionArn": f"exec-{len(self.inputs) - 1}"}

    def describe_execution(self, executionArn: str) -> dict[str, str]:
        number = int(executionArn.removeprefix("exec-"))
        if number % 3 == 2:
            return {"executionArn": executionArn, "status": "FAILED", "error": "ThresholdConfidenceNotMet"}
        return {"executionArn": executionArn, "status": "SUCCEEDED"}


def test_run_starts_the_burst_over_the_live_versions_test_images_and_tallies(monkeypatch: pytest.MonkeyPatch) -> None:
    lst = "".join(f"{n}\t{n % 2}\timg{n}.png\n" for n in range(44))
    s3 = FakeS3(
        {
            ("data", "v1/test/test.lst"): lst.encode(),
            ("data", "v1/test/classes.json"): b'["bicycle", "motorcycle"]',
        }
    )
    sfn = FakeRunStepFunctions()
    sagemaker = FakeRegistry()  # the endpoint serves a version whose data is s3://data/v1/
    properties = CandidateMetadata(**(deployment_record(data_uri="s3://data/v1/").model_dump() | {"run_name": "r"}))
    sagemaker.serve("ep", sagemaker.add_version(1, "Approved", **properties.to_properties()))
    clients = {"s3": s3, "stepfunctions": sfn, "sagemaker": sagemaker}
    monkeypatch.setattr("boto3.client", lambda service: clients[service])
    settings = SimpleNamespace(bucket="scones", endpoint_name="ep")
    monkeypatch.setattr(load_generator.scones_settings, "load", lambda: settings)

    result = load_generator.run(count=6, rate_per_s=1_000_000)
    assert result["executions"] == 6
    assert result["outcomes"] == {"SUCCEEDED": 4, "LOW_CONFIDENCE": 2}
    assert sfn.inputs == [{"s3_bucket": "data", "s3_key": f"v1/test/images/img{n}.png"} for n in range(6)]
