"""The workflow part: the real three Lambdas and the workflow's state machine, deployed with the workflow DAG's
own functions (under bench names, pointing at the bench endpoint), against the same template wired to three
no-op Lambdas: the floor of MiniStack's Step Functions engine and Lambda runtime on this machine.

Executions run one at a time, alternating real and no-op, so both machines see the same load. The time of an
execution is the engine's own `stopDate − startDate` (MiniStack's 150 ms start delay included, as in both),
over every finished execution: low-confidence images end FAILED in LowConfidenceInference by design and
take the same path through the three Lambdas. The client's view (StartExecution until DescribeExecution
reports the end, polled every POLL_S) is recorded beside it.

The same real template also runs as an **Express** machine through `StartSyncExecution`, in the same rounds, as
the project's per-image path does (state_machine_deploy.STATE_MACHINE_TYPE): the call returns the execution's end
(status, error, output), which is all a per-image caller needs, since Express keeps no execution history. Its
time is the same engine `stopDate − startDate`, with the client's round trip beside it.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

from benchmarks import endpoint_bench, model_bench
from benchmarks.context import BENCH_DIR, BUCKET, ENDPOINT_NAME, BenchContext, load_average, log, utc_now
from benchmarks.results import latency_summary, percentile
from include.scones import lambda_deploy, state_machine_deploy
from include.scones.manifests import read_lst
from localcloud import launcher
from localcloud.config import ACCOUNT_ID
from tools.load_generator import tally

EXECUTIONS = 100  # of each machine, measured
WARMUP_EXECUTIONS = 3  # of each machine, first: Lambda workers start cold
POLL_S = 0.02
EXECUTION_TIMEOUT_S = 120.0
REAL_MACHINE = "scones-bench-image-classification"
NOOP_MACHINE = "scones-bench-noop"
EXPRESS_MACHINE = "scones-bench-image-classification-express"
NOOP_FOLDER = BENCH_DIR / "noop_lambda"
LAMBDA_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/scones-lambda-execution"
STATES_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/scones-states-execution"
TEST_PREFIX = "datasets/bench/test/images/"


def bench_functions(prefix: str) -> list[lambda_deploy.FunctionSpec]:
    """The workflow's three function specs (timeouts, memory, placeholders) under bench names."""
    return [replace(spec, name=spec.name.replace("scones-", f"{prefix}-", 1)) for spec in lambda_deploy.FUNCTIONS]


def connection_extra(ctx: BenchContext) -> dict[str, Any]:
    """The Airflow connection's extra for this local cloud: where the Lambdas' own clients must point."""
    return dict(json.loads(launcher.connection_uri_json(ctx.cfg))["extra"])


def deploy(ctx: BenchContext) -> tuple[str, str, str]:
    """(real, no-op, real Express) machine ARNs; functions and machines are created or updated as the DAG does."""
    client = ctx.client("lambda")
    sfn = ctx.client("stepfunctions")
    environment = {"ENDPOINT_NAME": ENDPOINT_NAME, "THRESHOLD": repr(model_bench.THRESHOLD)}
    environment |= lambda_deploy.endpoint_environment(connection_extra(ctx))
    real = {
        spec.placeholder: lambda_deploy.ensure_function(
            client,
            spec,
            LAMBDA_ROLE_ARN,
            environment,
            lambda_deploy.lambda_zip(lambda_deploy.LAMBDAS_DIR / spec.folder),
        )
        for spec in bench_functions("scones-bench")
    }
    noop_code = lambda_deploy.lambda_zip(NOOP_FOLDER)
    noop = {
        spec.placeholder: lambda_deploy.ensure_function(client, spec, LAMBDA_ROLE_ARN, {}, noop_code)
        for spec in bench_functions("scones-bench-noop")
    }
    real_arn = state_machine_deploy.ensure_state_machine(
        sfn, REAL_MACHINE, state_machine_deploy.render_definition(real), STATES_ROLE_ARN
    )["arn"]
    noop_arn = state_machine_deploy.ensure_state_machine(
        sfn, NOOP_MACHINE, state_machine_deploy.render_definition(noop), STATES_ROLE_ARN
    )["arn"]
    express_arn = state_machine_deploy.ensure_state_machine(
        sfn, EXPRESS_MACHINE, state_machine_deploy.render_definition(real), STATES_ROLE_ARN,
        state_machine_deploy.STATE_MACHINE_TYPE,
    )["arn"]  # fmt: skip
    return real_arn, noop_arn, express_arn


