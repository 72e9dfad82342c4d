"""Human approval of a Model Registry version (Param approval=manual), against the `make airflow` session of
tests/ui/conftest.py, after test_airflow_ui.py's form run deployed a first version with approval=auto.

Two manual runs of the same seeded recipe (so each candidate scores what the champion scored and passes the
gate's rules, and waits for a person):
1. a reviewer in headless Chromium logs in, opens Browse → Required Actions, reads the evaluation summary beside
   the champion's and approves with a note: the run goes on and deploys it, as a canary (the guarded update);
2. a script rejects through Airflow's REST API (after an answer that is not an option is refused): nothing is
   deployed, the endpoint still serves the champion, and the version holds the reviewer's note; a second answer
   is refused.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from include.scones import registry
from include.scones.records import DeploymentRecord
from tests.conftest import PROJECT_ROOT
from tests.ui.conftest import AirflowUI, log_in

pytestmark = pytest.mark.e2e

TRAINING = "scones_training_pipeline"
ENDPOINT = "scones-vehicle-classifier"
# The form run's recipe (tests/ui/test_airflow_ui.py), seeded: a candidate scores exactly what the champion does.
MANUAL = {"epochs": 8, "members": 1, "min_accuracy": 0.5, "learning_rate": 0.05, "approval": "manual"}
RUN_TIMEOUT_S = 1500
ANSWER_AFTER_S = 5
IMAGE = next((PROJECT_ROOT / "datasets" / "cifar100-bicycle-motorcycle" / "train").glob("*.png"))


def trigger(ui: AirflowUI) -> str:
    with ui.api() as api:
        created = api.post(f"/dags/{TRAINING}/dagRuns", json={"logical_date": None, "conf": MANUAL})
    assert created.status_code == 200, created.text
    return str(created.json()["dag_run_id"])


def review_path(run_id: str) -> str:
    return f"/dags/{TRAINING}/dagRuns/{run_id}/taskInstances/review/-1/hitlDetails"


def task_states(ui: AirflowUI, run_id: str) -> dict[str, str]:
    with ui.api() as api:
        listing = api.get(f"/dags/{TRAINING}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    return {ti["task_id"]: ti["state"] for ti in listing.json()["task_instances"]}


def wait_for_review(ui: AirflowUI, run_id: str) -> dict[str, Any]:
    """The run's approval request once its review task waits for a person."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        with ui.api() as api:
            detail = api.get(review_path(run_id))
        if detail.status_code == 200 and detail.json()["task_instance"]["state"] == "awaiting_input":
            # Answer as a person would, not within the second the request appeared: one answer sent 0.8 s after
            # the task deferred was lost here (Airflow 3.3.2 resumed the task, the resumed try died at start-up,
            # and the retry asked again), a race in Airflow's resume that a person in the UI cannot hit.
            time.sleep(ANSWER_AFTER_S)
            return dict(detail.json())
        states = task_states(ui, run_id)
        assert not {"failed", "upstream_failed"} & set(states.values()), states
        assert states.get("review") != "skipped", f"the gate did not ask for a review: {states}"
        time.sleep(5)
    raise AssertionError(f"run {run_id} did not ask for a review in {RUN_TIMEOUT_S} s: {task_states(ui, run_id)}")


def answer(ui: AirflowUI, run_id: str, option: str, note: str) -> httpx.Response:
    with ui.api() as api:
        return api.patch(review_path(run_id), json={"chosen_options": [option], "params_input": {"note": note}})


def finished(ui: AirflowUI, run_id: str) -> dict[str, Any]:
    return ui.wait_for_run(TRAINING, lambda r: r["dag_run_id"] == run_id, timeout_s=RUN_TIMEOUT_S)


def registered(ui: AirflowUI, run_id: str) -> dict[str, Any]:
    """The run's version, as the Model Registry describes it."""
    with ui.api() as api:
        entry = api.get(f"/dags/{TRAINING}/dagRuns/{run_id}/taskInstances/register_candidate/xcomEntries/return_value")
    assert entry.status_code == 200, entry.text
    arn = entry.json()["value"]
    return dict(ui.aws("sagemaker").describe_model_package(ModelPackageName=arn))


def champion(ui: AirflowUI) -> DeploymentRecord:
    live = registry.live_deployment(ui.aws("sagemaker"), ENDPOINT)
    assert live is not None, "nothing registered is live"
    return live


