"""The labelling loop (issue #18) in the `make airflow` session of tests/ui/conftest.py, after test_approval.py, with
the real scheduler, MiniStack and the local SageMaker:

1. drifted traffic (darkened test images, sent to the endpoint with an InferenceId as classify_image does) and a
   workflow run with the retraining trigger turned off (Variable SCONES_RETRAIN_ON_ALERT=false): the input-drift
   alert fails the run, no retraining is requested, and the filtered inferences are queued for review;
2. a dispatcher in headless Chromium logs in, opens Browse → Scones review, labels three images (two with the
   keyboard) and changes one: the labels are in S3 in Model Monitor's ground-truth format;
3. with the trigger back on, more drifted traffic and a workflow run: the alert updates the Asset
   scones_retraining_requested, the scheduler starts a training run from it, and that run's dataset version
   holds the labelled images (not the "neither" one);
4. the workflow run that follows that deploy reports the live accuracy of the labelled window.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from include.scones import registry
from include.scones.monitoring.ground_truth import parse_label
from tests.lambdas.helpers import load_lambda
from tests.ui.conftest import AirflowUI

pytestmark = pytest.mark.e2e

TRAINING = "scones_training_pipeline"
WORKFLOW = "scones_inference_workflow"
ENDPOINT = "scones-vehicle-classifier"
BUCKET = "scones-ui-e2e"
TRIGGER_VARIABLE = "SCONES_RETRAIN_ON_ALERT"
BATCH = 64  # over SCONES_ALERT_MIN_RECORDS (50): a window this size is judged
RUN_TIMEOUT_S = 1500


def darkened(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        pixels = (np.asarray(image.convert("RGB"), dtype=np.float32) * 0.35).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def send_drifted_traffic(ui: AirflowUI, first: int) -> int:
    """BATCH darkened test images, from the `first`-th, through InvokeEndpoint as the classify Lambda calls it."""
    s3, runtime = ui.aws("s3"), ui.aws("sagemaker-runtime")
    live = registry.live_deployment(ui.aws("sagemaker"), ENDPOINT)
    assert live is not None
    prefix = live.data_uri.removeprefix(f"s3://{BUCKET}/") + "test/images/"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"])
    logic = load_lambda("classify_image").logic
    for key in keys[first : first + BATCH]:
        body = darkened(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=body,
                                InferenceId=logic.inference_id(BUCKET, "drifted/" + key, body))  # fmt: skip
    return BATCH


def set_trigger(ui: AirflowUI, enabled: bool) -> None:
    with ui.api() as api:
        if enabled:
            response = api.delete(f"/variables/{TRIGGER_VARIABLE}")
            assert response.status_code in (204, 404), response.text
        else:
            response = api.post("/variables", json={"key": TRIGGER_VARIABLE, "value": "false"})
            assert response.status_code in (200, 201), response.text


def run_workflow(ui: AirflowUI) -> tuple[dict[str, Any], dict[str, str]]:
    with ui.api() as api:
        created = api.post(f"/dags/{WORKFLOW}/dagRuns", json={"logical_date": None})
    assert created.status_code == 200, created.text
    run_id = created.json()["dag_run_id"]
    run = ui.wait_for_run(WORKFLOW, lambda r: r["dag_run_id"] == run_id, timeout_s=RUN_TIMEOUT_S)
    return run, task_states(ui, WORKFLOW, run_id)


def task_states(ui: AirflowUI, dag_id: str, run_id: str) -> dict[str, str]:
    with ui.api() as api:
        listing = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    return {ti["task_id"]: ti["state"] for ti in listing.json()["task_instances"]}


def xcom(ui: AirflowUI, dag_id: str, run_id: str, task_id: str) -> Any:
    with ui.api() as api:
        response = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                           params={"deserialize": True})  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()["value"]


def latest_summary(ui: AirflowUI) -> dict[str, Any]:
    body = ui.aws("s3").get_object(Bucket=BUCKET, Key="monitoring/latest/summary.json")["Body"].read()
    return dict(json.loads(body))


def retraining_events(ui: AirflowUI) -> list[dict[str, Any]]:
    with ui.api() as api:
        assets = api.get("/assets", params={"name_pattern": "scones_retraining_requested"}).json()["assets"]
        if not assets:
            return []
        events = api.get("/assets/events", params={"asset_id": assets[0]["id"]}).json()
    return list(events["asset_events"])


@pytest.fixture(scope="module")
def first_alert(airflow_ui: AirflowUI) -> dict[str, Any]:
    set_trigger(airflow_ui, enabled=False)
    send_drifted_traffic(airflow_ui, 0)
    run, states = run_workflow(airflow_ui)
    return {"run": run, "states": states, "summary": latest_summary(airflow_ui)}


def test_drift_raises_the_input_drift_alert_and_the_trigger_can_be_off(first_alert: dict[str, Any],
                                                                       airflow_ui: AirflowUI) -> None:  # fmt: skip
    states, summary = first_alert["states"], first_alert["summary"]
    assert first_alert["run"]["state"] == "failed"
    assert states["monitoring_report"] == "success" and states["check_alerts"] == "failed", states
    assert states["request_retraining"] == "skipped", states  # SCONES_RETRAIN_ON_ALERT=false
    assert "brightness" in summary["input_drift"]["drifted"], summary["input_drift"]
    assert any(alert.startswith("input drift: image brightness") for alert in summary["alerts"])
    assert retraining_events(airflow_ui) == []
    assert summary["review_queue_added"] >= 3, "fewer than three darkened images were below the threshold"


def test_a_dispatcher_labels_in_the_review_page(first_alert: dict[str, Any], page: Any, airflow_ui: AirflowUI,
                                                tmp_path: Path) -> None:  # fmt: skip
    page.goto(f"{airflow_ui.url}/")
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Scones review").click()
    page.wait_for_url("**/monitoring/review/")
    review = page.frame_locator("iframe[title='Scones review']")
    items = review.locator("#queue > li")
    items.first.wait_for()
    assert items.count() >= 3
    ids = [items.nth(i).get_attribute("data-inference-id") for i in range(3)]

    def status(index: int) -> Any:
        return items.nth(index).locator(".status")

    # the mouse: the first image is a bicycle
    items.nth(0).get_by_role("button", name="1 · bicycle").click()
    status(0).filter(has_text="Labelled bicycle by admin").wait_for()
    # the keyboard: select the second, 2 = motorcycle, which moves on to the third, 0 = neither
    items.nth(1).locator("img").click()
    page.keyboard.press("2")
    status(1).filter(has_text="Labelled motorcycle by admin").wait_for()
    assert "focused" in (items.nth(2).get_attribute("class") or "")
    page.keyboard.press("0")
    status(2).filter(has_text="Labelled neither by admin").wait_for()
    # a second look: the first one was a motorcycle after all
    items.nth(0).get_by_role("button", name="2 · motorcycle").click()
    status(0).filter(has_text="Labelled motorcycle by admin").wait_for()
    assert items.nth(0).get_by_role("button", name="2 · motorcycle").get_attribute("aria-pressed") == "true"
    assert items.nth(0).get_by_role("button", name="1 · bicycle").get_attribute("aria-pressed") == "false"
    page.screenshot(path=str(tmp_path / "review.png"))

    # Then S3 holds every label in Model Monitor's ground-truth format, and the last one of each image counts
    s3 = airflow_ui.aws("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="ground_truth/").get("Contents", [])]
    assert len(keys) == 4 and all(key.endswith(".jsonl") for key in keys)
    records = [json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()) for key in keys]
    for record, key in zip(records, keys, strict=True):
        assert set(record) == {"groundTruthData", "eventMetadata", "eventVersion"}
        assert record["groundTruthData"]["encoding"] == "CSV"
        assert record["eventMetadata"]["inferenceId"] == record["eventMetadata"]["eventId"]
        given = datetime.fromisoformat(record["eventMetadata"]["labelTime"])
        assert key.startswith(f"ground_truth/{given:%Y/%m/%d/%H}/")
    last: dict[str, Any] = {}
    for label in sorted((parse_label(json.dumps(r)) for r in records), key=lambda label: label.label_time):
        last[label.inference_id] = label.label
    assert last == {ids[0]: "motorcycle", ids[1]: "motorcycle", ids[2]: "neither"}


def test_the_next_alert_retrains_on_the_labelled_images(first_alert: dict[str, Any], airflow_ui: AirflowUI) -> None:
    trainings_before = {r["dag_run_id"] for r in airflow_ui.runs(TRAINING)}
    set_trigger(airflow_ui, enabled=True)
    send_drifted_traffic(airflow_ui, BATCH)
    run, states = run_workflow(airflow_ui)
    assert states["request_retraining"] == "success" and states["check_alerts"] == "failed", states
    [event] = retraining_events(airflow_ui)
    assert any(alert.startswith("input drift") for alert in event["extra"]["alerts"])

    # Then the scheduler starts a training run from the Asset, and its dataset holds the two class labels
    training = airflow_ui.wait_for_run(
        TRAINING, lambda r: r["dag_run_id"] not in trainings_before and r["run_type"] == "asset_triggered",
        timeout_s=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert training["state"] == "success", task_states(airflow_ui, TRAINING, training["dag_run_id"])
    data_uri = xcom(airflow_ui, TRAINING, training["dag_run_id"], "load")
    manifest_key = data_uri.removeprefix(f"s3://{BUCKET}/") + "manifest.json"
    manifest = json.loads(airflow_ui.aws("s3").get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
    assert manifest["labelled"]["images"] == 2 and manifest["labelled"]["by_class"] == {"bicycle": 0, "motorcycle": 2}
    assert manifest["labelled"]["left_out"] == {"neither": 1}
    assert all(name in manifest["files"] for name in manifest["labelled"]["files"])
    base_key = f"{manifest_key.rsplit('/', 2)[0]}/{manifest['base_dataset_id']}/manifest.json"
    base = json.loads(airflow_ui.aws("s3").get_object(Bucket=BUCKET, Key=base_key)["Body"].read())
    tests = {name: digest for name, digest in manifest["files"].items() if name.startswith("test/")}
    assert tests == {name: digest for name, digest in base["files"].items() if name.startswith("test/")}

    # And the workflow run that follows that deploy shows the live accuracy of the labelled window
    followed = airflow_ui.wait_for_run(
        WORKFLOW, lambda r: r["run_type"] == "asset_triggered" and r["run_after"] > training["run_after"],
        timeout_s=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert followed["state"] == "success", task_states(airflow_ui, WORKFLOW, followed["dag_run_id"])
    accuracy = latest_summary(airflow_ui)["live_accuracy"]
    assert (accuracy["labelled"], accuracy["neither"]) == (2, 1), accuracy
    assert accuracy["accuracy"] is not None and sum(map(sum, accuracy["confusion_matrix"]["rows"])) == 2
    page = airflow_ui.aws("s3").get_object(Bucket=BUCKET, Key="monitoring/latest/report.html")["Body"].read().decode()
    assert "Live accuracy (labelled by people)" in page and "2 labelled predictions" in page
