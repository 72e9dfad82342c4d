"""Delete what the training DAG pays for: the endpoint (billed per hour), then the endpoint configs and models
it created (free, but clutter), and the Model Registry's rejected and superseded versions beyond the newest
SCONES_REGISTRY_KEEP_LAST (the group and those versions stay, as the history of what was trained and decided).
The CloudWatch alarms the rollout watches go with the endpoint. Training data, artifacts and reports in S3
stay; training and transform jobs cannot be deleted in SageMaker.

Only resources named like a run id (`scones-YYYYmmdd-HHMMSS-xxxxxxxx`, and `...-serving` for the model made from
the approved version) AND tagged for this endpoint (`scones:endpoint`, set by the training DAG) are touched, so
another deployment in the account is left alone.
Do not run it while a training run is deploying: that run's new config would be deleted under it.

`prune` is the gentler mode: the endpoint stays, and so do the config it serves (and the one an update is
deploying), the models those configs name, and the newest `keep_last` other configs (rollback candidates) with
their models. Every other endpoint config and model of this endpoint's runs is deleted. `plan_prune` makes that
decision from plain data; `prune` gathers the data with boto3 calls and carries the decision out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from include.scones import registry, rollout
from include.scones.params import allowed_range, checked_values
from include.scones.sagemaker_requests import ENDPOINT_TAG_KEY, PROJECT_TAG
from include.scones.state_machine_deploy import find_state_machine

log = logging.getLogger(__name__)

RUN_NAME = re.compile(r"^scones-\d{8}-\d{6}-[0-9a-f]{8}(-serving)?$")

# --- the teardown DAG's Params ---------------------------------------------------------------------------------
MODES = {
    "all": "all: the workflow, the endpoint, every run's endpoint config and model, old registry versions",
    "prune": "prune: keep the live endpoint; delete the endpoint configs and models nothing serves",
}
KEEP_LAST_BOUNDS = {"minimum": 0, "maximum": 100}
PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "mode": {
        "default": "all",
        "type": "string",
        "enum": list(MODES),
        "values_display": MODES,
        "title": "What to delete",
        "description": (
            "all: everything the training and workflow DAGs created that costs money or clutters (the default). "
            "prune: the endpoint keeps serving; only the endpoint configs and models it does not serve go, "
            "except the newest ones kept for rollback."
        ),
    },
    "keep_last": {
        "default": 2,
        "type": "integer",
        "title": "Configs kept for rollback (prune)",
        "description": (
            "In prune mode: how many endpoint configs besides the live one to keep, newest first, with their "
            f"models (rollback candidates). Ignored by all. Allowed: {allowed_range(KEEP_LAST_BOUNDS)} "
            "(whole number)."
        ),
        "allOf": [KEEP_LAST_BOUNDS],  # not top-level: the form would clamp silently (include/scones/params.py)
    },
}


class InvalidTeardownParams(ValueError):
    pass


@dataclass(frozen=True)
class TeardownParams:
    mode: str
    keep_last: int


def validate_params(params: Mapping[str, Any]) -> TeardownParams:
    """The Params as the tasks use them; the error names each bad Param (the API checks the same schemas)."""
    values = checked_values(params, PARAM_SCHEMAS, InvalidTeardownParams)
    return TeardownParams(mode=values["mode"], keep_last=values["keep_last"])


# --- shared helpers -------------------------------------------------------------------------------------------
def _error(exc: Any) -> dict[str, str]:
    return dict(getattr(exc, "response", {}).get("Error", {}))


def is_gone(exc: Exception) -> bool:
    """SageMaker's answer for a name that does not exist: ValidationException "Could not find ..."."""
    error = _error(exc)
    return error.get("Code") == "ValidationException" and "Could not find" in error.get("Message", "")


def delete_configs_and_models(client: Any, configs: Iterable[str], models: Iterable[str]) -> dict[str, list[str]]:
    """Configs first (so no remaining config names a deleted model), then models. One already gone counts as
    done and is not listed as deleted."""
    deleted: dict[str, list[str]] = {"endpoint_configs": [], "models": []}
    for kind, names in (("endpoint_configs", configs), ("models", models)):
        for name in names:
            try:
                if kind == "endpoint_configs":
                    client.delete_endpoint_config(EndpointConfigName=name)
                else:
                    client.delete_model(ModelName=name)
            except client.exceptions.ClientError as exc:
                if not is_gone(exc):
                    raise
                log.info("%s %s was already gone", kind.removesuffix("s").replace("_", " "), name)
                continue
            log.info("deleted %s %s", kind.removesuffix("s").replace("_", " "), name)
            deleted[kind].append(name)
    return deleted


