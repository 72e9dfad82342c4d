"""load_generator, offline: executions paced by a fake clock and run by a pool of callers, outcomes tallied, the
state machine found by name across pages, and run() end to end over fake boto3 clients."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from include.scones.records import CandidateMetadata
from tests.scones.helpers import FakeRegistry, deployment_record
from tools import load_generator
from tools.load_generator import run_burst, state_machine_arn, tally

MACHINE_ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:scones-image-classification"
INPUTS = [{"s3_bucket": "data", "s3_key": f"test/images/{name}.png"} for name in ("a", "b", "c")]
STARTED = datetime(2026, 12, 6, tzinfo=UTC)


class FakeClock:
    """monotonic() and sleep() over one fake timeline (only the pacing thread sleeps on it)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def answer(arn: str, status: str = "SUCCEEDED", **fields: Any) -> dict[str, Any]:
    """A StartSyncExecution answer, as botocore parses it (dates as datetimes)."""
    stopped = STARTED + timedelta(milliseconds=12)
    return {"executionArn": arn, "status": status, "startDate": STARTED, "stopDate": stopped, **fields}


class FakeExpress:
    """start_sync_execution that answers after `seconds` of real time, counting how many run at once."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.inputs: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.running = self.most_at_once = 0

    def start_sync_execution(self, stateMachineArn: str, input: str) -> dict[str, Any]:  # noqa: N803, A002
        assert stateMachineArn == MACHINE_ARN
        with self.lock:
            self.inputs.append(json.loads(input))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
        key = json.loads(input)["s3_key"]
        return answer(f"arn:aws:states:us-east-1:000000000000:express:m:{key}", output='{"body": {}}')


def test_run_burst_paces_the_starts_at_the_rate_and_answers_in_start_order() -> None:
    clock = FakeClock()
    sfn = FakeExpress()
    ends = run_burst(sfn, MACHINE_ARN, INPUTS, count=10, rate_per_s=5, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == pytest.approx([0.2] * 9)
    assert [end["executionArn"].rsplit(":", 1)[1] for end in ends] == [i["s3_key"] for i in (INPUTS * 4)[:10]]
    assert sorted(sfn.inputs, key=json.dumps) == sorted((INPUTS * 4)[:10], key=json.dumps)
    assert ends[0] == {"executionArn": ends[0]["executionArn"], "status": "SUCCEEDED", "error": None, "cause": None,
                       "output": '{"body": {}}', "milliseconds": 12.0}  # fmt: skip


def test_run_burst_runs_at_most_concurrency_executions_at_once() -> None:
    sfn = FakeExpress(seconds=0.05)
    ends = run_burst(sfn, MACHINE_ARN, INPUTS, count=12, rate_per_s=1_000_000, concurrency=3)
    assert len(ends) == 12 and len(sfn.inputs) == 12
    assert sfn.most_at_once == 3  # slow answers did not hold back the starts beyond the pool, nor exceed it


def test_run_burst_of_none_runs_nothing() -> None:
    clock = FakeClock()
    sfn = FakeExpress()
    assert run_burst(sfn, MACHINE_ARN, INPUTS, count=0, rate_per_s=5, clock=clock, sleep=clock.sleep) == []
    assert sfn.inputs == [] and clock.sleeps == []


@pytest.mark.parametrize(("count", "rate", "concurrency"), [(10, 0, 4), (10, -1.0, 4), (-1, 5, 4), (10, 5, 0)])
def test_run_burst_refuses_a_bad_rate_count_or_concurrency(count: int, rate: float, concurrency: int) -> None:
    sfn = FakeExpress()
    with pytest.raises(ValueError, match="count must be ≥ 0, rate > 0, concurrency ≥ 1"):
        run_burst(sfn, MACHINE_ARN, INPUTS, count, rate, concurrency, clock=FakeClock(), sleep=FakeClock().sleep)
    assert sfn.inputs == []


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
        self.lock = threading.Lock()

    def start_sync_execution(self, stateMachineArn: str, input: str) -> dict[str, Any]:  # noqa: N803, A002
        with self.lock:
            self.inputs.append(json.loads(input))
        number = int(json.loads(input)["s3_key"].removesuffix(".png").rsplit("img", 1)[1])
        if number % 3 == 2:
            return answer(f"exec-{number}", "FAILED", error="ThresholdConfidenceNotMet", cause="{}")
        return answer(f"exec-{number}", output="{}")


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
    monkeypatch.setattr("boto3.client", lambda service, **config: clients[service])
    settings = SimpleNamespace(bucket="scones", endpoint_name="ep")
    monkeypatch.setattr(load_generator.scones_settings, "load", lambda: settings)

    result = load_generator.run(count=6, rate_per_s=1_000_000)
    assert result["executions"] == 6
    assert result["outcomes"] == {"SUCCEEDED": 4, "LOW_CONFIDENCE": 2}
    expected = [{"s3_bucket": "data", "s3_key": f"v1/test/images/img{n}.png"} for n in range(6)]
    assert sorted(sfn.inputs, key=json.dumps) == sorted(expected, key=json.dumps)
