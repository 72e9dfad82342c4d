"""teardown: deletes the endpoint first (waiting with boto3's endpoint_deleted waiter), then only run-named
configs and models, and the registry's old versions. Pruning is tested in test_teardown_prune.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import botocore.session
import botocore.waiter
import pytest
from botocore.exceptions import ClientError, WaiterError

from include.scones import teardown as td
from include.scones.teardown import RUN_NAME, wait_until_deleted
from tests.scones.helpers import RegistryVersions, client_error

RUN_A = "scones-20250101-000000-0123abcd"
RUN_B = "scones-20250202-121212-89abcdef"
KEEP = [
    "scones-manual-config",
    "scones-20250101-000000-0123ABCD",  # upper-case hex: not a run id
    f"{RUN_A}-eval",
    "other-20250101-000000-0123abcd",
    "xscones-20250101-000000-0123abcd",
]


class FakePaginator:
    def __init__(self, items: list[dict[str, str]], list_key: str, calls: list[tuple[str, Any]]) -> None:
        self.items, self.list_key, self.calls = items, list_key, calls

    def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append(("paginate", (self.list_key, kwargs)))
        key = "EndpointConfigName" if self.list_key == "EndpointConfigs" else "ModelName"
        matching = [i for i in self.items if kwargs.get("NameContains", "") in i[key]]
        return [{self.list_key: matching[:3]}, {self.list_key: matching[3:]}]  # two pages


class FakeSageMaker:
    """The calls teardown makes, over in-memory endpoints, endpoint configs and models."""

    exceptions = SimpleNamespace(ClientError=ClientError)

    def __init__(self, endpoints: set[str], configs: list[str], models: list[str]) -> None:
        self.endpoints = set(endpoints)
        self.configs = [{"EndpointConfigName": n, "EndpointConfigArn": f"arn:ec/{n}"} for n in configs]
        self.models = [{"ModelName": n, "ModelArn": f"arn:model/{n}"} for n in models]
        # Every resource is tagged for the default endpoint unless a test says otherwise.
        self.tags: dict[str, list[dict[str, str]]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.vanished: set[str] = set()  # listed, but deleted by someone else before teardown gets to them

        self.status = "Deleting"  # what DescribeEndpoint answers while the endpoint exists
        self.registry = RegistryVersions()
        self.delete_model_package = self.registry.delete

    def delete_endpoint(self, EndpointName: str) -> None:  # noqa: N803 (boto3's argument names)
        self.calls.append(("delete_endpoint", EndpointName))
        if EndpointName not in self.endpoints:
            raise client_error("ValidationException", "DeleteEndpoint", f"Could not find endpoint {EndpointName}")
        self.endpoints.discard(EndpointName)

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:  # noqa: N803
        self.calls.append(("describe_endpoint", EndpointName))
        if EndpointName not in self.endpoints:
            raise client_error("ValidationException", "DescribeEndpoint", f"Could not find endpoint {EndpointName}")
        return {"EndpointName": EndpointName, "EndpointStatus": self.status, "FailureReason": "disk on fire"}

    def get_waiter(self, name: str) -> botocore.waiter.Waiter:
        """botocore's own endpoint_deleted waiter (acceptors from its waiters-2.json) over this fake's calls."""
        assert name == "endpoint_deleted"
        config = botocore.session.get_session().get_waiter_model("sagemaker").get_waiter("EndpointDeleted")
        return botocore.waiter.Waiter(
            "EndpointDeleted", config, botocore.waiter.NormalizedOperationMethod(self.describe_endpoint)
        )

    def get_paginator(self, name: str) -> Any:
        if name == "list_model_packages":
            return self.registry.paginator()
        if name == "list_endpoint_configs":
            return FakePaginator(self.configs, "EndpointConfigs", self.calls)
        assert name == "list_models"
        return FakePaginator(self.models, "Models", self.calls)

    def list_tags(self, ResourceArn: str) -> dict[str, Any]:  # noqa: N803
        default = [{"Key": "scones:endpoint", "Value": "ep"}]
        return {"Tags": self.tags.get(ResourceArn, default)}

    def delete_endpoint_config(self, EndpointConfigName: str) -> None:  # noqa: N803
        self.calls.append(("delete_endpoint_config", EndpointConfigName))
        if EndpointConfigName in self.vanished:
            raise client_error("ValidationException", "DeleteEndpointConfig", "Could not find endpoint configuration")
        self.configs = [c for c in self.configs if c["EndpointConfigName"] != EndpointConfigName]

    def delete_model(self, ModelName: str) -> None:  # noqa: N803
        self.calls.append(("delete_model", ModelName))
        if ModelName in self.vanished:
            raise client_error("ValidationException", "DeleteModel", f'Could not find model "{ModelName}".')
        self.models = [m for m in self.models if m["ModelName"] != ModelName]


def deletions(client: FakeSageMaker) -> list[tuple[str, Any]]:
    return [call for call in client.calls if call[0].startswith("delete_")]


@pytest.fixture
def client() -> FakeSageMaker:
    return FakeSageMaker({"ep"}, [RUN_A, *KEEP, RUN_B], [*KEEP, RUN_B, RUN_A])


def test_run_name_pattern() -> None:
    assert RUN_NAME.match(RUN_A) and RUN_NAME.match(RUN_B)
    assert not any(RUN_NAME.match(name) for name in KEEP)


def test_deletes_endpoint_first_then_only_run_named_resources(client: FakeSageMaker) -> None:
    deleted = td.teardown(client, "ep", "group", 5, timeout_s=5, poll_s=1)
    assert deleted == {
        "endpoints": ["ep"],
        "endpoint_configs": [RUN_A, RUN_B],
        "models": [RUN_B, RUN_A],
        "model_packages": [client.registry.arn(2), client.registry.arn(1)],  # beyond the newest 5
    }
    assert deletions(client)[0] == ("delete_endpoint", "ep")
    assert client.calls[1] == ("describe_endpoint", "ep")  # waited for the endpoint to go before the rest
    assert [c["EndpointConfigName"] for c in client.configs] == KEEP
    assert [m["ModelName"] for m in client.models] == KEEP
    assert [v["ModelPackageVersion"] for v in client.registry.versions] == [3, 4, 5, 6, 7]  # the group's history
    assert ("paginate", ("EndpointConfigs", {"NameContains": "scones-"})) in client.calls


def test_resources_of_another_endpoint_are_kept(client: FakeSageMaker) -> None:
    # Given RUN_B's config and model were made for a different endpoint in the same account
    client.tags[f"arn:ec/{RUN_B}"] = client.tags[f"arn:model/{RUN_B}"] = [{"Key": "scones:endpoint", "Value": "other"}]
    # When tearing down "ep"
    deleted = td.teardown(client, "ep", "group", 5, timeout_s=5, poll_s=1)
    # Then only "ep"'s run-named resources go
    assert deleted["endpoint_configs"] == [RUN_A] and deleted["models"] == [RUN_A]
    assert RUN_B in [c["EndpointConfigName"] for c in client.configs]


def test_missing_endpoint_is_fine() -> None:
    client = FakeSageMaker(set(), [RUN_A], [RUN_A])
    deleted = td.teardown(client, "ep", "group", 5)
    assert deleted["endpoints"] == []
    assert deleted["endpoint_configs"] == [RUN_A] and deleted["models"] == [RUN_A]
    # no waiting for a deletion; the one DescribeEndpoint is registry pruning asking what is live
    assert [name for name, _ in client.calls].count("describe_endpoint") == 1


def test_second_call_deletes_nothing(client: FakeSageMaker) -> None:
    td.teardown(client, "ep", "group", 5, poll_s=1)
    client.calls.clear()
    again = td.teardown(client, "ep", "group", 5, poll_s=1)
    assert again == {"endpoints": [], "endpoint_configs": [], "models": [], "model_packages": []}
    assert deletions(client) == [("delete_endpoint", "ep")]  # attempted, answered "does not exist"


def test_other_client_errors_propagate() -> None:
    client = FakeSageMaker({"ep"}, [RUN_A], [RUN_A])

    def throttled(EndpointName: str) -> None:  # noqa: N803
        raise client_error("ThrottlingException", "DeleteEndpoint", "Rate exceeded")

    client.delete_endpoint = throttled  # type: ignore[method-assign]
    with pytest.raises(ClientError, match="ThrottlingException"):
        td.teardown(client, "ep", "group", 5)
    assert deletions(client) == []  # nothing else was touched


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waiter's sleeps, recorded instead of slept (botocore.waiter's clock only)."""
    sleeps: list[float] = []
    monkeypatch.setattr(botocore.waiter, "time", SimpleNamespace(sleep=sleeps.append))
    return sleeps


