"""The inference workflow's state machines: load the ASL templates, check them, and render them with the deployed
Lambdas' ARNs. Pure: nothing here talks to AWS.

- The per-image machine is state_machine.asl.json.
- The batch machine (batch_state_machine.asl.json) is a Distributed Map whose children run the per-image
  machine's three Task states: `batch_definition` copies them in, so they are defined once.

Each Lambda is named with a `${...}` placeholder (e.g. `${ClassifyImageArn}`) that `render` fills in at deploy
time. `validate` checks the structure these workflows rely on; it is not a full ASL validator (Parallel states
are refused rather than checked; a Map state's ItemProcessor is checked as a machine of its own)."""

from __future__ import annotations

import json
import re
from collections import deque
from pathlib import Path
from typing import Any

DEFINITION_FILE = Path(__file__).with_name("state_machine.asl.json")
BATCH_DEFINITION_FILE = Path(__file__).with_name("batch_state_machine.asl.json")
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
ITEM_READER = "arn:aws:states:::s3:listObjectsV2"
RESULT_WRITER = "arn:aws:states:::s3:putObject"
# The batch children: the per-image Task states, the filter's low-confidence catch sent to NotRouted instead.
PER_IMAGE_TASKS = ("SerializeImageData", "ClassifyImage", "FilterInferences")
BATCH_MAP_STATE = "ClassifyEveryImage"
LOW_CONFIDENCE_ERROR = "ThresholdConfidenceNotMet"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9_]*)\}")
STATE_TYPES = {"Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Map"}
TERMINAL_TYPES = {"Succeed", "Fail"}
JITTER_STRATEGIES = {"FULL", "NONE"}


def template_text() -> str:
    return DEFINITION_FILE.read_text(encoding="utf-8")


def load_definition() -> dict[str, Any]:
    """The template as a dict, placeholders left in."""
    definition: dict[str, Any] = json.loads(template_text())
    return definition


def batch_definition() -> dict[str, Any]:
    """The batch template with the per-image machine's three Task states as its Map's ItemProcessor: the filter's
    ThresholdConfidenceNotMet catch goes to NotRouted, and its success to Routed (both in the batch template)."""
    batch: dict[str, Any] = json.loads(BATCH_DEFINITION_FILE.read_text(encoding="utf-8"))
    per_image = load_definition()["States"]
    processor = batch["States"][BATCH_MAP_STATE]["ItemProcessor"]
    tasks = {name: json.loads(json.dumps(per_image[name])) for name in PER_IMAGE_TASKS}
    last = tasks[PER_IMAGE_TASKS[-1]]
    catchers = [c for c in last.get("Catch", []) if c.get("ErrorEquals") == [LOW_CONFIDENCE_ERROR]]
    if len(catchers) != 1 or last.get("End") is not True:
        raise ValueError(f"{PER_IMAGE_TASKS[-1]} must end the per-image machine and catch {LOW_CONFIDENCE_ERROR} once")
    catchers[0]["Next"] = "NotRouted"
    del last["End"]
    last["Next"] = "Routed"
    processor["States"] = tasks | processor["States"]
    return batch


def batch_template_text() -> str:
    """The batch machine's template as text, placeholders left in (what `render` takes)."""
    return json.dumps(batch_definition(), indent=2)


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def render(arns: dict[str, str], template: str | None = None) -> str:
    """The definition to deploy: the template, checked, with every placeholder replaced by its ARN.
    Refuses a placeholder without an ARN and an ARN without a placeholder (a misspelt name)."""
    text = template_text() if template is None else template
    validate(json.loads(text))
    wanted = placeholders(text)
    missing, unknown = wanted - arns.keys(), arns.keys() - wanted
    if missing:
        raise ValueError(f"no ARN for placeholder(s) {sorted(missing)}; the template needs {sorted(wanted)}")
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; the template has {sorted(wanted)}")
    empty = sorted(name for name, arn in arns.items() if not isinstance(arn, str) or not arn)
    if empty:
        raise ValueError(f"the ARN for {empty} must be a non-empty string")
    # json.dumps(...)[1:-1]: the value lands inside a JSON string, escaped as one.
    return PLACEHOLDER.sub(lambda match: json.dumps(arns[match.group(1)])[1:-1], text)


