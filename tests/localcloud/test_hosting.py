"""Endpoints that really serve, through plain boto3 against the real services: CreateEndpoint ->
InService -> InvokeEndpoint, model errors, blue/green updates without a failed request, failed
updates and deployments, variant weights and TargetVariant, a restart of the local
SageMaker, and DeleteEndpoint stopping the worker processes. The models are pure-Python
`inference.py` fixtures packed into model.tar.gz by the tests."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localcloud import launcher
from localcloud.config import aws_managed_s3_key_arn
from tests.conftest import PYTORCH_INFERENCE_IMAGE, ROLE_ARN, LocalCloud
from tests.localcloud.helpers import (
    assert_valid_output,
    error_of,
    error_response,
    live_processes,
    unique,
    wait_for,
)

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).with_name("hosting_fixtures")
ACCOUNT = "000000000000"
LOGS_URL = "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logEventViewer:group="
DEPLOY_TIMEOUT_S = 60.0


# --- helpers ------------------------------------------------------------------------------------
def model_archive(label: str, fixture: str = "echo_model") -> bytes:
    """model.tar.gz with model.json at the root and the fixture's code/ beside it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(FIXTURES / fixture / "code", arcname="code")
        payload = json.dumps({"name": label}).encode()
        info = tarfile.TarInfo("model.json")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def worker_pids(local_cloud: LocalCloud, endpoint: str) -> set[int]:
    """Live serving_worker processes whose model directory belongs to this endpoint."""
    marker = f"{local_cloud.cfg.sagemaker_home}/endpoints/{endpoint}/"

    def is_worker(proc: Path) -> bool:
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        return "serving_worker.py" in cmdline and marker in cmdline

    return live_processes(is_worker)


class Deployer:
    """Builds models, configs and endpoints with unique names in one bucket."""

    def __init__(self, sagemaker: Any, s3: Any, bucket: str) -> None:
        self.sagemaker, self.s3, self.bucket = sagemaker, s3, bucket

    def model(
        self,
        label: str,
        *,
        fixture: str = "echo_model",
        upload: bool = True,
        image: str = PYTORCH_INFERENCE_IMAGE,
        environment: dict[str, str] | None = None,
    ) -> str:
        name = unique(f"model-{label}")
        key = f"models/{name}/model.tar.gz"
        if upload:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=model_archive(label, fixture))
        container = {
            "Image": image,
            "ModelDataUrl": f"s3://{self.bucket}/{key}",
            "Environment": {"GREETING": f"hello from {label}"} | (environment or {}),
        }
        self.sagemaker.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=ROLE_ARN)
        return name

    def config(self, *variants: tuple[str, str, float], **extra: Any) -> str:
        name = unique("config")
        production_variants = [
            {
                "VariantName": variant,
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": weight,
            }
            for variant, model, weight in variants
        ]
        self.sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=production_variants, **extra)
        return name

    def endpoint(self, config: str, *, wait_for_status: str | None = "InService") -> str:
        name = unique("ep")
        created = self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
        assert created["EndpointArn"] == f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{name}"
        assert_valid_output("CreateEndpoint", created)
        if wait_for_status:
            assert self.wait_settled(name)["EndpointStatus"] == wait_for_status
        return name

    def wait_settled(self, name: str, timeout_s: float = DEPLOY_TIMEOUT_S) -> dict[str, Any]:
        """The description once the endpoint is neither Creating nor Updating."""

        def settled() -> dict[str, Any] | None:
            described = self.sagemaker.describe_endpoint(EndpointName=name)
            return None if described["EndpointStatus"] in ("Creating", "Updating") else described

        described = wait_for(settled, timeout_s)
        assert described, f"endpoint {name} did not settle in {timeout_s}s"
        assert_valid_output("DescribeEndpoint", described)
        return described

    def delete(self, name: str) -> None:
        self.sagemaker.delete_endpoint(EndpointName=name)
        gone = wait_for(lambda: error_of_describe(self.sagemaker, name), 30)
        assert gone, f"endpoint {name} was not deleted"


def error_of_describe(sagemaker: Any, name: str) -> bool:
    try:
        sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as error:
        return bool(error.response["Error"]["Code"] == "ValidationException")
    return False


