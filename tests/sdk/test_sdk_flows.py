"""The SageMaker Python SDK's own high-level flows, v3 and v2 as published (each in its venv, `make venvs`), against
the real local cloud with the project's include/model: no monkey-patching, no setting that turns a feature off.

Both flows (tests/sdk/flows/) run once per session, side by side (they mostly wait on the SDK's polling), with the
local cloud's environment as `. .localcloud/env` gives it. The tests then check what the flows left in the local
cloud with boto3, and every SageMaker response the SDK received against botocore's output shapes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localcloud.config import PROJECT_ROOT, aws_managed_s3_key_arn
from localcloud.sagemaker import validation
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e

FLOWS = Path(__file__).parent / "flows"
FLOW_TIMEOUT_S = 600
VENVS = {"v3": ".venv-sdk-v3", "v2": ".venv-sdk-v2"}
SCRIPTS = {"v3": "v3_model_trainer.py", "v2": "v2_pytorch_estimator.py"}
DATASET = PROJECT_ROOT / "datasets" / "cifar100-bicycle-motorcycle"
CAPTURE_WAIT_S = 15.0


@dataclass
class FlowRun:
    out: Path
    log: str
    result: dict[str, Any]

    def responses(self) -> list[dict[str, Any]]:
        lines = (self.out / "responses.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]


def sdk_python(version: str) -> Path:
    python = PROJECT_ROOT / VENVS[version] / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no SageMaker SDK {version} at {python}: run `make venvs`")
    return python


@pytest.fixture(scope="session")
def flows(local_cloud: LocalCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, FlowRun]]:
    """Both flows, started together; the process environment is the local cloud's (set by `local_cloud`)."""
    name = f"sdk-{uuid.uuid4().hex[:6]}"
    started = {}
    for version, script in SCRIPTS.items():
        out = tmp_path_factory.mktemp(f"sdk-{version}")
        log = (out / "flow.log").open("w")
        command = [str(sdk_python(version)), str(FLOWS / script), "--out", str(out), "--name", name]
        started[version] = (
            out,
            log,
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)),
        )
    runs = {}
    for version, (out, log, process) in started.items():
        try:
            process.wait(timeout=FLOW_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        text = (out / "flow.log").read_text(errors="replace")
        result_file = out / "result.json"
        assert process.returncode == 0 and result_file.exists(), f"SDK {version} flow failed:\n{text[-6000:]}"
        runs[version] = FlowRun(out, text, json.loads(result_file.read_text()))
    yield runs


def assert_gone(call: Any, **kwargs: Any) -> None:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def s3_location(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def probabilities(value: Any) -> list[float]:
    parsed = json.loads(value) if isinstance(value, (str, bytes)) else value
    assert len(parsed) == 2 and abs(sum(parsed) - 1) < 1e-4, parsed
    return [float(p) for p in parsed]


# --- both flows ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v3", "v2"])
def test_every_sagemaker_response_matches_botocore_output_shapes(flows: dict[str, FlowRun], version: str) -> None:
    responses = flows[version].responses()
    operations = {r["operation"] for r in responses}
    expected = {"CreateTrainingJob", "DescribeTrainingJob", "CreateModel", "CreateEndpointConfig", "CreateEndpoint"}
    expected |= {"DescribeEndpoint", "DeleteEndpoint", "DeleteModel"}
    if version == "v2":
        expected |= {"CreateTransformJob", "DescribeTransformJob", "UpdateEndpoint"}
    assert expected <= operations, f"the recorder missed {expected - operations}"
    problems = []
    for response in responses:
        if response["status"] != 200:
            problems.append(f"{response['operation']}: HTTP {response['status']} {response['body'][:300]}")
            continue
        body = json.loads(response["body"]) if response["body"] else {}
        errors = validation.output_errors(validation.operation_model(response["operation"]), body)
        problems += [f"{response['operation']}: {error}" for error in errors]
    assert problems == []


# --- v3 -----------------------------------------------------------------------------------------------------
def test_v3_model_trainer_runs_the_sdk_driver_with_the_opt_ml_contract(
    flows: dict[str, FlowRun], sagemaker: Any, s3: Any, logs: Any
) -> None:
    result = flows["v3"].result
    assert result["training_status"] == "Completed"
    job = sagemaker.describe_training_job(TrainingJobName=result["training_job"])
    algorithm = job["AlgorithmSpecification"]
    # SourceCode makes the SDK run its own sm_train.sh, which knows only /opt/ml/... paths.
    assert algorithm["ContainerEntrypoint"] == ["/bin/bash"]
    assert "/opt/ml/input/data/sm_drivers/sm_train.sh" in algorithm["ContainerArguments"][-1]
    assert {c["ChannelName"] for c in job["InputDataConfig"]} == {"code", "sm_drivers", "train", "test"}

    bucket, key = s3_location(result["model_data"])
    with tarfile.open(fileobj=BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as archive:
        members = set(archive.getnames())
    assert {"model.pth", "model_config.json", "code/inference.py"} <= members

    stream = logs.describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{result['training_job']}/"
    )["logStreams"][0]["logStreamName"]
    events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream)["events"]
    messages = "\n".join(e["message"] for e in events)
    assert "Executing command:" in messages and "train.py --epochs 1 --batch_size 16" in messages
    assert "Training Container Execution Completed" in messages
    assert "Training Container Execution Completed" in flows["v3"].log  # train(logs=True) tailed them


def test_v3_endpoint_answered_and_was_deleted(flows: dict[str, FlowRun], sagemaker: Any) -> None:
    name = flows["v3"].result["endpoint"]
    probabilities(flows["v3"].result["prediction"])
    assert_gone(sagemaker.describe_endpoint, EndpointName=name)
    assert_gone(sagemaker.describe_endpoint_config, EndpointConfigName=name)
    assert_gone(sagemaker.describe_model, ModelName=name)


# --- v2 -----------------------------------------------------------------------------------------------------
def test_v2_fit_uploads_its_source_with_the_default_kms_key_and_attach_finds_the_model(
    flows: dict[str, FlowRun], sagemaker: Any, s3: Any
) -> None:
    result = flows["v2"].result
    job = sagemaker.describe_training_job(TrainingJobName=result["training_job"])
    assert job["TrainingJobStatus"] == "Completed"
    assert result["attached_model_data"] == job["ModelArtifacts"]["S3ModelArtifacts"]
    assert job["OutputDataConfig"]["KmsKeyId"] == ""  # what attach() reads
    submitted = json.loads(job["HyperParameters"]["sagemaker_submit_directory"])
    source = s3.head_object(**dict(zip(("Bucket", "Key"), s3_location(submitted), strict=True)))
    assert (source["ServerSideEncryption"], source["SSEKMSKeyId"]) == ("aws:kms", aws_managed_s3_key_arn())


def test_v2_predict_is_captured_in_s3(flows: dict[str, FlowRun], s3: Any) -> None:
    result = flows["v2"].result
    probabilities(result["prediction"])
    bucket, prefix = s3_location(result["capture_uri"])

    def captured() -> tuple[list[str], list[dict[str, Any]]]:
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/").get("Contents", [])]
        lines = [line for k in keys for line in s3.get_object(Bucket=bucket, Key=k)["Body"].read().splitlines()]
        return keys, [json.loads(line) for line in lines]

    deadline = time.monotonic() + CAPTURE_WAIT_S  # deleting the endpoint flushed its capture; S3 may lag a moment
    while len((found := captured())[1]) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    keys, records = found
    assert keys and all(k.startswith(f"{prefix}/{result['endpoint']}/AllTraffic/") for k in keys)
    first_row = (DATASET / "train.lst").read_text().splitlines()[0]
    sent = (DATASET / "train" / first_row.split("\t")[2]).read_bytes()
    inputs = [r["captureData"]["endpointInput"] for r in records]
    assert all(i["observedContentType"] == "image/png" and i["encoding"] == "BASE64" for i in inputs)
    assert all(base64.b64decode(i["data"]) == sent for i in inputs)
    assert len(records) == 2  # the prediction before the update and the one after


def test_v2_batch_transform_writes_one_output_per_image(flows: dict[str, FlowRun], s3: Any) -> None:
    result = flows["v2"].result
    in_bucket, in_prefix = s3_location(result["transform_input"])
    images = [o["Key"].rsplit("/", 1)[1] for o in s3.list_objects_v2(Bucket=in_bucket, Prefix=in_prefix)["Contents"]]
    out_bucket, out_prefix = s3_location(result["transform_output"])
    outputs = {
        o["Key"].rsplit("/", 1)[1]: s3.get_object(Bucket=out_bucket, Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket=out_bucket, Prefix=out_prefix)["Contents"]
    }
    assert sorted(outputs) == sorted(f"{image}.out" for image in images) and len(images) == 4
    for body in outputs.values():
        probabilities(body)


def test_v2_update_endpoint_moved_to_a_new_config_and_delete_removed_it(
    flows: dict[str, FlowRun], sagemaker: Any
) -> None:
    result = flows["v2"].result
    first, updated = result["endpoint_configs"]
    assert first != updated and result["updated_status"] == "InService"
    probabilities(result["prediction_after_update"])
    assert_gone(sagemaker.describe_endpoint, EndpointName=result["endpoint"])
    for config in (first, updated):
        assert_gone(sagemaker.describe_endpoint_config, EndpointConfigName=config)
