"""Scenario 9, authentication: only a caller holding the install's keys can use the local cloud.

Against the real services of this package's cloud, through boto3 as an attacker on the same machine would try:
an unknown key, the right key with a wrong secret, MiniStack's own root key and `test`/`test` (which its `AUTH`
mode takes without checking the signature), and unsigned HTTP. Each gets the error code AWS answers, and nothing
it tried to create exists afterwards. The keys are per install, in `.localcloud/env` (mode 0600), and what the
workflow itself runs (Airflow's connection, the Lambdas through MiniStack, the model servers) signs with them:
the workflow run this package made succeeded, Lambdas calling the local SageMaker included.
"""

from __future__ import annotations

import io
import stat
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localcloud import credentials, launcher
from tests.conftest import ROLE_ARN, LocalCloud
from tests.reliability.dag_runs import LoggedRun

pytestmark = pytest.mark.e2e

ATTEMPT = "scones-unauthenticated"
STRANGER = ("AKIA" + "STRANGER" * 2, "stranger-secret-" + "0" * 24)


def client(service: str, key: str, secret: str) -> Any:
    return boto3.client(
        service, aws_access_key_id=key, aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1})
    )


def zipped_handler() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("lambda_function.py", "def lambda_handler(event, context):\n    return 'ran'\n")
    return buffer.getvalue()


# What an attacker tries, per service: an operation that would create something, and how to see that it did not.
ATTEMPTS: dict[str, Callable[[Any], Any]] = {
    "s3": lambda c: c.create_bucket(Bucket=ATTEMPT),
    "lambda": lambda c: c.create_function(
        FunctionName=ATTEMPT,
        Runtime="python3.11",
        Role=ROLE_ARN,
        Handler="lambda_function.lambda_handler",
        Code={"ZipFile": zipped_handler()},
    ),  # fmt: skip
    "stepfunctions": lambda c: c.create_state_machine(
        name=ATTEMPT, roleArn=ROLE_ARN, definition='{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}'
    ),
    "iam": lambda c: c.create_role(RoleName=ATTEMPT, AssumeRolePolicyDocument="{}"),
    "logs": lambda c: c.create_log_group(logGroupName=ATTEMPT),
    "sagemaker": lambda c: c.create_model(
        ModelName=ATTEMPT, ExecutionRoleArn=ROLE_ARN, PrimaryContainer={"Image": "python:3.11"}
    ),
    "sagemaker-runtime": lambda c: c.invoke_endpoint(EndpointName=ATTEMPT, Body=b"{}"),
}
UNKNOWN_KEY = {
    "s3": "InvalidAccessKeyId",
    "iam": "InvalidClientTokenId",
}
BAD_SIGNATURE = {"s3": "SignatureDoesNotMatch", "iam": "SignatureDoesNotMatch"}


def created(cloud: LocalCloud) -> list[str]:
    """Which of the attempted resources exist, asked with the install's keys."""
    found = []
    if ATTEMPT in {b["Name"] for b in cloud.client("s3").list_buckets()["Buckets"]}:
        found.append("bucket")
    if ATTEMPT in {f["FunctionName"] for f in cloud.client("lambda").list_functions()["Functions"]}:
        found.append("function")
    if ATTEMPT in {m["name"] for m in cloud.client("stepfunctions").list_state_machines()["stateMachines"]}:
        found.append("state machine")
    if ATTEMPT in {r["RoleName"] for r in cloud.client("iam").list_roles()["Roles"]}:
        found.append("role")
    if cloud.client("logs").describe_log_groups(logGroupNamePrefix=ATTEMPT)["logGroups"]:
        found.append("log group")
    if cloud.client("sagemaker").list_models(NameContains=ATTEMPT)["Models"]:
        found.append("model")
    return found