def invoke_json(
    runtime: Any, endpoint: str, payload: Any = None, **kwargs: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    response = runtime.invoke_endpoint(
        EndpointName=endpoint, Body=json.dumps(payload or {"x": 1}), ContentType="application/json", **kwargs
    )
    return json.loads(response["Body"].read()), response


def serves(runtime: Any, endpoint: str, model: str) -> bool:
    try:
        return invoke_json(runtime, endpoint)[0]["model"] == model
    except ClientError:
        return False


@pytest.fixture(scope="module")
def deployer(sagemaker: Any, s3: Any) -> Deployer:
    bucket = unique("hosting")
    s3.create_bucket(Bucket=bucket)
    return Deployer(sagemaker, s3, bucket)


# --- tests --------------------------------------------------------------------------------------
def test_endpoint_serves_predictions_and_reports_model_errors(
    deployer: Deployer, sagemaker: Any, runtime: Any, logs: Any
) -> None:
    config = deployer.config(("AllTraffic", deployer.model("blue"), 1.0))
    name = deployer.endpoint(config, wait_for_status=None)
    first = sagemaker.describe_endpoint(EndpointName=name)  # right after Create, as Airflow's waiter does
    assert first["EndpointStatus"] in ("Creating", "InService")
    assert_valid_output("DescribeEndpoint", first)

    described = deployer.wait_settled(name)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == config
    [variant] = described["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    assert (variant["CurrentInstanceCount"], variant["CurrentWeight"]) == (1, 1.0)
    assert variant["DeployedImages"][0]["SpecifiedImage"] == PYTORCH_INFERENCE_IMAGE

    prediction, response = invoke_json(runtime, name)
    assert prediction == {
        "text": '{"x": 1}',
        "received_type": "str",
        "content_type": "application/json",
        "model": "blue",
        "greeting": "hello from blue",
    }
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert response["ContentType"] == "application/json"
    png = runtime.invoke_endpoint(EndpointName=name, Body=b"\x89PNG\r\n", ContentType="image/png", Accept="*/*")
    assert json.loads(png["Body"].read())["received_type"] == "bytes"

    error = error_response(
        runtime.invoke_endpoint, EndpointName=name, Body=b"boom", ContentType="application/octet-stream"
    )
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["Error"]["Message"] == (
        'Received server error (500) from primary with message "boom: this model refuses the input". '
        f"See {LOGS_URL}/aws/sagemaker/Endpoints/{name} in account {ACCOUNT} for more information."
    )
    assert error["OriginalStatusCode"] == 500
    assert invoke_json(runtime, name)[0]["model"] == "blue"  # the worker keeps serving after a model error

    def logged_messages() -> str:
        group = f"/aws/sagemaker/Endpoints/{name}"
        [stream] = logs.describe_log_streams(logGroupName=group)["logStreams"]
        assert stream["logStreamName"].startswith("AllTraffic/i-")
        events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True)[
            "events"
        ]
        return "\n".join(e["message"] for e in events)

    assert "ValueError: boom: this model refuses the input" in wait_for(  # the traceback reached CloudWatch
        lambda: "ValueError" in logged_messages() and logged_messages(), 10
    )

    listed = sagemaker.list_endpoints(NameContains=name)
    assert [e["EndpointName"] for e in listed["Endpoints"]] == [name]
    assert listed["Endpoints"][0]["EndpointStatus"] == "InService"
    assert_valid_output("ListEndpoints", listed)
    deployer.delete(name)


def test_control_plane_errors_use_aws_codes_and_messages(deployer: Deployer, sagemaker: Any, runtime: Any) -> None:
    ghost = unique("ghost")
    ghost_arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{ghost}"
    for call in (sagemaker.describe_endpoint, sagemaker.delete_endpoint):
        assert error_of(call, EndpointName=ghost) == {
            "Code": "ValidationException",
            "Message": f'Could not find endpoint "{ghost_arn}".',
        }
    assert error_of(sagemaker.update_endpoint, EndpointName=ghost, EndpointConfigName="c")["Message"] == (
        f'Could not find endpoint "{ghost_arn}".'
    )
    assert error_of(sagemaker.create_endpoint, EndpointName=ghost, EndpointConfigName="no-such-config") == {
        "Code": "ValidationException",
        "Message": 'Could not find endpoint configuration "no-such-config".',
    }
    assert error_of(runtime.invoke_endpoint, EndpointName=ghost, Body=b"{}") == {
        "Code": "ValidationError",
        "Message": f"Endpoint {ghost} of account {ACCOUNT} not found.",
    }


def test_missing_model_data_fails_the_endpoint_which_then_accepts_only_delete(
    deployer: Deployer, sagemaker: Any, runtime: Any
) -> None:
    model = deployer.model("absent", upload=False)
    config = deployer.config(("AllTraffic", model, 1.0))
    name = deployer.endpoint(config, wait_for_status="Failed")
    described = sagemaker.describe_endpoint(EndpointName=name)
    url = sagemaker.describe_model(ModelName=model)["PrimaryContainer"]["ModelDataUrl"]
    assert url in described["FailureReason"]
    assert described["FailureReason"].startswith("Failed to download model data")

    duplicate = error_of(sagemaker.create_endpoint, EndpointName=name, EndpointConfigName=config)
    # Airflow's SageMakerEndpointOperator switches to UpdateEndpoint on exactly this prefix.
    assert (
        duplicate["Message"]
        == f'Cannot create already existing endpoint "arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{name}".'
    )
    assert (
        error_of(sagemaker.update_endpoint, EndpointName=name, EndpointConfigName=config)["Code"]
        == "ValidationException"
    )
    assert error_of(runtime.invoke_endpoint, EndpointName=name, Body=b"{}")["Code"] == "ValidationError"
    deployer.delete(name)


def test_unrunnable_image_and_broken_handlers_fail_with_reasons(deployer: Deployer, sagemaker: Any) -> None:
    sklearn = deployer.model(
        "sklearn", image="683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1"
    )
    by_image = deployer.endpoint(deployer.config(("AllTraffic", sklearn, 1.0)), wait_for_status="Failed")
    assert "cannot run image" in sagemaker.describe_endpoint(EndpointName=by_image)["FailureReason"]

    two_styles = deployer.model("two-styles", fixture="two_styles_model")
    by_handlers = deployer.endpoint(deployer.config(("Primary", two_styles, 1.0)), wait_for_status="Failed")
    assert sagemaker.describe_endpoint(EndpointName=by_handlers)["FailureReason"] == (
        "The primary container for production variant Primary did not pass the ping health check. "
        "Please check CloudWatch logs for this endpoint."
    )


def test_model_server_workers_answer_side_by_side_and_a_bad_count_fails_the_endpoint(
    deployer: Deployer, sagemaker: Any, runtime: Any, logs: Any, local_cloud: LocalCloud
) -> None:
    two = deployer.model("two-workers", environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    name = deployer.endpoint(deployer.config(("AllTraffic", two, 1.0)))
    pids = worker_pids(local_cloud, name)
    assert len(pids) == 2
    [variant] = sagemaker.describe_endpoint(EndpointName=name)["ProductionVariants"]
    assert variant["CurrentInstanceCount"] == 1  # workers are processes of one instance, not instances

    # An idle pool spreads requests (ties go round robin): both workers answer.
    answered = {
        json.loads(runtime.invoke_endpoint(EndpointName=name, Body=b"whoami", ContentType="text/plain")["Body"].read())[
            "pid"
        ]
        for _ in range(6)
    }
    assert answered == pids

    # Two slow requests at once (2 s each) go to the two workers: together they take about one's time, where a
    # single worker answers them one after the other (4 s).
    finished: list[float] = []
    began = time.monotonic()

    def slow() -> None:
        runtime.invoke_endpoint(EndpointName=name, Body=b"slow", ContentType="text/plain")
        finished.append(time.monotonic() - began)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(finished) == 2 and max(finished) < 3.5, finished
    deployer.delete(name)

    many = deployer.model("many-workers", environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "many"})
    refused = deployer.endpoint(deployer.config(("AllTraffic", many, 1.0)), wait_for_status="Failed")
    assert sagemaker.describe_endpoint(EndpointName=refused)["FailureReason"] == (
        "The primary container for production variant AllTraffic did not pass the ping health check. "
        "Please check CloudWatch logs for this endpoint."
    )
    group = f"/aws/sagemaker/Endpoints/{refused}"
    [stream] = logs.describe_log_streams(logGroupName=group)["logStreams"]

    def logged() -> str:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True)
        return "\n".join(e["message"] for e in events["events"])

    assert "SAGEMAKER_MODEL_SERVER_WORKERS must be a positive whole number of workers, got 'many'" in wait_for(
        lambda: "many" in logged() and logged(), 10
    )
    assert worker_pids(local_cloud, refused) == set()
    deployer.delete(refused)


