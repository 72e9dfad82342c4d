"""Pruning: `plan_prune` decides from plain data (the live config and its models stay, the newest `keep_last`
other configs stay, nothing outside this endpoint's run resources is touched); `prune` gathers that data and
carries the decision out idempotently. The teardown DAG's Params are checked here too."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
from botocore.exceptions import ClientError

from include.scones import teardown as td
from include.scones.params import allowed_range
from include.scones.teardown import LiveEndpoint, Resource, plan_prune
from tests.scones.helpers import RegistryVersions, client_error

EP = "scones-vehicle-classifier"
MINE = {"project": "scones-unlimited", "scones:endpoint": EP}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(day: int) -> str:
    """A run name like the training DAG's, one per day (older days sort first)."""
    return f"scones-202601{day:02d}-000000-{day:08x}"


def config(day: int, *, models: tuple[str, ...] | None = None, tags: dict[str, str] = MINE,
           name: str | None = None) -> Resource:  # fmt: skip
    name = name or run(day)
    return Resource(name, T0 + timedelta(days=day), tags, (name,) if models is None else models)


def model(day: int, *, tags: dict[str, str] = MINE, name: str | None = None) -> Resource:
    return Resource(name or run(day), T0 + timedelta(days=day), tags)


def live(day: int | None, pending: int | None = None) -> LiveEndpoint:
    configs = [run(d) for d in (day, pending) if d is not None]
    return LiveEndpoint(run(day) if day else None, run(pending) if pending else None, frozenset(configs))


# --- the decision ---------------------------------------------------------------------------------------------------
def test_keeps_the_live_config_and_the_newest_n_others_and_deletes_the_rest() -> None:
    configs = [config(d) for d in (1, 2, 3, 4, 5, 6)]
    models = [model(d) for d in (1, 2, 3, 4, 5, 6)]
    plan = plan_prune(EP, configs, models, live(3), keep_last=2)  # rolled back to day 3: 4..6 are newer
    assert plan.keep_configs == {
        run(3): "served by the endpoint",
        run(6): "rollback candidate: newest 1 of the 2 kept",
        run(5): "rollback candidate: newest 2 of the 2 kept",
    }
    assert plan.delete_configs == [run(4), run(2), run(1)]  # newest first
    assert plan.keep_models == {
        run(6): f"named by kept endpoint config {run(6)}",
        run(5): f"named by kept endpoint config {run(5)}",
        run(3): "served by the endpoint",
    }
    assert plan.delete_models == [run(4), run(2), run(1)]


def test_keep_last_zero_keeps_only_what_is_live() -> None:
    plan = plan_prune(EP, [config(1), config(2)], [model(1), model(2)], live(2), keep_last=0)
    assert plan.keep_configs == {run(2): "served by the endpoint"} and plan.delete_configs == [run(1)]
    assert plan.keep_models == {run(2): "served by the endpoint"} and plan.delete_models == [run(1)]


def test_the_live_config_does_not_count_towards_keep_last() -> None:
    plan = plan_prune(EP, [config(d) for d in (1, 2, 3)], [], live(3), keep_last=1)
    assert set(plan.keep_configs) == {run(3), run(2)} and plan.delete_configs == [run(1)]


def test_other_endpoints_untagged_and_foreign_names_are_never_touched() -> None:
    foreign = [
        config(1, tags={"project": "scones-unlimited", "scones:endpoint": "scones-bench-classifier"}),
        config(2, tags={"scones:endpoint": EP}),  # not tagged as the project's
        config(3, tags={}),
        config(4, tags={"project": "other", "scones:endpoint": EP}),
        config(5, name="scones-manual-config"),  # tagged, but not a run name
        config(6, name=f"{run(6)}-eval"),
    ]
    models = [model(1, tags=foreign[0].tags), model(2, tags={"scones:endpoint": EP}), model(3, tags={}),
              model(5, name="scones-manual-model")]  # fmt: skip
    plan = plan_prune(EP, foreign, models, LiveEndpoint(), keep_last=0)
    assert plan.keep_configs == plan.keep_models == {}  # not even listed as kept: out of scope
    assert plan.delete_configs == plan.delete_models == []


