"""DAG integrity: every DAG file imports cleanly and cheaply, and every DAG follows the project's header rules.
The last test feeds the same rules a broken DAG folder, so they are known to catch what they claim."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.dags import integrity

DAGS = Path(__file__).resolve().parents[2] / "dags"
EXPECTED_DAG_IDS = {"scones_training_pipeline", "scones_inference_workflow", "scones_teardown"}


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
    with pytest.raises(ParamValidationError):
        params.get_param("epochs").resolve(0)
    with pytest.raises(ParamValidationError):
        params.get_param("classes").resolve(["bicycle", "not-a-cifar-class"])
    assert params.get_param("classes").resolve() == ["bicycle", "motorcycle"]


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
