"""The training DAG end to end on the local cloud: real HTTP download of a CIFAR-format mirror, real S3
(MiniStack), real training, batch transform and hosting (local SageMaker), run through dag.test().

Three runs show the automatic paths (approval=auto), each a version in the Model Registry: a first deploy
(create); a broken challenger that the gate approves and the deployment guardrails roll back during its canary,
when a real 5XX burst trips the DAG's alarm; and a challenger the gate rejects (floor), whose run prunes the
registry. Then the teardown DAG removes what costs money. A guarded update that succeeds runs in
tests/ui/test_approval.py, against a real scheduler and API server, as does the human approval path."""

from __future__ import annotations

import base64
import functools
import io
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from include.scones import registry, training_steps
from include.scones.manifests import parse_lst
from include.scones.records import DeploymentRecord, RunPlan
from tests.localcloud.helpers import wait_for

pytestmark = pytest.mark.e2e

ENDPOINT = "scones-vehicle-classifier"
GROUP = "scones-vehicle-classifier"
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


def _version(run: Any, sagemaker: Any) -> dict[str, Any]:
    arn = run.get_task_instance("register_candidate").xcom_pull(task_ids="register_candidate")
    return dict(sagemaker.describe_model_package(ModelPackageName=arn))


def _broken_model_code(tmp_path: Path) -> Path:
    """A copy of include/model whose predict_fn raises on an image that is not 32x32 (input_fn marks it)."""
    code = tmp_path / "broken-model"
    shutil.copytree(training_steps.MODEL_CODE_DIR, code, ignore=shutil.ignore_patterns("__pycache__"))
    with (code / "inference.py").open("a") as source:
        source.write(BROKEN_SERVING_HOOKS)
    return code


BROKEN_SERVING_HOOKS = """

# --- deliberately broken (tests/e2e/test_training_pipeline.py): predict_fn raises on a non-32x32 image ---
_input_fn, _predict_fn = input_fn, predict_fn


def input_fn(request_body, content_type):
    with Image.open(io.BytesIO(bytes(request_body))) as image:
        size = image.size
    return (_input_fn(request_body, content_type), size)


def predict_fn(input_data, model):
    batch, size = input_data
    if size != (32, 32):
        raise RuntimeError(f"broken challenger: cannot handle a {size[0]}x{size[1]} image")
    return _predict_fn(batch, model)
"""