def refused(call: Callable[[Any], Any], api: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as raised:
        call(api)
    response = raised.value.response
    return int(response["ResponseMetadata"]["HTTPStatusCode"]), str(response["Error"]["Code"])


def test_the_keys_are_this_installs_and_private(cloud: LocalCloud) -> None:
    env_file = cloud.cfg.env_file
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    keys = launcher.install_credentials(cloud.cfg)
    exported = credentials.read_exports(env_file)
    assert (exported["AWS_ACCESS_KEY_ID"], exported["AWS_SECRET_ACCESS_KEY"]) == (
        keys.access_key_id,
        keys.secret_access_key,
    )
    assert keys.access_key_id.startswith("LKIA") and keys.secret_access_key not in ("test", "")


@pytest.mark.parametrize("service", ATTEMPTS)
def test_an_unknown_key_is_refused_with_the_aws_code(cloud: LocalCloud, service: str) -> None:
    status, code = refused(ATTEMPTS[service], client(service, *STRANGER))
    assert code == UNKNOWN_KEY.get(service, "UnrecognizedClientException"), (service, status)
    assert status in (400, 403)


@pytest.mark.parametrize("service", ATTEMPTS)
def test_the_right_key_with_a_wrong_secret_is_refused(cloud: LocalCloud, service: str) -> None:
    keys = launcher.install_credentials(cloud.cfg)
    status, code = refused(ATTEMPTS[service], client(service, keys.access_key_id, STRANGER[1]))
    assert code == BAD_SIGNATURE.get(service, "InvalidSignatureException"), (service, status)


@pytest.mark.parametrize("keys", [("test", "test"), ("000000000000", "test")], ids=["test/test", "root key"])
def test_ministacks_own_trusted_keys_are_refused(cloud: LocalCloud, keys: tuple[str, str]) -> None:
    for service in ("s3", "lambda", "iam"):
        status, code = refused(ATTEMPTS[service], client(service, *keys))
        assert status == 403 and code != "AccessDeniedException", service


def test_unsigned_http_is_refused_before_anything_runs(cloud: LocalCloud) -> None:
    requests = {
        "MiniStack Lambda": (f"{cloud.cfg.ministack_url}/2015-03-31/functions", {"Content-Type": "application/json"}),
        "MiniStack S3": (f"{cloud.cfg.ministack_url}/{ATTEMPT}", {}),
        "SageMaker control plane": (
            f"{cloud.cfg.sagemaker_url}/",
            {"X-Amz-Target": "SageMaker.CreateModel", "Content-Type": "application/x-amz-json-1.1"},
        ),
        "SageMaker runtime": (f"{cloud.cfg.sagemaker_url}/endpoints/{ATTEMPT}/invocations", {}),
    }
    expected = {
        "MiniStack Lambda": (403, "Missing Authentication Token"),
        "MiniStack S3": (403, "Access Denied"),
        "SageMaker control plane": (400, "Missing Authentication Token"),
        "SageMaker runtime": (403, "Missing Authentication Token"),
    }
    for name, (url, headers) in requests.items():
        method = "PUT" if name == "MiniStack S3" else "POST"
        request = urllib.request.Request(url, data=b'{"FunctionName": "x"}', method=method, headers=headers)
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=10)
        status, text = expected[name]
        assert (raised.value.code, text in raised.value.read().decode()) == (status, True), name
    health = urllib.request.urlopen(f"{cloud.cfg.ministack_url}/_ministack/health", timeout=10)
    assert health.status == 200, "health checks stay unsigned, for docker compose"


def test_nothing_the_refused_callers_tried_exists(cloud: LocalCloud) -> None:
    # Runs after the attempts above (module order): none of them created anything
    assert created(cloud) == []


def test_the_workflow_signs_everything_it_runs(first_workflow_run: LoggedRun) -> None:
    # Airflow's connection, the three Lambdas (classify calls the local SageMaker from inside MiniStack) and the
    # state machine all ran with the install's keys: the package's workflow run succeeded end to end.
    assert first_workflow_run.succeeded, first_workflow_run.states
    # The smoke executions ran through the Express machine (its answers are all Express keeps) and each ended as
    # the threshold says: every Lambda and the endpoint answered the signed calls.
    smoked = first_workflow_run.xcom("check_smoke_executions")
    assert smoked and {o["status"] for o in smoked} <= {"SUCCEEDED", "LOW_CONFIDENCE"}, smoked
    assert all(o["confidence"] is not None for o in smoked), smoked
