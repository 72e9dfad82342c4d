"""The inference workflow DAG's steps: deploy the three Lambdas and the state machine (only what changed), pick
and judge smoke executions, and build the monitoring report from captured traffic.

Plain functions over boto3-shaped clients and the provider's S3Hook, passed in by the DAG; no Airflow import,
and no branch on AWS versus the local cloud (the connection decides where every client points).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from include.scones import state_machine
from include.scones.manifests import parse_lst
from include.scones.training_steps import split_s3_uri

log = logging.getLogger(__name__)

LAMBDAS_DIR = Path(__file__).resolve().parents[2] / "lambdas"
RUNTIME = "python3.11"
HANDLER = "lambda_function.lambda_handler"
LOW_CONFIDENCE_ERROR = "ThresholdConfidenceNotMet"
MONITORING_PREFIX = "monitoring"


@dataclass(frozen=True)
class FunctionSpec:
    folder: str  # under lambdas/
    name: str  # the deployed function's name
    placeholder: str  # its ARN's placeholder in the state machine template
    timeout_s: int
    memory_mb: int


# Timeouts cover each function's worst-case client retries (see lambdas/README.md).
FUNCTIONS = (
    FunctionSpec("serialize_image_data", "scones-serialize-image-data", "SerializeImageDataArn", 60, 256),
    FunctionSpec("classify_image", "scones-classify-image", "ClassifyImageArn", 90, 256),
    FunctionSpec("filter_inferences", "scones-filter-inferences", "FilterInferencesArn", 10, 128),
)
STATE_MACHINE_NAME = "scones-image-classification"


# --- DEPLOY: Lambdas ---------------------------------------------------------------------------------------
def lambda_zip(folder: Path) -> bytes:
    """The folder's .py files at the zip root, with fixed timestamps: same code, same bytes, same CodeSha256."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.glob("*.py")):
            info = zipfile.ZipInfo(path.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def code_sha256(zip_bytes: bytes) -> str:
    """Lambda's CodeSha256: base64 of the SHA-256 of the deployment package."""
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


def endpoint_environment(connection_extra: Mapping[str, Any]) -> dict[str, str]:
    """The AWS_ENDPOINT_URL_* variables the Airflow connection implies, for the Lambdas' own boto3 clients.

    A connection with no endpoint URLs (AWS) implies none. Lambdas need the services they call: S3 for
    serialize, sagemaker-runtime for classify."""
    env: dict[str, str] = {}
    if connection_extra.get("endpoint_url"):
        env["AWS_ENDPOINT_URL"] = str(connection_extra["endpoint_url"])
    for service, config in (connection_extra.get("service_config") or {}).items():
        if isinstance(config, Mapping) and config.get("endpoint_url"):
            env[f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}"] = str(config["endpoint_url"])
    return env


def _wanted_configuration(spec: FunctionSpec, role_arn: str, environment: Mapping[str, str]) -> dict[str, Any]:
    return {
        "Runtime": RUNTIME,
        "Handler": HANDLER,
        "Role": role_arn,
        "Timeout": spec.timeout_s,
        "MemorySize": spec.memory_mb,
        "Environment": {"Variables": dict(sorted(environment.items()))},
    }


def _configuration_differs(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    differences = [k for k in ("Runtime", "Handler", "Role", "Timeout", "MemorySize") if current.get(k) != wanted[k]]
    if (current.get("Environment") or {}).get("Variables", {}) != wanted["Environment"]["Variables"]:
        differences.append("Environment")
    return differences


def ensure_function(
    client: Any, spec: FunctionSpec, role_arn: str, environment: Mapping[str, str], code: bytes
) -> dict[str, str]:
    """Create the function if missing; otherwise update code and configuration only where they differ."""
    wanted = _wanted_configuration(spec, role_arn, environment)
    try:
        current = client.get_function(FunctionName=spec.name)["Configuration"]
    except client.exceptions.ResourceNotFoundException:
        created = client.create_function(FunctionName=spec.name, Code={"ZipFile": code}, Publish=False, **wanted)
        client.get_waiter("function_active_v2").wait(FunctionName=spec.name)
        log.info("created %s", spec.name)
        return {"name": spec.name, "arn": created["FunctionArn"], "action": "created"}
    actions = []
    if current.get("CodeSha256") != code_sha256(code):
        client.update_function_code(FunctionName=spec.name, ZipFile=code)
        client.get_waiter("function_updated_v2").wait(FunctionName=spec.name)
        actions.append("code")
    differences = _configuration_differs(current, wanted)
    if differences:
        client.update_function_configuration(FunctionName=spec.name, **wanted)
        client.get_waiter("function_updated_v2").wait(FunctionName=spec.name)
        actions.append("configuration (" + ", ".join(differences) + ")")
    action = "updated " + " and ".join(actions) if actions else "unchanged"
    log.info("%s: %s", spec.name, action)
    return {"name": spec.name, "arn": current["FunctionArn"], "action": action}


def deploy_functions(
    client: Any,
    role_arn: str,
    endpoint_name: str,
    threshold: float,
    connection_extra: Mapping[str, Any],
    lambdas_dir: Path = LAMBDAS_DIR,
) -> dict[str, dict[str, str]]:
    environment = {"ENDPOINT_NAME": endpoint_name, "THRESHOLD": repr(float(threshold))}
    environment |= endpoint_environment(connection_extra)
    return {
        spec.placeholder: ensure_function(client, spec, role_arn, environment, lambda_zip(lambdas_dir / spec.folder))
        for spec in FUNCTIONS
    }


# --- DEPLOY: state machine ---------------------------------------------------------------------------------
def ensure_state_machine(client: Any, name: str, definition: str, role_arn: str) -> dict[str, str]:
    """Create the state machine if missing, update it only when its definition or role changed."""
    arn = None
    for page in client.get_paginator("list_state_machines").paginate():
        arn = next((m["stateMachineArn"] for m in page["stateMachines"] if m["name"] == name), arn)
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


# --- SMOKE -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SmokeImage:
    s3_bucket: str
    s3_key: str
    label: str

    def execution_input(self) -> dict[str, str]:
        return {"s3_bucket": self.s3_bucket, "s3_key": self.s3_key}


def pick_smoke_images(hook: Any, data_uri: str, count: int) -> list[dict[str, str]]:
    """`count` test images, alternating classes so both outcomes are likely, in a stable order."""
    bucket, prefix = split_s3_uri(data_uri)
    rows = parse_lst(hook.read_key(f"{prefix}test/test.lst", bucket_name=bucket), "test.lst")
    classes = json.loads(hook.read_key(f"{prefix}test/classes.json", bucket_name=bucket))
    by_label: dict[int, list[Any]] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row)
    available = len(by_label) * min((len(v) for v in by_label.values()), default=0)
    if count > available:
        raise ValueError(f"asked for {count} test images, the split has {available} in alternating classes")
    picked = []
    for position in range(count):
        label = sorted(by_label)[position % len(by_label)]
        row = by_label[label][position // len(by_label)]
        picked.append(SmokeImage(bucket, f"{prefix}test/images/{row.filename}", classes[label]))
    return [asdict(image) for image in picked]


@dataclass(frozen=True)
class Outcome:
    s3_key: str
    label: str
    status: str  # SUCCEEDED, LOW_CONFIDENCE, or the failure
    predicted: str
    confidence: float | None


def judge_execution(description: Mapping[str, Any], image: Mapping[str, str], classes: list[str]) -> Outcome:
    """SUCCEEDED carries the envelope; a low-confidence end carries the inferences in its cause."""
    status = description["status"]
    inferences: list[float] = []
    if status == "SUCCEEDED":
        inferences = json.loads(description["output"])["body"]["inferences"]
    elif status == "FAILED" and description.get("error") == LOW_CONFIDENCE_ERROR:
        status = "LOW_CONFIDENCE"
        inferences = _inferences_in(description.get("cause") or "")
    else:
        status = f"{status}: {description.get('error')} {str(description.get('cause'))[:200]}"
    best = max(range(len(inferences)), key=inferences.__getitem__) if inferences else None
    return Outcome(
        s3_key=image["s3_key"],
        label=image["label"],
        status=status,
        predicted=classes[best] if best is not None and best < len(classes) else "-",
        confidence=float(inferences[best]) if best is not None else None,  # unrounded: compared to the threshold
    )


def _inferences_in(cause: str) -> list[float]:
    """Find the `inferences` list anywhere in the (nested, JSON-in-JSON) cause of a low-confidence end."""
    try:
        value: Any = json.loads(cause)
    except ValueError:
        return []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and item[:1] in "{[":
            try:
                stack.append(json.loads(item))
            except ValueError:
                pass
        elif isinstance(item, dict):
            found = item.get("inferences")
            if isinstance(found, list) and found and all(isinstance(p, int | float) for p in found):
                return [float(p) for p in found]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return []


def outcome_table(outcomes: list[Outcome]) -> str:
    lines = [f"{'key':<60} {'label':<12} {'predicted':<12} {'confidence':>10}  outcome"]
    for o in outcomes:
        confidence = f"{o.confidence:.4f}" if o.confidence is not None else "-"
        lines.append(f"{o.s3_key[-60:]:<60} {o.label:<12} {o.predicted:<12} {confidence:>10}  {o.status}")
    return "\n".join(lines)


def check_outcomes(outcomes: list[Outcome], threshold: float) -> None:
    """Every execution must succeed exactly when its confidence clears the threshold, and fail otherwise
    only in the low-confidence state."""
    problems = []
    for o in outcomes:
        if o.status not in ("SUCCEEDED", "LOW_CONFIDENCE"):
            problems.append(f"{o.s3_key}: {o.status}")
        elif o.confidence is None or (o.status == "SUCCEEDED") != (o.confidence >= threshold):
            problems.append(f"{o.s3_key}: {o.status} with confidence {o.confidence} at threshold {threshold}")
    if problems:
        raise RuntimeError(f"{len(problems)} smoke execution(s) went wrong: " + "; ".join(problems))


def wait_for_executions(
    client: Any, arns: list[str], timeout_s: float, poll_s: float, sleep: Callable[[float], None] = time.sleep
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        descriptions = [client.describe_execution(executionArn=arn) for arn in arns]
        running = [d["executionArn"] for d in descriptions if d["status"] == "RUNNING"]
        if not running:
            return descriptions
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(running)} execution(s) still running after {timeout_s:.0f} s: {running[:3]}")
        sleep(poll_s)


# --- MONITOR -----------------------------------------------------------------------------------------------
class NothingNewToReport(Exception):
    """No time has passed since the last report's window ended: nothing to do this run."""


def _last_report_end(hook: Any, bucket: str) -> datetime | None:
    key = f"{MONITORING_PREFIX}/latest/summary.json"
    if not hook.check_for_key(key, bucket_name=bucket):
        return None
    summary = json.loads(hook.read_key(key, bucket_name=bucket))
    return datetime.fromisoformat(summary["window"]["end"])


def _capture_lines(hook: Any, bucket: str, keys: list[str]) -> Iterator[Any]:
    for key in keys:  # one object at a time: the report streams, whatever the traffic
        yield hook.get_key(key, bucket_name=bucket).get()["Body"].iter_lines()


def build_monitoring_report(
    hook: Any,
    bucket: str,
    capture_prefix: str,
    registry: Mapping[str, Any],
    now: datetime,
    limits: Any = None,
    lag: timedelta = timedelta(minutes=15),
) -> dict[str, Any]:
    """Report on the captures since the last report; upload it under monitoring/<timestamp>/ and latest/.
    Returns the summary; the caller raises the alert (after the upload) with `report.check_alerts`."""
    from include.scones.monitoring.capture import Window, hour_prefixes, keys_in_window
    from include.scones.monitoring.report import build_report, report_files

    try:
        window = Window.since(_last_report_end(hook, bucket), now, lag=lag)
    except ValueError as exc:
        raise NothingNewToReport(str(exc)) from exc
    endpoint = registry["endpoint_name"]
    keys: list[str] = []
    for prefix in hour_prefixes(capture_prefix, endpoint, None, window.start, window.end):
        keys += hook.list_keys(bucket_name=bucket, prefix=prefix) or []
    keys = keys_in_window(keys, window.start, window.end)
    eval_bucket, eval_key = split_s3_uri(registry["evaluation_uri"])
    evaluation = json.loads(hook.read_key(eval_key, bucket_name=eval_bucket))
    report = build_report(
        _capture_lines(hook, bucket, keys),
        evaluation["baseline"],
        registry["classes"],
        registry["confidence_threshold"],
        window,
        limits,
        endpoint_name=endpoint,
    )
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    # Recorded in summary.json too, so readers of latest/ know which report it is.
    report.summary["report_uri"] = f"s3://{bucket}/{MONITORING_PREFIX}/{stamp}/report.html"
    report.summary["capture_files"] = len(keys)
    for name, body in report_files(report).items():
        for folder in (stamp, "latest"):
            hook.load_bytes(body, key=f"{MONITORING_PREFIX}/{folder}/{name}", bucket_name=bucket, replace=True)
    summary = dict(report.summary)
    log.info("monitoring report for %s: %s", window, summary["report_uri"])
    return summary
