"""SAGEMAKER_MODEL_SERVER_WORKERS and the choice of worker per request, without processes: the count a model's
Environment asks for, and the least busy live worker with ties round robin (tests/localcloud/test_hosting.py runs
real workers side by side)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest

from localcloud.sagemaker.models.endpoint_fleet import VariantPool, VariantSpec
from localcloud.sagemaker.runners.hosting import ModelServer, WorkerFailed, model_server_workers


@pytest.mark.parametrize(
    ("environment", "workers"),
    [({}, 1), ({"SAGEMAKER_MODEL_SERVER_WORKERS": ""}, 1), ({"SAGEMAKER_MODEL_SERVER_WORKERS": "3"}, 3),
     ({"SAGEMAKER_MODEL_SERVER_WORKERS": " 2 "}, 2)],
)  # fmt: skip
def test_the_environment_sets_the_workers_per_instance(environment: dict[str, str], workers: int) -> None:
    assert model_server_workers(environment) == workers


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_a_count_that_is_not_a_positive_whole_number_is_refused_by_name(raw: str) -> None:
    with pytest.raises(WorkerFailed, match=rf"SAGEMAKER_MODEL_SERVER_WORKERS .* got '{raw}'"):
        model_server_workers({"SAGEMAKER_MODEL_SERVER_WORKERS": raw})


@dataclass
class FakeServer:
    name: str
    in_flight: int = 0
    up: bool = True
    retired: bool = False

    def alive(self) -> bool:
        return self.up


def pool_of(*servers: FakeServer) -> VariantPool:
    spec = VariantSpec("AllTraffic", "m", "image", None, {}, 1, 1.0, 1.0)
    return VariantPool(spec, servers=cast(list[ModelServer], list(servers)))


def chosen(pool: VariantPool) -> Any:
    server = pool.next_server()
    return None if server is None else cast(Any, server).name


def test_requests_go_to_the_least_busy_live_worker() -> None:
    busy, idle = FakeServer("busy", 3), FakeServer("idle", 1)
    dead, retired = FakeServer("dead", up=False), FakeServer("retired", retired=True)
    pool = pool_of(busy, dead, idle, retired)
    assert {chosen(pool) for _ in range(8)} == {"idle"}
    idle.in_flight = 5
    assert {chosen(pool) for _ in range(8)} == {"busy"}


def test_idle_workers_take_turns_and_none_up_means_none() -> None:
    first, second = FakeServer("first"), FakeServer("second")
    pool = pool_of(first, second)
    assert [chosen(pool) for _ in range(4)] == ["first", "second", "first", "second"]
    first.up = second.up = False
    assert pool.next_server() is None