@pytest.fixture(scope="module")
def approved_in_the_browser(
    browser: Any, airflow_ui: AirflowUI, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A reviewer who was not logged in: the login, Browse → Required Actions, the request, Approve."""
    before = champion(airflow_ui)  # the form run's version
    run_id = trigger(airflow_ui)
    request = wait_for_review(airflow_ui, run_id)
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{airflow_ui.url}/")
        log_in(page, airflow_ui)
        page.get_by_text("Dags").first.wait_for()
        page.get_by_role("button", name="Browse").click()
        page.get_by_role("menuitem", name="Required Actions").click()
        page.wait_for_url("**/required_actions")
        page.get_by_role("link", name=request["subject"]).first.click()
        page.wait_for_url("**/runs/**/tasks/review/required_actions")
        summary = page.get_by_text("Evaluation summary", exact=True)
        summary.wait_for()
        shown = page.locator("body").inner_text()
        page.screenshot(path=str(tmp_path_factory.mktemp("approval") / "required-action.png"), full_page=True)
        page.locator("#element_note").fill("checked the confusion matrix")
        with page.expect_response(lambda r: "hitlDetails" in r.url and r.request.method == "PATCH") as patched:
            page.get_by_role("button", name="Approve", exact=True).click()
        status = patched.value.status
    finally:
        context.close()
    return {"run_id": run_id, "request": request, "shown": shown, "status": status, "before": before}


def test_the_request_compares_the_candidate_with_the_champion(approved_in_the_browser: dict[str, Any]) -> None:
    request, before = approved_in_the_browser["request"], approved_in_the_browser["before"]
    assert request["options"] == ["Approve", "Reject"] and request["defaults"] == ["Reject"]
    body = request["body"]
    assert body.startswith("**Evaluation summary** of version ")
    assert f"| Champion {before.version_label} |" in body
    assert f"| Test accuracy | {before.accuracy:.4f} | {before.accuracy:.4f} |" in body  # the seeded recipe


def test_a_reviewer_sees_the_evaluation_summary_in_required_actions(approved_in_the_browser: dict[str, Any]) -> None:
    shown, request = approved_in_the_browser["shown"], approved_in_the_browser["request"]
    assert request["subject"] in shown
    version = request["subject"].split("version ", 1)[1].split(" ", 1)[0]
    for text in ("Evaluation summary", f"Candidate v{version}", "Test accuracy", "Confusion matrix of the candidate"):
        assert text in shown, text
    assert "Approve" in shown and "Reject" in shown and "Note" in shown


def test_a_browser_approval_lets_the_run_go_on_and_deploy_as_a_canary(
    airflow_ui: AirflowUI, approved_in_the_browser: dict[str, Any]
) -> None:
    run_id = approved_in_the_browser["run_id"]
    assert approved_in_the_browser["status"] == 200
    run = finished(airflow_ui, run_id)
    assert run["state"] == "success", task_states(airflow_ui, run_id)
    states = task_states(airflow_ui, run_id)
    assert states["review"] == states["approve_version"] == states["deploy_endpoint"] == "success", states
    assert states["reject_version"] == "skipped", states
    version = registered(airflow_ui, run_id)
    assert version["ModelApprovalStatus"] == "Approved"
    assert version["ApprovalDescription"] == "Approved by admin: checked the confusion matrix"
    assert version["CustomerMetadataProperties"][registry.REVIEWER_PROPERTY] == "admin"
    live = champion(airflow_ui)
    assert live.model_package_arn == version["ModelPackageArn"]
    # The update replaced the form run's model through the guardrails: a canary, baked, then all the traffic
    endpoint = airflow_ui.aws("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == live.endpoint_config_name and "FailureReason" not in endpoint
    routing = endpoint["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY" and routing["CanarySize"] == {"Type": "CAPACITY_PERCENT", "Value": 20}


@pytest.fixture(scope="module")
def rejected_by_script(airflow_ui: AirflowUI, approved_in_the_browser: dict[str, Any]) -> dict[str, Any]:
    finished(airflow_ui, approved_in_the_browser["run_id"])
    before = champion(airflow_ui)
    run_id = trigger(airflow_ui)
    wait_for_review(airflow_ui, run_id)
    refused = answer(airflow_ui, run_id, "Maybe", "not an option")
    still_waiting = task_states(airflow_ui, run_id)["review"]
    response = answer(airflow_ui, run_id, "Reject", "bicycles at night look worse")
    assert response.status_code == 200, response.text
    run = finished(airflow_ui, run_id)
    return {
        "run_id": run_id,
        "before": before,
        "refused": refused,
        "still_waiting": still_waiting,
        "run": run,
        "changed_mind": answer(airflow_ui, run_id, "Approve", "on second thoughts"),
    }


def test_an_answer_that_is_not_an_option_is_refused_and_changes_nothing(rejected_by_script: dict[str, Any]) -> None:
    refused = rejected_by_script["refused"]
    assert 400 <= refused.status_code < 500, refused.text
    assert "Maybe" in refused.text
    assert rejected_by_script["still_waiting"] == "awaiting_input"
    # An answer is final: a second one is refused too, and the version stays as the first answer left it
    assert rejected_by_script["changed_mind"].status_code == 409


def test_a_rest_api_rejection_deploys_nothing_and_the_version_keeps_the_note(
    airflow_ui: AirflowUI, rejected_by_script: dict[str, Any]
) -> None:
    run_id = rejected_by_script["run_id"]
    assert rejected_by_script["run"]["state"] == "success", task_states(airflow_ui, run_id)  # a "no" is no failure
    states = task_states(airflow_ui, run_id)
    assert states["reject_version"] == "success", states
    deploy_tasks = ("approve_version", "create_serving_model", "create_endpoint_config", "deploy_endpoint")
    assert {states[t] for t in deploy_tasks} == {"skipped"}, states
    version = registered(airflow_ui, run_id)
    assert version["ModelApprovalStatus"] == "Rejected"
    assert version["ApprovalDescription"] == "Rejected by admin: bicycles at night look worse"
    # The endpoint still serves the champion, and answers
    before = rejected_by_script["before"]
    assert champion(airflow_ui) == before
    sagemaker = airflow_ui.aws("sagemaker")
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == before.endpoint_config_name
    runtime = airflow_ui.aws("sagemaker-runtime")
    reply = runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Body=IMAGE.read_bytes())
    probabilities = json.loads(reply["Body"].read())
    assert len(probabilities) == 2 and sum(probabilities) == pytest.approx(1, abs=1e-4)