def test_update_is_blue_green_and_loses_no_request(
    deployer: Deployer, sagemaker: Any, runtime: Any, local_cloud: LocalCloud
) -> None:
    name = deployer.endpoint(deployer.config(("AllTraffic", deployer.model("blue"), 1.0)))
    blue_pids = worker_pids(local_cloud, name)
    assert len(blue_pids) == 1
    green_config = deployer.config(("AllTraffic", deployer.model("green"), 1.0))

    seen: list[str] = []
    failures: list[Exception] = []
    stop = threading.Event()

    def keep_invoking() -> None:
        while not stop.is_set():
            try:
                seen.append(invoke_json(runtime, name)[0]["model"])
            except Exception as error:  # any failure at all breaks the blue/green promise
                failures.append(error)

    invoker = threading.Thread(target=keep_invoking)
    invoker.start()
    try:
        wait_for(lambda: len(seen) >= 5, 10)
        updated = sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=green_config)
        assert_valid_output("UpdateEndpoint", updated)
        assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Updating"
        described = deployer.wait_settled(name)
        wait_for(lambda: worker_pids(local_cloud, name).isdisjoint(blue_pids), 10)
        count_at_switch = len(seen)
        wait_for(lambda: len(seen) >= count_at_switch + 5, 10)
    finally:
        stop.set()
        invoker.join(30)
    assert failures == []
    assert described["EndpointStatus"] == "InService" and described["EndpointConfigName"] == green_config
    assert "FailureReason" not in described
    assert seen[0] == "blue" and seen[-1] == "green"
    switch = seen.index("green")
    assert set(seen[:switch]) == {"blue"} and set(seen[switch:]) == {"green"}  # routing switched once, atomically
    assert worker_pids(local_cloud, name).isdisjoint(blue_pids)  # the old worker was stopped
    deployer.delete(name)


