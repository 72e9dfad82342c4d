"""Per-account instance quotas of the local SageMaker, answered as AWS answers an exhausted service quota.

Every endpoint instance is a real model-server process on this machine, so the quotas bound how many
processes a request can start. Training and transform jobs run one process whatever their InstanceCount
(runners/training.py, runners/transform.py), so they need no quota here."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from localcloud.sagemaker.exceptions import ResourceLimitExceeded

PER_VARIANT_ENV = "LOCAL_SAGEMAKER_MAX_INSTANCES_PER_VARIANT"
TOTAL_ENV = "LOCAL_SAGEMAKER_MAX_ENDPOINT_INSTANCES"
# A model server takes 150-400 MB (more with torch), so 16 in all is about what a 16 GB laptop can spare.
# 16 also leaves room for the test suite, whose session-wide local cloud keeps up to about 8 instances in
# service at once. Both are overridable by the environment of the server process for bigger machines.
DEFAULT_PER_VARIANT = 4
DEFAULT_TOTAL = 16
PER_VARIANT_QUOTA = "Number of instances per production variant"
TOTAL_QUOTA = "Number of instances across all endpoints"
# Endpoints in these states run no process: a failed create never started one, a deleted one is stopping its.
IDLE_STATUSES = ("Failed", "Deleting")


def quota_exceeded(quota: str, limit: int, in_use: int, delta: int, env: str) -> ResourceLimitExceeded:
    return ResourceLimitExceeded(
        f"The account-level service limit '{quota}' is {limit} Instances, with current utilization of {in_use} "
        f"Instances and a request delta of {delta} Instances. Please use AWS Service Quotas to request an increase "
        f"for this quota. (Local SageMaker: set {env} to raise it.)"
    )


def _from_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, not {raw!r}")
    return value


@dataclass(frozen=True)
class InstanceQuotas:
    per_variant: int = DEFAULT_PER_VARIANT
    total: int = DEFAULT_TOTAL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InstanceQuotas:
        env = os.environ if env is None else env
        return cls(_from_env(env, PER_VARIANT_ENV, DEFAULT_PER_VARIANT), _from_env(env, TOTAL_ENV, DEFAULT_TOTAL))

    def check(self, requested: Mapping[str, int], in_use: int) -> None:
        """Refuse a deployment of `requested` (variant -> instances) while `in_use` instances already run."""
        for count in requested.values():
            if count > self.per_variant:
                raise quota_exceeded(PER_VARIANT_QUOTA, self.per_variant, 0, count, PER_VARIANT_ENV)
        delta = sum(requested.values())
        if in_use + delta > self.total:
            raise quota_exceeded(TOTAL_QUOTA, self.total, in_use, delta, TOTAL_ENV)


def requested_instances(config: dict[str, Any]) -> dict[str, int]:
    """variant -> instance count of an endpoint configuration (a serverless variant counts as one)."""
    return {v["VariantName"]: int(v.get("InitialInstanceCount") or 1) for v in config["ProductionVariants"]}


def instances_in_use(descriptions: Iterable[dict[str, Any]]) -> int:
    """Instances the stored endpoints hold: deployed counts once InService, desired ones while Creating."""
    return sum(
        int(v.get("CurrentInstanceCount", v.get("DesiredInstanceCount", 0)))
        for d in descriptions
        if d["EndpointStatus"] not in IDLE_STATUSES
        for v in d["ProductionVariants"]
    )