def test_wait_until_deleted_polls_with_the_waiter_until_the_endpoint_is_gone(slept: list[float]) -> None:
    client = FakeSageMaker({"ep"}, [], [])
    describe = client.describe_endpoint

    def describe_then_vanish(EndpointName: str) -> dict[str, Any]:  # noqa: N803
        if len(client.calls) == 3:
            client.endpoints.discard("ep")
        return describe(EndpointName=EndpointName)

    client.describe_endpoint = describe_then_vanish  # type: ignore[method-assign]
    wait_until_deleted(client, "ep", timeout_s=60, poll_s=7)
    assert slept == [7, 7, 7]  # the poll interval is the waiter's Delay
    assert [name for name, _ in client.calls] == ["describe_endpoint"] * 4


def test_wait_until_deleted_times_out(slept: list[float]) -> None:
    client = FakeSageMaker({"ep"}, [], [])
    with pytest.raises(TimeoutError, match="endpoint ep still exists after 25 s"):
        wait_until_deleted(client, "ep", timeout_s=25, poll_s=10)
    assert slept == [10, 10]  # three attempts: 0 s, 10 s, 20 s; never more than the timeout
    assert len(client.calls) == 3


def test_wait_until_deleted_stops_when_the_deletion_fails(slept: list[float]) -> None:
    client = FakeSageMaker({"ep"}, [], [])
    client.status = "Failed"
    with pytest.raises(RuntimeError, match="deleting endpoint ep failed: disk on fire"):
        wait_until_deleted(client, "ep", timeout_s=60, poll_s=1)
    assert slept == []


