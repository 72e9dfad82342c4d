"""teardown: deletes the endpoint first, then only run-named configs and models, and the registry entry."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from include.scones import teardown as td
from include.scones.teardown import RUN_NAME, wait_until_deleted
from tests.scones.helpers import MemoryS3Hook, client_error

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

    def delete_endpoint(self, EndpointName: str) -> None:  # noqa: N803 (boto3's argument names)
        self.calls.append(("delete_endpoint", EndpointName))
        if EndpointName not in self.endpoints:
            raise client_error("ValidationException", "DeleteEndpoint", f"Could not find endpoint {EndpointName}")
        self.endpoints.discard(EndpointName)

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:  # noqa: N803
        self.calls.append(("describe_endpoint", EndpointName))
        if EndpointName not in self.endpoints:
            raise client_error("ValidationException", "DescribeEndpoint")
        return {"EndpointName": EndpointName, "EndpointStatus": "Deleting"}

    def get_paginator(self, name: str) -> FakePaginator:
        if name == "list_endpoint_configs":
            return FakePaginator(self.configs, "EndpointConfigs", self.calls)
        assert name == "list_models"
        return FakePaginator(self.models, "Models", self.calls)

    def list_tags(self, ResourceArn: str) -> dict[str, Any]:  # noqa: N803
        default = [{"Key": "scones:endpoint", "Value": "ep"}]
        return {"Tags": self.tags.get(ResourceArn, default)}

    def delete_endpoint_config(self, EndpointConfigName: str) -> None:  # noqa: N803
        self.calls.append(("delete_endpoint_config", EndpointConfigName))
        self.configs = [c for c in self.configs if c["EndpointConfigName"] != EndpointConfigName]

    def delete_model(self, ModelName: str) -> None:  # noqa: N803
        self.calls.append(("delete_model", ModelName))
        self.models = [m for m in self.models if m["ModelName"] != ModelName]


def deletions(client: FakeSageMaker) -> list[tuple[str, Any]]:
    return [call for call in client.calls if call[0].startswith("delete_")]


@pytest.fixture
def client() -> FakeSageMaker:
    return FakeSageMaker({"ep"}, [RUN_A, *KEEP, RUN_B], [*KEEP, RUN_B, RUN_A])


@pytest.fixture
def s3() -> MemoryS3Hook:
    return MemoryS3Hook({("bucket", "registry/ep.json"): b"{}", ("bucket", "models/keep.tar.gz"): b"x"})


def test_run_name_pattern() -> None:
    assert RUN_NAME.match(RUN_A) and RUN_NAME.match(RUN_B)
    assert not any(RUN_NAME.match(name) for name in KEEP)


def test_deletes_endpoint_first_then_only_run_named_resources(client: FakeSageMaker, s3: MemoryS3Hook) -> None:
    deleted = td.teardown(client, s3, "ep", "bucket", "registry/ep.json", timeout_s=5, poll_s=0)
    assert deleted == {
        "endpoints": ["ep"],
        "endpoint_configs": [RUN_A, RUN_B],
        "models": [RUN_B, RUN_A],
        "registry": ["s3://bucket/registry/ep.json"],
    }
    assert deletions(client)[0] == ("delete_endpoint", "ep")
    assert client.calls[1] == ("describe_endpoint", "ep")  # waited for the endpoint to go before the rest
    assert [c["EndpointConfigName"] for c in client.configs] == KEEP
    assert [m["ModelName"] for m in client.models] == KEEP
    assert s3.objects == {("bucket", "models/keep.tar.gz"): b"x"}  # data and artifacts stay
    assert ("paginate", ("EndpointConfigs", {"NameContains": "scones-"})) in client.calls


def test_resources_of_another_endpoint_are_kept(client: FakeSageMaker, s3: MemoryS3Hook) -> None:
    # Given RUN_B's config and model were made for a different endpoint in the same account
    client.tags[f"arn:ec/{RUN_B}"] = client.tags[f"arn:model/{RUN_B}"] = [{"Key": "scones:endpoint", "Value": "other"}]
    # When tearing down "ep"
    deleted = td.teardown(client, s3, "ep", "bucket", "registry/ep.json", timeout_s=5, poll_s=0)
    # Then only "ep"'s run-named resources go
    assert deleted["endpoint_configs"] == [RUN_A] and deleted["models"] == [RUN_A]
    assert RUN_B in [c["EndpointConfigName"] for c in client.configs]


def test_missing_endpoint_is_fine(s3: MemoryS3Hook) -> None:
    client = FakeSageMaker(set(), [RUN_A], [RUN_A])
    deleted = td.teardown(client, s3, "ep", "bucket", "registry/ep.json")
    assert deleted["endpoints"] == []
    assert deleted["endpoint_configs"] == [RUN_A] and deleted["models"] == [RUN_A]
    assert [name for name, _ in client.calls].count("describe_endpoint") == 0


def test_second_call_deletes_nothing(client: FakeSageMaker, s3: MemoryS3Hook) -> None:
    td.teardown(client, s3, "ep", "bucket", "registry/ep.json", poll_s=0)
    client.calls.clear()
    again = td.teardown(client, s3, "ep", "bucket", "registry/ep.json", poll_s=0)
    assert again == {"endpoints": [], "endpoint_configs": [], "models": [], "registry": []}
    assert deletions(client) == [("delete_endpoint", "ep")]  # attempted, answered "does not exist"


def test_missing_bucket_is_fine(client: FakeSageMaker) -> None:
    deleted = td.teardown(client, MemoryS3Hook(), "ep", "no-such-bucket", "registry/ep.json", poll_s=0)
    assert deleted["registry"] == []


def test_other_client_errors_propagate(s3: MemoryS3Hook) -> None:
    client = FakeSageMaker({"ep"}, [RUN_A], [RUN_A])

    def throttled(EndpointName: str) -> None:  # noqa: N803
        raise client_error("ThrottlingException", "DeleteEndpoint", "Rate exceeded")

    client.delete_endpoint = throttled  # type: ignore[method-assign]
    with pytest.raises(ClientError, match="ThrottlingException"):
        td.teardown(client, s3, "ep", "bucket", "registry/ep.json")
    assert deletions(client) == []  # nothing else was touched


def test_wait_until_deleted_polls_until_the_endpoint_is_gone() -> None:
    client = FakeSageMaker({"ep"}, [], [])
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            client.endpoints.discard("ep")

    wait_until_deleted(client, "ep", timeout_s=60, poll_s=7, sleep=sleep)
    assert slept == [7, 7, 7]
    assert [name for name, _ in client.calls] == ["describe_endpoint"] * 4


def test_wait_until_deleted_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr(td, "time", SimpleNamespace(monotonic=lambda: next(clock)))  # this module's clock only
    client = FakeSageMaker({"ep"}, [], [])
    with pytest.raises(TimeoutError, match="endpoint ep still exists after 25 s"):
        wait_until_deleted(client, "ep", timeout_s=25, poll_s=1, sleep=lambda _s: None)


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
    clients = FakeWorkflowClients({"scones-a", "scones-b", "other"}, ["scones-machine", "other-machine"])
    deleted = td.teardown_workflow(clients, clients, "scones-machine", ["scones-a", "scones-b", "scones-c"])
    assert deleted == {"state_machines": ["scones-machine"], "functions": ["scones-a", "scones-b"]}
    assert clients.functions == {"other"} and clients.machines == ["other-machine"]
    assert td.teardown_workflow(clients, clients, "scones-machine", ["scones-a"]) == {
        "state_machines": [],
        "functions": [],
    }
