"""Batch classification: every image under an S3 prefix through the batch state machine (a Distributed Map over
the per-image Lambdas), one results file in S3, and its summary. Plain functions over boto3-shaped clients; the
DAG `scones_batch_classification` wires them, and the benchmark calls the same ones.

- `BatchParams`: the DAG's Params, checked.
- `batch_request`: the machine's input (records.BatchRequest), results under <batch_prefix>/<execution name>/.
- `start_execution`: idempotent: a retry finds the execution its first try started, by its name.
- `read_latest`: the newest run's summary, for the monitoring report.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from include.scones.manifests import SplitKeys
from include.scones.params import checked_values
from include.scones.records import BatchRequest, BatchSummary, DeploymentRecord

log = logging.getLogger(__name__)

EXECUTION_NAME = re.compile(r"[^A-Za-z0-9_-]")
MAX_EXECUTION_NAME = 80  # Step Functions' limit


class InvalidBatchParams(ValueError):
    """A Param of scones_batch_classification is out of range; the message names it."""


PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "prefix": {
        "default": "",
        "type": "string",
        "maxLength": 1024,
        "title": "S3 key prefix of the images",
        "description": (
            "Every object under s3://<SCONES_BUCKET>/<prefix> is classified, e.g. datasets/cifar100/<id>/test/images/. "
            "Empty: the live model's test images."
        ),
    },
}


@dataclass(frozen=True)
class BatchParams:
    prefix: str


def validate_params(params: Mapping[str, Any]) -> BatchParams:
    checked = BatchParams(**checked_values(params, PARAM_SCHEMAS, InvalidBatchParams))
    if checked.prefix.startswith(("s3://", "/")):
        raise InvalidBatchParams(
            f"invalid DAG Params: prefix: {checked.prefix!r} must be a key prefix inside the bucket, "
            "e.g. datasets/cifar100/<id>/test/images/ (no s3:// and no leading /)"
        )
    return checked


def execution_name(run_id: str) -> str:
    """A Step Functions execution name for an Airflow run: the same run always gets the same name."""
    return EXECUTION_NAME.sub("-", run_id)[:MAX_EXECUTION_NAME]


def images_prefix(deployment: DeploymentRecord) -> tuple[str, str]:
    """(bucket, key prefix) of the live model's test images."""
    bucket, _, prefix = deployment.data_uri.removeprefix("s3://").partition("/")
    return bucket, SplitKeys(prefix).images


def batch_request(
    bucket: str, batch_prefix: str, deployment: DeploymentRecord, params: BatchParams, name: str
) -> BatchRequest:
    """The machine's input: the prefix (the live test images by default), and the results under the batch
    prefix, which the prefix itself must not reach into (the next run would classify the results)."""
    prefix = params.prefix or images_prefix(deployment)[1]
    root = batch_prefix.strip("/") + "/"
    if prefix.startswith(root) or root.startswith(prefix):
        raise InvalidBatchParams(f"prefix {prefix!r} overlaps the results under {root!r}; choose a prefix of images")
    return BatchRequest(
        s3_bucket=bucket,
        prefix=prefix,
        results_prefix=f"{root}{name}",
        latest_key=f"{root}latest.json",
        classes=deployment.classes,
    )


def start_execution(client: Any, machine_arn: str, name: str, request: BatchRequest) -> str:
    """Start the batch run called `name`, or find it: a retry after a start that answered nothing must not
    classify the prefix twice. An execution of that name with another input is an error."""
    payload = request.to_json()
    try:
        started = client.start_execution(stateMachineArn=machine_arn, name=name, input=payload)
        log.info("started %s", started["executionArn"])
        return str(started["executionArn"])
    except client.exceptions.ExecutionAlreadyExists:
        arn = f"{machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"
        existing = client.describe_execution(executionArn=arn)
        if json.loads(existing["input"]) != json.loads(payload):
            raise
        log.info("execution %s was already started (%s)", arn, existing["status"])
        return arn


def summary_of(description: dict[str, Any]) -> BatchSummary:
    """A finished execution's summary (its output, collect_batch_results's result)."""
    if description.get("status") != "SUCCEEDED":
        raise RuntimeError(
            f"batch execution {description.get('executionArn')} is {description.get('status')}: "
            f"{description.get('error')}: {description.get('cause')}"
        )
    return BatchSummary.from_json(description["output"])


def summary_table(summary: BatchSummary) -> str:
    share = summary.routed_share
    rows = [
        ("images", str(summary.images)),
        ("routed (confident)", f"{summary.routed}" + (f" ({share:.1%})" if share is not None else "")),
        ("not routed (a person decides)", str(summary.not_routed)),
        ("errors", str(summary.errors)),
        *((f"routed as {label}", str(count)) for label, count in summary.routed_by_label.items()),
        ("results", summary.results_uri),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def read_latest(hook: Any, bucket: str, batch_prefix: str) -> BatchSummary | None:
    """The newest batch run's summary (<batch_prefix>/latest.json) through an S3Hook, or None before any run."""
    key = f"{batch_prefix.strip('/')}/latest.json"
    if not hook.check_for_key(key, bucket_name=bucket):
        return None
    return BatchSummary.from_json(hook.read_key(key, bucket_name=bucket))