def _names(client: Any, pages: Any, list_key: str, kind: str, endpoint_name: str) -> list[str]:
    """Run-named resources of this endpoint: the name pattern first, then the tag (one ListTags each)."""
    names = []
    for item in (item for page in pages for item in page[list_key]):
        if not RUN_NAME.match(item[f"{kind}Name"]):
            continue
        tags = client.list_tags(ResourceArn=item[f"{kind}Arn"]).get("Tags", [])
        if {"Key": ENDPOINT_TAG_KEY, "Value": endpoint_name} in tags:
            names.append(item[f"{kind}Name"])
    return names


def wait_until_deleted(client: Any, endpoint_name: str, timeout_s: float, poll_s: float) -> None:
    """boto3's `endpoint_deleted` waiter (DescribeEndpoint until ValidationException; EndpointStatus Failed
    stops it), polling every `poll_s` seconds for at most `timeout_s`."""
    from botocore.exceptions import WaiterError

    if poll_s <= 0:
        raise ValueError(f"the poll interval must be more than 0 s (SCONES_POLL_SECONDS), not {poll_s}")
    attempts = int(timeout_s // poll_s) + 1  # the waiter sleeps between attempts: at most timeout_s in all
    try:
        client.get_waiter("endpoint_deleted").wait(
            EndpointName=endpoint_name, WaiterConfig={"Delay": poll_s, "MaxAttempts": attempts}
        )
    except WaiterError as exc:
        if exc.kwargs.get("reason") == "Max attempts exceeded":
            raise TimeoutError(f"endpoint {endpoint_name} still exists after {timeout_s:.0f} s") from exc
        last = exc.last_response or {}
        if last.get("EndpointStatus") == "Failed":
            reason = last.get("FailureReason") or "no reason given"
            raise RuntimeError(f"deleting endpoint {endpoint_name} failed: {reason}") from exc
        raise


# --- mode all ---------------------------------------------------------------------------------------------------
def teardown(sagemaker_client: Any, endpoint_name: str, package_group: str, keep_versions: int,
             timeout_s: float = 900, poll_s: float = 15) -> dict[str, list[str]]:  # fmt: skip
    """Idempotent: a second call finds nothing and deletes nothing."""
    deleted: dict[str, list[str]] = {"endpoints": [], "endpoint_configs": [], "models": [], "model_packages": []}
    try:
        sagemaker_client.delete_endpoint(EndpointName=endpoint_name)
        deleted["endpoints"].append(endpoint_name)
        wait_until_deleted(sagemaker_client, endpoint_name, timeout_s, poll_s)
    except sagemaker_client.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] != "ValidationException":
            raise
        log.info("endpoint %s does not exist", endpoint_name)
    config_pages = sagemaker_client.get_paginator("list_endpoint_configs").paginate(NameContains="scones-")
    model_pages = sagemaker_client.get_paginator("list_models").paginate(NameContains="scones-")
    deleted |= delete_configs_and_models(
        sagemaker_client,
        _names(sagemaker_client, config_pages, "EndpointConfigs", "EndpointConfig", endpoint_name),
        _names(sagemaker_client, model_pages, "Models", "Model", endpoint_name),
    )
    deleted["model_packages"] = registry.prune(sagemaker_client, package_group, endpoint_name, keep_versions)
    log.info("deleted %s", {kind: len(names) for kind, names in deleted.items()})
    return deleted


def delete_alarms(cloudwatch_client: Any, endpoint_name: str) -> list[str]:
    """The rollback alarms the training DAG put (billed per alarm-month); only those that exist, so a second call
    deletes nothing and never fails on a missing one."""
    names = rollout.alarm_names(endpoint_name).all()
    found = [a["AlarmName"] for a in cloudwatch_client.describe_alarms(AlarmNames=names)["MetricAlarms"]]
    if found:
        cloudwatch_client.delete_alarms(AlarmNames=found)
    log.info("deleted alarms %s", found)
    return found


# --- mode prune: the decision -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resource:
    """An endpoint config or a model, as ListEndpointConfigs/ListModels, ListTags and DescribeEndpointConfig
    show it."""

    name: str
    created: Any  # CreationTime (a datetime from boto3); only compared with the others
    tags: Mapping[str, str] = field(default_factory=dict)
    models: tuple[str, ...] = ()  # a config's variants' ModelName (production and shadow); () for a model


