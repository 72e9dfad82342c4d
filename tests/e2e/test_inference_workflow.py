"""The inference workflow DAG end to end on the local cloud, after a real training run: the three Lambdas
and the state machine are deployed through the DAG (MiniStack), executions run against the real endpoint
(local SageMaker), and the monitoring report is built from the real capture files.

Checks: the per-image machine is Express, and a confident and a low-confidence image end exactly as the
threshold says in StartSyncExecution's answer (the state paths, which need a Standard execution's history, are
tests/workflow/test_state_machine.py's), the batch DAG routes each test image exactly as the evaluation's
predictions say, the report's numbers equal those recomputed from the captures and it shows the batch run, and
a second run redeploys nothing and leaves one copy of each resource."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import pytest

from include.scones import batch, registry
from include.scones.lambda_deploy import FUNCTIONS
from include.scones.records import BatchRequest, BatchSummary
from include.scones.state_machine_deploy import BATCH_STATE_MACHINE_NAME, STATE_MACHINE_NAME
from tests.e2e.test_training_pipeline import BUCKET, ENDPOINT, _json, _keys, _run, _states
from tests.lambdas.helpers import load_lambda

pytestmark = pytest.mark.e2e

THRESHOLD = 0.93


def _execute(sfn: Any, arn: str, key: str) -> dict[str, Any]:
    """One image through the Express machine: StartSyncExecution answers with the execution's end."""
    return dict(sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps({"s3_bucket": BUCKET, "s3_key": key})))


def _captured_records(s3: Any) -> list[dict]:
    records = []
    for key in _keys(s3, f"data_capture/{ENDPOINT}/"):
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        records += [json.loads(line) for line in body.splitlines() if line.strip()]
    return records


