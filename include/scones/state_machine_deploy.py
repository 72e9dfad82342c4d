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


def ensure_state_machine(client: Any, name: str, definition: str, role_arn: str) -> dict[str, str]:
    """Create the state machine if missing, update it only when its definition or role changed."""
    arn = find_state_machine(client, name)
    if arn is None:
        created = client.create_state_machine(name=name, definition=definition, roleArn=role_arn, type="STANDARD")
        log.info("created state machine %s", name)
        return {"arn": created["stateMachineArn"], "action": "created"}
    current = client.describe_state_machine(stateMachineArn=arn)
    if json.loads(current["definition"]) == json.loads(definition) and current["roleArn"] == role_arn:
        log.info("state machine %s unchanged", name)
        return {"arn": arn, "action": "unchanged"}
    client.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn)
    log.info("updated state machine %s", name)
    return {"arn": arn, "action": "updated"}


def render_definition(functions: Mapping[str, Mapping[str, str]]) -> str:
    return state_machine.render({placeholder: f["arn"] for placeholder, f in functions.items()})
