"""GuardedEndpointOperator's decision after the provider's endpoint operator returns (a narrow unit test: the
real rollback runs in tests/localcloud/test_guardrails.py and tests/e2e/test_training_pipeline.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.scones import registry
from include.scones.operators import GuardedEndpointOperator

ARN = "arn:aws:sagemaker:us-east-1:000000000000:model-package/g/3"


class FakeClient:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    def update_model_package(self, **request: Any) -> None:
        self.updates.append(request)


def operator(client: FakeClient) -> GuardedEndpointOperator:
    task = GuardedEndpointOperator(
        task_id="deploy_endpoint", config={"EndpointName": "ep", "EndpointConfigName": "new"}, model_package_arn=ARN
    )
    task.__dict__["hook"] = SimpleNamespace(conn=client)  # the provider's cached_property
    return task


def result(config: str, reason: str | None = None) -> dict[str, Any]:
    endpoint = {"EndpointName": "ep", "EndpointConfigName": config, "EndpointStatus": "InService"}
    return {"Endpoint": endpoint | ({"FailureReason": reason} if reason else {}), "EndpointConfig": {}}


def test_a_deployed_config_passes_and_leaves_the_version_alone() -> None:
    client = FakeClient()
    assert operator(client)._settle(result("new")) == result("new")
    assert client.updates == []


def test_a_rollback_fails_for_good_naming_the_alarm_and_rejects_the_version() -> None:
    client = FakeClient()
    reason = "Deployment rolled back: CloudWatch alarm ep-5xx-errors went to ALARM during the bake (x)."
    with pytest.raises(AirflowFailException, match="ep-5xx-errors.*The endpoint still serves old"):
        operator(client)._settle(result("old", reason))
    [update] = client.updates
    assert update["ModelPackageArn"] == ARN and update["ModelApprovalStatus"] == registry.REJECTED
    assert update["ApprovalDescription"] == f"Rolled back by the deployment guardrails: {reason}"
    assert update["CustomerMetadataProperties"] == {registry.REVIEWER_PROPERTY: "guardrails"}


def test_a_rollback_with_no_reason_still_fails() -> None:  # AWS's FailureReason may be empty (contracts §2.3)
    client = FakeClient()
    with pytest.raises(AirflowFailException, match="SageMaker gave no reason"):
        operator(client)._settle(result("old"))
    assert client.updates[0]["ApprovalDescription"].endswith(": SageMaker gave no reason")
