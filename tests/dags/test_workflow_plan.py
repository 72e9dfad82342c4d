"""The workflow DAG's `plan` before any model is deployed: the hourly schedule runs from the start (the DAG is
unpaused at creation), so a scheduled run skips itself; a run someone triggered fails, saying what to do."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from include.scones import airflow_runtime
from include.scones.settings import load
from tests.dags import integrity
from tests.dags.test_dag_integrity import DAGS
from tests.scones.helpers import FakeRegistry


@pytest.fixture
def plan_callable(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(airflow_runtime, "settings", lambda: load(variables=lambda name: None))
    # No endpoint yet: DescribeEndpoint answers ValidationException, as SageMaker does
    monkeypatch.setattr(airflow_runtime, "sagemaker_hook", lambda: SimpleNamespace(conn=FakeRegistry()))
    dag = integrity.load(DAGS).dags["scones_inference_workflow"]
    return dag.get_task("plan").python_callable


@pytest.mark.parametrize(("run_type", "raised"), [("scheduled", AirflowSkipException), ("manual", AirflowFailException),
                                                  ("asset_triggered", AirflowFailException)])  # fmt: skip
def test_nothing_deployed_yet(plan_callable: Any, run_type: str, raised: type[Exception]) -> None:
    expected = "no deployed model: endpoint scones-vehicle-classifier does not serve a version of the Model Registry"
    with pytest.raises(raised, match=f"{expected} group scones-vehicle-classifier; run scones_training_pipeline"):
        plan_callable(dag_run=SimpleNamespace(run_type=run_type))


def test_the_workflow_dag_starts_unpaused() -> None:
    assert integrity.load(DAGS).dags["scones_inference_workflow"].is_paused_upon_creation is False
