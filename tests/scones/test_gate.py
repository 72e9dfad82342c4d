"""gate: champion/challenger deploy decision and which registry entry counts as the live champion."""

from __future__ import annotations

from include.scones.gate import Decision, decide, live_champion
from tests.scones.helpers import deployment_record

REGISTRY = deployment_record()
ENDPOINT = {
    "EndpointName": "ep",
    "EndpointConfigName": "scones-20250101-000000-aaaaaaaa",
    "EndpointStatus": "InService",
}


def test_below_the_floor_never_deploys() -> None:
    assert decide(0.89, 0.9, None) == Decision(False, "not deploying: accuracy 0.8900 is below the floor 0.9000")
    assert not decide(0.5, 0.9, deployment_record(accuracy=0.1)).deploy


def test_no_champion_deploys_at_or_above_the_floor() -> None:
    assert decide(0.9, 0.9, None) == Decision(True, "deploying: accuracy 0.9000 ≥ floor 0.9000, no live model")


def test_worse_than_the_champion_does_not_deploy() -> None:
    decision = decide(0.94, 0.9, REGISTRY)
    assert decision == Decision(False, "not deploying: accuracy 0.9400 is below the live model's 0.9500 (m-1)")


def test_a_tie_or_better_deploys() -> None:
    assert decide(0.95, 0.9, REGISTRY) == Decision(True, "deploying: accuracy 0.9500 ≥ live model's 0.9500 (m-1)")
    assert decide(0.97, 0.9, REGISTRY).deploy


def test_a_registry_entry_with_a_string_number_reads_as_a_number() -> None:
    assert not decide(0.94, 0.9, deployment_record(accuracy="0.95")).deploy


def test_live_champion_is_the_registry_entry_of_the_current_config() -> None:
    assert live_champion(REGISTRY, ENDPOINT) is REGISTRY
    assert live_champion(REGISTRY, ENDPOINT | {"EndpointStatus": "Updating"}) is REGISTRY


def test_live_champion_ignores_stale_or_broken_endpoints() -> None:
    assert live_champion(REGISTRY, ENDPOINT | {"EndpointConfigName": "hand-made-config"}) is None
    assert live_champion(REGISTRY, ENDPOINT | {"EndpointStatus": "Failed"}) is None
    assert live_champion(REGISTRY, ENDPOINT | {"EndpointStatus": "Deleting"}) is None
    assert live_champion(REGISTRY, None) is None
    assert live_champion(None, ENDPOINT) is None


def test_stale_registry_lets_a_weaker_model_deploy() -> None:
    # The registry says 0.99, but it describes a config the endpoint no longer serves: it must not block.
    champion = live_champion(deployment_record(accuracy=0.99), ENDPOINT | {"EndpointConfigName": "other"})
    assert decide(0.92, 0.9, champion).deploy
