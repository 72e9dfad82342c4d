"""Champion/challenger gate: deploy a new model only if it clears the floor and is not worse than the live one.

The live model's accuracy comes from the deployment registry (an S3 JSON object the training DAG writes after
each deploy). It is trusted only while it describes the endpoint's current config: a registry entry left over
from a deleted or hand-changed endpoint is ignored rather than blocking or allowing deploys wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from include.scones.records import DeploymentRecord


@dataclass(frozen=True)
class Decision:
    deploy: bool
    reason: str


def live_champion(registry: DeploymentRecord | None, endpoint: dict[str, Any] | None) -> DeploymentRecord | None:
    """The registry record for the model behind `endpoint` (a DescribeEndpoint result), if it is current."""
    if registry is None or not endpoint:
        return None
    if endpoint.get("EndpointStatus") in ("Failed", "Deleting"):
        return None
    if registry.endpoint_config_name != endpoint.get("EndpointConfigName"):
        return None
    return registry


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
            f"({champion.model_name})",
        )
    return Decision(
        True, f"deploying: accuracy {candidate_accuracy:.4f} ≥ live model's {best:.4f} ({champion.model_name})"
    )
