"""Deploy the workflow's state machines: find each by name, create it if missing, update it only when its
definition or role changed, and replace it when it has the other type. The definitions are rendered by
state_machine.py (pure); this module talks to Step Functions.

The per-image machine is an Express workflow: a caller runs one image with StartSyncExecution and gets the
execution's end in the answer (Express keeps no execution history). The batch machine is Standard: it runs for
as long as the images take, and its executions are described and resumed by name.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from include.scones import state_machine

log = logging.getLogger(__name__)

STATE_MACHINE_NAME = "scones-image-classification"
STATE_MACHINE_TYPE = "EXPRESS"
# The Distributed Map over an S3 prefix (batch_state_machine.asl.json); scones_batch_classification starts it.
BATCH_STATE_MACHINE_NAME = "scones-batch-classification"
BATCH_STATE_MACHINE_TYPE = "STANDARD"
# How long a StartSyncExecution answer may take: an Express execution runs for at most 5 minutes, and botocore's
# default read timeout (60 s) is shorter than the per-image machine's Lambda retries can take.
SYNC_READ_TIMEOUT_S = 330
# How long a replaced machine may stay DELETING (a Standard one until its running executions end).
DELETE_TIMEOUT_S = 300.0


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
    client: Any,
    name: str,
    definition: str,
    role_arn: str,
    machine_type: str = "STANDARD",
    replace_other_type: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Create the state machine if missing, update it only when its definition or role changed. Step Functions
    cannot change a machine's type: a machine of the other type under this name is deleted and created again
    with `replace_other_type` (action "replaced"), and is an error without it."""
    if machine_type not in MACHINE_TYPES:
        raise ValueError(f"machine_type must be one of {', '.join(MACHINE_TYPES)}, got {machine_type!r}")
    arn = find_state_machine(client, name)
    current = client.describe_state_machine(stateMachineArn=arn) if arn is not None else None
    action = "created"
    if current is not None and (current_type := current.get("type", "STANDARD")) != machine_type:
        if not replace_other_type:
            raise ValueError(
                f"state machine {name} is {current_type}, not {machine_type}: Step Functions cannot change a "
                "machine's type; delete it (scones_teardown) and deploy again"
            )
        delete_state_machine(client, str(arn), sleep=sleep)
        log.info("deleted %s state machine %s to create it as %s", current_type, name, machine_type)
        current, action = None, "replaced"
    if current is None:
        created = client.create_state_machine(name=name, definition=definition, roleArn=role_arn, type=machine_type)
        log.info("%s %s state machine %s", action, machine_type, name)
        return {"arn": created["stateMachineArn"], "action": action}
    arn = str(current["stateMachineArn"])
    if json.loads(current["definition"]) == json.loads(definition) and current["roleArn"] == role_arn:
        log.info("state machine %s unchanged", name)
        return {"arn": arn, "action": "unchanged"}
    client.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn)
    log.info("updated state machine %s", name)
    return {"arn": arn, "action": "updated"}


def delete_state_machine(
    client: Any, arn: str, timeout_s: float = DELETE_TIMEOUT_S, poll_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:  # fmt: skip
    """Delete a machine and wait until it is gone: Step Functions keeps it DELETING (a Standard one until its
    running executions end), and refuses to create one of the same name until then."""
    client.delete_state_machine(stateMachineArn=arn)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = client.describe_state_machine(stateMachineArn=arn).get("status", "DELETING")
        except client.exceptions.StateMachineDoesNotExist:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"state machine {arn} still {status} after {timeout_s:.0f} s")
        sleep(poll_s)


def run_sync_execution(client: Any, machine_arn: str, execution: Mapping[str, str]) -> dict[str, Any]:
    """Run one image through the Express machine with StartSyncExecution: the execution's end (ARN, status,
    error, cause, output), JSON-safe. A failed or timed-out execution is an answer, not an exception; the
    client should have SYNC_READ_TIMEOUT_S as its read timeout."""
    answer = client.start_sync_execution(stateMachineArn=machine_arn, input=json.dumps(dict(execution)))
    ended = {key: answer.get(key) for key in ("executionArn", "status", "error", "cause", "output")}
    ended["milliseconds"] = round((answer["stopDate"] - answer["startDate"]).total_seconds() * 1000, 1)
    return ended


def render_definition(functions: Mapping[str, Mapping[str, str]], template: str | None = None) -> str:
    """A template (the per-image one by default) with the ARNs of the deployed functions it names: every
    placeholder must have one; functions it does not name are left out."""
    text = state_machine.template_text() if template is None else template
    wanted = state_machine.placeholders(text)
    return state_machine.render({p: f["arn"] for p, f in functions.items() if p in wanted}, text)


def render_batch_definition(functions: Mapping[str, Mapping[str, str]]) -> str:
    return render_definition(functions, state_machine.batch_template_text())
