"""The SageMaker Model Registry as the DAGs use it: the champion, settling a version, and pruning.

Every evaluated candidate is a version in the group `scones-vehicle-classifier` (SCONES_MODEL_PACKAGE_GROUP),
registered by the training DAG's `register_candidate` (the request is `sagemaker_requests.model_package`). Its
evaluation is its `ModelMetrics`, and its run, data and scores are its `CustomerMetadataProperties`
(`records.CandidateMetadata`).

**The champion is the version behind the endpoint**, found as SageMaker links them: endpoint → endpoint config →
model → the model's `ModelPackageName` → the version. Nothing else records what is live, so a hand-changed or
deleted endpoint cannot disagree with it.

Plain functions over a boto3 SageMaker client (`SageMakerHook().conn`); nothing here imports Airflow.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from include.scones.records import CandidateMetadata, DeploymentRecord

log = logging.getLogger(__name__)

APPROVED, REJECTED, PENDING = "Approved", "Rejected", "PendingManualApproval"
REVIEWER_PROPERTY = "reviewed_by"  # who approved or rejected a version: a person's name, or "gate" (approval=auto)
# What AWS allows in a CustomerMetadataProperties value besides letters, digits and spaces.
_NOT_A_METADATA_CHARACTER = re.compile(r"[^\w\s.:/=+@-]")
APPROVAL_DESCRIPTION_LIMIT = 1024


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def describe_endpoint(client: Any, name: str) -> dict[str, Any] | None:
    try:
        return dict(client.describe_endpoint(EndpointName=name))
    except client.exceptions.ClientError as exc:
        if _code(exc) == "ValidationException":  # how SageMaker says "no such endpoint"
            return None
        raise


def serving_package_arn(client: Any, endpoint: Mapping[str, Any]) -> tuple[str, str] | None:
    """(model name, version ARN) behind a DescribeEndpoint result; None when its config or model is gone or the
    model was not made from a registered version."""
    try:
        config = client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        model_name = config["ProductionVariants"][0]["ModelName"]
        model = client.describe_model(ModelName=model_name)
    except client.exceptions.ClientError as exc:
        if _code(exc) != "ValidationException":
            raise
        log.warning("endpoint %s: its config or model is gone (%s)", endpoint["EndpointName"], exc)
        return None
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    arn = container.get("ModelPackageName")
    if not arn:
        log.warning("endpoint %s serves %s, which no registered version made", endpoint["EndpointName"], model_name)
        return None
    return model_name, str(arn)


def live_deployment(client: Any, endpoint_name: str) -> DeploymentRecord | None:
    """The registered version the endpoint serves, as the typed record; None when nothing (known) is live."""
    endpoint = describe_endpoint(client, endpoint_name)
    if endpoint is None or endpoint.get("EndpointStatus") in ("Failed", "Deleting"):
        return None
    serving = serving_package_arn(client, endpoint)
    if serving is None:
        return None
    model_name, arn = serving
    try:
        package = client.describe_model_package(ModelPackageName=arn)
    except client.exceptions.ClientError as exc:
        if _code(exc) != "ValidationException":
            raise
        log.warning("endpoint %s serves %s, which the registry no longer holds", endpoint_name, arn)
        return None
    metadata = CandidateMetadata.from_properties(package.get("CustomerMetadataProperties") or {})
    return DeploymentRecord(
        endpoint_name=endpoint_name,
        endpoint_config_name=endpoint["EndpointConfigName"],
        model_name=model_name,
        model_package_arn=package["ModelPackageArn"],
        model_package_version=package["ModelPackageVersion"],
        deployed_at=endpoint["LastModifiedTime"],
        **metadata.model_dump(),
    )


def metadata_value(text: str) -> str:
    """`text` as a CustomerMetadataProperties value: other characters become `-`, at most 256 of them."""
    return _NOT_A_METADATA_CHARACTER.sub("-", text)[:256]


def settle(client: Any, package_arn: str, status: str, description: str, reviewer: str) -> None:
    """Approve or reject a version, with why and by whom. Setting the status it already has is allowed, so a
    retried task changes nothing."""
    if status not in (APPROVED, REJECTED):
        raise ValueError(f"a version is settled as {APPROVED} or {REJECTED}, not {status!r}")
    client.update_model_package(
        ModelPackageArn=package_arn,
        ModelApprovalStatus=status,
        ApprovalDescription=description[:APPROVAL_DESCRIPTION_LIMIT],
        CustomerMetadataProperties={REVIEWER_PROPERTY: metadata_value(reviewer) or "unknown"},
    )
    log.info("%s: %s by %s: %s", package_arn, status, reviewer, description)


# --- pruning ------------------------------------------------------------------------------------------------------
def versions(client: Any, group: str) -> list[dict[str, Any]]:
    """Every version summary of the group, newest first; none when the group does not exist."""
    try:
        pages = client.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group)
        found = [summary for page in pages for summary in page["ModelPackageSummaryList"]]
    except client.exceptions.ClientError as exc:
        if _code(exc) == "ValidationException" and "does not exist" in str(exc):
            return []
        raise
    return sorted(found, key=lambda s: int(s.get("ModelPackageVersion", 0)), reverse=True)


def plan_prune(summaries: Iterable[Mapping[str, Any]], live_arn: str | None, keep_last: int) -> list[str]:
    """The versions to delete: rejected or superseded (approved, not live) ones older than the newest `keep_last`.
    The live version and versions still pending a decision are never pruned."""
    newest_first = sorted(summaries, key=lambda s: int(s.get("ModelPackageVersion", 0)), reverse=True)
    return [
        str(summary["ModelPackageArn"])
        for summary in newest_first[keep_last:]
        if summary["ModelPackageArn"] != live_arn and summary.get("ModelApprovalStatus") in (APPROVED, REJECTED)
    ]


def prune(client: Any, group: str, endpoint_name: str, keep_last: int) -> list[str]:
    """Delete what `plan_prune` picks (the live version is read first). A version already gone counts as done."""
    live = live_deployment(client, endpoint_name)
    doomed = plan_prune(versions(client, group), live.model_package_arn if live else None, keep_last)
    deleted = []
    for arn in doomed:
        try:
            client.delete_model_package(ModelPackageName=arn)
        except client.exceptions.ClientError as exc:
            if _code(exc) != "ValidationException":
                raise
            continue
        deleted.append(arn)
        log.info("pruned %s", arn)
    return deleted
