"""The training DAG's steps, as plain functions over settings, plain data and provider hooks.

The DAG file only wires these together; each takes the hooks it needs as arguments (duck-typed), so this module
never imports Airflow and the same code runs against AWS or the local cloud, whichever the connection names.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from include.scones import (
    archives,
    evaluation,
    gate,
    images,
    params,
    registry,
    review,
    rollout,
    s3_sync,
    sagemaker_requests,
)
from include.scones.manifests import read_split
from include.scones.records import DeploymentRecord, EvaluationResult, RunPlan
from include.scones.sagemaker_requests import run_name
from include.scones.settings import Settings

log = logging.getLogger(__name__)

MODEL_CODE_DIR = Path(__file__).resolve().parent.parent / "model"
MODEL_CODE_FILES = ("train.py", "inference.py", "model.py", "requirements.txt")


# --- PLAN -------------------------------------------------------------------------------------------------
def plan_run(
    settings: Settings, raw_params: Mapping[str, Any], run_id: str, run_after: datetime, region: str, account: str
) -> RunPlan:
    """Validate the Params and fix every name and image for the run. Fails before any AWS call on bad input."""
    validated = params.validate(raw_params)
    return RunPlan(
        name=run_name(run_id, run_after),
        bucket=settings.bucket,
        region=region,
        role_arn=settings.role_arn(account),
        training_image=settings.training_image
        or images.pytorch_image(region, "training", settings.pytorch_version, settings.python_version),
        inference_image=settings.inference_image
        or images.pytorch_image(region, "inference", settings.pytorch_version, settings.python_version),
        endpoint_name=settings.endpoint_name,
        model_output_uri=f"s3://{settings.bucket}/{settings.model_prefix}/",
        capture_uri=settings.capture_uri,
        model_package_group=settings.model_package_group,
        params=validated,
    )


# --- ETL --------------------------------------------------------------------------------------------------
def channels_dir(settings: Settings, archive_md5: str, classes: list[str]) -> Path:
    return Path(settings.cache_dir) / "channels" / archive_md5 / "-".join(classes)


def add_labelled_images(s3_client: Any, settings: Settings, base_dir: Path) -> Path:
    """The training set: the CIFAR channels plus the images people labelled on the Review page, as a new dataset
    version (labelled_dataset.py); the CIFAR channels themselves while no label is usable."""
    from include.scones import labelled_dataset, labelling

    store = labelling.ReviewStore(settings.bucket, lambda: s3_client)
    labelled, dropped = labelled_dataset.collect(store)
    target = base_dir.with_name(base_dir.name + "-labelled")
    source = f"s3://{settings.bucket}/{store.layout.labels_prefix}"
    manifest = labelled_dataset.write(base_dir, labelled, dropped, target, source)
    if manifest is None:
        log.info("no usable label in %s (%d read): training on the CIFAR channels as they are", source, len(labelled))
        return base_dir
    log.info("dataset %s: CIFAR %s plus %s", manifest["dataset_id"], manifest["base_dataset_id"], manifest["labelled"])
    return target


def load_channels(hook: s3_sync.S3HookLike, plan: RunPlan, settings: Settings, local_dir: Path) -> str:
    """Upload the channels under a content-addressed prefix; returns `s3://bucket/<prefix>/<dataset id>/`."""
    manifest = json.loads((local_dir / "manifest.json").read_text())
    s3_sync.ensure_bucket(hook, plan.bucket, plan.region)
    prefix = f"{settings.data_prefix}/{manifest['dataset_id']}"
    s3_sync.sync_directory(hook, local_dir, plan.bucket, prefix)
    return f"s3://{plan.bucket}/{prefix}/"


def package_code(hook: Any, plan: RunPlan, settings: Settings, code_dir: Path = MODEL_CODE_DIR) -> str:
    """Upload `sourcedir.tar.gz` under a content-hash key; unchanged code reuses the existing object."""
    files = archives.read_tree(code_dir, MODEL_CODE_FILES)
    key = f"{settings.code_prefix}/{archives.content_hash(files)[:16]}/sourcedir.tar.gz"
    s3_sync.ensure_bucket(hook, plan.bucket, plan.region)
    if hook.check_for_key(key, bucket_name=plan.bucket):
        log.info("training code unchanged: reusing s3://%s/%s", plan.bucket, key)
    else:
        hook.load_bytes(archives.tar_gz(files), key=key, bucket_name=plan.bucket, replace=True)
        log.info("uploaded training code to s3://%s/%s", plan.bucket, key)
    return f"s3://{plan.bucket}/{key}"


# --- EVALUATE ---------------------------------------------------------------------------------------------
def evaluate_model(hook: Any, plan: RunPlan, data_uri: str, training: Mapping[str, Any]) -> EvaluationResult:
    """Score the batch-transform outputs against test.lst, write evaluation.json beside model.tar.gz."""
    job_name = training["TrainingJobName"]
    artifact = training["ModelArtifacts"]["S3ModelArtifacts"]
    _, _, rows, class_names = read_split(hook, data_uri)
    out_bucket, out_prefix = hook.parse_s3_url(plan.evaluation_output_uri(job_name) + "predictions/")
    keys = [k for k in hook.list_keys(bucket_name=out_bucket, prefix=out_prefix) or [] if k.endswith(".out")]

    def read(key: str) -> tuple[str, list[float]]:
        body = hook.read_key(key, bucket_name=out_bucket)
        return Path(key).name.removesuffix(".out"), evaluation.parse_prediction(body, len(class_names), key)

    with ThreadPoolExecutor(max_workers=8) as pool:
        predictions = dict(pool.map(read, keys))
    metrics = evaluation.evaluate(predictions, rows, class_names, plan.params.confidence_threshold)
    artifact_bucket, artifact_key = hook.parse_s3_url(artifact)
    evaluation_key = artifact_key.rsplit("/", 1)[0] + "/evaluation.json"
    record = {"training_job_name": job_name, "model_artifact": artifact, "model_name": plan.name, **metrics}
    hook.load_string(json.dumps(record, indent=2), key=evaluation_key, bucket_name=artifact_bucket, replace=True)
    log.info("evaluation of %s\n%s", job_name, evaluation.summary(metrics))
    return EvaluationResult(
        training_job_name=job_name,
        data_uri=data_uri,
        evaluation_uri=f"s3://{artifact_bucket}/{evaluation_key}",
        accuracy=metrics["accuracy"],
        pass_share_at_threshold=metrics["pass_share_at_threshold"],
        accuracy_among_passed=metrics["accuracy_among_passed"],
    )


# --- GATE AND REVIEW ------------------------------------------------------------------------------------
APPROVE_TASK, REVIEW_TASK = "approve_version", "review"  # where the gate sends a version that passed its rules


@dataclass(frozen=True)
class GateOutcome:
    """The gate's rules on a registered version, and where the run goes: `approve_version` (approval=auto),
    `review` (approval=manual, with the request the reviewer reads), or nowhere (rejected by the rules)."""

    decision: gate.Decision
    route: str | None
    review: dict[str, str] | None = None


def version_number(package_arn: str) -> int:
    return int(package_arn.rsplit("/", 1)[1])


def _read_json(hook: Any, uri: str) -> dict[str, Any] | None:
    bucket, key = hook.parse_s3_url(uri)
    if not hook.check_for_key(key, bucket_name=bucket):
        return None
    return dict(json.loads(hook.read_key(key, bucket_name=bucket)))


def gate_candidate(
    s3_hook: Any, sagemaker_client: Any, plan: RunPlan, result: EvaluationResult, package_arn: str
) -> GateOutcome:
    """Champion/challenger on the version: the champion is the version the endpoint serves (registry.py)."""
    champion = registry.live_deployment(sagemaker_client, plan.endpoint_name)
    decision = gate.decide(result.accuracy, plan.params.min_accuracy, champion)
    log.info(decision.reason)
    if not decision.deploy:
        return GateOutcome(decision, None)
    if plan.params.approval == "auto":
        return GateOutcome(decision, APPROVE_TASK)
    metrics = _read_json(s3_hook, result.evaluation_uri) or {}
    champion_metrics = _read_json(s3_hook, champion.evaluation_uri) if champion else None
    request = review.request(
        version_number(package_arn), result, metrics, champion, champion_metrics, decision.reason, plan.endpoint_name
    )
    return GateOutcome(decision, REVIEW_TASK, request)


def approve_version(
    sagemaker_client: Any, plan: RunPlan, package_arn: str, reason: str, answer: dict[str, Any] | None
) -> dict[str, Any]:
    """Mark the version Approved (by the gate's rules, or by the reviewer with their note); returns the
    CreateModel request that serves it."""
    if answer is None:
        registry.settle(sagemaker_client, package_arn, registry.APPROVED, f"Approved by the gate: {reason}", "gate")
    else:
        verdict = review.verdict(answer)
        if not verdict.approved:  # ApprovalOperator skips this task on Reject; anything else is a bug
            raise ValueError(f"the review did not approve {package_arn}: {answer}")
        registry.settle(sagemaker_client, package_arn, registry.APPROVED, verdict.description(), verdict.reviewer)
    return sagemaker_requests.serving_model(plan, package_arn)


def reject_version(
    sagemaker_client: Any, package_arn: str, decision: gate.Decision, answer: dict[str, Any] | None
) -> str:
    """Mark the version Rejected: by the gate's rules, or by the reviewer (or the review timeout) with the note."""
    if not decision.deploy:
        description, reviewer = f"Rejected by the gate: {decision.reason}", "gate"
    else:
        verdict = review.verdict(answer)
        description, reviewer = verdict.description(), verdict.reviewer
    registry.settle(sagemaker_client, package_arn, registry.REJECTED, description, reviewer)
    return description


# --- DEPLOY -----------------------------------------------------------------------------------------------
def put_rollback_alarms(cloudwatch_client: Any, plan: RunPlan, latency_ms: float) -> list[str]:
    names = rollout.put_alarms(cloudwatch_client, sagemaker_requests.rollback_alarms(plan, latency_ms), plan.name)
    log.info("rollback alarms %s watch %s", names, plan.name)
    return names


def record_deployment(sagemaker_client: Any, plan: RunPlan, package_arn: str) -> DeploymentRecord:
    """The live deployment as the registry now tells it; it must be this run's version."""
    live = registry.live_deployment(sagemaker_client, plan.endpoint_name)
    if live is None or live.model_package_arn != package_arn:
        found = live.model_package_arn if live else "nothing"
        raise RuntimeError(f"endpoint {plan.endpoint_name} should serve {package_arn} after the deploy, not {found}")
    log.info("endpoint %s now serves %s (accuracy %.4f)", plan.endpoint_name, live.version_label, live.accuracy)
    return live


def prune_registry(sagemaker_client: Any, settings: Settings) -> list[str]:
    return registry.prune(
        sagemaker_client, settings.model_package_group, settings.endpoint_name, settings.registry_keep_last
    )
