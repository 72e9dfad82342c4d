"""Pruning against the real local cloud, through boto3: a live endpoint with its config and model, older configs and
models of the same endpoint, and resources that are not its runs'. `prune` keeps the live ones and the newest
`keep_last`, deletes the rest, and deletes nothing more the second time; the endpoint_deleted waiter then sees
the endpoint go. Then the teardown DAG itself in mode prune (dag.test), which must leave the workflow alone.

The models serve the pure-Python fixture (no torch), so the endpoint is up in seconds."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from include.scones import teardown as td
from include.scones.sagemaker_requests import ENDPOINT_TAG_KEY, PROJECT_TAG
from tests.conftest import PYTORCH_INFERENCE_IMAGE, ROLE_ARN
from tests.localcloud.helpers import pure_python_model_archive, wait_for

pytestmark = pytest.mark.e2e

DEPLOY_TIMEOUT_S = 120.0
# These endpoints serve models made from images, not registry versions: a group nobody uses (registry pruning
# has its own tests: tests/scones/test_registry.py and tests/e2e/test_training_pipeline.py).
NO_REGISTRY = {"package_group": f"scones-prune-{uuid.uuid4().hex[:8]}", "keep_versions": 5}


def run_name(day: int, digest: str) -> str:
    """A training run's resource name (`scones-YYYYmmdd-HHMMSS-xxxxxxxx`), older days first."""
    return f"scones-202601{day:02d}-000000-{digest}"


class Runs:
    """Models and endpoint configs made the way the training DAG makes them (same tags), one per run. The session's
    cloud is shared with the other end-to-end tests (whose teardown expects no config but theirs), so whatever a test
    made is deleted after it (the `runs` fixture)."""

    def __init__(self, sagemaker: Any, s3: Any, endpoint: str) -> None:
        self.created: list[tuple[str, str]] = []
        self.sagemaker, self.s3, self.endpoint = sagemaker, s3, endpoint
        self.digest = uuid.uuid4().hex[:6]  # 6 + 2 day digits: the 8 hex of a run name, unique per test
        bucket = f"scones-prune-{self.digest}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="model.tar.gz", Body=pure_python_model_archive())
        self.bucket = bucket
        self.model_data = f"s3://{bucket}/model.tar.gz"

    def name(self, day: int) -> str:
        return run_name(day, f"{self.digest}{day:02d}")

    def tags(self, endpoint: str | None = None, project: bool = True) -> list[dict[str, str]]:
        return [PROJECT_TAG] * project + [{"Key": ENDPOINT_TAG_KEY, "Value": endpoint or self.endpoint}]

    def model(self, name: str, tags: list[dict[str, str]] | None = None) -> str:
        self.sagemaker.create_model(
            ModelName=name,
            PrimaryContainer={"Image": PYTORCH_INFERENCE_IMAGE, "ModelDataUrl": self.model_data},
            ExecutionRoleArn=ROLE_ARN,
            Tags=self.tags() if tags is None else tags,
        )
        self.created.append(("model", name))
        return name

    def config(self, name: str, model: str, tags: list[dict[str, str]] | None = None) -> str:
        self.sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                },
            ],  # fmt: skip
            Tags=self.tags() if tags is None else tags,
        )
        self.created.append(("config", name))
        return name

    def clean_up(self) -> None:
        try:
            self.sagemaker.delete_endpoint(EndpointName=self.endpoint)
            td.wait_until_deleted(self.sagemaker, self.endpoint, timeout_s=60, poll_s=1)
        except ClientError:
            pass  # never created, or already deleted by the test
        for kind, name in reversed(self.created):
            delete = self.sagemaker.delete_endpoint_config if kind == "config" else self.sagemaker.delete_model
            try:
                delete(**({"EndpointConfigName": name} if kind == "config" else {"ModelName": name}))
            except ClientError:
                pass  # pruned by the test
        self.s3.delete_object(Bucket=self.bucket, Key="model.tar.gz")
        self.s3.delete_bucket(Bucket=self.bucket)

    def run(self, day: int) -> str:
        """A run that deployed (or could have): its model and its config, both named after it."""
        return self.config(self.name(day), self.model(self.name(day)))


def remaining(sagemaker: Any, names: set[str]) -> tuple[set[str], set[str]]:
    """Which of `names` still exist as endpoint configs and as models."""
    configs = {c["EndpointConfigName"] for p in sagemaker.get_paginator("list_endpoint_configs").paginate()
               for c in p["EndpointConfigs"]}  # fmt: skip
    models = {m["ModelName"] for p in sagemaker.get_paginator("list_models").paginate() for m in p["Models"]}
    return configs & names, models & names


@pytest.fixture
def runs_for(sagemaker: Any, s3: Any) -> Iterator[Callable[[str], Runs]]:
    made: list[Runs] = []

    def make(endpoint: str) -> Runs:
        made.append(Runs(sagemaker, s3, endpoint))
        return made[-1]

    yield make
    for each in made:
        each.clean_up()


