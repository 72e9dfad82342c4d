"""What a finished update means: deployed, or rolled back by the deployment guardrails (the waiter cannot tell)."""

from __future__ import annotations

import pytest

from include.scones import rollout


def test_an_update_that_runs_the_asked_config_is_deployed() -> None:
    rollout.check_deployed({"EndpointName": "e", "EndpointConfigName": "run-2", "EndpointStatus": "InService"}, "run-2")


def test_a_rollback_is_an_error_that_names_the_alarm_and_what_still_serves() -> None:
    reason = "Deployment rolled back: CloudWatch alarm e-5xx-errors went to ALARM during the bake (Threshold Crossed)."
    described = {"EndpointName": "e", "EndpointConfigName": "run-1", "FailureReason": reason}
    with pytest.raises(rollout.RolledBack) as raised:
        rollout.check_deployed(described, "run-2")
    message = str(raised.value)
    assert "run-2" in message and "e-5xx-errors" in message and "still serves run-1" in message
    with pytest.raises(rollout.RolledBack, match="SageMaker gave no reason"):  # AWS's reason may be empty
        rollout.check_deployed({"EndpointName": "e", "EndpointConfigName": "run-1"}, "run-2")


def test_an_unknown_rollout_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown rollout 'rolling'"):
        rollout.deployment_config("rolling", 20, 60, [])


class FakeCloudWatch:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def put_metric_alarm(self, **request: object) -> None:
        self.calls.append(("put", request))

    def set_alarm_state(self, **request: object) -> None:
        self.calls.append(("set", request))


def test_alarms_are_put_for_the_new_config_and_start_ok_whatever_an_earlier_deployment_left() -> None:
    cloudwatch = FakeCloudWatch()
    requests = rollout.alarm_requests("e", "AllTraffic", "run-2", 500)
    assert rollout.put_alarms(cloudwatch, requests, "run-2") == ["e-5xx-errors", "e-model-latency"]
    assert [kind for kind, _ in cloudwatch.calls] == ["put", "set", "put", "set"]  # each alarm put, then reset
    for (_, put), (_, state) in zip(cloudwatch.calls[::2], cloudwatch.calls[1::2], strict=True):
        assert {"Name": "EndpointConfigName", "Value": "run-2"} in put["Dimensions"]
        assert state["AlarmName"] == put["AlarmName"] and state["StateValue"] == "OK"
        assert "run-2" in state["StateReason"]
