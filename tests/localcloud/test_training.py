"""Training jobs end to end: boto3 -> local SageMaker -> the real sagemaker-training toolkit,
with inputs, artifacts and logs in MiniStack. Every SageMaker response is checked against
botocore's output shape from the raw JSON body, as AWS would send it."""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localcloud.sagemaker import validation
from localcloud.sagemaker.models.training import SHUTDOWN_REASON
from tests.conftest import PYTORCH_TRAINING_IMAGE, ROLE_ARN, LocalCloud
from tests.localcloud.helpers import process_gone

pytestmark = pytest.mark.timeout(60)

FIXTURES = Path(__file__).parent / "training_fixtures"
BUCKET = "scones-training-tests"
RUN_ID = uuid.uuid4().hex[:6]
POLL_S = 0.5
TERMINAL = {"Completed", "Failed", "Stopped"}


# --- fixtures ------------------------------------------------------------------------------
class RawBodies:
    """Keeps the raw JSON body of the last response per operation, to validate what AWS-shaped
    bytes the server sent (boto3's parsed dicts have datetimes, not the wire form)."""

    def __init__(self) -> None:
        self.last: dict[str, dict[str, Any]] = {}

    def record(self, http_response: Any, model: Any, **_: Any) -> None:
        if http_response.status_code == 200 and http_response.content:
            self.last[model.name] = json.loads(http_response.content)

    def assert_valid(self, operation: str) -> dict[str, Any]:
        body = self.last.pop(operation)
        assert validation.output_errors(validation.operation_model(operation), body) == []
        return body


@pytest.fixture(scope="module")
def raw_bodies(local_cloud: LocalCloud) -> RawBodies:
    return RawBodies()


@pytest.fixture(scope="module")
def sm(local_cloud: LocalCloud, raw_bodies: RawBodies) -> Any:
    client = local_cloud.client("sagemaker")
    client.meta.events.register("after-call.sagemaker.*", raw_bodies.record)
    return client


@pytest.fixture(scope="module")
def inputs(s3: Any) -> dict[str, str]:
    s3.create_bucket(Bucket=BUCKET)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for script in ("train.py", "fail.py", "sleep.py"):
            tar.add(FIXTURES / script, arcname=script)
    s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=archive.getvalue())
    s3.put_object(Bucket=BUCKET, Key="data/train/scones.csv", Body=b"flavour,rating\nplain,5\n")
    s3.put_object(Bucket=BUCKET, Key="entry/code/opt_ml.sh", Body=(FIXTURES / "opt_ml.sh").read_bytes())
    return {
        "sourcedir": f"s3://{BUCKET}/code/sourcedir.tar.gz",
        "train": f"s3://{BUCKET}/data/train/",
        "entry_code": f"s3://{BUCKET}/entry/code/",
    }