def test_prune_keeps_the_live_endpoint_and_the_newest_configs(sagemaker: Any, runs_for: Callable[[str], Runs]) -> None:
    endpoint = f"scones-prune-{uuid.uuid4().hex[:6]}"
    runs = runs_for(endpoint)
    # Given runs on days 1..5 for this endpoint, day 3 live (a rollback: days 4 and 5 are newer),
    for day in (1, 2, 3, 4, 5):
        runs.run(day)
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=runs.name(3))
    # a model the gate refused (no config), and resources that are not this endpoint's runs
    rejected = runs.model(runs.name(6))
    other = runs.config(runs.name(7), runs.model(runs.name(7), runs.tags("scones-other")), runs.tags("scones-other"))
    untagged = runs.config(runs.name(8), runs.model(runs.name(8), runs.tags(project=False)), [])
    manual = runs.config(f"scones-manual-{runs.digest}", runs.name(2), runs.tags())  # names day 2's model
    every = {runs.name(day) for day in range(1, 9)} | {manual}

    def settled() -> dict[str, Any] | None:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
        return None if described["EndpointStatus"] == "Creating" else described

    described = wait_for(settled, timeout_s=DEPLOY_TIMEOUT_S, interval_s=0.5)
    assert described and described["EndpointStatus"] == "InService", described

    # When pruning with keep_last=1
    result = td.prune(sagemaker, endpoint, keep_last=1, **NO_REGISTRY)

    # Then the live config and model stay, and the newest other run (day 5); days 4 and 1 go, and day 2's config,
    # but not its model (a config pruning does not manage names it); the refused model goes; others stay.
    assert result["endpoint_configs"] == [runs.name(4), runs.name(2), runs.name(1)]
    assert result["models"] == [rejected, runs.name(4), runs.name(1)]
    assert result["kept_endpoint_configs"] == {
        runs.name(3): "served by the endpoint",
        runs.name(5): "rollback candidate: newest 1 of the 1 kept",
    }
    assert result["kept_models"][runs.name(2)] == f"named by kept endpoint config {manual}"
    configs, models = remaining(sagemaker, every)
    assert configs == {runs.name(3), runs.name(5), other, untagged, manual}
    assert models == {runs.name(2), runs.name(3), runs.name(5), other, untagged}
    assert sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"

    # A second run deletes nothing and keeps the same
    again = td.prune(sagemaker, endpoint, keep_last=1, **NO_REGISTRY)
    assert again["endpoint_configs"] == again["models"] == again["model_packages"] == []
    assert again["kept_endpoint_configs"] == result["kept_endpoint_configs"]
    assert remaining(sagemaker, every) == (configs, models)

    # boto3's endpoint_deleted waiter works against the local SageMaker (ValidationException once it is gone)
    sagemaker.delete_endpoint(EndpointName=endpoint)
    td.wait_until_deleted(sagemaker, endpoint, timeout_s=60, poll_s=1)
    assert sagemaker.list_endpoints(NameContains=endpoint)["Endpoints"] == []

    # Without the endpoint, keep_last=0 leaves none of this endpoint's runs, and still nothing else
    gone = td.prune(sagemaker, endpoint, keep_last=0, **NO_REGISTRY)
    assert gone["endpoint_configs"] == [runs.name(5), runs.name(3)]
    assert remaining(sagemaker, every) == ({other, untagged, manual}, {runs.name(2), other, untagged})


def test_the_teardown_dag_prunes_in_prune_mode(
    sagemaker: Any,
    runs_for: Callable[[str], Runs],
    local_cloud: Any,
    airflow_db: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import PROJECT_ROOT

    endpoint = f"scones-prune-dag-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("SCONES_ENDPOINT_NAME", endpoint)
    monkeypatch.setenv("SCONES_POLL_SECONDS", "1")
    runs = runs_for(endpoint)
    for day in (1, 2, 3):
        runs.run(day)
    lambdas = local_cloud.client("lambda")
    before = sorted(f["FunctionName"] for f in lambdas.list_functions()["Functions"])

    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).get_dag("scones_teardown")
    dag_run = dag.test(run_conf={"mode": "prune", "keep_last": 1})

    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "success", states
    assert states == {
        "choose_mode": "success",
        "prune_configs_and_models": "success",
        "delete_workflow": "skipped",
        "delete_endpoint_and_models": "skipped",
    }
    result = dag_run.get_task_instance("prune_configs_and_models").xcom_pull(task_ids="prune_configs_and_models")
    assert result["endpoint_configs"] == [runs.name(2), runs.name(1)]  # no endpoint: only the newest is kept
    every = {runs.name(day) for day in (1, 2, 3)}
    assert remaining(sagemaker, every) == ({runs.name(3)}, {runs.name(3)})
    assert sorted(f["FunctionName"] for f in lambdas.list_functions()["Functions"]) == before
