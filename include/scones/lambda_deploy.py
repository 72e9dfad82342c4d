"""Deploy the workflow's four Lambdas (three per image, one that collects a batch's results): deterministic zips of
`lambdas/<folder>/`, created if missing and updated only where code or configuration differ, so an unchanged
deploy changes nothing.

Plain functions over a boto3-shaped Lambda client (the provider's LambdaHook `.conn`); no Airflow import and no
branch on AWS versus the local cloud.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LAMBDAS_DIR = Path(__file__).resolve().parents[2] / "lambdas"
RUNTIME = "python3.11"
HANDLER = "lambda_function.lambda_handler"


@dataclass(frozen=True)
class FunctionSpec:
    folder: str  # under lambdas/
    name: str  # the deployed function's name
    placeholder: str  # its ARN's placeholder in the state machine template
    timeout_s: int
    memory_mb: int


# Timeouts cover each function's worst-case client retries (see lambdas/README.md).
FUNCTIONS = (
    FunctionSpec("serialize_image_data", "scones-serialize-image-data", "SerializeImageDataArn", 60, 256),
    FunctionSpec("classify_image", "scones-classify-image", "ClassifyImageArn", 90, 256),
    FunctionSpec("filter_inferences", "scones-filter-inferences", "FilterInferencesArn", 10, 128),
    FunctionSpec("collect_batch_results", "scones-collect-batch-results", "CollectBatchResultsArn", 120, 512),
)


def lambda_zip(folder: Path) -> bytes:
    """The folder's .py files at the zip root, with fixed timestamps: same code, same bytes, same CodeSha256."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.glob("*.py")):
            info = zipfile.ZipInfo(path.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def code_sha256(zip_bytes: bytes) -> str:
    """Lambda's CodeSha256: base64 of the SHA-256 of the deployment package."""
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


def endpoint_environment(connection_extra: Mapping[str, Any]) -> dict[str, str]:
    """The AWS_ENDPOINT_URL_* variables the Airflow connection implies, for the Lambdas' own boto3 clients.

    A connection with no endpoint URLs (AWS) implies none. Lambdas need the services they call: S3 for
    serialize, sagemaker-runtime for classify."""
    env: dict[str, str] = {}
    if connection_extra.get("endpoint_url"):
        env["AWS_ENDPOINT_URL"] = str(connection_extra["endpoint_url"])
    for service, config in (connection_extra.get("service_config") or {}).items():
        if isinstance(config, Mapping) and config.get("endpoint_url"):
            env[f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}"] = str(config["endpoint_url"])
    return env


def _wanted_configuration(spec: FunctionSpec, role_arn: str, environment: Mapping[str, str]) -> dict[str, Any]:
    return {
        "Runtime": RUNTIME,
        "Handler": HANDLER,
        "Role": role_arn,
        "Timeout": spec.timeout_s,
        "MemorySize": spec.memory_mb,
        "Environment": {"Variables": dict(sorted(environment.items()))},
    }


def _configuration_differs(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    differences = [k for k in ("Runtime", "Handler", "Role", "Timeout", "MemorySize") if current.get(k) != wanted[k]]
    if (current.get("Environment") or {}).get("Variables", {}) != wanted["Environment"]["Variables"]:
        differences.append("Environment")
    return differences


def ensure_function(
    client: Any, spec: FunctionSpec, role_arn: str, environment: Mapping[str, str], code: bytes
) -> dict[str, str]:
    """Create the function if missing; otherwise update code and configuration only where they differ."""
    wanted = _wanted_configuration(spec, role_arn, environment)
    try:
        current = client.get_function(FunctionName=spec.name)["Configuration"]
    except client.exceptions.ResourceNotFoundException:
        created = client.create_function(FunctionName=spec.name, Code={"ZipFile": code}, Publish=False, **wanted)
        client.get_waiter("function_active_v2").wait(FunctionName=spec.name)
        log.info("created %s", spec.name)
        return {"name": spec.name, "arn": created["FunctionArn"], "action": "created"}
    actions = []
    if current.get("CodeSha256") != code_sha256(code):
        client.update_function_code(FunctionName=spec.name, ZipFile=code)
        client.get_waiter("function_updated_v2").wait(FunctionName=spec.name)
        actions.append("code")
    differences = _configuration_differs(current, wanted)
    if differences:
        client.update_function_configuration(FunctionName=spec.name, **wanted)
        client.get_waiter("function_updated_v2").wait(FunctionName=spec.name)
        actions.append("configuration (" + ", ".join(differences) + ")")
    action = "updated " + " and ".join(actions) if actions else "unchanged"
    log.info("%s: %s", spec.name, action)
    return {"name": spec.name, "arn": current["FunctionArn"], "action": action}


def deploy_functions(
    client: Any,
    role_arn: str,
    endpoint_name: str,
    threshold: float,
    connection_extra: Mapping[str, Any],
    lambdas_dir: Path = LAMBDAS_DIR,
) -> dict[str, dict[str, str]]:
    environment = {"ENDPOINT_NAME": endpoint_name, "THRESHOLD": repr(float(threshold))}
    environment |= endpoint_environment(connection_extra)
    return {
        spec.placeholder: ensure_function(client, spec, role_arn, environment, lambda_zip(lambdas_dir / spec.folder))
        for spec in FUNCTIONS
    }
