"""The rollout part: guarded updates of the bench endpoint (deployment guardrails, include/scones/rollout.py's
requests, the training DAG's alarms), timed from the client's side with DescribeEndpoint polled every 20 ms.

- **UpdateEndpoint → full traffic on the new fleet:** a canary of ROLLOUT_PERCENT % baked CANARY_BAKE_S, from the
  call until DescribeEndpoint shows the new fleet at its full weight (the final bake has begun). The figure holds
  the canary bake the request asks for; `..._beyond_bakes_seconds` is what the local SageMaker adds to it (the new
  fleet's start: download, model_fn, /ping; the shift itself).
- **Alarm → rollback:** during a canary's bake, SetAlarmState puts the 5XX alarm in ALARM; the figure runs from that
  call until the endpoint is InService on the old config. It is bounded by how often a bake looks at its alarms
  (localcloud/sagemaker/models/endpoints.py ALARM_POLL_S) plus the switch back.

Each is measured REPEATS times on the bench endpoint that the endpoint part deployed; the new configs and the alarms
are the bench's own and go with its teardown.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import endpoint_bench, model_bench
from benchmarks.context import ENDPOINT_NAME, BenchContext, log, utc_now
from benchmarks.results import percentile
from include.scones import rollout, sagemaker_requests

REPEATS = 3
ROLLOUT_PERCENT = 20
CANARY_BAKE_S = 5
FINAL_BAKE_S = 1
HELD_BAKE_S = 300  # the canary an alarm cuts short
POLL_S = 0.02
TIMEOUT_S = 300.0


def _new_config(sagemaker: Any, deployed: dict[str, Any], suffix: str) -> str:
    """A copy of the deployed endpoint config under a new name (same model): a blue/green update to run."""
    current = sagemaker.describe_endpoint_config(EndpointConfigName=deployed["endpoint_config_name"])
    name = f"{deployed['endpoint_config_name']}-{suffix}"[:63]
    keys = ("VariantName", "ModelName", "InitialInstanceCount", "InstanceType", "InitialVariantWeight")
    variants = [{key: v[key] for key in keys if key in v} for v in current["ProductionVariants"]]
    capture = {"DataCaptureConfig": current["DataCaptureConfig"]} if "DataCaptureConfig" in current else {}
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=variants, **capture)
    return name


def _wait(sagemaker: Any, done: Any, what: str) -> tuple[float, dict[str, Any]]:
    """Poll DescribeEndpoint until `done(description)`; (the monotonic time it first held, the description)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        description = sagemaker.describe_endpoint(EndpointName=ENDPOINT_NAME)
        if done(description):
            return time.monotonic(), description
        if description["EndpointStatus"] == "Failed":
            raise RuntimeError(f"bench endpoint failed while waiting for {what}: {description.get('FailureReason')}")
        time.sleep(POLL_S)
    raise TimeoutError(f"bench endpoint: no {what} within {TIMEOUT_S:.0f} s")


def _full_traffic(description: dict[str, Any]) -> bool:
    pending = description.get("PendingDeploymentSummary") or {}
    variants = pending.get("ProductionVariants") or []
    return bool(variants) and all(v.get("CurrentWeight") == v.get("DesiredWeight") for v in variants)


def _canary_baking(description: dict[str, Any]) -> bool:
    pending = description.get("PendingDeploymentSummary") or {}
    return any(s.get("Status") == "Baking" for v in pending.get("ProductionVariants") or [] for s in v["VariantStatus"])


def _in_service_on(config: str) -> Any:
    return lambda d: d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == config


def _watch(cloudwatch: Any, config: str) -> None:
    """The training DAG's alarms, watching `config`'s fleet, as put_rollback_alarms puts them."""
    rollout.put_alarms(
        cloudwatch, rollout.alarm_requests(ENDPOINT_NAME, sagemaker_requests.VARIANT_NAME, config, 1000), config
    )


def _deployment(bake_s: int, final_s: int, alarms: list[str]) -> dict[str, Any]:
    config = rollout.deployment_config(rollout.CANARY, ROLLOUT_PERCENT, bake_s, alarms)
    config["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] = final_s
    return config


def run(ctx: BenchContext) -> dict[str, Any]:
    measured_at = utc_now()
    deployed = endpoint_bench.deploy(ctx, model_bench.trained_model(ctx))
    sagemaker, cloudwatch = ctx.client("sagemaker"), ctx.client("cloudwatch")
    names = rollout.alarm_names(ENDPOINT_NAME).all()
    to_full: list[float] = []
    to_rollback: list[float] = []
    try:
        for attempt in range(REPEATS):
            live = sagemaker.describe_endpoint(EndpointName=ENDPOINT_NAME)["EndpointConfigName"]
            green = _new_config(sagemaker, deployed, f"r{attempt}-{int(time.time())}")
            log(f"canary {ROLLOUT_PERCENT}% baked {CANARY_BAKE_S} s: {live} -> {green}")
            _watch(cloudwatch, green)
            began = time.monotonic()
            sagemaker.update_endpoint(
                EndpointName=ENDPOINT_NAME,
                EndpointConfigName=green,
                DeploymentConfig=_deployment(CANARY_BAKE_S, FINAL_BAKE_S, names),
            )
            full_at, _ = _wait(sagemaker, _full_traffic, "full traffic on the new fleet")
            to_full.append(full_at - began)
            _wait(sagemaker, _in_service_on(green), "InService on the new config")

            red = _new_config(sagemaker, deployed, f"a{attempt}-{int(time.time())}")
            log(f"canary held {HELD_BAKE_S} s, then the 5XX alarm to ALARM: {green} -> {red}")
            _watch(cloudwatch, red)
            sagemaker.update_endpoint(
                EndpointName=ENDPOINT_NAME,
                EndpointConfigName=red,
                DeploymentConfig=_deployment(HELD_BAKE_S, FINAL_BAKE_S, names),
            )
            _wait(sagemaker, _canary_baking, "the canary's bake")
            tripped = time.monotonic()
            cloudwatch.set_alarm_state(AlarmName=names[0], StateValue="ALARM", StateReason="rollout bench")
            back_at, description = _wait(sagemaker, _in_service_on(green), "the rollback")
            to_rollback.append(back_at - tripped)
            if names[0] not in (description.get("FailureReason") or ""):
                raise RuntimeError(f"rolled back without naming the alarm: {description.get('FailureReason')!r}")
    finally:
        cloudwatch.delete_alarms(AlarmNames=names)
    full_p50 = percentile(to_full, 50)
    return {
        "measured_at": measured_at,
        "repeats": REPEATS,
        "canary_percent": ROLLOUT_PERCENT,
        "canary_bake_seconds": CANARY_BAKE_S,
        "update_to_full_traffic_seconds": round(full_p50, 2),
        "update_to_full_traffic_beyond_bakes_seconds": round(full_p50 - CANARY_BAKE_S, 2),
        "update_to_full_traffic_all_seconds": [round(s, 2) for s in to_full],
        "alarm_to_rollback_seconds": round(percentile(to_rollback, 50), 2),
        "alarm_to_rollback_max_seconds": round(max(to_rollback), 2),
        "alarm_to_rollback_all_seconds": [round(s, 2) for s in to_rollback],
    }