def _resized(png: bytes, side: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").resize((side, side)).save(out, format="PNG")
    return out.getvalue()


class CanaryTraffic:
    """A client in a background thread: while the endpoint is Updating (a guarded update's bakes), it invokes it
    every 50 ms with `body` and counts the answers and the errors."""

    def __init__(self, runtime: Any, sagemaker: Any, body: bytes) -> None:
        self.runtime, self.sagemaker, self.body = runtime, sagemaker, body
        self.served = self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)

    def __enter__(self) -> CanaryTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _send(self) -> None:
        updating = False
        while not self._stop.wait(0.05 if updating else 0.5):
            updating = self._status() == "Updating"  # one DescribeEndpoint per request sent, not two
            if not updating:
                continue
            try:
                self.runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=self.body)
                self.served += 1
            except Exception:  # the canary's 5XX (ModelError), which the test expects
                self.errors += 1

    def _status(self) -> str:
        try:
            return str(self.sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"])
        except Exception:
            return ""


def test_training_pipeline_deploys_gates_updates_and_tears_down(
    scones_env: dict,
    airflow_db: None,
    s3: Any,
    sagemaker: Any,
    runtime: Any,
    local_cloud: Any,
    monkeypatch: Any,
    tmp_path: Path,
) -> None:
    from tests.reliability.dag_runs import run_dag  # imports this module

    # --- run 1: first deploy -------------------------------------------------------------------------------
    first = _run("scones_training_pipeline", FAST)
    states = _states(first)
    assert str(first.state) == "success", states
    assert states["review"] == "skipped" and states["approve_version"] == "success"  # approval=auto
    assert states["reject_version"] == "skipped" and states["record_deployment"] == "success"

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
    # ... and how far its confidence can be trusted: the calibration error over every test image
    assert 0 <= evaluation["expected_calibration_error"] <= 1
    assert sum(row["images"] for row in evaluation["calibration"]["table"]) == 200

    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService" and endpoint["EndpointConfigName"] == plan["name"]
    capture = endpoint["DataCaptureConfig"]
    assert capture["EnableCapture"] and capture["CurrentSamplingPercentage"] == 100
    # The candidate is a version of the group, approved by the gate's rules, with its evaluation as its metrics
    version = _version(first, sagemaker)
    assert version["ModelPackageGroupName"] == GROUP and version["ModelApprovalStatus"] == "Approved"
    assert version["ApprovalDescription"].startswith("Approved by the gate: deploying: accuracy")
    assert version["CustomerMetadataProperties"][registry.REVIEWER_PROPERTY] == "gate"
    statistics = version["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics == {
        "ContentType": "application/json",
        "S3Uri": f"s3://{BUCKET}/" + artifact_key.rsplit("/", 1)[0] + "/evaluation.json",
    }
    inference = version["InferenceSpecification"]
    assert inference["SupportedContentTypes"] == ["image/png"]  # extras replaced the provider's text/csv
    assert inference["Containers"][0]["ModelDataUrl"] == job["ModelArtifacts"]["S3ModelArtifacts"]
    # ... and the endpoint serves a model made from that version
    served_model = sagemaker.describe_endpoint_config(EndpointConfigName=plan["name"])["ProductionVariants"][0]
    assert served_model["ModelName"] == f"{plan['name']}-serving"
    model = sagemaker.describe_model(ModelName=served_model["ModelName"])
    assert model["PrimaryContainer"]["ModelPackageName"] == version["ModelPackageArn"]
    # The champion is that version, read from the registry through the typed record, as the workflow's `plan`
    # task reads it; and the threshold is the Param's, the one value train.py was given, the evaluation used and
    # the filter Lambda will get.
    deployment = registry.live_deployment(sagemaker, ENDPOINT)
    recorded = first.get_task_instance("record_deployment").xcom_pull(task_ids="record_deployment")
    assert deployment == DeploymentRecord.from_xcom(recorded)
    run_plan = RunPlan.from_xcom(plan)
    assert deployment is not None and deployment.endpoint_config_name == run_plan.name
    assert deployment.model_package_arn == version["ModelPackageArn"]
    assert deployment.accuracy == evaluation["accuracy"] and deployment.run_name == run_plan.name
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

    # --- run 2: a broken challenger is approved, deployed as a canary and rolled back by the 5XX alarm ---------
    # Same training code and recipe (so the gate passes it), but its predict_fn raises on any image that is not
    # 32x32: the test split is 32x32, so evaluation is unaffected; during the canary a client sends 64x64 images.
    time.sleep(1)  # run names carry the second
    monkeypatch.setattr(training_steps, "package_code", functools.partial(training_steps.package_code,
                        code_dir=_broken_model_code(tmp_path)))  # fmt: skip
    with CanaryTraffic(runtime, sagemaker, _resized(image, 64)) as traffic:
        broken = run_dag("scones_training_pipeline", FAST | {"bake_seconds": 20})
    monkeypatch.undo()
    states = broken.states
    assert str(broken.run.state) == "failed" and states["deploy_endpoint"] == "failed", states
    assert states["record_deployment"] == "upstream_failed", states
    alarm = f"{ENDPOINT}-5xx-errors"
    # the task log says why: the deployment was rolled back, by which alarm, and what still serves
    assert f"was rolled back: Deployment rolled back: CloudWatch alarm {alarm} went to ALARM" in broken.log
    assert f"The endpoint still serves {plan['name']}" in broken.log
    assert traffic.errors and traffic.served  # the canary failed some requests; the champion answered the rest
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService" and endpoint["EndpointConfigName"] == plan["name"]
    assert alarm in endpoint["FailureReason"] and "PendingDeploymentSummary" not in endpoint
    reply = runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=_resized(image, 64))
    assert len(json.loads(reply["Body"].read())) == 2  # the champion answers the image the challenger failed on
    # Recorded as the champion still; only deployed_at, the endpoint's LastModifiedTime, moved with the update
    live = registry.live_deployment(sagemaker, ENDPOINT)
    assert live is not None and live.model_dump(exclude={"deployed_at"}) == deployment.model_dump(
        exclude={"deployed_at"}
    )
    rolled_back = _version(broken.run, sagemaker)
    assert rolled_back["ModelApprovalStatus"] == "Rejected"
    assert rolled_back["ApprovalDescription"].startswith("Rolled back by the deployment guardrails: Deployment rolled")
    assert alarm in rolled_back["ApprovalDescription"]
    assert rolled_back["CustomerMetadataProperties"][registry.REVIEWER_PROPERTY] == "guardrails"

    # --- run 3: a challenger below the floor is trained and evaluated but not deployed ---------------------
    # Keeping one version, its prune_registry deletes run 2's (rolled back) version, keeps its own (the newest)
    # and the live one.
    time.sleep(1)
    monkeypatch.setenv("SCONES_REGISTRY_KEEP_LAST", "1")
    third = _run("scones_training_pipeline", FAST | {"min_accuracy": 1.0})
    monkeypatch.delenv("SCONES_REGISTRY_KEEP_LAST")
    states = _states(third)
    assert str(third.state) == "success", states
    assert states["reject_version"] == "success" and states["approve_version"] == "skipped"
    deploy_tasks = ("create_serving_model", "create_endpoint_config", "deploy_endpoint", "record_deployment")
    assert {states[t] for t in deploy_tasks} == {"skipped"}
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == plan["name"]
    rejected = _version(third, sagemaker)
    assert rejected["ModelApprovalStatus"] == "Rejected"
    assert rejected["ApprovalDescription"].startswith("Rejected by the gate: not deploying: accuracy")
    assert registry.live_deployment(sagemaker, ENDPOINT) == live  # the champion is unchanged
    pruned = set(third.get_task_instance("prune_registry").xcom_pull(task_ids="prune_registry"))
    assert rolled_back["ModelPackageArn"] in pruned  # (and older versions other e2e tests left in the group)
    remaining = {v["ModelPackageArn"] for v in registry.versions(sagemaker, GROUP)}
    assert {version["ModelPackageArn"], rejected["ModelPackageArn"]} <= remaining and not remaining & pruned
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
    assert live.model_package_arn in {v["ModelPackageArn"] for v in registry.versions(sagemaker, GROUP)}  # history
    alarms = local_cloud.client("cloudwatch").describe_alarms(AlarmNamePrefix=ENDPOINT)["MetricAlarms"]
    assert alarms == []  # the rollback alarms cost money on AWS: they go with the endpoint
    assert not [m for m in local_cloud.client("stepfunctions").list_state_machines()["stateMachines"]
                if m["name"] in ("scones-image-classification", "scones-batch-classification")]  # fmt: skip
    assert not [f for f in local_cloud.client("lambda").list_functions()["Functions"]
                if f["FunctionName"].startswith("scones-")]  # fmt: skip