@dataclass(frozen=True)
class LiveEndpoint:
    """What the endpoint serves, from DescribeEndpoint and DescribeEndpointConfig of its config(s)."""

    config: str | None = None  # EndpointConfigName; None when the endpoint does not exist
    pending_config: str | None = None  # PendingDeploymentSummary.EndpointConfigName, during an update
    models: frozenset[str] | None = frozenset()  # the models those configs name; None when they cannot be read


@dataclass
class PrunePlan:
    keep_configs: dict[str, str]  # name -> why it stays
    delete_configs: list[str]
    keep_models: dict[str, str]
    delete_models: list[str]


def is_managed(resource: Resource, endpoint_name: str) -> bool:
    """Made by a training run for this endpoint: run-named, tagged as the project's and for this endpoint."""
    return (
        RUN_NAME.match(resource.name) is not None
        and resource.tags.get(PROJECT_TAG["Key"]) == PROJECT_TAG["Value"]
        and resource.tags.get(ENDPOINT_TAG_KEY) == endpoint_name
    )


def plan_prune(endpoint_name: str, configs: Iterable[Resource], models: Iterable[Resource], live: LiveEndpoint,
               keep_last: int) -> PrunePlan:  # fmt: skip
    """Decide what pruning deletes. Only this endpoint's run resources (`is_managed`) are considered; of those:

    - the config the endpoint serves, and the one an update is deploying, stay;
    - the newest `keep_last` other configs stay (rollback candidates), every older one goes;
    - a model stays if the endpoint serves it or a config that stays names it (including configs pruning does
      not manage), and goes otherwise. When the live config cannot be read, its models are unknown: none goes.
    """
    if keep_last < 0:
        raise ValueError(f"keep_last must be 0 or more, not {keep_last}")
    configs, models = list(configs), list(models)
    live_configs = {name: why for name, why in ((live.pending_config, "being deployed to the endpoint"),
                                                (live.config, "served by the endpoint")) if name}  # fmt: skip
    keep_configs: dict[str, str] = {}
    delete_configs: list[str] = []
    candidates = []
    for config in configs:
        if not is_managed(config, endpoint_name):
            continue
        if config.name in live_configs:
            keep_configs[config.name] = live_configs[config.name]
        else:
            candidates.append(config)
    candidates.sort(key=lambda c: (c.created, c.name), reverse=True)  # newest first; names carry the time too
    for rank, config in enumerate(candidates, start=1):
        if rank <= keep_last:
            keep_configs[config.name] = f"rollback candidate: newest {rank} of the {keep_last} kept"
        else:
            delete_configs.append(config.name)

    doomed = set(delete_configs)
    named_by: dict[str, list[str]] = {}
    for config in configs:
        if config.name not in doomed:
            for model_name in config.models:
                named_by.setdefault(model_name, []).append(config.name)
    keep_models: dict[str, str] = {}
    delete_models: list[str] = []
    for model in sorted(models, key=lambda m: (m.created, m.name), reverse=True):
        if not is_managed(model, endpoint_name):
            continue
        if live.models is None:
            keep_models[model.name] = "the live endpoint's models are unknown (its config could not be read)"
        elif model.name in live.models:
            keep_models[model.name] = "served by the endpoint"
        elif model.name in named_by:
            keep_models[model.name] = f"named by kept endpoint config {', '.join(sorted(named_by[model.name]))}"
        else:
            delete_models.append(model.name)
    return PrunePlan(keep_configs, delete_configs, keep_models, delete_models)


# --- mode prune: the calls ---------------------------------------------------------------------------------------
def variant_models(description: Mapping[str, Any]) -> tuple[str, ...]:
    """The models a DescribeEndpointConfig result names, production variants first, then shadow variants."""
    variants = [*description.get("ProductionVariants", []), *description.get("ShadowProductionVariants", [])]
    return tuple(v["ModelName"] for v in variants if v.get("ModelName"))