def test_failed_update_returns_to_the_old_config(deployer: Deployer, sagemaker: Any, runtime: Any) -> None:
    old_config = deployer.config(("AllTraffic", deployer.model("blue"), 1.0))
    name = deployer.endpoint(old_config)
    broken_config = deployer.config(("AllTraffic", deployer.model("missing", upload=False), 1.0))
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=broken_config)
    described = deployer.wait_settled(name)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == old_config
    assert described["FailureReason"].startswith("Failed to download model data")
    assert invoke_json(runtime, name)[0]["model"] == "blue"
    deployer.delete(name)


def test_weights_route_traffic_and_target_variant_overrides(
    deployer: Deployer, sagemaker: Any, runtime: Any, s3: Any
) -> None:
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 0,  # the summary is what this test checks; delivery is test_capture's
        "DestinationS3Uri": f"s3://{deployer.bucket}/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}],
    }
    config = deployer.config(
        ("Main", deployer.model("main"), 1.0), ("Shadow", deployer.model("shadow"), 0.0), DataCaptureConfig=capture
    )
    name = deployer.endpoint(config)
    described = sagemaker.describe_endpoint(EndpointName=name)
    assert described["DataCaptureConfig"] == {
        "EnableCapture": True,
        "CaptureStatus": "Started",
        "CurrentSamplingPercentage": 0,
        "DestinationS3Uri": f"s3://{deployer.bucket}/capture",
        # No key named: the account's aws/s3 key, the very key S3 itself uses for an aws:kms write without one.
        "KmsKeyId": s3.put_object(Bucket=deployer.bucket, Key="kms", Body=b"", ServerSideEncryption="aws:kms")[
            "SSEKMSKeyId"
        ],
    }
    assert described["DataCaptureConfig"]["KmsKeyId"] == aws_managed_s3_key_arn()
    for variant in described["ProductionVariants"]:
        [image] = variant["DeployedImages"]
        repository = PYTORCH_INFERENCE_IMAGE.rsplit(":", 1)[0]
        assert image["SpecifiedImage"] == PYTORCH_INFERENCE_IMAGE
        assert re.fullmatch(rf"{re.escape(repository)}@sha256:[0-9a-f]{{64}}", image["ResolvedImage"])
    assert [(v["VariantName"], v["CurrentWeight"]) for v in described["ProductionVariants"]] == [
        ("Main", 1.0),
        ("Shadow", 0.0),
    ]

    routed = [invoke_json(runtime, name) for _ in range(20)]
    assert {(p["model"], r["InvokedProductionVariant"]) for p, r in routed} == {("main", "Main")}
    prediction, response = invoke_json(runtime, name, TargetVariant="Shadow")
    assert (prediction["model"], response["InvokedProductionVariant"]) == ("shadow", "Shadow")
    unknown = error_of(runtime.invoke_endpoint, EndpointName=name, Body=b"{}", TargetVariant="Nope")
    assert unknown["Code"] == "ValidationError"
    deployer.delete(name)