def state_names(definition: dict[str, Any] | None = None) -> list[str]:
    """The states in definition order (the shipped template by default)."""
    return list((load_definition() if definition is None else definition).get("States", {}))


def transitions(state: dict[str, Any]) -> list[str]:
    """Every state this one may hand over to: Next, Default, Choices[].Next and Catch[].Next."""
    targets = [state["Next"]] if "Next" in state else []
    targets += [state["Default"]] if "Default" in state else []
    targets += [choice["Next"] for choice in state.get("Choices", []) if "Next" in choice]
    targets += [catcher["Next"] for catcher in state.get("Catch", []) if "Next" in catcher]
    return targets


def validate(definition: dict[str, Any]) -> None:
    """Raise ValueError, naming the state, unless the definition is sound (see the module docstring)."""
    states = definition.get("States")
    if not isinstance(states, dict) or not states:
        raise ValueError("the definition has no States")
    start = definition.get("StartAt")
    if not isinstance(start, str) or start not in states:
        raise ValueError(f"StartAt {start!r} is not a state; states are {sorted(states)}")
    for name, state in states.items():
        _check_state(name, state, states)
    stuck = set(states) - _can_finish(states)
    if stuck:
        raise ValueError(f"state(s) {sorted(stuck)} never reach an End, Succeed or Fail state (a closed loop)")
    unreachable = set(states) - _reachable(start, states)
    if unreachable:
        raise ValueError(f"state(s) {sorted(unreachable)} are unreachable from StartAt {start!r}")


def _check_state(name: str, state: Any, states: dict[str, Any]) -> None:
    if not isinstance(state, dict):
        raise ValueError(f"state {name!r} is not an object")
    kind = state.get("Type")
    if kind not in STATE_TYPES:
        raise ValueError(f"state {name!r} has Type {kind!r}; supported types are {sorted(STATE_TYPES)}")
    for target in transitions(state):
        if target not in states:
            raise ValueError(f"state {name!r} goes to {target!r}, which is not a state (missing Next target)")
    ends = state.get("End") is True
    if kind in TERMINAL_TYPES and ("Next" in state or "End" in state):
        raise ValueError(f"{kind} state {name!r} must have neither Next nor End")
    if kind == "Choice" and ("Next" in state or "End" in state or not state.get("Choices")):
        raise ValueError(f"Choice state {name!r} needs Choices, and must have neither Next nor End")
    if kind not in TERMINAL_TYPES | {"Choice"} and ("Next" in state) == ends:
        raise ValueError(f'state {name!r} must have exactly one of Next or "End": true')
    _check_error_handlers(name, "Retry", state.get("Retry", []))
    _check_error_handlers(name, "Catch", state.get("Catch", []))
    if kind == "Task":
        _check_lambda_task(name, state)
    if kind == "Map":
        _check_map(name, state)


def _check_error_handlers(name: str, field: str, handlers: Any) -> None:
    """Retry or Catch: each has ErrorEquals; States.ALL stands alone and in the last entry; retry numbers sane."""
    if not isinstance(handlers, list):
        raise ValueError(f"state {name!r}: {field} must be a list")
    for index, handler in enumerate(handlers):
        where = f"state {name!r} {field}[{index}]"
        errors = handler.get("ErrorEquals") if isinstance(handler, dict) else None
        if not isinstance(errors, list) or not errors or not all(isinstance(e, str) and e for e in errors):
            raise ValueError(f"{where}: ErrorEquals must be a non-empty list of error names")
        if "States.ALL" in errors and (len(errors) > 1 or index != len(handlers) - 1):
            raise ValueError(f"{where}: States.ALL must be alone in ErrorEquals and in the last {field} entry")
        if field == "Catch":
            if "Next" not in handler:
                raise ValueError(f"{where}: a catcher needs Next")
            continue
        _check_retrier(where, handler)


