"""Delete what the training DAG pays for: the endpoint (billed per hour), then the endpoint configs and models
it created (free, but clutter), and the registry entry. Training data, artifacts and reports in S3 stay;
training and transform jobs cannot be deleted in SageMaker.

Only resources named like a run id (`scones-YYYYmmdd-HHMMSS-xxxxxxxx`) AND tagged for this endpoint
(`scones:endpoint`, set by the training DAG) are touched, so another deployment in the account is left alone.
Do not run it while a training run is deploying: that run's new config would be deleted under it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from include.scones.sagemaker_requests import ENDPOINT_TAG_KEY

log = logging.getLogger(__name__)

RUN_NAME = re.compile(r"^scones-\d{8}-\d{6}-[0-9a-f]{8}$")


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


def wait_until_deleted(client: Any, endpoint_name: str, timeout_s: float, poll_s: float,
                       sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            client.describe_endpoint(EndpointName=endpoint_name)
        except client.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] == "ValidationException":
                return
            raise
        sleep(poll_s)
    raise TimeoutError(f"endpoint {endpoint_name} still exists after {timeout_s:.0f} s")


def teardown(sagemaker_client: Any, s3_hook: Any, endpoint_name: str, bucket: str, registry_key: str,
             timeout_s: float = 900, poll_s: float = 15) -> dict[str, list[str]]:  # fmt: skip
    """Idempotent: a second call finds nothing and deletes nothing."""
    deleted: dict[str, list[str]] = {"endpoints": [], "endpoint_configs": [], "models": [], "registry": []}
    try:
        sagemaker_client.delete_endpoint(EndpointName=endpoint_name)
        deleted["endpoints"].append(endpoint_name)
        wait_until_deleted(sagemaker_client, endpoint_name, timeout_s, poll_s)
    except sagemaker_client.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] != "ValidationException":
            raise
        log.info("endpoint %s does not exist", endpoint_name)
    configs = sagemaker_client.get_paginator("list_endpoint_configs").paginate(NameContains="scones-")
    for name in _names(sagemaker_client, configs, "EndpointConfigs", "EndpointConfig", endpoint_name):
        sagemaker_client.delete_endpoint_config(EndpointConfigName=name)
        deleted["endpoint_configs"].append(name)
    models = sagemaker_client.get_paginator("list_models").paginate(NameContains="scones-")
    for name in _names(sagemaker_client, models, "Models", "Model", endpoint_name):
        sagemaker_client.delete_model(ModelName=name)
        deleted["models"].append(name)
    if s3_hook.check_for_bucket(bucket) and s3_hook.check_for_key(registry_key, bucket_name=bucket):
        s3_hook.delete_objects(bucket=bucket, keys=[registry_key])
        deleted["registry"].append(f"s3://{bucket}/{registry_key}")
    log.info("deleted %s", {kind: len(names) for kind, names in deleted.items()})
    return deleted


def teardown_workflow(lambda_client: Any, sfn_client: Any, state_machine_name: str, function_names: list[str]) -> dict:
    """Delete the workflow's state machine and Lambdas (free while idle, but a full clean-up leaves nothing)."""
    deleted: dict[str, list[str]] = {"state_machines": [], "functions": []}
    for page in sfn_client.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == state_machine_name:
                sfn_client.delete_state_machine(stateMachineArn=machine["stateMachineArn"])
                deleted["state_machines"].append(state_machine_name)
    for name in function_names:
        try:
            lambda_client.delete_function(FunctionName=name)
            deleted["functions"].append(name)
        except lambda_client.exceptions.ResourceNotFoundException:
            log.info("function %s does not exist", name)
    log.info("deleted %s", deleted)
    return deleted
