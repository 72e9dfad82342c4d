"""Deployment guardrails: a blue/green update that shifts traffic in steps and rolls back on CloudWatch alarms.

`plan_rollout` turns an UpdateEndpoint's `DeploymentConfig` into a `RolloutPlan` (or refuses it with AWS's
ValidationException), `TrafficSplit` gives the new fleet exactly its share of requests, and `AlarmWatch` tells
whether a named alarm went to ALARM while a bake ran. `models/endpoints.py` drives the steps; nothing here
starts processes or touches the store.

The sequences (the contracts doc, 2.2):
- ALL_AT_ONCE: 100% to the new fleet, final bake of `TerminationWaitInSeconds`, then the old fleet stops;
- CANARY: the canary share, bake `WaitIntervalInSeconds`, then 100% and the final bake;
- LINEAR: one step more each `WaitIntervalInSeconds`, then 100% and the final bake.
Alarms are watched during every bake; one in ALARM puts all traffic back on the old fleet."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from localcloud.sagemaker.exceptions import ValidationException

ALL_AT_ONCE, CANARY, LINEAR = "ALL_AT_ONCE", "CANARY", "LINEAR"
INSTANCE_COUNT, CAPACITY_PERCENT = "INSTANCE_COUNT", "CAPACITY_PERCENT"
# AWS's default when MaximumExecutionTimeoutInSeconds is absent is not documented; its maximum is used here.
DEFAULT_TIMEOUT_S = 28_800
MAX_CANARY_FRACTION = 0.5
LINEAR_FRACTIONS = (0.1, 0.5)
EPSILON = 1e-9


@dataclass(frozen=True)
class Step:
    """One traffic step: the new fleet's share of requests, then a bake of `bake_s` with the alarms watched."""

    share: float
    bake_s: float
    message: str


@dataclass(frozen=True)
class RolloutPlan:
    kind: str
    steps: tuple[Step, ...]
    alarms: tuple[str, ...]
    timeout_s: float

    @property
    def guarded(self) -> bool:
        """Whether there is anything to watch or wait for (else the update is the plain blue/green switch)."""
        return bool(self.alarms) or any(step.bake_s > 0 for step in self.steps) or len(self.steps) > 1


def _fraction(size: dict[str, Any], instances: int, member: str) -> float:
    value = int(size["Value"])
    if size["Type"] == INSTANCE_COUNT:
        return value / max(1, instances)
    if size["Type"] == CAPACITY_PERCENT:
        if value > 100:
            raise ValidationException(f"{member}.Value {value} is over 100 percent.")
        return value / 100
    raise ValidationException(f"{member}.Type must be {INSTANCE_COUNT} or {CAPACITY_PERCENT}.")


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def plan_rollout(deployment_config: dict[str, Any] | None, instances: int) -> RolloutPlan | None:
    """The plan for an update of a fleet of `instances` (the new variants' total), or None for the plain switch.
    Raises ValidationException for what AWS refuses: the sizes (canary at most 50% of the instances, linear steps
    10-50%), a size that does not belong to the type, and a timeout that does not exceed the sum of the waits."""
    if not deployment_config:
        return None
    if "RollingUpdatePolicy" in deployment_config:
        raise ValidationException(
            "RollingUpdatePolicy is not supported by the local SageMaker; use BlueGreenUpdatePolicy "
            "(ALL_AT_ONCE, CANARY or LINEAR traffic shifting)."
        )
    policy = deployment_config.get("BlueGreenUpdatePolicy") or {}
    alarms = tuple(a["AlarmName"] for a in (deployment_config.get("AutoRollbackConfiguration") or {}).get("Alarms", []))
    routing = policy.get("TrafficRoutingConfiguration") or {"Type": ALL_AT_ONCE, "WaitIntervalInSeconds": 0}
    kind, wait = routing["Type"], float(routing.get("WaitIntervalInSeconds", 0))
    final_bake = float(policy.get("TerminationWaitInSeconds", 0))
    timeout = float(policy.get("MaximumExecutionTimeoutInSeconds", DEFAULT_TIMEOUT_S))
    for member, allowed in (("CanarySize", CANARY), ("LinearStepSize", LINEAR)):
        if member in routing and kind != allowed:
            raise ValidationException(f"TrafficRoutingConfiguration.{member} is only valid with Type {allowed}.")
    final = Step(
        1.0,
        final_bake,
        f"Baking for {final_bake:g} seconds (TerminationWaitInSeconds) with traffic "
        f"enabled on full capacity of {instances} instance(s).",
    )
    steps: list[Step] = []
    if kind == CANARY:
        if "CanarySize" not in routing:
            raise ValidationException("TrafficRoutingConfiguration.CanarySize is required with Type CANARY.")
        share = _fraction(routing["CanarySize"], instances, "CanarySize")
        if share > MAX_CANARY_FRACTION + EPSILON:
            raise ValidationException(
                f"CanarySize ({_percent(share)} of {instances} instance(s)) must be less than or equal to 50% "
                "of the variant's total instance count."
            )
        steps.append(Step(share, wait, f"Baking canary capacity ({_percent(share)} of traffic) for {wait:g} seconds."))
    elif kind == LINEAR:
        if "LinearStepSize" not in routing:
            raise ValidationException("TrafficRoutingConfiguration.LinearStepSize is required with Type LINEAR.")
        step = _fraction(routing["LinearStepSize"], instances, "LinearStepSize")
        low, high = LINEAR_FRACTIONS
        if not low - EPSILON <= step <= high + EPSILON:
            raise ValidationException(
                f"LinearStepSize ({_percent(step)} of {instances} instance(s)) must be 10-50% of the variant's "
                "total instance count."
            )
        count = math.ceil(1 / step - EPSILON)
        for index in range(1, count):
            share = index * step
            steps.append(
                Step(
                    share,
                    wait,
                    f"Baking linear step {index} of {count} ({_percent(share)} of traffic) for {wait:g} seconds.",
                )
            )
    elif kind != ALL_AT_ONCE:
        raise ValidationException(f"TrafficRoutingConfiguration.Type must be {ALL_AT_ONCE}, {CANARY} or {LINEAR}.")
    steps.append(final)
    waits = sum(s.bake_s for s in steps)
    if timeout <= waits:
        raise ValidationException(
            f"MaximumExecutionTimeoutInSeconds ({timeout:g}) must be greater than the sum of the wait intervals "
            f"and the termination wait ({waits:g})."
        )
    return RolloutPlan(kind, tuple(steps), alarms, timeout)


