"""Unit tests of the guardrails' pure parts: the plan a DeploymentConfig makes, the traffic split, what a look at a
bake decides (MaximumExecutionTimeoutInSeconds is at least 600 s, so its rollback is checked here, not live), and
the metric figures of one request."""

from __future__ import annotations

from typing import Any

import pytest

from localcloud.sagemaker.exceptions import ValidationException
from localcloud.sagemaker.models.rollout import (
    BAKED,
    ROLL_BACK,
    WAIT,
    TrafficSplit,
    Tripped,
    bake_verdict,
    plan_rollout,
    rollback_reason,
)
from localcloud.sagemaker.runners.metrics import Outcome, Series, Window, figures, metric_data


def policy(routing: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing, **extra}}


def test_no_deployment_config_is_the_plain_switch() -> None:
    assert plan_rollout(None, 1) is None
    assert plan_rollout({}, 1) is None


def test_a_canary_bakes_its_share_then_the_final_bake_on_full_capacity() -> None:
    plan = plan_rollout(
        policy(
            {"Type": "CANARY", "WaitIntervalInSeconds": 120, "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20}},
            TerminationWaitInSeconds=30,
            MaximumExecutionTimeoutInSeconds=600,
        )
        | {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]}},
        instances=1,
    )
    assert plan is not None and plan.guarded and plan.alarms == ("errors",) and plan.timeout_s == 600
    assert [(s.share, s.bake_s) for s in plan.steps] == [(0.2, 120), (1.0, 30)]
    assert plan.steps[-1].message.startswith("Baking for 30 seconds (TerminationWaitInSeconds)")


def test_a_canary_counted_in_instances_is_a_share_of_the_fleet() -> None:
    routing = {"Type": "CANARY", "WaitIntervalInSeconds": 5, "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1}}
    plan = plan_rollout(policy(routing), instances=4)
    assert plan is not None and plan.steps[0].share == 0.25
    with pytest.raises(ValidationException, match="must be less than or equal to 50%"):
        plan_rollout(policy(routing), instances=1)  # one instance of one is all of it


def test_linear_steps_add_up_to_all_traffic() -> None:
    routing = {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 10,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
    }
    plan = plan_rollout(policy(routing), instances=2)
    assert plan is not None
    assert [(s.share, s.bake_s) for s in plan.steps] == [(0.25, 10), (0.5, 10), (0.75, 10), (1.0, 0)]
    uneven = plan_rollout(policy(routing | {"LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 40}}), 2)
    assert uneven is not None and [round(s.share, 2) for s in uneven.steps] == [0.4, 0.8, 1.0]


def test_all_at_once_with_alarms_is_guarded_by_its_final_bake() -> None:
    plan = plan_rollout(
        policy({"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}, TerminationWaitInSeconds=60)
        | {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "latency"}]}},
        instances=1,
    )
    assert plan is not None and plan.guarded and [(s.share, s.bake_s) for s in plan.steps] == [(1.0, 60)]
    plain = plan_rollout(policy({"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}), 1)
    assert plain is not None and not plain.guarded  # nothing to wait for or watch: the one-step switch


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            policy(
                {"Type": "CANARY", "WaitIntervalInSeconds": 1, "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 51}}
            ),
            "50%",
        ),
        (
            policy(
                {
                    "Type": "LINEAR",
                    "WaitIntervalInSeconds": 1,
                    "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 60},
                }
            ),
            "10-50%",
        ),
        (policy({"Type": "LINEAR", "WaitIntervalInSeconds": 1}), "LinearStepSize is required"),
        (
            policy(
                {
                    "Type": "CANARY",
                    "WaitIntervalInSeconds": 1,
                    "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 20},
                }
            ),
            "only valid with Type LINEAR",
        ),
        (
            policy({"Type": "CANARY", "WaitIntervalInSeconds": 1, "CanarySize": {"Type": "PERCENT", "Value": 20}}),
            "INSTANCE_COUNT or CAPACITY_PERCENT",
        ),
        (
            policy(
                {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
                TerminationWaitInSeconds=700,
                MaximumExecutionTimeoutInSeconds=700,
            ),
            "greater than the sum",
        ),
    ],
)
def test_what_aws_refuses_is_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationException, match=message):
        plan_rollout(config, instances=1)


def test_the_split_gives_the_new_fleet_exactly_its_share() -> None:
    for share, requests in ((0.2, 400), (0.34, 100), (0.5, 10), (1.0, 7)):
        split = TrafficSplit(fleet="green", share=share)
        taken = sum(split.take() for _ in range(requests))
        assert abs(taken - share * requests) <= 1, (share, taken)


def test_a_bake_rolls_back_on_an_alarm_or_the_timeout_and_ends_on_time() -> None:
    alarm = Tripped("errors", "Threshold Crossed")
    assert bake_verdict(None, now_s=5, bake_end=10, deadline=600) == WAIT
    assert bake_verdict(None, now_s=10, bake_end=10, deadline=600) == BAKED
    assert bake_verdict(alarm, now_s=10, bake_end=10, deadline=600) == ROLL_BACK  # the last look still counts
    assert bake_verdict(None, now_s=600, bake_end=900, deadline=600) == ROLL_BACK
    assert "alarm errors went to ALARM" in rollback_reason(alarm)
    assert "MaximumExecutionTimeoutInSeconds (600)" in rollback_reason(None, 600)


def test_one_request_s_figures() -> None:
    series = Series("e", "AllTraffic", "c1", instance_count=2, by_config=True)
    ok = figures(series, Outcome(200, model_us=900, overhead_us=100))
    assert ok["Invocations"] == 1 and ok["InvocationsPerInstance"] == 0.5 and ok["Invocation5XXErrors"] == 0
    assert ok["ModelLatency"] == 900 and ok["OverheadLatency"] == 100 and ok["InvocationModelErrors"] == 0
    error = figures(series, Outcome(500, 1, 1))
    assert (
        error["Invocation5XXErrors"] == 1 and error["Invocation4XXErrors"] == 0 and error["InvocationModelErrors"] == 1
    )
    assert figures(series, Outcome(None, 1, 1)) == {"InvocationModelErrors": 1.0}  # no answer: no invocation
    window = Window()
    for value in (1.0, 3.0):
        window.add("ModelLatency", value)
    data = metric_data({series: window})
    assert len(data) == 2  # with and without EndpointConfigName
    assert data[0]["StatisticValues"] == {"SampleCount": 2, "Sum": 4.0, "Minimum": 1.0, "Maximum": 3.0}
    assert data[0]["Unit"] == "Microseconds"
    assert {"Name": "EndpointConfigName", "Value": "c1"} in data[1]["Dimensions"]