def describe_live(client: Any, endpoint_name: str) -> LiveEndpoint:
    try:
        endpoint = client.describe_endpoint(EndpointName=endpoint_name)
    except client.exceptions.ClientError as exc:
        if not is_gone(exc):
            raise  # anything but "Could not find": never guess that nothing is live
        return LiveEndpoint()
    config = endpoint.get("EndpointConfigName")
    pending = (endpoint.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")
    models: set[str] = set()
    for name in dict.fromkeys(n for n in (config, pending) if n):
        try:
            models.update(variant_models(client.describe_endpoint_config(EndpointConfigName=name)))
        except client.exceptions.ClientError as exc:
            if not is_gone(exc):
                raise
            log.warning("endpoint %s serves config %s, which no longer exists: no model is pruned", endpoint_name, name)
            return LiveEndpoint(config, pending, None)
    return LiveEndpoint(config, pending, frozenset(models))


def _tags(client: Any, name: str, arn: str) -> dict[str, str]:
    if not RUN_NAME.match(name):  # never managed, whatever its tags: spare the ListTags call
        return {}
    return {tag["Key"]: tag.get("Value", "") for tag in client.list_tags(ResourceArn=arn).get("Tags", [])}


def list_endpoint_configs(client: Any) -> list[Resource]:
    """Every `scones-*` endpoint config, with its tags (run-named ones) and the models it names. NameContains
    also matches `xscones-...`: those are skipped, as the IAM policy only lets the DAGs read `scones-*`."""
    found = []
    pages = client.get_paginator("list_endpoint_configs").paginate(NameContains="scones-")
    for item in (item for page in pages for item in page["EndpointConfigs"]):
        name = item["EndpointConfigName"]
        if not name.startswith("scones-"):
            continue
        try:
            described = client.describe_endpoint_config(EndpointConfigName=name)
        except client.exceptions.ClientError as exc:
            if not is_gone(exc):
                raise
            continue  # deleted since it was listed
        tags = _tags(client, name, item["EndpointConfigArn"])
        found.append(Resource(name, item["CreationTime"], tags, variant_models(described)))
    return found


def list_models(client: Any) -> list[Resource]:
    """Every `scones-*` model, with its tags (run-named ones)."""
    pages = client.get_paginator("list_models").paginate(NameContains="scones-")
    return [
        Resource(item["ModelName"], item["CreationTime"], _tags(client, item["ModelName"], item["ModelArn"]))
        for item in (item for page in pages for item in page["Models"])
    ]


def prune(
    sagemaker_client: Any, endpoint_name: str, keep_last: int, package_group: str, keep_versions: int
) -> dict[str, Any]:
    """Carry out `plan_prune` for the endpoint as it is now: configs first (so no remaining config names a
    deleted model), then models; then the registry's old versions (`registry.prune`). Idempotent: a second call
    keeps the same and deletes nothing."""
    live = describe_live(sagemaker_client, endpoint_name)
    if live.config is None:
        log.info("endpoint %s does not exist: no config is live, only the newest %d are kept", endpoint_name, keep_last)
    else:
        pending = f", deploying {live.pending_config}" if live.pending_config else ""
        log.info("endpoint %s serves config %s%s", endpoint_name, live.config, pending)
    plan = plan_prune(
        endpoint_name, list_endpoint_configs(sagemaker_client), list_models(sagemaker_client), live, keep_last
    )
    for kind, kept in (("endpoint config", plan.keep_configs), ("model", plan.keep_models)):
        for name, why in kept.items():
            log.info("keeping %s %s: %s", kind, name, why)
    deleted = delete_configs_and_models(sagemaker_client, plan.delete_configs, plan.delete_models)
    log.info(
        "pruned endpoint %s: kept %d configs and %d models, deleted %d configs and %d models",
        endpoint_name, len(plan.keep_configs), len(plan.keep_models),
        len(deleted["endpoint_configs"]), len(deleted["models"]),
    )  # fmt: skip
    packages = registry.prune(sagemaker_client, package_group, endpoint_name, keep_versions)
    return deleted | {
        "model_packages": packages,
        "kept_endpoint_configs": plan.keep_configs,
        "kept_models": plan.keep_models,
    }


# --- the workflow -------------------------------------------------------------------------------------------------
def teardown_workflow(
    lambda_client: Any, sfn_client: Any, state_machine_names: list[str], function_names: list[str]
) -> dict:
    """Delete the workflow's state machines and Lambdas (free while idle, but a full clean-up leaves nothing)."""
    deleted: dict[str, list[str]] = {"state_machines": [], "functions": []}
    for machine in state_machine_names:
        arn = find_state_machine(sfn_client, machine)
        if arn is not None:
            sfn_client.delete_state_machine(stateMachineArn=arn)
            deleted["state_machines"].append(machine)
    for name in function_names:
        try:
            lambda_client.delete_function(FunctionName=name)
            deleted["functions"].append(name)
        except lambda_client.exceptions.ResourceNotFoundException:
            log.info("function %s does not exist", name)
    log.info("deleted %s", deleted)
    return deleted
