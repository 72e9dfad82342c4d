"""What a model server process starts with: one OpenMP thread unless someone says otherwise, the model's
Environment over the defaults, the local cloud's endpoint and install keys last, and nothing else of the local
SageMaker's own environment: no interpreter variables, no AWS credentials, no secrets (also checked inside a real
model server). Training jobs share the definition, so one test checks them too."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from localcloud.config import REGION
from localcloud.credentials import Credentials
from localcloud.sagemaker.runners.hosting import ModelServer, worker_environment
from localcloud.sagemaker.runners.training import TrainingRunner, TrainingSpec

PYTHON = Path("/opt/framework/bin/python")
ENDPOINT = "http://127.0.0.1:4566"
FIXTURES = Path(__file__).with_name("hosting_fixtures")
# What a developer's shell may hold when it runs `make up`: real credentials, a profile, config files, real AWS
# endpoints and unrelated secrets. None of it may reach model code.
# The credential-shaped values are assembled, not written out, so the repository's credential scan
# (tests/reliability/test_security.py) finds no literal in this file.
CANARY_KEY_ID = "AKIA" + "CANARY" * 2 + "KEY1"
CANARY_SECRET = "/".join(["canarySecretAccessKey", "0" * 18])
CANARY_TOKEN = "-".join(["canary", "session", "token"])
CANARIES = {
    "AWS_ACCESS_KEY_ID": CANARY_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": CANARY_SECRET,
    "AWS_SESSION_TOKEN": CANARY_TOKEN,
    "AWS_PROFILE": "canary-production",
    "AWS_DEFAULT_PROFILE": "canary-production",
    "AWS_CONFIG_FILE": "/home/canary/.aws/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/home/canary/.aws/credentials",
    "AWS_ENDPOINT_URL_SAGEMAKER": "https://api.sagemaker.canary.amazonaws.com",
    "AWS_CA_BUNDLE": "/home/canary/ca.pem",
    "SCONES_CANARY_SECRET": "canary-secret-value",
    "SAGEMAKER_PROGRAM": "canary.py",  # a serving-contract name, but the launcher's, not the model's
}
# Every name a model server may get besides its model's Environment.
CONTRACT = {
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
}


# The install's keys, as the launcher puts them in the local SageMaker's environment (assembled, as above).
INSTALL = Credentials("LKIA" + "INSTALL" * 2 + "KY", "-".join(["install", "secret", "0" * 20]))


@pytest.fixture(autouse=True)
def install_keys(monkeypatch: pytest.MonkeyPatch) -> Credentials:
    for name, value in INSTALL.as_env().items():
        monkeypatch.setenv(name, value)
    return INSTALL


@pytest.fixture
def canaries(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    return CANARIES


def leaked(env: dict[str, str], canaries: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if value in canaries.values()}


def test_one_openmp_thread_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert worker_environment({}, PYTHON, ENDPOINT)["OMP_NUM_THREADS"] == "1"


def test_the_callers_environment_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert worker_environment({}, PYTHON, ENDPOINT)["OMP_NUM_THREADS"] == "2"


def test_the_models_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    env = worker_environment({"OMP_NUM_THREADS": "4", "GREETING": "hi"}, PYTHON, ENDPOINT)
    assert (env["OMP_NUM_THREADS"], env["GREETING"]) == ("4", "hi")


def test_the_control_planes_interpreter_variables_stay_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.setenv("VIRTUAL_ENV", "/work/.venv")
    env = worker_environment({}, PYTHON, ENDPOINT)
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env
    assert env["PYTHONUNBUFFERED"] == "1"


def test_no_credentials_or_secrets_of_the_launcher_reach_the_model(canaries: dict[str, str]) -> None:
    # Given a launcher shell holding real-looking credentials and secrets (canaries)
    # When a model server's environment is built
    env = worker_environment({"GREETING": "hi", "SAGEMAKER_PROGRAM": "serve.py"}, PYTHON, ENDPOINT)
    # Then none of them is in it, while the model's Environment and the serving contract are
    assert leaked(env, canaries) == {}
    assert not {"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE", "SCONES_CANARY_SECRET"} & set(env)
    assert (env["GREETING"], env["SAGEMAKER_PROGRAM"]) == ("hi", "serve.py")
    assert (env["OMP_NUM_THREADS"], env["PYTHONUNBUFFERED"], env["PYTHONDONTWRITEBYTECODE"]) == ("1", "1", "1")
    assert env["PATH"].startswith("/opt/framework/bin:") and env["LANG"] == "C.UTF-8" and env["HOME"]


def test_nothing_but_the_contract_and_the_models_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The test process's own environment is large and varied: a model server gets none of it beyond the contract
    monkeypatch.setenv("SOME_TOOL_SETTING", "x")
    env = worker_environment({"GREETING": "hi"}, PYTHON, ENDPOINT)
    assert set(env) - {"GREETING"} <= CONTRACT, sorted(set(env) - CONTRACT)


def test_boto3_in_the_model_reaches_the_local_cloud_with_the_install_keys(canaries: dict[str, str]) -> None:
    # Even a model Environment naming real AWS cannot redirect it: the local cloud's settings come last
    env = worker_environment(
        {"AWS_ENDPOINT_URL": "https://s3.amazonaws.com", "AWS_REGION": "eu-west-1"}, PYTHON, ENDPOINT
    )
    assert env["AWS_ENDPOINT_URL"] == env["S3_ENDPOINT_URL"] == ENDPOINT
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
        INSTALL.access_key_id,
        INSTALL.secret_access_key,
    )
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == REGION


def test_thread_knobs_of_make_up_are_the_only_inherited_tuning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    monkeypatch.setenv("TORCH_NUM_THREADS_CANARY", "9")
    env = worker_environment({}, PYTHON, ENDPOINT)
    assert env["MKL_NUM_THREADS"] == "3" and "TORCH_NUM_THREADS_CANARY" not in env


def test_training_jobs_get_the_same_clean_environment(canaries: dict[str, str], tmp_path: Path) -> None:
    spec = TrainingSpec(
        job_name="job",
        job_arn="arn:aws:sagemaker:us-east-1:000000000000:training-job/job",
        python=PYTHON,
        base_dir=tmp_path,
        s3_endpoint_url=ENDPOINT,
        output_path="s3://bucket/out",
        instance_type="ml.m5.large",
        environment={"GREETING": "hi"},
    )
    env = TrainingRunner(spec, s3=None, logs=None, reporter=None)._environment(Path("/opt/ml"))  # type: ignore[arg-type]
    assert leaked(env, canaries) == {}
    assert (env["GREETING"], env["AWS_ENDPOINT_URL"], env["TRAINING_JOB_NAME"]) == ("hi", ENDPOINT, "job")
    assert env["SAGEMAKER_BASE_DIR"] == "/opt/ml"  # the job's view of its directory


def test_model_code_in_a_real_server_sees_no_canary(canaries: dict[str, str], tmp_path: Path) -> None:
    # Given a model server started the way endpoints start them, by a process whose environment holds canaries
    model_dir = tmp_path / "model"
    shutil.copytree(FIXTURES / "env_model", model_dir)
    server = ModelServer.launch(
        python=Path(sys.executable),  # the worker and this fixture need only the standard library
        model_dir=model_dir,
        environment={"GREETING": "hi"},
        log_path=tmp_path / "worker.log",
        endpoint_url=ENDPOINT,
    )
    try:
        server.wait_healthy(30.0)
        # When the model reports the environment it runs with
        reply = server.invoke_sync(b"{}", "application/json", "application/json", timeout_s=30.0)
    finally:
        server.stop(drain_timeout_s=0)
    assert reply.status == 200, reply.body
    seen = json.loads(reply.body)
    # Then no canary is visible to model code; its own Environment and the local cloud's settings are
    assert leaked(seen, canaries) == {} and "SCONES_CANARY_SECRET" not in seen
    assert (seen["GREETING"], seen["AWS_ENDPOINT_URL"]) == ("hi", ENDPOINT)
    assert seen["AWS_ACCESS_KEY_ID"] == INSTALL.access_key_id and INSTALL.access_key_id not in CANARIES.values()