def test_endpoint_survives_a_restart_of_the_local_sagemaker(
    deployer: Deployer, sagemaker: Any, runtime: Any, local_cloud: LocalCloud
) -> None:
    name = deployer.endpoint(deployer.config(("AllTraffic", deployer.model("durable"), 1.0)))
    before = worker_pids(local_cloud, name)
    local_cloud.restart_sagemaker()
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
    # The default client retries ModelNotReadyException (429) while the worker comes back.
    assert wait_for(lambda: serves(runtime, name, "durable"), 30, 0.25)
    after = worker_pids(local_cloud, name)
    assert len(after) == 1 and after.isdisjoint(before)  # a fresh worker; the old one did not linger
    deployer.delete(name)


def test_restart_fails_creating_endpoints_and_recovers_after_a_crash(
    deployer: Deployer, sagemaker: Any, runtime: Any, local_cloud: LocalCloud
) -> None:
    slow = deployer.model("slow", environment={"LOAD_DELAY_S": "30"})
    creating = deployer.endpoint(deployer.config(("AllTraffic", slow, 1.0)), wait_for_status=None)
    serving = deployer.endpoint(deployer.config(("AllTraffic", deployer.model("sturdy"), 1.0)))
    assert wait_for(lambda: worker_pids(local_cloud, creating), 10)  # its worker is loading the model
    pid_file = launcher.services(local_cloud.cfg)[1].pid_file(local_cloud.cfg)
    doomed = worker_pids(local_cloud, creating) | worker_pids(local_cloud, serving)

    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # a crash: no shutdown hook runs
    local_cloud.restart_sagemaker()

    failed = sagemaker.describe_endpoint(EndpointName=creating)
    assert failed["EndpointStatus"] == "Failed"
    assert "restarted" in failed["FailureReason"]
    assert wait_for(lambda: serves(runtime, serving, "sturdy"), 30, 0.25)
    assert wait_for(lambda: not (doomed & (worker_pids(local_cloud, creating) | worker_pids(local_cloud, serving))), 10)
    assert worker_pids(local_cloud, creating) == set()
    deployer.delete(creating)
    deployer.delete(serving)


def test_delete_stops_the_worker_processes(
    deployer: Deployer, sagemaker: Any, runtime: Any, local_cloud: LocalCloud
) -> None:
    model = deployer.model("short-lived")
    config = deployer.config(("AllTraffic", model, 1.0))
    name = deployer.endpoint(config)
    assert len(worker_pids(local_cloud, name)) == 1
    assert_valid_output("DeleteEndpoint", sagemaker.delete_endpoint(EndpointName=name))
    assert wait_for(lambda: error_of_describe(sagemaker, name), 30)
    assert worker_pids(local_cloud, name) == set()
    assert error_of(runtime.invoke_endpoint, EndpointName=name, Body=b"{}")["Code"] == "ValidationError"
