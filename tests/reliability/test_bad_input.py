"""Scenario 5, bad input: each kind of hostile or broken input gets a clear 4xx (with the AWS error code boto3 users
already handle) or a named failure, and the service it was sent to keeps serving afterwards.

Endpoint bodies, control-plane names and enums, a tampered CIFAR archive, a pickle that imports os.system, a
model.tar.gz that escapes its directory, out-of-range DAG Params, and Lambda events that miss keys."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import ParamValidationError

from include.scones.cifar import UnsafePickleError, restricted_loads
from include.scones.lambda_deploy import FUNCTIONS
from include.scones.state_machine_deploy import STATE_MACHINE_NAME
from tests.conftest import LocalCloud, free_port
from tests.localcloud.helpers import error_of, error_response, wait_for
from tests.localcloud.test_control_plane import create_model
from tests.localcloud.test_hosting import Deployer
from tests.localcloud.test_ministack_patch import invoke
from tests.reliability.conftest import BUCKET, Clients, classifies, held_out_image
from tests.reliability.dag_runs import LoggedRun, run_dag
from tests.scones.helpers import ShellPayload, write_tar_gz
from tests.scones.test_cifar import touch_payload, valid_members
from tools.cifar_mirror import serve_archive

SERIALIZE, CLASSIFY, FILTER, COLLECT = (spec.name for spec in FUNCTIONS)


# --- the endpoint ------------------------------------------------------------------------------------------
UNDECODABLE = "could not decode the request body as an image"


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("make_body", "content_type", "status", "code", "says"),
    [
        pytest.param(lambda image: b"\x00garbage\xff" * 64, "image/png", 424, "ModelError", UNDECODABLE, id="garbage"),
        pytest.param(lambda image: image[:200], "image/png", 424, "ModelError", UNDECODABLE, id="truncated-png"),
        pytest.param(lambda image: b"", "image/png", 424, "ModelError", UNDECODABLE, id="empty"),
        pytest.param(
            lambda image: b"x" * 7 * 1024 * 1024, "image/png", 413, "ValidationError", "exceeds the maximum", id="7MB"
        ),
        pytest.param(lambda image: image, "text/plain", 424, "ModelError", "unsupported content type", id="wrong-type"),
    ],
)
def test_the_endpoint_refuses_bad_bodies_clearly_and_keeps_serving(
    aws: Clients,
    deployment: dict[str, Any],
    make_body: Callable[[bytes], bytes],
    content_type: str,
    status: int,
    code: str,
    says: str,
) -> None:
    image = held_out_image(aws, deployment)
    assert wait_for(lambda: classifies(aws, deployment, image), 60, 0.2), "the endpoint should serve before the test"
    error = error_response(
        aws.runtime_first_answer.invoke_endpoint,
        EndpointName=deployment["endpoint_name"],
        ContentType=content_type,
        Body=make_body(image),
    )
    assert (error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]) == (status, code)
    assert says in error["Error"]["Message"], error["Error"]["Message"]
    assert classifies(aws, deployment, image)


# --- the control plane -------------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../x", "Member must satisfy regular expression pattern"),
        ("m" * 64, "Member must have length less than or equal to 63"),
        ("a/../../etc", "Member must satisfy regular expression pattern"),
    ],
)
def test_bad_names_are_refused_before_anything_is_stored(aws: Clients, name: str, fragment: str) -> None:
    error = error_of(create_model, sagemaker=aws.sagemaker, name=name)
    assert error["Code"] == "ValidationException"
    assert fragment in error["Message"] and "at 'modelName'" in error["Message"]
    assert all(m["ModelName"] != name for m in aws.sagemaker.list_models(MaxResults=100)["Models"])


@pytest.mark.e2e
def test_unknown_enum_is_refused(aws: Clients) -> None:
    error = error_of(aws.sagemaker.list_models, SortBy="Colour")
    assert error["Code"] == "ValidationException"
    assert (
        "at 'sortBy' failed to satisfy constraint: Member must satisfy enum value set: [Name, CreationTime]"
        in error["Message"]
    )
    assert "Models" in aws.sagemaker.list_models(SortBy="Name")


# --- a model.tar.gz that escapes its directory -------------------------------------------------------------
def escaping_archive(name: str, link_target: str | None) -> bytes:
    """model.tar.gz with one member `name`: a file, or a symlink to `link_target`."""
    member = tarfile.TarInfo(name)
    content = b"planted"
    if link_target is None:
        member.size = len(content)
    else:
        member.type, member.linkname, content = tarfile.SYMTYPE, link_target, b""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.addfile(member, io.BytesIO(content))
    return buffer.getvalue()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("name", "link_target", "reason"),
    [
        ("../../escaped-{id}.txt", None, "would escape the extraction directory"),
        ("/tmp/escaped-{id}.txt", None, "would escape the extraction directory"),
        ("code/escaped-{id}.txt", "../../../../escaped-{id}.txt", "points outside the extraction directory"),
    ],
    ids=["dot-dot", "absolute", "symlink-out"],
)
def test_a_model_archive_escaping_its_directory_fails_the_endpoint_and_writes_nothing(
    cloud: LocalCloud, aws: Clients, deployment: dict[str, Any], name: str, link_target: str | None, reason: str
) -> None:
    marker = uuid.uuid4().hex[:8]
    deployer = Deployer(aws.sagemaker, aws.s3, BUCKET)
    model = deployer.model("escape", upload=False)
    model_data = aws.sagemaker.describe_model(ModelName=model)["PrimaryContainer"]["ModelDataUrl"]
    archive = escaping_archive(name.format(id=marker), link_target and link_target.format(id=marker))
    aws.s3.put_object(Bucket=BUCKET, Key=model_data.removeprefix(f"s3://{BUCKET}/"), Body=archive)

    endpoint = deployer.endpoint(deployer.config(("AllTraffic", model, 1.0)), wait_for_status="Failed")
    failure = aws.sagemaker.describe_endpoint(EndpointName=endpoint)["FailureReason"]
    assert failure.startswith(f"Failed to extract model data from {model_data}") and reason in failure, failure
    planted = [*cloud.cfg.home.rglob(f"escaped-{marker}.txt"), *Path("/tmp").glob(f"escaped-{marker}.txt")]
    assert planted == []  # nothing was extracted, inside or outside
    deployer.delete(endpoint)
    assert classifies(aws, deployment, held_out_image(aws, deployment))


# --- CIFAR data --------------------------------------------------------------------------------------------
def test_the_shell_payload_is_live_under_plain_pickle(tmp_path: Path) -> None:
    # Guard for the next test: plain pickle really would run the command, so "marker absent" means refused.
    marker = tmp_path / "pwned"
    pickle.loads(touch_payload(marker))
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_refuses_os_system_and_runs_nothing(tmp_path: Path, protocol: int) -> None:
    # Given a pickle whose __reduce__ calls os.system (GLOBAL in old protocols, STACK_GLOBAL in new ones)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(ShellPayload(f"touch {marker}"), protocol=protocol)
    # When loading it with the restricted unpickler
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle global '(posix|os)\.system'"):
        restricted_loads(payload)
    # Then the command never ran
    assert not marker.exists()


@pytest.mark.e2e
def test_a_tampered_cifar_archive_fails_extract_on_its_checksum_and_nothing_is_unpickled(
    aws: Clients, dag_settings: dict[str, str], airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the mirror serves an archive whose `train` pickle runs a shell command, under the expected MD5
    marker = tmp_path / "pwned"
    served = tmp_path / "mirror"
    served.mkdir()
    tampered = write_tar_gz(served / "cifar-100-python.tar.gz", valid_members() | {"train": touch_payload(marker)})
    cache = tmp_path / "cache"
    with serve_archive(tampered) as url:
        monkeypatch.setenv("SCONES_CIFAR_URL", url)
        monkeypatch.setenv("SCONES_CACHE_DIR", str(cache))
        # When the training DAG runs
        logged = run_dag("scones_training_pipeline")
    # Then extract fails once (a retry would download the same bytes), naming the mismatch; nothing downstream ran
    assert (logged.states["extract"], logged.try_number("extract")) == ("failed", 1)
    assert f"checksum mismatch for {url}: expected md5 {dag_settings['SCONES_CIFAR_MD5']}" in logged.log
    assert {logged.states[task] for task in ("transform", "load", "train")} == {"upstream_failed"}
    assert not marker.exists()
    assert [p for p in cache.rglob("*") if p.is_file()] == []  # the download was discarded
    plan = logged.xcom("plan")
    assert aws.sagemaker.list_training_jobs(NameContains=plan["name"])["TrainingJobSummaries"] == []


# --- DAG Params --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("conf", "says"),
    [
        ({"epochs": 0}, "epochs: 0 is less than the minimum of 1"),
        ({"learning_rate": 5}, "learning_rate: 5 is greater than the maximum of 1"),
        ({"training_instance_type": "ml.p3.2xlarge"}, "training_instance_type: 'ml.p3.2xlarge' is not one of"),
    ],
    ids=["epochs", "learning_rate", "instance_type"],
)
def test_out_of_range_params_fail_before_any_aws_call(
    airflow_db: None, monkeypatch: pytest.MonkeyPatch, conf: dict[str, Any], says: str
) -> None:
    from airflow.models.dagrun import DagRun

    # Given an AWS connection that reaches nothing: any AWS call at all would fail with a connection error
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "extra": {"endpoint_url": dead}}))
    runs_before = len(DagRun.find(dag_id="scones_training_pipeline"))
    # When the training DAG is triggered with an out-of-range Param
    with pytest.raises(ParamValidationError) as refused:
        run_dag("scones_training_pipeline", conf)
    # Then the Param is named and no run was even created, so no task (and no AWS call) ran
    assert f"Invalid input for param {says}" in str(refused.value)
    assert len(DagRun.find(dag_id="scones_training_pipeline")) == runs_before


# --- Lambda events -----------------------------------------------------------------------------------------
def smoke_event(workflow_run: LoggedRun) -> dict[str, str]:
    """A well-formed event: the first image the workflow's smoke executions used."""
    image = workflow_run.xcom("pick_smoke_images")[0]
    return {"s3_bucket": image["s3_bucket"], "s3_key": image["s3_key"]}


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("function", "event", "says"),
    [
        (SERIALIZE, {"s3_bucket": BUCKET}, "s3_key"),
        (SERIALIZE, {}, "s3_bucket"),
        (CLASSIFY, {"statusCode": 200, "body": {"s3_bucket": BUCKET, "s3_key": "k"}}, "image_data"),
        (CLASSIFY, {"image_data": "aGk="}, "body"),
        (FILTER, {"statusCode": 200, "body": {"image_data": "aGk=", "s3_bucket": BUCKET, "s3_key": "k"}}, "inferences"),
        (COLLECT, {"s3_bucket": BUCKET}, "prefix"),
    ],
    ids=[
        "serialize-no-key",
        "serialize-empty",
        "classify-no-image",
        "classify-bare-body",
        "filter-no-inferences",
        "collect-no-request",
    ],
)
def test_lambda_events_missing_keys_fail_by_name_and_the_function_keeps_serving(
    aws: Clients, deployment: dict[str, Any], first_workflow_run: LoggedRun, function: str, event: dict, says: str
) -> None:
    function_error, payload = invoke(aws.lambda_, function, event)
    assert (function_error, payload["errorType"]) == ("Unhandled", "InvalidEvent"), payload
    assert says in payload["errorMessage"]
    assert invoke(aws.lambda_, SERIALIZE, smoke_event(first_workflow_run))[0] is None


@pytest.mark.e2e
def test_an_execution_missing_keys_fails_by_name_and_the_state_machine_keeps_serving(
    aws: Clients, first_workflow_run: LoggedRun
) -> None:
    machine = first_workflow_run.xcom("deploy_state_machine")
    assert machine.endswith(f":{STATE_MACHINE_NAME}")

    def ended(event: dict[str, Any]) -> dict[str, Any]:  # the Express machine answers with the execution's end
        return dict(aws.sfn.start_sync_execution(stateMachineArn=machine, input=json.dumps(event)))

    broken = ended({"s3_key": "nothing"})
    assert (broken["status"], broken["error"]) == ("FAILED", "InvalidEvent")
    assert "s3_bucket" in broken["cause"]
    healthy = ended(smoke_event(first_workflow_run))
    assert healthy["status"] == "SUCCEEDED" or healthy.get("error") == "ThresholdConfidenceNotMet", healthy