def test_a_model_is_kept_while_any_remaining_config_names_it() -> None:
    configs = [
        config(1, models=(run(1),)),
        config(2, models=(run(1), run(2))),  # a kept two-variant config still names day 1's model
        config(3),
        config(4, name="scones-manual-config", models=(run(4),)),  # not managed, so kept: its model stays too
    ]
    models = [model(d) for d in (1, 2, 3, 4)] + [model(5)]  # day 5: a model no config names (gate said no)
    plan = plan_prune(EP, configs, models, live(3), keep_last=1)
    assert plan.delete_configs == [run(1)]
    assert plan.keep_models[run(1)] == f"named by kept endpoint config {run(2)}"
    assert plan.keep_models[run(4)] == "named by kept endpoint config scones-manual-config"
    assert plan.delete_models == [run(5)]


def test_during_an_update_both_the_served_and_the_pending_config_stay() -> None:
    configs = [config(d) for d in (1, 2, 3)]
    plan = plan_prune(EP, configs, [model(d) for d in (1, 2, 3)], live(2, pending=3), keep_last=0)
    assert plan.keep_configs == {run(3): "being deployed to the endpoint", run(2): "served by the endpoint"}
    assert set(plan.keep_models) == {run(2), run(3)} and plan.delete_models == [run(1)]


def test_live_models_come_from_the_live_config_not_from_names() -> None:
    # The live config serves a model with another name (made by hand); that model stays, its namesake goes.
    endpoint = LiveEndpoint(run(2), None, frozenset({run(1)}))
    plan = plan_prune(EP, [config(2, models=(run(1),))], [model(1), model(2)], endpoint, keep_last=0)
    assert plan.keep_models == {run(1): "served by the endpoint"} and plan.delete_models == [run(2)]


def test_when_the_live_models_are_unknown_no_model_is_deleted() -> None:
    endpoint = LiveEndpoint(run(9), None, None)  # its config was deleted by hand: which models it serves is unknown
    plan = plan_prune(EP, [config(1), config(2)], [model(1), model(2)], endpoint, keep_last=0)
    assert plan.delete_configs == [run(2), run(1)]
    assert plan.delete_models == [] and set(plan.keep_models) == {run(1), run(2)}
    assert "unknown" in plan.keep_models[run(1)]


def test_without_an_endpoint_the_newest_n_are_kept() -> None:
    plan = plan_prune(EP, [config(d) for d in (1, 2, 3)], [model(d) for d in (1, 2, 3)], LiveEndpoint(), 1)
    assert list(plan.keep_configs) == [run(3)] and plan.delete_configs == [run(2), run(1)]
    assert list(plan.keep_models) == [run(3)] and plan.delete_models == [run(2), run(1)]


def test_equal_creation_times_fall_back_to_the_name() -> None:
    same = [Resource(run(d), T0, MINE, (run(d),)) for d in (1, 3, 2)]
    assert list(plan_prune(EP, same, [], LiveEndpoint(), 1).keep_configs) == [run(3)]


def test_planning_again_after_pruning_deletes_nothing() -> None:
    configs, models = [config(d) for d in range(1, 8)], [model(d) for d in range(1, 8)]
    first = plan_prune(EP, configs, models, live(7), keep_last=2)
    left_configs = [c for c in configs if c.name not in first.delete_configs]
    left_models = [m for m in models if m.name not in first.delete_models]
    again = plan_prune(EP, left_configs, left_models, live(7), keep_last=2)
    assert again.delete_configs == again.delete_models == []
    assert again.keep_configs == first.keep_configs and again.keep_models == first.keep_models


def test_a_negative_keep_last_is_refused() -> None:
    with pytest.raises(ValueError, match="keep_last must be 0 or more"):
        plan_prune(EP, [], [], LiveEndpoint(), -1)