def _check_retrier(where: str, retrier: dict[str, Any]) -> None:
    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    interval, attempts = retrier.get("IntervalSeconds", 1), retrier.get("MaxAttempts", 3)
    backoff, jitter = retrier.get("BackoffRate", 2.0), retrier.get("JitterStrategy", "NONE")
    if not is_int(interval) or interval < 1:
        raise ValueError(f"{where}: IntervalSeconds must be a positive integer, got {interval!r}")
    if not is_int(attempts) or attempts < 0:
        raise ValueError(f"{where}: MaxAttempts must be a non-negative integer, got {attempts!r}")
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff < 1.0:
        raise ValueError(f"{where}: BackoffRate must be a number >= 1.0, got {backoff!r}")
    if jitter not in JITTER_STRATEGIES:
        raise ValueError(f"{where}: JitterStrategy must be one of {sorted(JITTER_STRATEGIES)}, got {jitter!r}")
    if "MaxDelaySeconds" in retrier and (not is_int(retrier["MaxDelaySeconds"]) or retrier["MaxDelaySeconds"] < 1):
        raise ValueError(f"{where}: MaxDelaySeconds must be a positive integer")


def _check_lambda_task(name: str, state: dict[str, Any]) -> None:
    if state.get("Resource") != LAMBDA_INVOKE:
        raise ValueError(f"Task state {name!r} must use Resource {LAMBDA_INVOKE!r}, got {state.get('Resource')!r}")
    parameters = state.get("Parameters") or {}
    function = parameters.get("FunctionName")
    if not isinstance(function, str) or not PLACEHOLDER.fullmatch(function):
        raise ValueError(f"Task state {name!r}: FunctionName must be a ${{...}} placeholder, got {function!r}")
    if "Payload.$" not in parameters:
        raise ValueError(f'Task state {name!r}: Parameters needs "Payload.$" to pass the state\'s input on')


def _check_map(name: str, state: dict[str, Any]) -> None:
    """The ItemProcessor is a machine of its own (its states may go only to each other); S3 I/O is listObjectsV2
    in and putObject out."""
    processor = state.get("ItemProcessor")
    if not isinstance(processor, dict):
        raise ValueError(f"Map state {name!r} needs an ItemProcessor")
    try:
        validate(processor)
    except ValueError as error:
        raise ValueError(f"Map state {name!r} ItemProcessor: {error}") from None
    for field, resource in (("ItemReader", ITEM_READER), ("ResultWriter", RESULT_WRITER)):
        if field in state and (state[field] or {}).get("Resource") != resource:
            raise ValueError(f"Map state {name!r}: {field} must use Resource {resource!r}")
    tolerated = state.get("ToleratedFailurePercentage", 0)
    if isinstance(tolerated, bool) or not isinstance(tolerated, int | float) or not 0 <= tolerated <= 100:
        raise ValueError(f"Map state {name!r}: ToleratedFailurePercentage must be a number from 0 to 100")


def _reachable(start: str, states: dict[str, Any]) -> set[str]:
    seen, queue = {start}, deque([start])
    while queue:
        for target in transitions(states[queue.popleft()]):
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def _can_finish(states: dict[str, Any]) -> set[str]:
    """States from which some path ends the execution (End, Succeed or Fail): backwards from the ends."""
    came_from: dict[str, set[str]] = {name: set() for name in states}
    for name, state in states.items():
        for target in transitions(state):
            came_from[target].add(name)
    done = {n for n, s in states.items() if s.get("End") is True or s.get("Type") in TERMINAL_TYPES}
    queue = deque(done)
    while queue:
        for source in came_from[queue.popleft()] - done:
            done.add(source)
            queue.append(source)
    return done