@dataclass
class TrafficSplit:
    """Which fleet takes the next request: the new one exactly `share` of the time, spread evenly (an error
    accumulator, not a coin: 20% is every fifth request, so a bake measures the share it was given)."""

    fleet: Any  # the new fleet
    share: float
    _credit: float = field(default=0.0)

    def take(self) -> bool:
        self._credit += self.share
        if self._credit >= 1.0 - EPSILON:
            self._credit -= 1.0
            return True
        return False


@dataclass(frozen=True)
class Tripped:
    alarm: str
    reason: str


class AlarmWatch:
    """Whether any of the named alarms is in ALARM, or went there since `since` (SetAlarmState and a real breach
    both leave a state update in the alarm's history, and the next evaluation may have put it back to OK)."""

    def __init__(self, cloudwatch: Any, alarms: tuple[str, ...], since: datetime) -> None:
        self.cloudwatch = cloudwatch
        self.alarms = alarms
        self.since = since

    def tripped(self) -> Tripped | None:
        if not self.alarms:
            return None
        described = self.cloudwatch.describe_alarms(AlarmNames=list(self.alarms)).get("MetricAlarms", [])
        for alarm in described:
            if alarm.get("StateValue") == "ALARM":
                return Tripped(alarm["AlarmName"], alarm.get("StateReason", ""))
        for name in self.alarms:
            history = self.cloudwatch.describe_alarm_history(
                AlarmName=name, HistoryItemType="StateUpdate", StartDate=self.since, MaxRecords=100
            ).get("AlarmHistoryItems", [])
            for item in history:
                new_state = json.loads(item.get("HistoryData") or "{}").get("newState", {})
                if new_state.get("stateValue") == "ALARM":
                    return Tripped(name, new_state.get("stateReason", item.get("HistorySummary", "")))
        return None

    def missing(self) -> list[str]:
        """The named alarms CloudWatch does not know."""
        if not self.alarms:
            return []
        described = self.cloudwatch.describe_alarms(AlarmNames=list(self.alarms)).get("MetricAlarms", [])
        known = {a["AlarmName"] for a in described}
        return [name for name in self.alarms if name not in known]


BAKED = "baked"
ROLL_BACK = "roll back"
WAIT = "wait"


def bake_verdict(tripped: Tripped | None, now_s: float, bake_end: float, deadline: float) -> str:
    """What one look at a bake decides: an alarm or the deployment's timeout rolls back, even on the last look."""
    if tripped is not None or now_s >= deadline:
        return ROLL_BACK
    return BAKED if now_s >= bake_end else WAIT


def rollback_reason(tripped: Tripped | None, timeout_s: float | None = None) -> str:
    if tripped is not None:
        return (
            f"Deployment rolled back: CloudWatch alarm {tripped.alarm} went to ALARM during the bake "
            f"({tripped.reason}). All traffic is back on the previous deployment."
        )
    return (
        f"Deployment rolled back: it did not finish within MaximumExecutionTimeoutInSeconds ({timeout_s:g}). "
        "All traffic is back on the previous deployment."
    )