# --- the calls ----------------------------------------------------------------------------------------------------
class FakeSageMaker:
    """The calls prune makes, over in-memory endpoint configs, models and one endpoint; lists page two at a time."""

    exceptions = SimpleNamespace(ClientError=ClientError)

    def __init__(self, configs: list[Resource], models: list[Resource], endpoint: dict[str, Any] | None) -> None:
        self.configs = {c.name: c for c in configs}
        self.models = {m.name: m for m in models}
        self.endpoint = endpoint
        self.calls: list[tuple[str, str]] = []
        self.vanished: set[str] = set()  # listed, then deleted by someone else before prune deletes them
        self.registry = RegistryVersions()
        self.delete_model_package = self.registry.delete
        self.describe_model = self.registry.describe_model

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:  # noqa: N803 (boto3's argument names)
        self.calls.append(("describe_endpoint", EndpointName))
        if self.endpoint is None:
            raise client_error("ValidationException", "DescribeEndpoint", f'Could not find endpoint "{EndpointName}".')
        return {"EndpointName": EndpointName, "EndpointStatus": "InService"} | self.endpoint

    def describe_endpoint_config(self, EndpointConfigName: str) -> dict[str, Any]:  # noqa: N803
        self.calls.append(("describe_endpoint_config", EndpointConfigName))
        if EndpointConfigName not in self.configs:
            raise client_error("ValidationException", "DescribeEndpointConfig", "Could not find endpoint configuration")
        names = self.configs[EndpointConfigName].models
        variants = [{"VariantName": f"v{i}", "ModelName": m} for i, m in enumerate(names)]
        return {"EndpointConfigName": EndpointConfigName, "ProductionVariants": variants}

    def get_paginator(self, name: str) -> Any:
        if name == "list_model_packages":
            return self.registry.paginator()
        kind, key, items = {
            "list_endpoint_configs": ("EndpointConfig", "EndpointConfigs", self.configs),
            "list_models": ("Model", "Models", self.models),
        }[name]

        def paginate(NameContains: str) -> list[dict[str, Any]]:  # noqa: N803
            listed = [{f"{kind}Name": n, f"{kind}Arn": f"arn:{kind}/{n}", "CreationTime": r.created}
                      for n, r in items.items() if NameContains in n]  # fmt: skip
            return [{key: listed[i : i + 2]} for i in range(0, max(len(listed), 1), 2)]

        return SimpleNamespace(paginate=paginate)

    def list_tags(self, ResourceArn: str) -> dict[str, Any]:  # noqa: N803
        self.calls.append(("list_tags", ResourceArn))
        kind, name = ResourceArn.removeprefix("arn:").split("/")
        resource = (self.configs if kind == "EndpointConfig" else self.models)[name]
        return {"Tags": [{"Key": k, "Value": v} for k, v in resource.tags.items()]}

    def delete_endpoint_config(self, EndpointConfigName: str) -> None:  # noqa: N803
        self._delete("delete_endpoint_config", self.configs, EndpointConfigName)

    def delete_model(self, ModelName: str) -> None:  # noqa: N803
        self._delete("delete_model", self.models, ModelName)

    def _delete(self, call: str, store: dict[str, Resource], name: str) -> None:
        self.calls.append((call, name))
        if name in self.vanished or name not in store:
            raise client_error("ValidationException", call, f'Could not find "{name}".')
        del store[name]

    def deletions(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0].startswith("delete_")]


@pytest.fixture
def client() -> FakeSageMaker:
    configs = [config(d) for d in (1, 2, 3, 4)] + [config(5, name="scones-manual-config", models=())]
    configs.append(config(8, name="xscones-foreign", models=(run(1),)))  # listed, never read (IAM: scones-* only)
    models = [model(d) for d in (1, 2, 3, 4, 6)] + [model(7, tags={"scones:endpoint": "other"})]
    return FakeSageMaker(configs, models, {"EndpointConfigName": run(3)})


def test_prune_deletes_configs_then_models_and_says_what_it_kept(
    client: FakeSageMaker, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=td.__name__):
        result = td.prune(client, EP, keep_last=1, package_group="group", keep_versions=5)
    assert result == {
        "endpoint_configs": [run(2), run(1)],
        "models": [run(6), run(2), run(1)],
        "kept_endpoint_configs": {
            run(3): "served by the endpoint",
            run(4): "rollback candidate: newest 1 of the 1 kept",
        },
        "kept_models": {run(4): f"named by kept endpoint config {run(4)}", run(3): "served by the endpoint"},
        "model_packages": [client.registry.arn(2), client.registry.arn(1)],  # beyond the newest 5 (none live)
    }
    assert sorted(client.configs) == sorted([run(3), run(4), "scones-manual-config", "xscones-foreign"])
    assert sorted(client.models) == sorted([run(3), run(4), run(7)])
    kinds = [call for call, _ in client.deletions()]
    assert kinds == ["delete_endpoint_config"] * 2 + ["delete_model"] * 3  # no remaining config names a gone model
    assert f"keeping endpoint config {run(3)}: served by the endpoint" in caplog.text
    assert f"deleted model {run(6)}" in caplog.text
    assert f"endpoint {EP} serves config {run(3)}" in caplog.text
    assert ("list_tags", "arn:EndpointConfig/scones-manual-config") not in client.calls  # not a run name
    assert ("describe_endpoint_config", "xscones-foreign") not in client.calls


