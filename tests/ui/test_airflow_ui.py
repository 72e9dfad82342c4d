"""The README's "Using the Airflow UI" path, as a newcomer takes it, in real headless Chromium against `make airflow`:
log in, trigger the training DAG from the form (a bad value is refused, never clamped), watch the real scheduler
run it, see the workflow DAG follow the deploy, read the new report under Browse → Scones monitoring, read the
graph in stages. test_approval.py then approves and rejects versions, and test_shutdown.py stops it all with
Ctrl-C (the package's tests run in file order, as one user's session)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from include.scones.monitoring.capture import display_time
from include.scones.params import PARAM_SCHEMAS
from tests.ui.conftest import AirflowUI, log_in

pytestmark = pytest.mark.e2e

TRAINING = "scones_training_pipeline"
WORKFLOW = "scones_inference_workflow"
# Small enough to train in seconds on 2 cores, with a floor the model clears: what a user tries first.
SMALL_PARAMS = {"epochs": "8", "members": "1", "min_accuracy": "0.5"}
STAGES = ["Plan", "ETL", "Train", "Evaluate", "Approve", "Deploy"]


def number_field(dialog: Any, name: str) -> Any:
    return dialog.locator(f"input[name=element_{name}]")


def open_trigger_form(page: Any, ui: AirflowUI) -> Any:
    page.goto(f"{ui.url}/dags/{TRAINING}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    return dialog


def submit(page: Any, dialog: Any) -> Any:
    with page.expect_response(lambda r: r.url.endswith("/dagRuns") and r.request.method == "POST") as response:
        dialog.get_by_role("button", name="Trigger", exact=True).click()
    return response.value


@pytest.fixture(scope="module")
def triggered(page: Any, airflow_ui: AirflowUI) -> dict[str, Any]:
    """The form as a user fills it: first with a learning rate out of range, then with small Params."""
    dialog = open_trigger_form(page, airflow_ui)
    form_text = dialog.inner_text()
    # Given the form with every Param's title, description and bounds, and "unpause on trigger" ticked as it comes
    assert dialog.get_by_label(f"Unpause {TRAINING} on trigger").is_checked()
    number_field(dialog, "learning_rate").fill("5")
    number_field(dialog, "epochs").click()  # leave the field, where a clamping input would rewrite it
    typed = number_field(dialog, "learning_rate").input_value()
    refused = submit(page, dialog)
    refusal = dialog.get_by_text("Invalid input for param learning_rate")
    refusal.wait_for()
    message = refusal.inner_text()
    runs_after_refusal = airflow_ui.runs(TRAINING)

    number_field(dialog, "learning_rate").fill("0.05")
    for name, value in SMALL_PARAMS.items():
        number_field(dialog, name).fill(value)
    accepted = submit(page, dialog)
    return {
        "form_text": form_text,
        "typed": typed,
        "refused": (refused.status, message),
        "runs_after_refusal": runs_after_refusal,
        "accepted": (accepted.status, accepted.json()),
    }


def test_the_form_shows_every_param_with_its_title_description_and_bounds(triggered: dict[str, Any]) -> None:
    text = triggered["form_text"]
    for schema in PARAM_SCHEMAS.values():
        assert schema["title"] in text and schema["description"] in text, schema["title"]
    assert "Allowed: more than 0, up to 1." in text  # the learning rate's bounds, as the API enforces them


def test_the_class_picker_offers_the_cifar_names(page: Any, airflow_ui: AirflowUI) -> None:
    dialog = open_trigger_form(page, airflow_ui)
    dialog.locator("#element_classes").click()
    options = page.get_by_role("option")
    options.first.wait_for()
    names = options.all_inner_texts()
    assert len(names) == 98 and "tractor" in names  # the 100 fine labels but the two already chosen
    assert not {"bicycle", "motorcycle"} & set(names)
    page.keyboard.press("Escape")


def test_an_out_of_range_value_is_refused_with_its_bound_and_never_clamped(triggered: dict[str, Any]) -> None:
    assert triggered["typed"] == "5"  # the field kept what was typed
    status, message = triggered["refused"]
    assert status == 400
    assert message.startswith("Invalid input for param learning_rate: 5 is greater than the maximum of 1")
    assert triggered["runs_after_refusal"] == []  # no run was created


def test_the_run_triggered_from_the_form_is_the_one_that_runs(triggered: dict[str, Any], airflow_ui: AirflowUI) -> None:
    status, created = triggered["accepted"]
    assert status == 200, created
    run = airflow_ui.wait_for_run(TRAINING, lambda r: r["dag_run_id"] == created["dag_run_id"], timeout_s=1500)
    assert run["state"] == "success", run
    assert run["run_type"] == "manual"
    expected = {"learning_rate": 0.05, "epochs": 8, "members": 1, "min_accuracy": 0.5}
    assert {k: run["conf"][k] for k in expected} == expected
    # The form unpaused the DAG, and no scheduled catch-up run with the default Params was created
    with airflow_ui.api() as api:
        assert api.get(f"/dags/{TRAINING}").json()["is_paused"] is False
    assert [r["dag_run_id"] for r in airflow_ui.runs(TRAINING)] == [created["dag_run_id"]]
    with airflow_ui.api() as api:
        states = {
            ti["task_id"]: ti["state"]
            for ti in api.get(f"/dags/{TRAINING}/dagRuns/{run['dag_run_id']}/taskInstances").json()["task_instances"]
        }
    assert states["deploy_endpoint"] == "success" and states["reject_version"] == "skipped", states
    assert states["review"] == "skipped", states  # approval=auto, the default


def test_the_workflow_dag_follows_the_deploy(triggered: dict[str, Any], airflow_ui: AirflowUI) -> None:
    run = airflow_ui.wait_for_run(WORKFLOW, lambda r: r["run_type"] == "asset_triggered", timeout_s=900)
    assert run["state"] == "success", run


def latest_summary(ui: AirflowUI) -> dict[str, Any]:
    body = ui.aws("s3").get_object(Bucket="scones-ui-e2e", Key="monitoring/latest/summary.json")["Body"].read()
    return dict(json.loads(body))


def test_browse_scones_monitoring_shows_the_new_report(page: Any, airflow_ui: AirflowUI, tmp_path: Path) -> None:
    summary = latest_summary(airflow_ui)
    page.goto(f"{airflow_ui.url}/")
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Scones monitoring").click()
    page.wait_for_url("**/plugin/scones/monitoring/")
    assert page.url == f"{airflow_ui.url}/plugin/scones/monitoring/"
    report = page.frame_locator("iframe[title='Scones monitoring']")
    heading = report.locator("h1")
    assert heading.inner_text() == f"Monitoring report {summary['endpoint_name']}"
    text = report.locator("body").inner_text()
    assert f"Window {display_time(summary['window']['start'])} to {display_time(summary['window']['end'])}" in text
    assert summary["totals"]["records"] >= 6  # the smoke executions' captured inferences
    page.screenshot(path=str(tmp_path / "monitoring.png"))


def test_the_report_without_a_login_goes_to_the_login_and_back(browser: Any, airflow_ui: AirflowUI) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        visitor = context.new_page()
        visitor.goto(f"{airflow_ui.url}/monitoring/")
        assert "/auth/login" in visitor.url
        log_in(visitor, airflow_ui)
        visitor.wait_for_url(f"{airflow_ui.url}/monitoring/")
        assert visitor.locator("h1").inner_text().startswith("Monitoring report ")
    finally:
        context.close()


def test_the_graph_reads_in_stages_at_1600_px(page: Any, airflow_ui: AirflowUI, tmp_path: Path) -> None:
    page.goto(f"{airflow_ui.url}/dags/{TRAINING}")
    page.get_by_role("button", name="Show Graph (Press g)").click()
    nodes = page.locator(".react-flow__node")
    nodes.first.wait_for()
    time.sleep(2)  # the layout settles and the view fits
    shot = tmp_path / "graph-1600.png"
    page.screenshot(path=str(shot))
    pane = page.locator(".react-flow").bounding_box()
    boxes = {stage: nodes.filter(has_text=stage).first.bounding_box() for stage in STAGES}
    # One node per stage, all inside the visible graph pane, left to right in the order of the flow
    assert all(box is not None for box in boxes.values()), boxes
    for stage, box in boxes.items():
        assert pane["x"] <= box["x"] and box["x"] + box["width"] <= pane["x"] + pane["width"], (stage, box, pane)
    lefts = [boxes[stage]["x"] for stage in STAGES]
    assert lefts == sorted(lefts), lefts
    assert nodes.count() == len(STAGES)  # collapsed stages: the plan's fan-out is five edges, not eighteen tasks