def job_request(name: str, inputs: dict[str, str], program: str = "train.py", **overrides: Any) -> dict[str, Any]:
    """A CreateTrainingJob request as the SageMaker Python SDK builds it for a PyTorch estimator."""
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": ROLE_ARN,
        "AlgorithmSpecification": {"TrainingImage": PYTORCH_TRAINING_IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {
            "epochs": "3",
            "learning-rate": "0.05",
            "sagemaker_program": json.dumps(program),
            "sagemaker_submit_directory": json.dumps(inputs["sourcedir"]),
            "sagemaker_region": json.dumps("us-east-1"),
            "sagemaker_container_log_level": "20",
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": inputs["train"],
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "Tags": [{"Key": "project", "Value": "scones"}],
    }
    return request | overrides


def job_name(label: str) -> str:
    return f"train-{RUN_ID}-{label}"


def wait_for(sm: Any, name: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = 45) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        description = sm.describe_training_job(TrainingJobName=name)
        if done(description) or time.monotonic() > deadline:
            return description
        time.sleep(POLL_S)


def finished(description: dict[str, Any]) -> bool:
    return description["TrainingJobStatus"] in TERMINAL


def training(description: dict[str, Any]) -> bool:
    return description["SecondaryStatus"] == "Training" or finished(description)


def create(sm: Any, raw_bodies: RawBodies, request: dict[str, Any]) -> str:
    response = sm.create_training_job(**request)
    raw_bodies.assert_valid("CreateTrainingJob")
    return str(response["TrainingJobArn"])


def log_lines(logs: Any, name: str, timeout_s: float = 10, containing: str = "") -> tuple[str, list[str]]:
    """Messages of the job's single log stream, once one contains `containing` (logs ship ~1/s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        streams = logs.describe_log_streams(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/", orderBy="LogStreamName"
        )["logStreams"]
        if streams:
            stream = streams[0]["logStreamName"]
            events = logs.get_log_events(
                logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream, startFromHead=True
            )["events"]
            messages = [e["message"] for e in events]
            if any(containing in m for m in messages) or time.monotonic() > deadline:
                return stream, messages
        elif time.monotonic() > deadline:
            return "", []
        time.sleep(POLL_S)


def tar_members(s3: Any, uri: str) -> dict[str, bytes]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def statuses(description: dict[str, Any]) -> list[str]:
    return [t["Status"] for t in description["SecondaryStatusTransitions"]]


def assert_error(call: Callable[[], Any], code: str, message: str) -> None:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"] == {"Code": code, "Message": message}


# --- tests ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def completed_job(sm: Any, raw_bodies: RawBodies, inputs: dict[str, str]) -> Iterator[dict[str, Any]]:
    name = job_name("ok")
    started = time.monotonic()
    create(sm, raw_bodies, job_request(name, inputs))
    description = wait_for(sm, name, finished)
    print(f"\ntrivial toolkit job end to end: {time.monotonic() - started:.1f}s")
    raw_bodies.assert_valid("DescribeTrainingJob")
    yield description


def test_script_mode_job_completes_with_its_model(completed_job: dict[str, Any], s3: Any) -> None:
    description = completed_job
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    assert description["SecondaryStatus"] == "Completed"
    assert description["TrainingEndTime"] >= description["TrainingStartTime"] >= description["CreationTime"]
    assert description["TrainingTimeInSeconds"] >= 1 and description["BillableTimeInSeconds"] >= 1
    artifacts = description["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifacts == f"s3://{BUCKET}/output/{description['TrainingJobName']}/output/model.tar.gz"

    model = tar_members(s3, artifacts)
    assert list(model) == ["hyperparameters.json"]  # the contents of model/, at the archive root
    assert json.loads(model["hyperparameters.json"]) == {
        "epochs": 3,
        "learning_rate": 0.05,
        "train_files": ["scones.csv"],
    }
    output = tar_members(s3, artifacts.replace("model.tar.gz", "output.tar.gz"))
    assert json.loads(output["metrics.json"]) == {"loss": 0.5}


def test_status_transitions_end_with_their_own_message(completed_job: dict[str, Any]) -> None:
    transitions = completed_job["SecondaryStatusTransitions"]
    assert statuses(completed_job) == ["Starting", "Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert [t["StatusMessage"] for t in transitions] == [
        "Launching requested ML instances",
        "Preparing the instances for training",
        "Downloading input data",
        "Training image download completed. Training in progress.",
        "Uploading generated training model",
        "Training job completed",
    ]
    for previous, following in zip(transitions, transitions[1:], strict=False):
        assert previous["EndTime"] == following["StartTime"]


def test_script_output_reaches_cloudwatch_logs(completed_job: dict[str, Any], logs: Any) -> None:
    name = completed_job["TrainingJobName"]
    stream, messages = log_lines(logs, name, containing="scones-train finished")
    assert re.fullmatch(rf"{name}/algo-1-\d{{10}}", stream)
    assert "scones-train finished: epochs=3 learning_rate=0.05 files=['scones.csv']" in messages
    assert any("Reporting training SUCCESS" in m for m in messages)  # the toolkit's own log lines too


def test_failing_script_fails_with_the_failure_file(
    sm: Any, raw_bodies: RawBodies, inputs: dict[str, str], logs: Any
) -> None:
    name = job_name("fail")
    create(sm, raw_bodies, job_request(name, inputs, program="fail.py"))
    description = wait_for(sm, name, finished)
    raw_bodies.assert_valid("DescribeTrainingJob")
    assert description["TrainingJobStatus"] == "Failed"
    # The toolkit's output/failure; without the PyTorch framework module it does not capture stderr,
    # so the traceback is in the logs rather than in the reason.
    reason = description["FailureReason"]
    assert reason.startswith("AlgorithmError: ExecuteUserScriptError:\nExitCode 1\n"), reason
    assert "fail.py --epochs 3 --learning-rate 0.05" in reason
    _, messages = log_lines(logs, name, containing="ValueError: the scones were burnt")
    assert "ValueError: the scones were burnt" in messages
    assert statuses(description)[-2:] == ["Training", "Failed"]
    assert description["SecondaryStatusTransitions"][-1]["StatusMessage"] == "Training job failed"


def entrypoint_request(
    name: str, inputs: dict[str, str], entrypoint: list[str], arguments: list[str]
) -> dict[str, Any]:
    """A job whose container runs `entrypoint` + `arguments`, with a "code" channel as the SDK v3 sends."""
    request = job_request(name, inputs, HyperParameters={"epochs": "2"})
    request["AlgorithmSpecification"] |= {"ContainerEntrypoint": entrypoint, "ContainerArguments": arguments}
    code = {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": inputs["entry_code"]}}
    request["InputDataConfig"].append({"ChannelName": "code", "DataSource": code})
    return request


def test_container_entrypoint_runs_with_the_opt_ml_contract(
    sm: Any, raw_bodies: RawBodies, inputs: dict[str, str], s3: Any, logs: Any
) -> None:
    names = [job_name("entry-a"), job_name("entry-b")]
    for label, name in zip("ab", names, strict=True):  # side by side: each job has its own /opt/ml
        create(
            sm, raw_bodies, entrypoint_request(name, inputs, ["/bin/sh"], ["/opt/ml/input/data/code/opt_ml.sh", label])
        )
    for label, name in zip("ab", names, strict=True):
        description = wait_for(sm, name, finished)
        raw_bodies.assert_valid("DescribeTrainingJob")
        assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
        assert description["AlgorithmSpecification"]["ContainerEntrypoint"] == ["/bin/sh"]
        model = tar_members(s3, description["ModelArtifacts"]["S3ModelArtifacts"])
        assert json.loads(model["hyperparameters.json"]) == {"epochs": "2"}
        assert model["scones.csv"] == b"flavour,rating\nplain,5\n"
        assert model["who"].decode().strip() == f"{name} {label}"
        _, messages = log_lines(logs, name, containing="done in")
        assert "done in /opt/ml" in messages
    # The bind mounts lived only in the jobs' namespaces.
    assert not Path("/opt/ml/model").exists()


def test_container_entrypoint_failure_reports_the_failure_file(
    sm: Any, raw_bodies: RawBodies, inputs: dict[str, str]
) -> None:
    name = job_name("entry-fail")
    script = "echo 'the oven is cold' > /opt/ml/output/failure; exit 3"
    create(sm, raw_bodies, entrypoint_request(name, inputs, ["/bin/sh", "-c"], [script]))
    description = wait_for(sm, name, finished)
    assert description["TrainingJobStatus"] == "Failed"
    assert description["FailureReason"] == "AlgorithmError: the oven is cold\n"


def test_max_runtime_stops_the_job_and_keeps_its_checkpoint(
    sm: Any, raw_bodies: RawBodies, inputs: dict[str, str], s3: Any
) -> None:
    name = job_name("maxrt")
    create(sm, raw_bodies, job_request(name, inputs, program="sleep.py", StoppingCondition={"MaxRuntimeInSeconds": 3}))
    description = wait_for(sm, name, finished)
    raw_bodies.assert_valid("DescribeTrainingJob")
    assert (description["TrainingJobStatus"], description["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert statuses(description)[-2:] == ["Stopping", "MaxRuntimeExceeded"]
    assert "FailureReason" not in description
    assert tar_members(s3, description["ModelArtifacts"]["S3ModelArtifacts"]) == {"checkpoint.txt": b"partial"}


def test_stop_training_job(sm: Any, raw_bodies: RawBodies, inputs: dict[str, str]) -> None:
    name = job_name("stop")
    create(sm, raw_bodies, job_request(name, inputs, program="sleep.py"))
    assert wait_for(sm, name, training)["SecondaryStatus"] == "Training"
    assert sm.stop_training_job(TrainingJobName=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    description = wait_for(sm, name, finished, timeout_s=15)
    raw_bodies.assert_valid("DescribeTrainingJob")
    assert (description["TrainingJobStatus"], description["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert statuses(description)[-2:] == ["Stopping", "Stopped"]
    assert_error(
        lambda: sm.stop_training_job(TrainingJobName=name),
        "ValidationException",
        "The request was rejected because the training job is in status Stopped.",
    )


def test_unsupported_image_fails_the_job_with_the_reason(
    sm: Any, raw_bodies: RawBodies, inputs: dict[str, str]
) -> None:
    name = job_name("xgb")
    image = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    request = job_request(name, inputs, AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"})
    create(sm, raw_bodies, request)
    description = wait_for(sm, name, finished, timeout_s=5)
    raw_bodies.assert_valid("DescribeTrainingJob")
    assert description["TrainingJobStatus"] == "Failed"
    assert f"cannot run image '{image}'" in description["FailureReason"]
    assert "Supported images: <registry>/pytorch-training:<tag>" in description["FailureReason"]

    job_arn = description["TrainingJobArn"]
    assert_error(
        lambda: sm.create_training_job(**request),
        "ResourceInUse",
        "Training job names must be unique within an AWS account and region, and a training job with this name "
        f"already exists ({job_arn})",
    )


def test_unknown_job_is_not_found(sm: Any) -> None:
    missing = job_name("missing")
    not_found = "Requested resource not found."
    assert_error(lambda: sm.describe_training_job(TrainingJobName=missing), "ValidationException", not_found)
    assert_error(lambda: sm.stop_training_job(TrainingJobName=missing), "ValidationException", not_found)


def test_list_training_jobs_pages_and_filters(sm: Any, raw_bodies: RawBodies, completed_job: dict[str, Any]) -> None:
    # Runs after the other tests created their jobs, so there are several to page through.
    names: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = sm.list_training_jobs(NameContains=RUN_ID, MaxResults=1, SortBy="Name", SortOrder="Ascending", **token)
        raw_bodies.assert_valid("ListTrainingJobs")
        names += [s["TrainingJobName"] for s in page["TrainingJobSummaries"]]
        if "NextToken" not in page:
            break
        assert page["NextToken"]  # never an empty string: Airflow would loop forever
        token = {"NextToken": page["NextToken"]}
    assert len(names) >= 2 and names == sorted(names)
    completed = sm.list_training_jobs(NameContains=RUN_ID, StatusEquals="Completed")["TrainingJobSummaries"]
    assert sorted(s["TrainingJobName"] for s in completed) == sorted(
        [completed_job["TrainingJobName"], job_name("entry-a"), job_name("entry-b")]
    )


def _start_sleeping_job(
    sm: Any, raw_bodies: RawBodies, inputs: dict[str, str], label: str, logs: Any
) -> tuple[str, int]:
    name = job_name(label)
    create(sm, raw_bodies, job_request(name, inputs, program="sleep.py"))
    assert wait_for(sm, name, training)["SecondaryStatus"] == "Training"
    _, messages = log_lines(logs, name, containing="scones-sleep pid=")
    pids = [int(m.split("pid=")[1]) for m in messages if "scones-sleep pid=" in m]
    assert pids, messages
    return name, pids[0]


@pytest.mark.timeout(90)
def test_restart_fails_running_jobs_and_kills_their_process(
    sm: Any, raw_bodies: RawBodies, inputs: dict[str, str], logs: Any, local_cloud: LocalCloud
) -> None:
    name, pid = _start_sleeping_job(sm, raw_bodies, inputs, "restart", logs)
    local_cloud.restart_sagemaker()
    description = sm.describe_training_job(TrainingJobName=name)
    raw_bodies.assert_valid("DescribeTrainingJob")
    assert (description["TrainingJobStatus"], description["FailureReason"]) == ("Failed", SHUTDOWN_REASON)
    assert description["SecondaryStatusTransitions"][-1]["Status"] == "Failed"
    assert process_gone(pid)