def test_a_second_prune_deletes_nothing(client: FakeSageMaker) -> None:
    first = td.prune(client, EP, keep_last=1, package_group="group", keep_versions=5)
    client.calls.clear()
    again = td.prune(client, EP, keep_last=1, package_group="group", keep_versions=5)
    assert again["endpoint_configs"] == again["models"] == again["model_packages"] == [] and client.deletions() == []
    assert again["kept_endpoint_configs"] == first["kept_endpoint_configs"]


def test_resources_already_gone_count_as_done(client: FakeSageMaker) -> None:
    client.vanished = {run(1), run(6)}
    result = td.prune(client, EP, keep_last=1, package_group="group", keep_versions=5)
    assert result["endpoint_configs"] == [run(2)] and result["models"] == [run(2)]  # the others were attempted
    assert ("delete_endpoint_config", run(1)) in client.deletions() and ("delete_model", run(6)) in client.deletions()


def test_a_pending_update_is_protected(client: FakeSageMaker) -> None:
    client.endpoint = {"EndpointConfigName": run(2), "PendingDeploymentSummary": {"EndpointConfigName": run(1)}}
    result = td.prune(client, EP, keep_last=0, package_group="group", keep_versions=5)
    kept = result["kept_endpoint_configs"]
    assert kept == {run(1): "being deployed to the endpoint", run(2): "served by the endpoint"}
    assert result["endpoint_configs"] == [run(4), run(3)]


def test_a_live_config_that_is_gone_keeps_every_model(client: FakeSageMaker) -> None:
    client.endpoint = {"EndpointConfigName": "scones-20250101-000000-deadbeef"}
    result = td.prune(client, EP, keep_last=0, package_group="group", keep_versions=5)
    assert result["models"] == [] and len(result["endpoint_configs"]) == 4


def test_no_endpoint_keeps_the_newest_configs(client: FakeSageMaker) -> None:
    client.endpoint = None
    result = td.prune(client, EP, keep_last=2, package_group="group", keep_versions=5)
    assert list(result["kept_endpoint_configs"]) == [run(4), run(3)]
    assert result["endpoint_configs"] == [run(2), run(1)]


def test_an_unexpected_describe_error_stops_before_deleting_anything(client: FakeSageMaker) -> None:
    def confused(EndpointName: str) -> None:  # noqa: N803
        raise client_error("ValidationException", "DescribeEndpoint", "Something else went wrong")

    client.describe_endpoint = confused  # type: ignore[method-assign]
    with pytest.raises(ClientError, match="Something else"):
        td.prune(client, EP, keep_last=0, package_group="group", keep_versions=5)  # never guess that nothing is live
    assert client.deletions() == []


def test_shadow_variants_count_as_named_models() -> None:
    described = {"ProductionVariants": [{"ModelName": "a"}], "ShadowProductionVariants": [{"ModelName": "b"}]}
    assert td.variant_models(described) == ("a", "b")


# --- the Params -----------------------------------------------------------------------------------------------------
def test_params_default_to_todays_full_teardown() -> None:
    assert td.validate_params({}) == td.TeardownParams(mode="all", keep_last=2)
    assert td.validate_params({"mode": "prune", "keep_last": 0.0, "other": 1}) == td.TeardownParams("prune", 0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mode": "some"}, "mode: 'some' is not one of ['all', 'prune']"),
        ({"keep_last": -1}, "keep_last: -1 is less than the minimum of 0"),
        ({"keep_last": 101}, "keep_last: 101 is greater than the maximum of 100"),
        ({"keep_last": 1.5}, "keep_last: 1.5 is not of type 'integer'"),
        ({"keep_last": True}, "keep_last: True is not an integer"),
    ],
)
def test_bad_params_are_named(params: dict[str, Any], message: str) -> None:
    with pytest.raises(td.InvalidTeardownParams, match=message.replace("[", r"\[").replace("]", r"\]")):
        td.validate_params(params)


def test_param_schemas_follow_the_form_rules() -> None:
    keep_last = td.PARAM_SCHEMAS["keep_last"]
    assert not {"minimum", "maximum"} & set(keep_last)  # the form would clamp silently
    (bounds,) = keep_last["allOf"]
    assert f"Allowed: {allowed_range(bounds)}" in keep_last["description"]
    with pytest.raises(jsonschema.ValidationError, match="101 is greater than the maximum of 100"):
        jsonschema.validate(101, keep_last)  # what the API checks on trigger
    for schema in td.PARAM_SCHEMAS.values():
        assert schema["title"].strip() and len(schema["description"]) > 20
    assert set(td.PARAM_SCHEMAS["mode"]["values_display"]) == set(td.PARAM_SCHEMAS["mode"]["enum"])
