"""The guarded rollout of a new version: the rollback alarms, the `DeploymentConfig` the Params ask for, and what
a finished update means (deployed, or rolled back by SageMaker's deployment guardrails).

The same requests go to AWS and to the local cloud. SageMaker shifts the traffic and rolls back on its own; the
DAG only names the alarms, and fails the deploy task, naming the alarm, when the endpoint came back InService on
the old config (the botocore waiter cannot tell: both end InService)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ALL_AT_ONCE, CANARY, LINEAR = "all_at_once", "canary", "linear"
NAMESPACE = "AWS/SageMaker"
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 600, 28_800
# Room for the new fleet to start (download, model_fn, /ping) on top of the bakes, within the timeout.
START_ALLOWANCE_S = 600


@dataclass(frozen=True)
class AlarmNames:
    errors: str
    latency: str

    def all(self) -> list[str]:
        return [self.errors, self.latency]


def alarm_names(endpoint_name: str) -> AlarmNames:
    return AlarmNames(errors=f"{endpoint_name}-5xx-errors", latency=f"{endpoint_name}-model-latency")


def alarm_requests(endpoint_name: str, variant_name: str, config_name: str, latency_ms: float) -> list[dict[str, Any]]:
    """PutMetricAlarm requests for the deployment of `config_name` (a put creates or updates, so re-running leaves
    one of each). SageMaker publishes the metrics only when requests arrive, so no data is not breaching."""
    names = alarm_names(endpoint_name)
    common = {
        "Namespace": NAMESPACE,
        # The new fleet's own series: once a deployment shifts traffic, SageMaker adds EndpointConfigName to the
        # metrics (aws-contracts-2.md §3). So the alarms judge only the version being deployed: the old fleet's
        # errors neither trip the rollout nor block an update that replaces a failing champion.
        "Dimensions": [
            {"Name": "EndpointName", "Value": endpoint_name},
            {"Name": "VariantName", "Value": variant_name},
            {"Name": "EndpointConfigName", "Value": config_name},
        ],
        "Period": 60,
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "TreatMissingData": "notBreaching",
        "ActionsEnabled": False,  # SageMaker reads the state; no action is needed
    }
    return [
        common
        | {
            "AlarmName": names.errors,
            "AlarmDescription": f"Any 5XX answer from {config_name} on {endpoint_name}: roll its deployment back.",
            "MetricName": "Invocation5XXErrors",
            "Statistic": "Sum",
            "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        },
        common
        | {
            "AlarmName": names.latency,
            "AlarmDescription": f"Model latency of {config_name} on {endpoint_name} above {latency_ms:g} ms on average "
            "over a minute: roll its deployment back.",
            "MetricName": "ModelLatency",
            "Statistic": "Average",
            "Threshold": latency_ms * 1000.0,  # ModelLatency is in microseconds
            "ComparisonOperator": "GreaterThanThreshold",
        },
    ]


def put_alarms(cloudwatch_client: Any, requests: list[dict[str, Any]], config_name: str) -> list[str]:
    """Put the alarms and start them OK. An update keeps an alarm's state, so one that tripped on an earlier
    deployment would still read ALARM when the next one begins, and roll it back at once; the series it now
    watches has no data yet, which is not breaching: OK."""
    for request in requests:
        cloudwatch_client.put_metric_alarm(**request)
        cloudwatch_client.set_alarm_state(
            AlarmName=request["AlarmName"],
            StateValue="OK",
            StateReason=f"Watching the deployment of {config_name}: no data from it yet.",
        )
    return [request["AlarmName"] for request in requests]


def deployment_config(rollout: str, percent: int, bake_seconds: int, alarms: list[str]) -> dict[str, Any]:
    """UpdateEndpoint's DeploymentConfig: blue/green, shifting traffic as `rollout` says, each step and the final
    bake lasting `bake_seconds`, rolled back by any of `alarms`."""
    if rollout == ALL_AT_ONCE:
        routing: dict[str, Any] = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        steps = 0
    elif rollout == CANARY:
        size = {"Type": "CAPACITY_PERCENT", "Value": percent}
        routing = {"Type": "CANARY", "WaitIntervalInSeconds": bake_seconds, "CanarySize": size}
        steps = 1
    elif rollout == LINEAR:
        size = {"Type": "CAPACITY_PERCENT", "Value": percent}
        routing = {"Type": "LINEAR", "WaitIntervalInSeconds": bake_seconds, "LinearStepSize": size}
        steps = -(-100 // percent) - 1  # the steps before all traffic
    else:
        raise ValueError(f"unknown rollout {rollout!r}; use {ALL_AT_ONCE}, {CANARY} or {LINEAR}")
    waits = bake_seconds * (steps + 1)
    timeout = min(MAX_TIMEOUT_S, max(MIN_TIMEOUT_S, waits + START_ALLOWANCE_S))
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": bake_seconds,
            "MaximumExecutionTimeoutInSeconds": timeout,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarms]},
    }


class RolledBack(RuntimeError):
    """The guardrails put all traffic back on the previous deployment."""


def check_deployed(description: dict[str, Any], asked_config: str) -> None:
    """After the endpoint is InService again: raise RolledBack, with SageMaker's reason (which names the alarm),
    unless it now runs `asked_config`. The contracts doc: after a rollback, compare EndpointConfigName."""
    serving = description.get("EndpointConfigName")
    if serving == asked_config:
        return
    reason = description.get("FailureReason") or "SageMaker gave no reason"
    raise RolledBack(
        f"The deployment of {asked_config} to endpoint {description.get('EndpointName')} was rolled back: {reason} "
        f"The endpoint still serves {serving}."
    )
