"""Deploy the workflow's state machine: find it by name, create it if missing, update it only when its definition
or role changed. The definition itself is rendered by state_machine.py (pure); this module talks to Step Functions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from include.scones import state_machine

log = logging.getLogger(__name__)

STATE_MACHINE_NAME = "scones-image-classification"
# The Distributed Map over an S3 prefix (batch_state_machine.asl.json); scones_batch_classification starts it.
BATCH_STATE_MACHINE_NAME = "scones-batch-classification"


def find_state_machine(client: Any, name: str = STATE_MACHINE_NAME) -> str | None:
    """The ARN of the state machine called `name`, or None."""
    for page in client.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return str(machine["stateMachineArn"])
    return None


def execution_input(s3_bucket: str, s3_key: str) -> dict[str, str]:
    """What one execution is started with: the image the serialize Lambda reads (its event, see its logic.py)."""
    return {"s3_bucket": s3_bucket, "s3_key": s3_key}


MACHINE_TYPES = ("STANDARD", "EXPRESS")


def ensure_state_machine(
    client: Any, name: str, definition: str, role_arn: str, machine_type: str = "STANDARD"
) -> dict[str, str]:
    """Create the state machine if missing, update it only when its definition or role changed. Step Functions
    cannot change a machine's type: a machine of the other type under this name is an error (delete it first)."""
    if machine_type not in MACHINE_TYPES:
        raise ValueError(f"machine_type must be one of {', '.join(MACHINE_TYPES)}, got {machine_type!r}")
    arn = find_state_machine(client, name)
    if arn is None:
        created = client.create_state_machine(name=name, definition=definition, roleArn=role_arn, type=machine_type)
        log.info("created %s state machine %s", machine_type, name)
        return {"arn": created["stateMachineArn"], "action": "created"}
    current = client.describe_state_machine(stateMachineArn=arn)
    if current.get("type", "STANDARD") != machine_type:
        raise ValueError(
            f"state machine {name} is {current.get('type')}, not {machine_type}: Step Functions cannot change a "
            "machine's type; delete it (scones_teardown) and deploy again"
        )
    if json.loads(current["definition"]) == json.loads(definition) and current["roleArn"] == role_arn:
        log.info("state machine %s unchanged", name)
        return {"arn": arn, "action": "unchanged"}
    client.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn)
    log.info("updated state machine %s", name)
    return {"arn": arn, "action": "updated"}


def render_definition(functions: Mapping[str, Mapping[str, str]], template: str | None = None) -> str:
    """A template (the per-image one by default) with the ARNs of the deployed functions it names: every
    placeholder must have one; functions it does not name are left out."""
    text = state_machine.template_text() if template is None else template
    wanted = state_machine.placeholders(text)
    return state_machine.render({p: f["arn"] for p, f in functions.items() if p in wanted}, text)


def render_batch_definition(functions: Mapping[str, Mapping[str, str]]) -> str:
    return render_definition(functions, state_machine.batch_template_text())
