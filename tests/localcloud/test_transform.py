"""Batch transform through plain boto3 against the real services: outputs per input (subfolders
included), a failing input, stop, line splitting, and the AWS errors for duplicates, unknown jobs,
unknown models, unrunnable images and empty inputs. Every response must fit botocore's shape."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from typing import Any

import pytest

from localcloud import launcher
from localcloud.sagemaker.runners.transform import TransformSettings, assemble, output_uri, split_records
from tests.conftest import ROLE_ARN
from tests.localcloud.helpers import assert_valid_output, create_pure_python_model, error_of

pytestmark = pytest.mark.e2e

BUCKET = "transform-tests"
TERMINAL = {"Completed", "Failed", "Stopped"}


@pytest.fixture(scope="module")
def model_name(sagemaker: Any, s3: Any) -> str:
    s3.create_bucket(Bucket=BUCKET)
    return create_pure_python_model(sagemaker, s3, BUCKET, "transform-model")


def put_inputs(s3: Any, prefix: str, objects: dict[str, bytes]) -> str:
    for relative, body in objects.items():
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{relative}", Body=body)
    return f"s3://{BUCKET}/{prefix}"


def job_request(name: str, model: str, input_uri: str, output_uri: str, **extra: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": model,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": "image/png",
            "SplitType": "None",
        },
        "TransformOutput": {"S3OutputPath": output_uri, "Accept": "application/json"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    for key, value in extra.items():
        if key in ("TransformInput", "TransformOutput"):
            request[key] = request[key] | value
        else:
            request[key] = value
    return request


def wait_terminal(sagemaker: Any, name: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        described = sagemaker.describe_transform_job(TransformJobName=name)
        if described["TransformJobStatus"] in TERMINAL or time.monotonic() > deadline:
            return described
        time.sleep(0.5)


def keys_under(s3: Any, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def read(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


PNG = b"\x89PNG\r\n\x1a\n"


def test_transform_writes_one_out_per_input_keeping_subfolders(sagemaker: Any, s3: Any, model_name: str) -> None:
    inputs = {"a.png": PNG + b"a" * 10, "b.png": PNG + b"b" * 20, "sub/c.png": PNG + b"c" * 30}
    input_uri = put_inputs(s3, "ok/in", inputs)
    created = sagemaker.create_transform_job(
        **job_request("tj-ok", model_name, input_uri + "/", f"s3://{BUCKET}/ok/out", MaxConcurrentTransforms=2)
    )
    assert created["TransformJobArn"] == "arn:aws:sagemaker:us-east-1:000000000000:transform-job/tj-ok"
    assert_valid_output("CreateTransformJob", created)
    assert_valid_output("DescribeTransformJob", sagemaker.describe_transform_job(TransformJobName="tj-ok"))

    described = wait_terminal(sagemaker, "tj-ok")
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert described["TransformStartTime"] <= described["TransformEndTime"]
    assert_valid_output("DescribeTransformJob", described)
    assert keys_under(s3, "ok/out/") == ["ok/out/a.png.out", "ok/out/b.png.out", "ok/out/sub/c.png.out"]
    for relative, body in inputs.items():
        expected = {"bytes": len(body), "head": body[:4].hex(), "scale": 2, "type": "image/png"}
        assert json.loads(read(s3, f"ok/out/{relative}.out")) == expected

    listed = sagemaker.list_transform_jobs(NameContains="tj-ok", StatusEquals="Completed")
    assert [s["TransformJobName"] for s in listed["TransformJobSummaries"]] == ["tj-ok"]
    assert "NextToken" not in listed
    assert_valid_output("ListTransformJobs", listed)


def test_a_failing_input_fails_the_job_and_writes_nothing_for_it(sagemaker: Any, s3: Any, model_name: str) -> None:
    input_uri = put_inputs(s3, "bad/in", {"bad.png": b"FAIL" + PNG, "good.png": PNG + b"g"})
    sagemaker.create_transform_job(**job_request("tj-bad", model_name, input_uri, f"s3://{BUCKET}/bad/out"))
    described = wait_terminal(sagemaker, "tj-bad")
    assert described["TransformJobStatus"] == "Failed"
    assert f"s3://{BUCKET}/bad/in/bad.png" in described["FailureReason"]
    assert "cannot classify this scone" in described["FailureReason"]
    assert f"s3://{BUCKET}/bad/out/bad.png.out" not in [f"s3://{BUCKET}/{k}" for k in keys_under(s3, "bad/out/")]
    assert_valid_output("DescribeTransformJob", described)


def wait_for_keys(s3: Any, prefix: str, timeout_s: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while not (keys := keys_under(s3, prefix)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return keys


def test_stop_lets_in_flight_inputs_finish_then_ends_stopped(sagemaker: Any, s3: Any, model_name: str) -> None:
    input_uri = put_inputs(s3, "slow/in", {f"{i}.png": b"SLOW" + PNG for i in range(6)})  # 1 s each, one at a time
    sagemaker.create_transform_job(**job_request("tj-stop", model_name, input_uri, f"s3://{BUCKET}/slow/out"))
    assert wait_for_keys(s3, "slow/out/"), "the first output never appeared"
    sagemaker.stop_transform_job(TransformJobName="tj-stop")
    assert sagemaker.describe_transform_job(TransformJobName="tj-stop")["TransformJobStatus"] in ("Stopping", "Stopped")
    described = wait_terminal(sagemaker, "tj-stop")
    assert described["TransformJobStatus"] == "Stopped"
    assert "FailureReason" not in described
    written = keys_under(s3, "slow/out/")
    assert 1 <= len(written) < 6
    for key in written:  # what was in flight at the stop was completed, not cut short
        assert json.loads(read(s3, key))["head"] == b"SLOW".hex()
    error = error_of(sagemaker.stop_transform_job, TransformJobName="tj-stop")
    assert error == {
        "Code": "ValidationException",
        "Message": "The request was rejected because the transform job is in status Stopped.",
    }


def start_slow_job(sagemaker: Any, s3: Any, model_name: str, name: str) -> None:
    """A 20-second job, returned once its first output shows it is really running."""
    input_uri = put_inputs(s3, f"{name}/in", {f"{i}.png": b"SLOW" + PNG for i in range(20)})
    sagemaker.create_transform_job(**job_request(name, model_name, input_uri, f"s3://{BUCKET}/{name}/out"))
    assert wait_for_keys(s3, f"{name}/out/"), "the job never started"


def test_a_job_running_when_the_server_restarts_fails_with_a_reason(
    local_cloud: Any, sagemaker: Any, s3: Any, model_name: str
) -> None:
    start_slow_job(sagemaker, s3, model_name, "tj-restart")
    local_cloud.restart_sagemaker()
    described = sagemaker.describe_transform_job(TransformJobName="tj-restart")
    assert described["TransformJobStatus"] == "Failed"
    assert "while this job was running" in described["FailureReason"]
    assert described["TransformEndTime"] >= described["TransformStartTime"]


def test_a_job_lost_in_a_server_crash_is_failed_on_recovery(
    local_cloud: Any, sagemaker: Any, s3: Any, model_name: str
) -> None:
    start_slow_job(sagemaker, s3, model_name, "tj-crash")
    service = launcher.services(local_cloud.cfg)[1]
    pid = launcher.read_pid(service.pid_file(local_cloud.cfg))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # no shutdown hook runs: only recover() can settle the job
    launcher.stop(service, local_cloud.cfg)  # reaps it and clears the pid file
    launcher.start(service, local_cloud.cfg)
    described = sagemaker.describe_transform_job(TransformJobName="tj-crash")
    assert described["TransformJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("The local SageMaker restarted while this job was running")


def test_line_split_csv_is_assembled_line_by_line(sagemaker: Any, s3: Any, model_name: str) -> None:
    input_uri = put_inputs(s3, "csv/in", {"rows.csv": b"1,2\n3,4\n\n5,6\n"})
    request = job_request(
        "tj-csv",
        model_name,
        input_uri,
        f"s3://{BUCKET}/csv/out",
        BatchStrategy="SingleRecord",
        TransformInput={"ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"Accept": "text/csv", "AssembleWith": "Line"},
    )
    sagemaker.create_transform_job(**request)
    described = wait_terminal(sagemaker, "tj-csv")
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert read(s3, "csv/out/rows.csv.out") == b"2.0,4.0\n6.0,8.0\n10.0,12.0\n"


def test_duplicate_name_is_resource_in_use(sagemaker: Any, s3: Any, model_name: str) -> None:
    input_uri = put_inputs(s3, "dup/in", {"x.png": PNG})
    request = job_request(f"tj-dup-{uuid.uuid4().hex[:6]}", model_name, input_uri, f"s3://{BUCKET}/dup/out")
    sagemaker.create_transform_job(**request)
    error = error_of(sagemaker.create_transform_job, **request)
    job_arn = f"arn:aws:sagemaker:us-east-1:000000000000:transform-job/{request['TransformJobName']}"
    assert error["Code"] == "ResourceInUse"
    assert error["Message"].endswith(f"a transform job with this name already exists ({job_arn})")
    wait_terminal(sagemaker, request["TransformJobName"])


def test_unknown_model_and_unknown_job_are_validation_exceptions(sagemaker: Any, s3: Any) -> None:
    input_uri = put_inputs(s3, "nomodel/in", {"x.png": PNG})
    error = error_of(
        sagemaker.create_transform_job, **job_request("tj-nomodel", "no-such-model", input_uri, f"s3://{BUCKET}/o")
    )
    assert error == {
        "Code": "ValidationException",
        "Message": 'Could not find model "arn:aws:sagemaker:us-east-1:000000000000:model/no-such-model".',
    }
    error = error_of(sagemaker.describe_transform_job, TransformJobName="tj-nomodel")
    assert error == {"Code": "ValidationException", "Message": "Could not find requested job with name tj-nomodel"}
    assert error_of(sagemaker.stop_transform_job, TransformJobName="tj-nomodel")["Code"] == "ValidationException"


def test_empty_input_prefix_is_refused_at_create(sagemaker: Any, model_name: str) -> None:
    error = error_of(
        sagemaker.create_transform_job,
        **job_request("tj-empty", model_name, f"s3://{BUCKET}/nothing-here/", f"s3://{BUCKET}/o"),
    )
    assert error["Code"] == "ValidationException"
    assert error["Message"].startswith(f'No S3 objects found under S3 URL "s3://{BUCKET}/nothing-here/" given in input')


def test_an_image_the_local_cloud_cannot_run_fails_the_job_with_a_reason(sagemaker: Any, s3: Any) -> None:
    sagemaker.create_model(
        ModelName="xgb-model",
        PrimaryContainer={
            "Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
            "ModelDataUrl": f"s3://{BUCKET}/m.tar.gz",
        },
        ExecutionRoleArn=ROLE_ARN,
    )
    input_uri = put_inputs(s3, "xgb/in", {"x.csv": b"1,2"})
    sagemaker.create_transform_job(**job_request("tj-xgb", "xgb-model", input_uri, f"s3://{BUCKET}/xgb/out"))
    described = sagemaker.describe_transform_job(TransformJobName="tj-xgb")
    assert described["TransformJobStatus"] == "Failed"
    assert "cannot run image" in described["FailureReason"]
    assert_valid_output("DescribeTransformJob", described)


def test_airflow_transform_operator_runs_unchanged(sagemaker: Any, s3: Any, model_name: str) -> None:
    """The provider's own calls (existence checks, create, polling, final describes) through
    AIRFLOW_CONN_AWS_DEFAULT; no XCom push, so no metadata DB is needed."""
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTransformOperator

    input_uri = put_inputs(s3, "airflow/in", {"x.png": PNG + b"x", "y/z.png": PNG + b"z"})
    job = f"tj-airflow-{uuid.uuid4().hex[:8]}"
    config = job_request(job, model_name, input_uri, f"s3://{BUCKET}/airflow/out")
    operator = SageMakerTransformOperator(
        task_id="transform", config={"Transform": config}, check_interval=1, do_xcom_push=False
    )
    result = operator.execute(context={})  # type: ignore[arg-type]
    assert result["Transform"]["TransformJobStatus"] == "Completed"
    assert result["Model"]["ModelName"] == model_name
    assert sagemaker.describe_transform_job(TransformJobName=job)["TransformJobStatus"] == "Completed"
    assert keys_under(s3, "airflow/out/") == ["airflow/out/x.png.out", "airflow/out/y/z.png.out"]


# --- the runner's pure parts --------------------------------------------------------------------
def test_output_uri_keeps_the_relative_key_and_adds_out() -> None:
    assert output_uri("s3://b/out", "a/x.png") == "s3://b/out/a/x.png.out"
    assert output_uri("s3://b/out/", "x.png") == "s3://b/out/x.png.out"
    assert output_uri("s3://b", "x.png") == "s3://b/x.png.out"


def test_multi_record_batches_lines_up_to_the_payload_limit() -> None:
    settings = TransformSettings(split_type="Line", batch_strategy="MultiRecord", max_payload_bytes=8)
    assert split_records(b"aaa\nbbb\n\nccc\n", settings) == [b"aaa\nbbb\n", b"ccc\n"]
    single = TransformSettings(split_type="Line", batch_strategy="SingleRecord")
    assert split_records(b"aaa\nbbb", single) == [b"aaa", b"bbb"]
    assert split_records(b"aaa\nbbb", TransformSettings()) == [b"aaa\nbbb"]  # SplitType None: the whole object


def test_assemble_with_line_ends_every_reply_with_one_newline() -> None:
    assert assemble([b"1", b"2\n"], "Line") == b"1\n2\n"
    assert assemble([b"1", b"2"], "None") == b"12"