def upload_test_images(ctx: BenchContext) -> list[dict[str, str]]:
    """Every test image in S3 (as the training DAG's load task puts them); execution inputs alternate classes."""
    channel_dir, _ = model_bench.channels(ctx)
    rows = read_lst(channel_dir / "test" / "test.lst")
    ctx.ensure_bucket()
    for row in rows:
        ctx.s3.put_object(
            Bucket=BUCKET,
            Key=TEST_PREFIX + row.filename,
            Body=(channel_dir / "test" / "images" / row.filename).read_bytes(),
        )
    by_label: dict[int, list[str]] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row.filename)
    alternating = [name for group in itertools.zip_longest(*by_label.values()) for name in group if name]
    return [state_machine_deploy.execution_input(BUCKET, TEST_PREFIX + name) for name in alternating]


def execute(sfn: Any, machine_arn: str, payload: dict[str, str]) -> dict[str, Any]:
    """Start one execution and poll it to its end; the description plus the engine's and the client's ms."""
    began = time.perf_counter()
    arn = sfn.start_execution(stateMachineArn=machine_arn, input=json.dumps(payload))["executionArn"]
    deadline = time.monotonic() + EXECUTION_TIMEOUT_S
    while True:
        description = sfn.describe_execution(executionArn=arn)
        if description["status"] != "RUNNING":
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {arn} still RUNNING after {EXECUTION_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
    client_ms = (time.perf_counter() - began) * 1000
    engine_ms = (description["stopDate"] - description["startDate"]).total_seconds() * 1000
    return {"description": description, "engine_ms": engine_ms, "client_ms": client_ms}


def sync_client(ctx: BenchContext) -> Any:
    """A Step Functions client for StartSyncExecution. botocore sends that call to the host `sync-<endpoint host>`
    (its model's hostPrefix, AWS's sync-states endpoint); a local endpoint URL has no such name, so the prefix is
    left off here, as a connection to the local cloud would set `inject_host_prefix: false`."""
    from botocore.config import Config

    return ctx.client("stepfunctions", config=Config(inject_host_prefix=False))


def execute_sync(sfn: Any, machine_arn: str, payload: dict[str, str]) -> dict[str, Any]:
    """One StartSyncExecution of an Express machine: its answer (the execution's end) and the engine's and the
    client's ms."""
    began = time.perf_counter()
    answer = sfn.start_sync_execution(stateMachineArn=machine_arn, input=json.dumps(payload))
    client_ms = (time.perf_counter() - began) * 1000
    engine_ms = (answer["stopDate"] - answer["startDate"]).total_seconds() * 1000
    return {"description": answer, "engine_ms": engine_ms, "client_ms": client_ms}


def summarize_sync(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The Express machine's numbers: no execution history exists, so no per-state split."""
    outcomes = tally([run["description"] for run in runs])
    return {
        "executions": len(runs),
        **latency_summary([run["engine_ms"] for run in runs], "execution_ms_"),
        **latency_summary([run["client_ms"] for run in runs], "client_ms_"),
        "outcomes": outcomes,
    }


def state_durations(events: list[dict[str, Any]], stop: datetime) -> dict[str, float]:
    """ms from each state's entry to the next state's entry (the last: to the execution's stop), keyed by state
    name; `(start)` is ExecutionStarted to the first state (MiniStack's fixed start delay)."""
    durations: dict[str, float] = {}
    current, since = "(start)", events[0]["timestamp"]
    for event in events:
        entered = event.get("stateEnteredEventDetails")
        if entered:
            durations[current] = durations.get(current, 0.0) + (event["timestamp"] - since).total_seconds() * 1000
            current, since = entered["name"], event["timestamp"]
    durations[current] = durations.get(current, 0.0) + (stop - since).total_seconds() * 1000
    return durations


def outcome_of(description: dict[str, Any]) -> str:
    """SUCCEEDED, LOW_CONFIDENCE, or the status of any other end (the load generator's tally, for one)."""
    return next(iter(tally([description])))


def per_state_p50(sfn: Any, runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """For each outcome (SUCCEEDED, LOW_CONFIDENCE), the p50 ms each state took: where an execution's time goes."""
    by_outcome: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        description = run["description"]
        history = sfn.get_execution_history(executionArn=description["executionArn"], maxResults=1000)["events"]
        for state, ms in state_durations(history, description["stopDate"]).items():
            by_outcome.setdefault(outcome_of(description), {}).setdefault(state, []).append(ms)
    return {
        outcome: {state: round(percentile(values, 50), 1) for state, values in states.items()}
        for outcome, states in by_outcome.items()
    }


def summarize(sfn: Any, runs: list[dict[str, Any]]) -> dict[str, Any]:
    outcomes = tally([run["description"] for run in runs])
    engine_ms: dict[str, list[float]] = {}
    for run in runs:
        engine_ms.setdefault(outcome_of(run["description"]), []).append(run["engine_ms"])
    return {
        "executions": len(runs),
        **latency_summary([run["engine_ms"] for run in runs], "execution_ms_"),
        "client_ms_p50": round(percentile([run["client_ms"] for run in runs], 50), 1),
        "outcomes": outcomes,
        "succeeded_share": round(outcomes.get("SUCCEEDED", 0) / len(runs), 4),
        "execution_ms_p50_by_outcome": {k: round(percentile(v, 50), 1) for k, v in engine_ms.items()},
        "state_ms_p50_by_outcome": per_state_p50(sfn, runs),
    }


def filter_envelope(inferences: list[float]) -> dict[str, Any]:
    return {"statusCode": 200, "body": {"image_data": "", "s3_bucket": BUCKET, "s3_key": "k", "inferences": inferences}}


def lambda_after_error(ctx: BenchContext, rounds: int = 10) -> dict[str, float]:
    """Invoke the real filter Lambda directly, in the pattern confident, confident, low-confidence: p50 ms of an
    invoke after a success, and after a ThresholdConfidenceNotMet (MiniStack replaces a Python worker whose
    handler raised, so the next invoke starts cold)."""
    client = ctx.client("lambda")
    name = bench_functions("scones-bench")[2].name
    confident, doubtful = filter_envelope([0.99, 0.01]), filter_envelope([0.6, 0.4])
    timings: dict[str, list[float]] = {}
    previous = "success"
    for payload in [confident, confident, doubtful] * rounds:
        began = time.perf_counter()
        reply = client.invoke(FunctionName=name, Payload=json.dumps(payload))
        reply["Payload"].read()
        ms = (time.perf_counter() - began) * 1000
        timings.setdefault(f"invoke_after_{previous}_ms_p50", []).append(ms)
        previous = "error" if reply.get("FunctionError") else "success"
        if previous == "error":
            timings.setdefault("invoke_that_raised_ms_p50", []).append(ms)
    return {key: round(percentile(values, 50), 1) for key, values in sorted(timings.items())}


def run(ctx: BenchContext, executions: int = EXECUTIONS) -> dict[str, Any]:
    measured_at = utc_now()
    endpoint_bench.deploy(ctx, model_bench.trained_model(ctx))
    inputs = upload_test_images(ctx)
    log("deploying the bench Lambdas and state machines (real and no-op)")
    real_arn, noop_arn, express_arn = deploy(ctx)
    sfn = ctx.client("stepfunctions")
    sync = sync_client(ctx)
    for payload in inputs[:WARMUP_EXECUTIONS]:
        execute(sfn, real_arn, payload)
        execute(sfn, noop_arn, payload)
        execute_sync(sync, express_arn, payload)
    log(f"{executions} executions of each machine (Standard, no-op, Express), one at a time, alternating")
    load_before = load_average()
    real_runs, noop_runs, express_runs = [], [], []
    for payload in itertools.islice(itertools.cycle(inputs), executions):
        real_runs.append(execute(sfn, real_arn, payload))
        noop_runs.append(execute(sfn, noop_arn, payload))
        express_runs.append(execute_sync(sync, express_arn, payload))
    load_after = load_average()
    real, noop, express = summarize(sfn, real_runs), summarize(sfn, noop_runs), summarize_sync(express_runs)
    unexpected = {k: v for k, v in real["outcomes"].items() if k not in ("SUCCEEDED", "LOW_CONFIDENCE")}
    if unexpected or noop["outcomes"] != {"SUCCEEDED": executions} or express["outcomes"] != real["outcomes"]:
        raise RuntimeError(
            f"executions ended unexpectedly: real {real['outcomes']}, no-op {noop['outcomes']}, "
            f"Express {express['outcomes']} (the same images must end the same way)"
        )
    return {
        "measured_at": measured_at,
        **real,
        "noop_execution_ms_p50": noop["execution_ms_p50"],
        "noop_execution_ms_p99": noop["execution_ms_p99"],
        "noop": noop,
        "ratio_to_noop_p50": round(real["execution_ms_p50"] / noop["execution_ms_p50"], 3),
        "express_execution_ms_p50": express["execution_ms_p50"],
        "express_client_ms_p50": express["client_ms_p50"],
        "express": express,
        "timing": "engine stopDate - startDate over all finished executions (SUCCEEDED and LowConfidenceInference)",
        "filter_lambda_direct": lambda_after_error(ctx),
        "load_average_before_after": [load_before, load_after],
    }