def test_workflow_deploys_runs_and_reports(
    scones_env: dict, airflow_db: None, s3: Any, local_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lambda_client, sfn = local_cloud.client("lambda"), local_cloud.client("stepfunctions")
    # Given a model deployed by the training DAG
    trained = _run("scones_training_pipeline", {"epochs": 8, "min_accuracy": 0.6})
    assert str(trained.state) == "success", _states(trained)
    live = registry.live_deployment(local_cloud.client("sagemaker"), ENDPOINT)
    assert live is not None

    # When the workflow DAG runs (alert limits out of reach: an 8-epoch model is often unsure)
    monkeypatch.setenv("SCONES_ALERT_LOW_CONFIDENCE_SHARE", "1")
    monkeypatch.setenv("SCONES_ALERT_PSI", "1000")
    first = _run("scones_inference_workflow")
    states = _states(first)
    assert str(first.state) == "success", states
    functions = first.get_task_instance("deploy_lambdas").xcom_pull(task_ids="deploy_lambdas")
    assert {f["action"] for f in functions.values()} == {"created"}

    # Then the functions carry the endpoint, the threshold and the connection's endpoints, and are Active
    for spec in FUNCTIONS:
        config = lambda_client.get_function(FunctionName=spec.name)["Configuration"]
        assert config["State"] == "Active" and config["Handler"] == "lambda_function.lambda_handler"
        variables = config["Environment"]["Variables"]
        assert variables["ENDPOINT_NAME"] == ENDPOINT and float(variables["THRESHOLD"]) == THRESHOLD
        assert variables["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] == scones_env_sagemaker_url(local_cloud)
    machines = [m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == STATE_MACHINE_NAME]
    assert len(machines) == 1
    machine_arn = machines[0]["stateMachineArn"]
    assert sfn.describe_state_machine(stateMachineArn=machine_arn)["type"] == "EXPRESS"  # the per-image path

    # And the smoke executions ended as the threshold says (the DAG checks it; the table is its result)
    outcomes = first.get_task_instance("check_smoke_executions").xcom_pull(task_ids="check_smoke_executions")
    assert len(outcomes) == 6
    for outcome in outcomes:
        assert outcome["status"] == ("SUCCEEDED" if outcome["confidence"] >= THRESHOLD else "LOW_CONFIDENCE")

    # A confident and a low-confidence image, chosen from the evaluation's own predictions
    evaluation_prefix = live.evaluation_uri.removeprefix(f"s3://{BUCKET}/").rsplit("/output/", 1)[0]
    predictions = {
        key.rsplit("/", 1)[1].removesuffix(".out"): json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        for key in _keys(s3, f"{evaluation_prefix}/evaluation/predictions/")
    }
    confident = next(name for name, p in sorted(predictions.items()) if max(p) >= THRESHOLD)
    doubtful = next(name for name, p in sorted(predictions.items()) if max(p) < THRESHOLD)
    images = live.data_uri.removeprefix(f"s3://{BUCKET}/") + "test/images/"

    ok = _execute(sfn, machine_arn, images + confident)
    assert ok["status"] == "SUCCEEDED"
    assert json.loads(ok["output"])["body"]["inferences"] == pytest.approx(predictions[confident], abs=1e-6)

    low = _execute(sfn, machine_arn, images + doubtful)
    assert low["status"] == "FAILED" and low["error"] == "ThresholdConfidenceNotMet"
    cause = json.loads(low["cause"])  # SummarizeLowConfidence's: the image and its inferences
    assert cause["s3_key"] == images + doubtful
    assert cause["inferences"] == pytest.approx(predictions[doubtful], abs=1e-6)

    # When the batch DAG classifies the live model's test images (its default prefix)
    batched = _run("scones_batch_classification")
    assert str(batched.state) == "success", _states(batched)
    batch_summary = batched.get_task_instance("summarize_batch").xcom_pull(task_ids="summarize_batch")
    # Then one results file holds a line per test image, routed exactly when the evaluation's prediction clears
    # the threshold, with the evaluation's own label (the endpoint and the batch transform agree to 1e-6)
    results = s3.get_object(Bucket=BUCKET, Key=batch_summary["results_key"])["Body"].read().decode()
    lines = {json.loads(line)["s3_key"].removeprefix(images): json.loads(line) for line in results.splitlines()}
    assert set(lines) == set(predictions) and batch_summary["images"] == len(predictions)
    assert batch_summary["errors"] == 0
    classes = list(live.classes)
    for name, probabilities in predictions.items():
        line = lines[name]
        assert line["label"] == classes[max(range(len(classes)), key=probabilities.__getitem__)], name
        if abs(max(probabilities) - THRESHOLD) > 1e-5:
            assert line["status"] == ("routed" if max(probabilities) >= THRESHOLD else "not_routed"), name
    assert batch_summary["routed"] == sum(line["status"] == "routed" for line in lines.values())
    assert BatchSummary.from_xcom(_json(s3, "batch/latest.json")) == BatchSummary.from_xcom(batch_summary)
    # And a retried start finds the run's execution instead of classifying the prefix twice
    plan = batched.get_task_instance("plan").xcom_pull(task_ids="plan")
    started = batched.get_task_instance("start_batch").xcom_pull(task_ids="start_batch")
    assert batch.start_execution(sfn, plan["machine_arn"], plan["execution_name"],
                                 BatchRequest.from_xcom(plan["request"])) == started  # fmt: skip
    assert [e["executionArn"] for e in sfn.list_executions(stateMachineArn=plan["machine_arn"])["executions"]] == [
        started]  # fmt: skip

    # When the workflow runs again with nothing changed, and any drift at all is an alert
    monkeypatch.setenv("SCONES_ALERT_PSI", "0")
    monkeypatch.setenv("SCONES_ALERT_MIN_RECORDS", "1")
    second = _run("scones_inference_workflow")
    states = _states(second)
    # Then the alert requests retraining and fails the run (check_alerts, not retried); the rest succeeds
    assert states["check_alerts"] == "failed"
    assert all(state == "success" for task, state in states.items() if task != "check_alerts"), states
    requested = second.get_task_instance("request_retraining").xcom_pull(task_ids="request_retraining")
    assert requested and any("PSI" in alert for alert in requested)
    again = second.get_task_instance("deploy_lambdas").xcom_pull(task_ids="deploy_lambdas")
    assert {f["action"] for f in again.values()} == {"unchanged"}
    names = [f["FunctionName"] for f in lambda_client.list_functions()["Functions"]]
    assert sorted(n for n in names if n.startswith("scones-")) == sorted(spec.name for spec in FUNCTIONS)
    for name in (STATE_MACHINE_NAME, BATCH_STATE_MACHINE_NAME):
        assert len([m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == name]) == 1

    # Then the latest report covers the window since the first report, and its numbers are the captures'; it
    # shows the batch run too (the batch's own endpoint calls are captures of this window)
    summary = _json(s3, "monitoring/latest/summary.json")
    assert BatchSummary.from_xcom(summary["batch"]) == BatchSummary.from_xcom(batch_summary)
    for name in ("report.html", "confidence_over_time.png", "confidence_histogram.png", "class_mix.png"):
        assert f"monitoring/latest/{name}" in _keys(s3, "monitoring/latest/")
    first_summary = first.get_task_instance("monitoring_report").xcom_pull(task_ids="monitoring_report")
    assert summary["window"]["start"] == first_summary["window"]["end"]
    start, end = (datetime.fromisoformat(summary["window"][edge]) for edge in ("start", "end"))
    in_window = [
        r for r in _captured_records(s3) if start <= datetime.fromisoformat(r["eventMetadata"]["inferenceTime"]) < end
    ]
    confidences = [max(json.loads(r["captureData"]["endpointOutput"]["data"])) for r in in_window]
    assert summary["totals"]["records"] == len(in_window) >= 8 + len(predictions)  # 6 smoke, 2 above, the batch
    assert summary["totals"]["below_threshold"] == sum(c < THRESHOLD for c in confidences)

    # Every capture of a workflow call names its inference: the id classify_image derives from the S3 object
    logic = load_lambda("classify_image").logic
    for name in (confident, doubtful):
        image = s3.get_object(Bucket=BUCKET, Key=images + name)["Body"].read()
        expected = logic.inference_id(BUCKET, images + name, image)
        ids = [r["eventMetadata"].get("inferenceId") for r in in_window if base64.b64decode(
            r["captureData"]["endpointInput"]["data"]) == image]  # fmt: skip
        assert ids and set(ids) == {expected}, (name, ids)
    assert all(r["eventMetadata"].get("inferenceId") for r in in_window)  # the smoke executions' too


def scones_env_sagemaker_url(local_cloud: Any) -> str:
    return local_cloud.cfg.sagemaker_url
