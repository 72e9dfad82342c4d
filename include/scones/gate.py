"""Champion/challenger gate: deploy a new version only if it clears the floor and is not worse than the live one.

The champion is the registered version the endpoint serves (`registry.live_deployment`), or None when nothing
registered is live: a deleted endpoint, or one changed by hand to a model no version made.
"""

from __future__ import annotations

from dataclasses import dataclass

from include.scones.records import DeploymentRecord


@dataclass(frozen=True)
class Decision:
    deploy: bool
    reason: str


def decide(candidate_accuracy: float, floor: float, champion: DeploymentRecord | None) -> Decision:
    if candidate_accuracy < floor:
        return Decision(False, f"not deploying: accuracy {candidate_accuracy:.4f} is below the floor {floor:.4f}")
    if champion is None:
        return Decision(True, f"deploying: accuracy {candidate_accuracy:.4f} ≥ floor {floor:.4f}, no live model")
    best = champion.accuracy
    if candidate_accuracy < best:
        return Decision(
            False,
            f"not deploying: accuracy {candidate_accuracy:.4f} is below the live model's {best:.4f} "
            f"({champion.version_label})",
        )
    return Decision(
        True, f"deploying: accuracy {candidate_accuracy:.4f} ≥ live model's {best:.4f} ({champion.version_label})"
    )
