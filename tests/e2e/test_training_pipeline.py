"""The training DAG end to end on the local cloud: real HTTP download of a CIFAR-format mirror, real S3
(MiniStack), real training, batch transform and hosting (local SageMaker), run through dag.test().

Three runs show every path: a first deploy (create), a challenger the gate rejects (floor), and a retrain that
replaces the live model (blue/green update). Then the teardown DAG removes what costs money."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from include.scones.manifests import parse_lst
from include.scones.records import DeploymentRecord, RunPlan, read_deployment
from tests.localcloud.helpers import wait_for

pytestmark = pytest.mark.e2e

ENDPOINT = "scones-vehicle-classifier"
BUCKET = "scones-e2e"
# Short training keeps the test quick; the quality bar is measured by `make bench`, not here.
FAST = {"epochs": 8, "min_accuracy": 0.6}


def _run(dag_id: str, conf: dict[str, Any] | None = None) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import PROJECT_ROOT

    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).get_dag(dag_id)
    return dag.test(run_conf=conf or {})


def _states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def _json(s3: Any, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _keys(s3: Any, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_training_pipeline_deploys_gates_updates_and_tears_down(
    scones_env: dict, airflow_db: None, s3: Any, sagemaker: Any, runtime: Any, local_cloud: Any
) -> None:
    # --- run 1: first deploy -------------------------------------------------------------------------------
    first = _run("scones_training_pipeline", FAST)
    states = _states(first)
    assert str(first.state) == "success", states
    assert states["keep_live_model"] == "skipped" and states["record_deployment"] == "success"

    plan = first.get_task_instance("plan").xcom_pull(task_ids="plan")
    data_uri = first.get_task_instance("load").xcom_pull(task_ids="load")
    data_prefix = data_uri.removeprefix(f"s3://{BUCKET}/")
    assert len([k for k in _keys(s3, f"{data_prefix}train/images/") if k.endswith(".png")]) == 800
    assert len([k for k in _keys(s3, f"{data_prefix}test/images/") if k.endswith(".png")]) == 200
    assert {f"{data_prefix}train/train.lst", f"{data_prefix}test/test.lst", f"{data_prefix}manifest.json"} <= set(
        _keys(s3, data_prefix)
    )

    job = sagemaker.describe_training_job(TrainingJobName=plan["name"])
    assert job["TrainingJobStatus"] == "Completed"
    assert json.loads(job["HyperParameters"]["epochs"]) == FAST["epochs"]
    artifact_key = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix(f"s3://{BUCKET}/")
    evaluation = _json(s3, artifact_key.rsplit("/", 1)[0] + "/evaluation.json")
    assert evaluation["images"] == 200 and evaluation["accuracy"] >= FAST["min_accuracy"]
    assert sum(map(sum, evaluation["confusion_matrix"]["matrix"])) == 200

    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService" and endpoint["EndpointConfigName"] == plan["name"]
    capture = endpoint["DataCaptureConfig"]
    assert capture["EnableCapture"] and capture["CurrentSamplingPercentage"] == 100
    registry = _json(s3, f"registry/{ENDPOINT}.json")
    assert registry["accuracy"] == evaluation["accuracy"] and registry["endpoint_config_name"] == plan["name"]
    # What the training DAG wrote is what the workflow DAG reads: the same S3 object through the same record type
    # (include/scones/records.py), as the workflow's `plan` task reads it; and the threshold is the Param's, the
    # one value train.py was given, the evaluation used and the filter Lambda will get.
    deployment = read_deployment(S3Hook(aws_conn_id="aws_default"), BUCKET, f"registry/{ENDPOINT}.json")
    recorded = first.get_task_instance("record_deployment").xcom_pull(task_ids="record_deployment")
    assert deployment == DeploymentRecord.from_xcom(recorded)
    run_plan = RunPlan.from_xcom(plan)
    assert deployment is not None and deployment.endpoint_config_name == run_plan.name
    assert deployment.confidence_threshold == evaluation["threshold"] == run_plan.params.confidence_threshold
    assert json.loads(job["HyperParameters"]["confidence_threshold"]) == deployment.confidence_threshold

    # A real test image the evaluation got right must come back with the same label from the live endpoint.
    test_lst = s3.get_object(Bucket=BUCKET, Key=f"{data_prefix}test/test.lst")["Body"].read().decode()
    labels = {row.filename: row.label for row in parse_lst(test_lst)}
    predictions_prefix = f"{artifact_key.split('/output/')[0]}/evaluation/predictions/"
    for key in _keys(s3, predictions_prefix):
        probabilities = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        filename = key.rsplit("/", 1)[1].removesuffix(".out")
        if probabilities.index(max(probabilities)) == labels[filename] and max(probabilities) >= 0.9:
            break
    else:
        pytest.fail("the model got no test image right with confidence ≥ 0.9")
    image = s3.get_object(Bucket=BUCKET, Key=f"{data_prefix}test/images/{filename}")["Body"].read()
    reply = runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=image)
    served = json.loads(reply["Body"].read())
    assert served.index(max(served)) == labels[filename]
    assert served == pytest.approx(probabilities, abs=1e-6)

    # The call is captured: the PNG (BASE64) and the JSON answer, under the endpoint's hourly prefix.
    capture_prefix = f"data_capture/{ENDPOINT}/AllTraffic/"

    def captured() -> list[dict]:
        records = []
        for key in _keys(s3, capture_prefix):
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
            records += [json.loads(line) for line in body.splitlines() if line.strip()]
        return records

    def ours() -> list[dict]:  # other tests may have invoked the endpoint in the same hour
        return [
            r["captureData"]
            for r in captured()
            if base64.b64decode(r["captureData"]["endpointInput"]["data"]) == image
            and json.loads(r["captureData"]["endpointOutput"]["data"]) == served
        ]

    matching = wait_for(ours, timeout_s=30)
    assert matching, "the invocation was not captured"
    record = matching[-1]
    assert base64.b64decode(record["endpointInput"]["data"]) == image
    assert record["endpointInput"]["encoding"] == "BASE64"
    assert record["endpointOutput"]["encoding"] == "JSON" and json.loads(record["endpointOutput"]["data"]) == served

    # --- run 2: a challenger below the floor is trained and evaluated but not deployed ---------------------
    time.sleep(1)  # run names carry the second
    second = _run("scones_training_pipeline", FAST | {"min_accuracy": 1.0})
    states = _states(second)
    assert str(second.state) == "success", states
    assert states["keep_live_model"] == "success"
    assert {states[t] for t in ("create_endpoint_config", "deploy_endpoint", "record_deployment")} == {"skipped"}
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == plan["name"]

    # --- run 3: same recipe as run 1 (seeded, so equal accuracy) replaces the live model -----------------
    time.sleep(1)
    third = _run("scones_training_pipeline", FAST)
    assert str(third.state) == "success", _states(third)
    third_plan = third.get_task_instance("plan").xcom_pull(task_ids="plan")
    assert _states(third)["record_deployment"] == "success"
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService" and endpoint["EndpointConfigName"] == third_plan["name"]
    assert len(sagemaker.list_endpoints(NameContains=ENDPOINT)["Endpoints"]) == 1
    assert _json(s3, f"registry/{ENDPOINT}.json")["endpoint_config_name"] == third_plan["name"]
    # Unchanged code and data were reused, not uploaded again.
    assert third.get_task_instance("package_code").xcom_pull(task_ids="package_code") == first.get_task_instance(
        "package_code"
    ).xcom_pull(task_ids="package_code")

    # --- teardown ------------------------------------------------------------------------------------------
    teardown = _run("scones_teardown")
    assert str(teardown.state) == "success", _states(teardown)
    assert sagemaker.list_endpoints(NameContains=ENDPOINT)["Endpoints"] == []
    assert sagemaker.list_endpoint_configs(NameContains="scones-")["EndpointConfigs"] == []
    assert sagemaker.list_models(NameContains="scones-")["Models"] == []
    assert f"registry/{ENDPOINT}.json" not in _keys(s3, "registry/")
    assert not [m for m in local_cloud.client("stepfunctions").list_state_machines()["stateMachines"]
                if m["name"] == "scones-image-classification"]  # fmt: skip
    assert not [f for f in local_cloud.client("lambda").list_functions()["Functions"]
                if f["FunctionName"].startswith("scones-")]  # fmt: skip
