"""DAG integrity: every DAG file imports cleanly and cheaply, and every DAG follows the project's header rules.
The last test feeds the same rules a broken DAG folder, so they are known to catch what they claim."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.dags import integrity

DAGS = Path(__file__).resolve().parents[2] / "dags"
EXPECTED_DAG_IDS = {
    "scones_training_pipeline",
    "scones_inference_workflow",
    "scones_teardown",
    "scones_batch_classification",
}


@pytest.fixture(scope="module")
def dagbag():
    return integrity.load(DAGS)


def test_every_dag_file_imports_without_errors(dagbag) -> None:
    assert dagbag.import_errors == {}


def test_the_project_dags_are_present(dagbag) -> None:
    assert EXPECTED_DAG_IDS <= set(dagbag.dag_ids)


def test_dag_ids_equal_file_names(dagbag) -> None:
    for dag in dagbag.dags.values():
        assert Path(dag.fileloc).stem == dag.dag_id


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAG_IDS))
def test_dag_follows_the_header_rules(dagbag, dag_id: str) -> None:
    assert integrity.dag_problems(dagbag.dags[dag_id]) == []


@pytest.mark.parametrize("dag_file", sorted(DAGS.glob("*.py")), ids=lambda p: p.name)
def test_importing_a_dag_file_is_cheap(dag_file: Path) -> None:
    assert integrity.import_problems(dag_file) == []


def test_training_params_are_validated_by_the_ui_form(dagbag) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    params = dagbag.dags["scones_training_pipeline"].params
    assert params.get_param("classes").resolve() == ["bicycle", "motorcycle"]
    with pytest.raises(ParamValidationError):
        params.get_param("epochs").resolve(0)
    with pytest.raises(ParamValidationError, match="5 is greater than the maximum of 1"):
        params.get_param("learning_rate").resolve(5)  # refused, never clamped to 1
    with pytest.raises(ParamValidationError, match="is too short"):
        params.get_param("classes").resolve(["bicycle"])
    # A wrong class name passes the trigger (the form offers only real names); `plan` names it (test_params).
    assert params.get_param("classes").resolve(["bicycle", "unicorn"]) == ["bicycle", "unicorn"]


def test_teardown_defaults_to_the_full_teardown_and_branches_to_pruning(dagbag) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    dag = dagbag.dags["scones_teardown"]
    assert dag.params.get_param("mode").resolve() == "all"  # a trigger without the form does what it always did
    assert dag.params.get_param("keep_last").resolve() == 2
    with pytest.raises(ParamValidationError, match="101 is greater than the maximum of 100"):
        dag.params.get_param("keep_last").resolve(101)  # refused, never clamped
    with pytest.raises(ParamValidationError):
        dag.params.get_param("mode").resolve("everything")
    assert dag.get_task("choose_mode").downstream_task_ids == {"delete_workflow", "prune_configs_and_models"}
    assert dag.get_task("delete_workflow").downstream_task_ids == {"delete_endpoint_and_models"}


def test_the_batch_dag_runs_by_hand_in_order_and_its_prefix_defaults_to_the_live_test_images(dagbag) -> None:
    from airflow.providers.amazon.aws.sensors.step_function import StepFunctionExecutionSensor
    from airflow.sdk.definitions.param import ParamValidationError

    dag = dagbag.dags["scones_batch_classification"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # triggered by hand only
    assert dag.params.get_param("prefix").resolve() == ""
    with pytest.raises(ParamValidationError):
        dag.params.get_param("prefix").resolve("x" * 1025)
    downstream = {t: sorted(dag.get_task(t).downstream_task_ids) for t in ("plan", "start_batch", "wait_for_batch")}
    assert downstream == {"plan": ["start_batch"], "start_batch": ["summarize_batch", "wait_for_batch"],
                          "wait_for_batch": ["summarize_batch"]}  # fmt: skip
    assert isinstance(dag.get_task("wait_for_batch"), StepFunctionExecutionSensor)
    assert dagbag.dags["scones_inference_workflow"].get_task("deploy_batch_state_machine").upstream_task_ids == {
        "plan", "deploy_lambdas"}  # fmt: skip


@pytest.mark.parametrize("dag_id", ["scones_training_pipeline", "scones_inference_workflow"])
def test_the_schedule_survives_serialization_and_starts_no_past_tick(dagbag, dag_id: str) -> None:
    """The scheduler sees the DAG through its serialized form; the custom timetable must come back as itself."""
    from airflow.serialization.serialized_objects import DagSerialization

    from include.scones.timetables import UpcomingCronTimetable

    timetable = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.dags[dag_id])).timetable
    inner = getattr(timetable, "timetable", timetable)  # the workflow's AssetOrTimeSchedule wraps it
    assert isinstance(inner, UpcomingCronTimetable)


def test_every_task_sits_in_a_stage(dagbag) -> None:
    for dag_id, stages in {
        "scones_training_pipeline": {"Plan", "ETL", "Train", "Evaluate", "Approve", "Deploy"},
        "scones_inference_workflow": {"Plan", "Deploy", "Smoke", "Monitor"},
    }.items():
        dag = dagbag.dags[dag_id]
        groups = {task.task_group.group_id for task in dag.tasks}
        assert groups == stages, dag_id
        assert all("." not in task.task_id for task in dag.tasks)  # ids stay unprefixed


def test_the_approval_paths_are_wired_as_the_readme_draws_them(dagbag) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from include.scones.params import PARAM_SCHEMAS

    dag = dagbag.dags["scones_training_pipeline"]
    review, approve, reject = (dag.get_task(t) for t in ("review", "approve_version", "reject_version"))
    # The gate chooses approve_version (auto) or review (manual); a Reject skips approve_version ...
    assert isinstance(review, ApprovalOperator) and review.defaults == ["Reject"]
    assert review.response_timeout is not None and review.response_timeout.total_seconds() == 24 * 3600
    assert set(review.params) == {"note"}  # only the reviewer's form field, not the DAG's Params
    assert {"gate", "review"} <= approve.upstream_task_ids and approve.trigger_rule == "none_failed_min_one_success"
    # ... and reject_version runs exactly when approve_version was skipped: nothing else may hold it back
    assert reject.upstream_task_ids == {"approve_version"} and reject.trigger_rule == "all_skipped"
    assert dag.get_task("create_serving_model").upstream_task_ids == {"approve_version"}
    assert dag.get_task("prune_registry").upstream_task_ids == {"record_deployment", "reject_version"}
    assert PARAM_SCHEMAS["approval"]["enum"] == ["auto", "manual"] and PARAM_SCHEMAS["approval"]["default"] == "auto"
    assert dag.params["approval"] == "auto"


def test_the_gate_routes_to_tasks_that_exist_and_the_review_reads_what_the_gate_pushes(dagbag) -> None:
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerRegisterModelVersionOperator

    from include.scones import review, training_steps
    from tests.scones.helpers import evaluation_result

    dag = dagbag.dags["scones_training_pipeline"]
    # gate_candidate returns these task ids (or None): they must be the gate's only direct downstream tasks
    assert dag.get_task("gate").downstream_task_ids == {training_steps.APPROVE_TASK, training_steps.REVIEW_TASK}
    # the gate pushes review.request's members as review_<name>; the review's subject and body are those XComs
    result = evaluation_result(accuracy_among_passed=None)
    pushed = {f"review_{name}" for name in review.request(1, result, {}, None, None, "deploying", "ep")}
    task = dag.get_task("review")
    assert {(task.subject.operator.task_id, task.subject.key), (task.body.operator.task_id, task.body.key)} == {
        ("gate", key) for key in pushed
    }
    # the tasks approve_version and reject_version pull from by id are in the DAG
    assert {"gate", "review", "register_candidate"} <= set(dag.task_ids)
    # the registration's extras (ClientToken, metrics, metadata) arrive as an XCom: they must be templated
    register = dag.get_task("register_candidate")
    assert isinstance(register, SageMakerRegisterModelVersionOperator) and "extras" in register.template_fields
    assert register.upstream_task_ids == {"build_registration"}


def test_the_deploy_step_is_guarded_by_the_alarms_it_names(dagbag) -> None:
    from include.scones.operators import GuardedEndpointOperator
    from include.scones.params import PARAM_SCHEMAS

    dag = dagbag.dags["scones_training_pipeline"]
    deploy = dag.get_task("deploy_endpoint")
    # the alarms exist before UpdateEndpoint names them (SageMaker refuses an alarm it cannot find)
    assert isinstance(deploy, GuardedEndpointOperator)
    assert deploy.upstream_task_ids == {"put_rollback_alarms", "build_model_requests", "register_candidate"}
    assert dag.get_task("put_rollback_alarms").upstream_task_ids == {"create_endpoint_config", "plan"}
    # the version it rejects on a rollback is the one this run registered, resolved at run time
    assert "model_package_arn" in deploy.template_fields
    assert dag.get_task("record_deployment").upstream_task_ids == {"deploy_endpoint", "plan", "register_candidate"}
    assert set(PARAM_SCHEMAS["rollout"]["enum"]) == {"all_at_once", "canary", "linear"}
    assert dag.params["rollout"] == "canary" and dag.params["rollout_percent"] == 20


BROKEN_DAGS = {
    "import_error.py": """
        from airflow.sdk import dag
        import module_that_does_not_exist
    """,
    "untagged.py": """
        import pendulum
        from airflow.sdk import dag, task

        @task
        def only(): pass

        @dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["other"],
             default_args={"owner": "x", "retries": 0})
        def untagged():
            only()

        untagged()
    """,
    "heavy.py": """
        import boto3
        import pendulum
        from airflow.sdk import dag

        boto3.client("s3")

        @dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
        def heavy():
            pass

        heavy()
    """,
}


def test_the_rules_catch_a_broken_dag_folder(tmp_path: Path) -> None:
    for name, source in BROKEN_DAGS.items():
        (tmp_path / name).write_text(textwrap.dedent(source))
    bag = integrity.load(tmp_path)
    assert any("module_that_does_not_exist" in error for error in bag.import_errors.values())
    problems = integrity.dag_problems(bag.dags["untagged"])
    assert "untagged: missing tag 'scones'" in problems
    assert "untagged: no doc_md" in problems
    assert "untagged: task only has retries 0 < 2" in problems
    assert any("AWS client was created" in p for p in integrity.import_problems(tmp_path / "heavy.py"))


def test_the_rules_catch_a_cycle() -> None:
    import pendulum
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    with DAG("cyclic", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        first, second = EmptyOperator(task_id="first"), EmptyOperator(task_id="second")
        first >> second
        second >> first
    assert any("cycle" in p for p in integrity.dag_problems(dag))
