"""training_steps: the plain parts (planning, evaluation, gate, registry) with in-memory hooks; no AWS."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from include.scones import sagemaker_requests, training_steps
from include.scones.gate import Decision
from include.scones.params import InvalidParams
from include.scones.records import CandidateMetadata, DeploymentRecord, EvaluationResult, RunPlan
from include.scones.sagemaker_requests import run_name
from include.scones.settings import load
from tests.scones.helpers import FakeRegistry, MemoryS3Hook

WHEN = datetime(2025, 3, 4, 5, 6, 7)
SETTINGS = load(env={"SCONES_BUCKET": "bkt", "SCONES_CACHE_DIR": "/cache"})


def plan(**raw: Any) -> RunPlan:
    return training_steps.plan_run(SETTINGS, raw, "manual__x", WHEN, "us-east-1", "123456789012")


def test_plan_run_fixes_names_images_and_params() -> None:
    result = plan(epochs=5, classes=["motorcycle", "bicycle"], unrelated="ignored")
    assert result.name == run_name("manual__x", WHEN)
    assert result.bucket == "bkt" and result.region == "us-east-1"
    assert result.role_arn == "arn:aws:iam::123456789012:role/scones-sagemaker-execution"
    assert result.training_image == "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-cpu-py311"
    assert result.inference_image == "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311"
    assert result.model_output_uri == "s3://bkt/models/"
    assert result.capture_uri == "s3://bkt/data_capture"
    assert result.model_package_group == "scones-vehicle-classifier"
    assert result.serving_model_name == f"{result.name}-serving"
    assert result.params.epochs == 5 and result.params.classes == ("motorcycle", "bicycle")
    assert RunPlan.from_xcom(json.loads(json.dumps(result.to_xcom()))) == result  # travels through XCom


def test_plan_run_prefers_configured_images() -> None:
    settings = load(env={"SCONES_TRAINING_IMAGE": "my/train:1", "SCONES_INFERENCE_IMAGE": "my/serve:1"})
    result = training_steps.plan_run(settings, {}, "r", WHEN, "mars-north-1", "1")
    assert (result.training_image, result.inference_image) == ("my/train:1", "my/serve:1")


def test_plan_run_fails_before_any_aws_call() -> None:
    with pytest.raises(InvalidParams, match="epochs: 0 is less than the minimum of 1"):
        plan(epochs=0)
    from include.scones.images import UnknownRegion

    with pytest.raises(UnknownRegion, match="mars-north-1"):
        training_steps.plan_run(SETTINGS, {}, "r", WHEN, "mars-north-1", "1")


def test_channels_dir() -> None:
    assert training_steps.channels_dir(SETTINGS, "abc", ["bicycle", "motorcycle"]) == Path(
        "/cache/channels/abc/bicycle-motorcycle"
    )


def test_evaluate_model_scores_transform_outputs_and_writes_evaluation_json() -> None:
    # Given test.lst/classes.json in S3 and one .out per test image under the evaluation prefix
    result = plan()
    data_uri = "s3://bkt/datasets/cifar100/ds1/"
    job = {
        "TrainingJobName": "job-1",
        "ModelArtifacts": {"S3ModelArtifacts": "s3://art/models/job-1/output/model.tar.gz"},
    }
    predictions_prefix = "models/job-1/evaluation/predictions/"
    hook = MemoryS3Hook({
        ("bkt", "datasets/cifar100/ds1/test/test.lst"): b"0\t0\ta.png\n1\t1\tb.png\n2\t1\tc.png\n",
        ("bkt", "datasets/cifar100/ds1/test/classes.json"): b'["bicycle", "motorcycle"]',
        ("bkt", f"{predictions_prefix}a.png.out"): b"[0.99, 0.01]",
        ("bkt", f"{predictions_prefix}b.png.out"): b"[0.2, 0.8]",
        ("bkt", f"{predictions_prefix}c.png.out"): b"[0.96, 0.04]",
        ("bkt", f"{predictions_prefix}ignored.txt"): b"junk",
    })  # fmt: skip
    # When evaluating
    summary = training_steps.evaluate_model(hook, result, data_uri, job)
    # Then the returned summary and the stored evaluation.json agree with the hand count
    assert summary == EvaluationResult(
        accuracy=0.666667,
        pass_share_at_threshold=0.666667,
        accuracy_among_passed=0.5,
        evaluation_uri="s3://art/models/job-1/output/evaluation.json",
        training_job_name="job-1",
        data_uri=data_uri,  # the workflow DAG finds its smoke images through the registry
    )
    record = json.loads(hook.objects[("art", "models/job-1/output/evaluation.json")])
    assert record["confusion_matrix"]["matrix"] == [[1, 0], [1, 1]]
    assert record["model_name"] == result.name and record["training_job_name"] == "job-1"
    assert record["model_artifact"] == "s3://art/models/job-1/output/model.tar.gz"


def test_evaluate_model_with_a_missing_output_fails() -> None:
    from include.scones.evaluation import EvaluationError

    hook = MemoryS3Hook({
        ("bkt", "d/test/test.lst"): b"0\t0\ta.png\n1\t1\tb.png\n",
        ("bkt", "d/test/classes.json"): b'["bicycle", "motorcycle"]',
        ("bkt", "models/j/evaluation/predictions/a.png.out"): b"[0.9, 0.1]",
    })  # fmt: skip
    job = {"TrainingJobName": "j", "ModelArtifacts": {"S3ModelArtifacts": "s3://bkt/models/j/output/model.tar.gz"}}
    with pytest.raises(EvaluationError, match=r"\['b.png'\]"):
        training_steps.evaluate_model(hook, plan(), "s3://bkt/d/", job)
    assert hook.writes == []


RESULT = EvaluationResult(
    training_job_name="job-1",
    data_uri="s3://bkt/datasets/ds1/",
    accuracy=0.95,
    pass_share_at_threshold=0.8,
    accuracy_among_passed=0.99,
    evaluation_uri="s3://bkt/models/job-1/output/evaluation.json",
)


def live_registry(run: RunPlan, accuracy: float = 0.95) -> tuple[FakeRegistry, str]:
    """An endpoint serving version 1 (the champion) and a new candidate, version 2, pending."""
    client = FakeRegistry()
    champion = CandidateMetadata.of(run, RESULT.model_copy(update={"accuracy": accuracy}))
    client.serve(run.endpoint_name, client.add_version(1, "Approved", **champion.to_properties()))
    return client, client.add_version(2, **CandidateMetadata.of(run, RESULT).to_properties())


def scored(accuracy: float) -> EvaluationResult:
    return RESULT.model_copy(update={"accuracy": accuracy})


def test_the_gate_compares_with_the_version_behind_the_endpoint() -> None:
    run = plan()
    client, candidate = live_registry(run)
    hook = MemoryS3Hook()
    assert not training_steps.gate_candidate(hook, client, run, scored(0.94), candidate).decision.deploy
    outcome = training_steps.gate_candidate(hook, client, run, scored(0.95), candidate)
    assert outcome == training_steps.GateOutcome(outcome.decision, "approve_version") and outcome.decision.deploy
    assert "(v1 (" in outcome.decision.reason
    # With no endpoint there is no champion: only the floor counts
    client.endpoints.clear()
    assert training_steps.gate_candidate(hook, client, run, scored(0.91), candidate).route == "approve_version"
    refused = training_steps.gate_candidate(hook, client, run, scored(0.89), candidate)
    assert refused.route is None and not refused.decision.deploy


def test_with_manual_approval_the_gate_asks_for_a_review_with_both_evaluations() -> None:
    run = plan(approval="manual")
    client, candidate = live_registry(run, accuracy=0.9)
    evaluation = {"images": 200, "threshold": 0.93, "per_class": {}, "confusion_matrix": {"labels": [], "matrix": []}}
    hook = MemoryS3Hook({("bkt", "models/job-1/output/evaluation.json"): json.dumps(evaluation).encode()})
    outcome = training_steps.gate_candidate(hook, client, run, scored(0.95), candidate)
    assert outcome.route == "review" and outcome.review is not None
    assert outcome.review["subject"] == "Deploy version 2 of the vehicle classifier?"
    assert (
        "| Test accuracy | 0.9500 | 0.9000 |" in outcome.review["body"]
        and "on 200 test images" in outcome.review["body"]
    )
    # Rules that fail reject without asking anyone
    assert training_steps.gate_candidate(hook, client, run, scored(0.85), candidate).route is None


def test_approve_and_reject_settle_the_version_with_the_reason_or_the_note() -> None:
    run = plan()
    client, candidate = live_registry(run)
    served = training_steps.approve_version(client, run, candidate, "deploying: fine", None)
    assert served == sagemaker_requests.serving_model(run, candidate)
    assert client.packages[candidate]["ApprovalDescription"] == "Approved by the gate: deploying: fine"
    answer = {"chosen_options": ["Approve"], "params_input": {"note": "ok"}, "responded_by_user": {"name": "ada"}}
    training_steps.approve_version(client, run, candidate, "deploying: fine", answer)
    assert client.packages[candidate]["ApprovalDescription"] == "Approved by ada: ok"
    with pytest.raises(ValueError, match="did not approve"):
        training_steps.approve_version(client, run, candidate, "r", answer | {"chosen_options": ["Reject"]})

    failed = Decision(False, "not deploying: below the floor")
    assert training_steps.reject_version(client, candidate, failed, None) == (
        "Rejected by the gate: not deploying: below the floor"
    )
    no = answer | {"chosen_options": ["Reject"], "params_input": {"note": "blurry"}}
    assert training_steps.reject_version(client, candidate, Decision(True, "fine"), no) == "Rejected by ada: blurry"
    package = client.packages[candidate]
    assert package["ModelApprovalStatus"] == "Rejected"
    assert package["CustomerMetadataProperties"]["reviewed_by"] == "ada"


def test_record_deployment_insists_the_endpoint_serves_this_runs_version() -> None:
    run = plan()
    client, candidate = live_registry(run)
    with pytest.raises(RuntimeError, match="should serve"):
        training_steps.record_deployment(client, run, candidate)
    client.serve(run.endpoint_name, candidate)
    record = training_steps.record_deployment(client, run, candidate)
    assert record.model_package_version == 2 and record.run_name == run.name
    assert DeploymentRecord.from_xcom(json.loads(json.dumps(record.to_xcom()))) == record
