"""training_steps: the plain parts (planning, evaluation, gate, registry) with in-memory hooks; no AWS."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from include.scones import training_steps
from include.scones.params import InvalidParams
from include.scones.records import DeploymentRecord, EvaluationResult, RunPlan, read_deployment
from include.scones.sagemaker_requests import run_name
from include.scones.settings import load
from tests.scones.helpers import MemoryS3Hook, client_error

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
    assert result.registry_key == "registry/scones-vehicle-classifier.json"
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


class FakeSageMaker:
    exceptions = SimpleNamespace(ClientError=ClientError)

    def __init__(self, endpoint: dict[str, Any] | None, error: str = "ValidationException") -> None:
        self.endpoint, self.error = endpoint, error

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:  # noqa: N803
        if self.endpoint is None:
            raise client_error(self.error, "DescribeEndpoint")
        return self.endpoint


def test_describe_endpoint_returns_none_only_for_a_missing_endpoint() -> None:
    assert training_steps.describe_endpoint(FakeSageMaker(None), "ep") is None
    assert training_steps.describe_endpoint(FakeSageMaker({"EndpointName": "ep"}), "ep") == {"EndpointName": "ep"}
    with pytest.raises(ClientError, match="AccessDeniedException"):
        training_steps.describe_endpoint(FakeSageMaker(None, "AccessDeniedException"), "ep")


def test_record_then_decide_uses_the_registry_as_champion() -> None:
    first = plan()
    hook = MemoryS3Hook({("bkt", "other"): b""})
    assert read_deployment(hook, first.bucket, first.registry_key) is None
    result = EvaluationResult(
        training_job_name="job-1",
        data_uri="s3://bkt/datasets/ds1/",
        accuracy=0.95,
        pass_share_at_threshold=0.8,
        accuracy_among_passed=0.99,
        evaluation_uri="s3://bkt/e.json",
    )
    record = training_steps.record_deployment(hook, first, result)
    stored = read_deployment(hook, first.bucket, first.registry_key)
    assert stored == record == DeploymentRecord.from_xcom(json.loads(json.dumps(record.to_xcom())))
    assert stored is not None
    assert stored.endpoint_config_name == stored.model_name == first.name
    assert stored.classes == ("bicycle", "motorcycle") and stored.accuracy == 0.95
    assert stored.confidence_threshold == first.params.confidence_threshold

    def scored(accuracy: float) -> EvaluationResult:
        return result.model_copy(update={"accuracy": accuracy})

    # The endpoint serves that config: a weaker challenger is refused, an equal one deployed
    live = FakeSageMaker({"EndpointConfigName": first.name, "EndpointStatus": "InService"})
    assert not training_steps.decide_deployment(hook, live, first, scored(0.94)).deploy
    assert training_steps.decide_deployment(hook, live, first, scored(0.95)).deploy
    # With no endpoint, the registry is stale: only the floor counts
    assert training_steps.decide_deployment(hook, FakeSageMaker(None), first, scored(0.91)).deploy
    assert not training_steps.decide_deployment(hook, FakeSageMaker(None), first, scored(0.89)).deploy