def test_wait_until_deleted_lets_other_errors_through(slept: list[float]) -> None:
    client = FakeSageMaker({"ep"}, [], [])

    def denied(EndpointName: str) -> None:  # noqa: N803
        raise client_error("AccessDeniedException", "DescribeEndpoint", "not allowed")

    client.describe_endpoint = denied  # type: ignore[method-assign]
    with pytest.raises(WaiterError, match="AccessDeniedException|Unexpected error"):
        wait_until_deleted(client, "ep", timeout_s=60, poll_s=1)


def test_wait_until_deleted_needs_a_positive_poll_interval() -> None:
    with pytest.raises(ValueError, match="SCONES_POLL_SECONDS"):
        wait_until_deleted(FakeSageMaker({"ep"}, [], []), "ep", timeout_s=60, poll_s=0)


def test_real_boto3_waiter_is_configured_from_the_poll_interval(slept: list[float]) -> None:
    """The same call through a real botocore client (Stubber): DescribeEndpoint until ValidationException."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    with Stubber(client) as stub:
        stub.add_response("describe_endpoint", DESCRIBED_DELETING, {"EndpointName": "ep"})
        stub.add_client_error("describe_endpoint", "ValidationException", 'Could not find endpoint "ep".')
        wait_until_deleted(client, "ep", timeout_s=30, poll_s=3)
        stub.assert_no_pending_responses()
    assert slept == [3]


DESCRIBED_DELETING = {
    "EndpointName": "ep",
    "EndpointArn": "arn:aws:sagemaker:us-east-1:000000000000:endpoint/ep",
    "EndpointStatus": "Deleting",
    "CreationTime": "2026-01-01T00:00:00Z",
    "LastModifiedTime": "2026-01-01T00:00:00Z",
}


def test_resources_gone_before_their_turn_count_as_done(client: FakeSageMaker) -> None:
    client.vanished = {RUN_A}  # deleted by someone else between the listing and the delete call
    deleted = td.teardown(client, "ep", "group", 5, poll_s=1)
    assert deleted["endpoint_configs"] == [RUN_B] and deleted["models"] == [RUN_B]


class FakeWorkflowClients:
    """Lambda and Step Functions calls of teardown_workflow, over in-memory names."""

    class NotFound(Exception):
        pass

    def __init__(self, functions: set[str], machines: list[str]) -> None:
        self.functions, self.machines = set(functions), list(machines)
        self.exceptions = SimpleNamespace(ResourceNotFoundException=self.NotFound)

    def delete_function(self, FunctionName: str) -> None:  # noqa: N803
        if FunctionName not in self.functions:
            raise self.NotFound(FunctionName)
        self.functions.discard(FunctionName)

    def get_paginator(self, name: str) -> Any:
        assert name == "list_state_machines"
        pages = [{"stateMachines": [{"name": n, "stateMachineArn": f"arn:sm/{n}"} for n in self.machines]}]
        return SimpleNamespace(paginate=lambda: pages)

    def delete_state_machine(self, stateMachineArn: str) -> None:  # noqa: N803
        self.machines.remove(stateMachineArn.removeprefix("arn:sm/"))


def test_teardown_workflow_deletes_only_the_named_resources_and_is_idempotent() -> None:
    machines = ["scones-machine", "other-machine", "scones-batch"]
    clients = FakeWorkflowClients({"scones-a", "scones-b", "other"}, machines)
    names = ["scones-machine", "scones-batch", "scones-gone"]
    deleted = td.teardown_workflow(clients, clients, names, ["scones-a", "scones-b", "scones-c"])
    assert deleted == {"state_machines": ["scones-machine", "scones-batch"], "functions": ["scones-a", "scones-b"]}
    assert clients.functions == {"other"} and clients.machines == ["other-machine"]
    assert td.teardown_workflow(clients, clients, names, ["scones-a"]) == {
        "state_machines": [],
        "functions": [],
    }


class FakeCloudWatch:
    def __init__(self, existing: set[str]) -> None:
        self.existing = set(existing)
        self.deleted: list[list[str]] = []

    def describe_alarms(self, AlarmNames: list[str]) -> dict[str, Any]:
        return {"MetricAlarms": [{"AlarmName": n} for n in AlarmNames if n in self.existing]}

    def delete_alarms(self, AlarmNames: list[str]) -> None:
        unknown = set(AlarmNames) - self.existing
        if unknown:  # AWS answers ResourceNotFound for a name it does not have
            raise client_error("ResourceNotFound", "DeleteAlarms", f"{sorted(unknown)} not found")
        self.deleted.append(list(AlarmNames))
        self.existing -= set(AlarmNames)


def test_deletes_only_the_rollback_alarms_that_exist_and_a_second_call_deletes_nothing() -> None:
    cloudwatch = FakeCloudWatch({"ep-5xx-errors", "ep-model-latency", "other-5xx-errors"})
    assert td.delete_alarms(cloudwatch, "ep") == ["ep-5xx-errors", "ep-model-latency"]
    assert cloudwatch.existing == {"other-5xx-errors"}
    assert td.delete_alarms(cloudwatch, "ep") == [] and len(cloudwatch.deleted) == 1
    half = FakeCloudWatch({"ep-model-latency"})  # a run that stopped between the two puts
    assert td.delete_alarms(half, "ep") == ["ep-model-latency"]
