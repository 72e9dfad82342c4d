"""gate: the champion/challenger decision (which version is the champion: tests/scones/test_registry.py)."""

from __future__ import annotations

from include.scones.gate import Decision, decide
from tests.scones.helpers import deployment_record

REGISTRY = deployment_record()


def test_below_the_floor_never_deploys() -> None:
    assert decide(0.89, 0.9, None) == Decision(False, "not deploying: accuracy 0.8900 is below the floor 0.9000")
    assert not decide(0.5, 0.9, deployment_record(accuracy=0.1)).deploy


def test_no_champion_deploys_at_or_above_the_floor() -> None:
    assert decide(0.9, 0.9, None) == Decision(True, "deploying: accuracy 0.9000 ≥ floor 0.9000, no live model")


def test_worse_than_the_champion_does_not_deploy() -> None:
    decision = decide(0.94, 0.9, REGISTRY)
    assert decision == Decision(
        False, "not deploying: accuracy 0.9400 is below the live model's 0.9500 (v1 (scones-20250101-000000-aaaaaaaa))"
    )


def test_a_tie_or_better_deploys() -> None:
    assert decide(0.95, 0.9, REGISTRY) == Decision(
        True, "deploying: accuracy 0.9500 ≥ live model's 0.9500 (v1 (scones-20250101-000000-aaaaaaaa))"
    )
    assert decide(0.97, 0.9, REGISTRY).deploy


def test_a_registry_entry_with_a_string_number_reads_as_a_number() -> None:
    assert not decide(0.94, 0.9, deployment_record(accuracy="0.95")).deploy
