"""The endpoint part: deploy the trained model to the local SageMaker with the training DAG's own request
builders (data capture on, 100 %, as deployed), then measure InvokeEndpoint through boto3's sagemaker-runtime
at concurrency 1 and 8, and the bare model forward in a child on the same machine in the same run.

- Concurrency 1: one client, requests back to back, in rounds that alternate with batches of the bare forward
  and of the same request as plain HTTP (no botocore), so all three see the same load on a shared machine.
  Concurrency 8: eight threads, one client each, released together; throughput is requests / wall time.
- Bare forward: `torch_child.py forward` loads the same artifact with the same hooks, in exactly the model
  server's environment (one OpenMP thread), and times predict_fn on one decoded image. Overhead = invoke p50
  at concurrency 1 − forward p50: everything the request path adds (botocore, HTTP, routing, the worker hop,
  PNG decode and JSON in the hooks, data capture); `server_overhead_ms_p50` is the same without botocore.
- CPU milliseconds per request of the client, the local SageMaker and the model server (from /proc): unlike
  latencies, they hardly move with other people's load.
- The signature check (localcloud/sigv4.py) that every InvokeEndpoint passes, timed in-process on the bench's own
  signed request: what it adds to the invoke p50 (issue #13's budget: 0.5 ms).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from benchmarks import model_bench, processes
from benchmarks.context import (
    BUCKET,
    ENDPOINT_NAME,
    INFERENCE_IMAGE,
    SAGEMAKER_ROLE_ARN,
    TORCH_CHILD,
    BenchContext,
    load_average,
    log,
    utc_now,
)
from benchmarks.results import latency_summary, percentile
from include.scones import archives, sagemaker_requests
from include.scones.manifests import read_lst
from include.scones.params import defaults, validate
from include.scones.records import RunPlan
from localcloud import sigv4
from localcloud.config import REGION
from localcloud.credentials import Credentials
from localcloud.sagemaker.runners.hosting import worker_environment

WARMUP_REQUESTS = 50
ROUNDS = 10  # concurrency 1: forward, boto3 and plain HTTP batches alternate, 10 times
FORWARD_PER_ROUND = 20
REQUESTS_PER_ROUND = 50
CONCURRENT_THREADS = 8
CONCURRENT_ROUNDS = 3  # alternating the default deployment and the one-worker one
REQUESTS_PER_THREAD = 50
ONE_WORKER_ENDPOINT = f"{ENDPOINT_NAME}-one-worker"
DEPLOY_TIMEOUT_S = 300.0
SIGNATURE_CHECKS = 2000
SIGNATURE_BUDGET_MS = 0.5


def bench_plan(stamp: str, endpoint_name: str = ENDPOINT_NAME, **params: Any) -> RunPlan:
    """A run plan like the training DAG's, on the bench's own bucket and endpoint (default Params unless given)."""
    return RunPlan(
        name=f"scones-bench-{stamp}",
        bucket=BUCKET,
        region=REGION,
        role_arn=SAGEMAKER_ROLE_ARN,
        training_image="",
        inference_image=INFERENCE_IMAGE,
        endpoint_name=endpoint_name,
        model_output_uri=f"s3://{BUCKET}/models/",
        capture_uri=f"s3://{BUCKET}/data_capture",
        model_package_group=ENDPOINT_NAME,
        params=validate(defaults() | params),
    )


def deploy(ctx: BenchContext, model_dir: Path) -> dict[str, Any]:
    """The bench endpoint with the default Params (the DAG's deployment). Returns what was deployed."""
    return _deploy(ctx, model_dir, ENDPOINT_NAME, {})


def deploy_one_worker(ctx: BenchContext, model_dir: Path) -> dict[str, Any]:
    """The same model on a second endpoint with one model-server worker, for the concurrency-8 comparison."""
    return _deploy(ctx, model_dir, ONE_WORKER_ENDPOINT, {"model_server_workers": 1})


def _deploy(ctx: BenchContext, model_dir: Path, endpoint_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Upload model.tar.gz, CreateModel + CreateEndpointConfig, then create the endpoint afresh and wait for
    InService (the waiter raises if it fails). Returns what was deployed."""
    if endpoint_name in ctx.facts.get("endpoints", {}):
        return dict(ctx.facts["endpoints"][endpoint_name])
    sagemaker = ctx.client("sagemaker")
    ctx.ensure_bucket()
    files = archives.read_tree(model_dir)
    if not files:
        raise FileNotFoundError(f"no model artifact in {model_dir}")
    key = f"models/bench/{archives.content_hash(files)[:16]}/model.tar.gz"
    ctx.s3.put_object(Bucket=BUCKET, Key=key, Body=archives.tar_gz(files))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + ("" if endpoint_name == ENDPOINT_NAME else "-one-worker")
    plan = bench_plan(stamp, endpoint_name, **params)
    # The model the endpoint config names (a training run makes it from the approved version; here, the artifact).
    model_request = sagemaker_requests.model(plan, f"s3://{BUCKET}/{key}") | {"ModelName": plan.serving_model_name}
    sagemaker.create_model(**model_request)
    sagemaker.create_endpoint_config(**sagemaker_requests.endpoint_config(plan))
    began = time.monotonic()
    delete_endpoint(sagemaker, endpoint_name)  # left over from an interrupted run (maybe Failed): start from nothing
    sagemaker.create_endpoint(**sagemaker_requests.endpoint(plan))
    waiter = sagemaker.get_waiter("endpoint_in_service")
    waiter.wait(EndpointName=endpoint_name, WaiterConfig={"Delay": 1, "MaxAttempts": int(DEPLOY_TIMEOUT_S)})
    description = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    deployed = {
        "endpoint_name": endpoint_name,
        "model_name": plan.serving_model_name,
        "endpoint_config_name": plan.name,
        "deploy_seconds": round(time.monotonic() - began, 1),
        "data_capture": description.get("DataCaptureConfig", {}),
        "model_environment": model_request["PrimaryContainer"]["Environment"],
        "model_server_workers": plan.params.model_server_workers,
    }
    ctx.facts.setdefault("endpoints", {})[endpoint_name] = deployed
    return deployed


def delete_endpoint(sagemaker: Any, endpoint_name: str = ENDPOINT_NAME) -> None:
    """Delete a bench endpoint if it exists, and wait until it is gone."""
    try:
        sagemaker.describe_endpoint(EndpointName=endpoint_name)
    except sagemaker.exceptions.ClientError:
        return
    sagemaker.delete_endpoint(EndpointName=endpoint_name)
    sagemaker.get_waiter("endpoint_deleted").wait(
        EndpointName=endpoint_name, WaiterConfig={"Delay": 1, "MaxAttempts": int(DEPLOY_TIMEOUT_S)}
    )


def teardown(ctx: BenchContext) -> None:
    """Delete the bench endpoints and every model and config a bench made (the worker processes go with them)."""
    sagemaker = ctx.client("sagemaker")
    for endpoint_name in (ENDPOINT_NAME, ONE_WORKER_ENDPOINT):
        delete_endpoint(sagemaker, endpoint_name)
    for config in sagemaker.list_endpoint_configs(NameContains="scones-bench-", MaxResults=100)["EndpointConfigs"]:
        sagemaker.delete_endpoint_config(EndpointConfigName=config["EndpointConfigName"])
    for model in sagemaker.list_models(NameContains="scones-bench-", MaxResults=100)["Models"]:
        sagemaker.delete_model(ModelName=model["ModelName"])
    ctx.facts.pop("endpoints", None)


def request_image(ctx: BenchContext) -> Path:
    """The first image of the test split (every request and the bare forward use the same bytes)."""
    channel_dir, _ = model_bench.channels(ctx)
    first = read_lst(channel_dir / "test" / "test.lst")[0]
    return channel_dir / "test" / "images" / first.filename


def _invoke_loop(
    client: Any, body: bytes, count: int, latencies: list[float], endpoint_name: str = ENDPOINT_NAME
) -> None:
    for _ in range(count):
        began = time.perf_counter()
        reply = client.invoke_endpoint(
            EndpointName=endpoint_name, ContentType="image/png", Accept="application/json", Body=body
        )
        reply["Body"].read()
        latencies.append((time.perf_counter() - began) * 1000)


INVOKE_HEADERS = {"Content-Type": "image/png", "Accept": "application/json"}


def signed_invoke_headers(url: str, body: bytes) -> dict[str, str]:
    """INVOKE_HEADERS with a SigV4 signature from the install's keys, as botocore signs InvokeEndpoint."""
    request = AWSRequest("POST", url, data=body, headers=INVOKE_HEADERS)
    SigV4Auth(boto3.Session().get_credentials(), "sagemaker", REGION).add_auth(request)
    return dict(request.headers.items())


class PlainHttp:
    """InvokeEndpoint as plain HTTP on a keep-alive connection (no botocore client, so no retries, parsing or
    hooks), to tell the client's share of the latency from the server's. Each request is signed before its
    timer starts: the local SageMaker checks signatures."""

    def __init__(self, ctx: BenchContext, body: bytes) -> None:
        self.url = f"{ctx.cfg.sagemaker_url}/endpoints/{ENDPOINT_NAME}/invocations"
        url = urlsplit(self.url)
        self.host, self.port, self.path, self.body = url.hostname or "127.0.0.1", url.port, url.path, body

    def loop(self, count: int, latencies: list[float]) -> None:
        """`count` timed requests on a fresh connection (the server drops idle ones after 5 s), after one
        untimed request that opens it, as botocore's pool is warm for the timed boto3 requests."""
        connection = http.client.HTTPConnection(self.host, self.port)
        try:
            for number in range(count + 1):
                headers = signed_invoke_headers(self.url, self.body)
                began = time.perf_counter()
                connection.request("POST", self.path, body=self.body, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"InvokeEndpoint over plain HTTP answered {response.status}")
                if number:
                    latencies.append((time.perf_counter() - began) * 1000)
        finally:
            connection.close()


class ForwardChild:
    """`torch_child.py forward`: the model loaded once in .venv-pytorch, timing predict_fn in batches on demand."""

    def __init__(self, ctx: BenchContext, model_dir: Path, image: Path, environment: dict[str, str]) -> None:
        command = [str(ctx.pytorch_python), str(TORCH_CHILD), "forward", "--model-dir", str(model_dir)]
        self.process = subprocess.Popen(
            [*command, "--image", str(image)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            # exactly what the endpoint's model server gets (threads too)
            env=worker_environment(environment, ctx.pytorch_python, ctx.cfg.ministack_url),
        )
        self.torch_threads = self._read()["torch_threads"]

    def batch(self, count: int) -> dict[str, list[float]]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{count}\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"torch_child.py forward exited with {self.process.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def interleaved(
    ctx: BenchContext, model_dir: Path, image: Path, body: bytes, environment: dict[str, str]
) -> dict[str, Any]:
    """Concurrency 1: ROUNDS rounds of (bare forward batch, boto3 batch, plain HTTP batch), so the three see the
    same load; plus the CPU each process spent per boto3 request."""
    client = ctx.client("sagemaker-runtime")
    plain = PlainHttp(ctx, body)
    _invoke_loop(client, body, WARMUP_REQUESTS, [])
    plain.loop(WARMUP_REQUESTS, [])
    server_pid = processes.sagemaker_server_pid(ctx.cfg)
    meter = processes.CpuMeter(
        {
            "local_sagemaker": [server_pid] if server_pid else [],
            "model_server": processes.endpoint_worker_pids(ctx.cfg, ENDPOINT_NAME),
        }
    )
    forward_ms: list[float] = []
    hooks_ms: list[float] = []
    invoke_ms: list[float] = []
    http_ms: list[float] = []
    cpu = {"boto3_client": 0.0, "local_sagemaker": 0.0, "model_server": 0.0}
    child = ForwardChild(ctx, model_dir, image, environment)
    try:
        for _ in range(ROUNDS):
            timings = child.batch(FORWARD_PER_ROUND)
            forward_ms += timings["forward_ms"]
            hooks_ms += timings["hooks_ms"]
            meter.start()
            client_cpu = time.process_time()
            _invoke_loop(client, body, REQUESTS_PER_ROUND, invoke_ms)
            cpu["boto3_client"] += time.process_time() - client_cpu
            for name, used in meter.stop().items():
                cpu[name] += used
            plain.loop(REQUESTS_PER_ROUND, http_ms)
    finally:
        child.close()
    return {
        "forward": {
            **latency_summary(forward_ms, "model_forward_ms_"),
            "hooks_ms_p50": round(percentile(hooks_ms, 50), 2),
            "torch_threads": child.torch_threads,
            "runs": len(forward_ms),
        },
        "boto3": latency_summary(invoke_ms, "invoke_ms_")
        | {
            "requests": len(invoke_ms),
            "cpu_ms_per_request": {name: round(used / len(invoke_ms) * 1000, 3) for name, used in cpu.items()},
        },
        "plain_http": latency_summary(http_ms, "http_ms_") | {"requests": len(http_ms)},
    }


def concurrent_rounds(ctx: BenchContext, body: bytes, endpoints: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Concurrency 8 on each endpoint, in CONCURRENT_ROUNDS rounds that alternate between them (so they see the
    same load); each endpoint's latencies and wall time pooled over its rounds."""
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in endpoints}
    for _ in range(CONCURRENT_ROUNDS):
        for name in endpoints:
            rounds[name].append(concurrent(ctx, body, CONCURRENT_THREADS, REQUESTS_PER_THREAD, name))
    pooled = {}
    for name, runs in rounds.items():
        latencies = [value for run in runs for value in run.pop("latencies")]
        seconds = sum(run["seconds"] for run in runs)
        pooled[name] = latency_summary(latencies, "invoke_ms_") | {
            "requests": len(latencies),
            "threads": CONCURRENT_THREADS,
            "rounds": len(runs),
            "throughput_rps": round(len(latencies) / seconds, 1),
        }
    return pooled


def concurrent(
    ctx: BenchContext, body: bytes, threads: int, per_thread: int, endpoint_name: str = ENDPOINT_NAME
) -> dict[str, Any]:
    """`threads` clients released together, `per_thread` calls each: the latencies and the wall time."""
    clients = [ctx.client("sagemaker-runtime") for _ in range(threads)]
    for client in clients:  # each client's connection pool and credentials are warm before the clock starts
        _invoke_loop(client, body, 5, [], endpoint_name)
    per_thread_latencies: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        start.wait()
        try:
            _invoke_loop(clients[index], body, per_thread, per_thread_latencies[index], endpoint_name)
        except BaseException as error:  # reported below; a failed request must not pass silently
            errors.append(error)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in workers:
        thread.join()
    seconds = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} of {threads} threads failed; first: {errors[0]!r}")
    return {"latencies": [value for chunk in per_thread_latencies for value in chunk], "seconds": seconds}


def signature_check(ctx: BenchContext, body: bytes) -> dict[str, Any]:
    """The check the local SageMaker runs on every InvokeEndpoint, timed in-process on this bench's request: the
    request as it arrives (ASGI scope, body read) through `sigv4.verify` against the install's keys."""
    url = f"{ctx.cfg.sagemaker_url}/endpoints/{ENDPOINT_NAME}/invocations"
    headers = signed_invoke_headers(url, body)
    parts = urlsplit(url)
    scope = {
        "type": "http",
        "method": "POST",
        "raw_path": parts.path.encode(),
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()] + [(b"host", parts.netloc.encode())],
    }
    keys = Credentials.from_env().signing_keys()
    timings = []
    for _ in range(SIGNATURE_CHECKS):
        began = time.perf_counter()
        refused = sigv4.verify(sigv4.Request.from_asgi(scope, body), keys, service="sagemaker")
        timings.append((time.perf_counter() - began) * 1000)
        if refused is not None:
            raise RuntimeError(f"the bench's own signed request was refused: {refused.message[:200]}")
    return {
        "checks": SIGNATURE_CHECKS,
        "signature_check_ms_p50": round(percentile(timings, 50), 4),
        "signature_check_ms_p99": round(percentile(timings, 99), 4),
        "budget_ms": SIGNATURE_BUDGET_MS,
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    measured_at = utc_now()
    model_dir = model_bench.trained_model(ctx)
    log("deploying the model to the bench endpoint (data capture on)")
    deployed = deploy(ctx, model_dir)
    image = request_image(ctx)
    body = image.read_bytes()
    load_before = load_average()
    log(f"concurrency 1: {ROUNDS} rounds of {FORWARD_PER_ROUND} bare forwards, {REQUESTS_PER_ROUND} InvokeEndpoint "
        f"and {REQUESTS_PER_ROUND} plain HTTP requests")  # fmt: skip
    one = interleaved(ctx, model_dir, image, body, deployed["model_environment"])
    one_worker = deploy_one_worker(ctx, model_dir)
    log(f"concurrency {CONCURRENT_THREADS}: {CONCURRENT_ROUNDS} rounds of {CONCURRENT_THREADS} threads x "
        f"{REQUESTS_PER_THREAD} InvokeEndpoint, alternating {deployed['model_server_workers']} model-server "
        "workers and 1")  # fmt: skip
    pooled = concurrent_rounds(ctx, body, (ENDPOINT_NAME, ONE_WORKER_ENDPOINT))
    eight, eight_one_worker = pooled[ENDPOINT_NAME], pooled[ONE_WORKER_ENDPOINT]
    delete_endpoint(ctx.client("sagemaker"), ONE_WORKER_ENDPOINT)  # the rollout part updates only the first
    ctx.facts["endpoints"].pop(ONE_WORKER_ENDPOINT, None)
    load_after = load_average()
    signatures = signature_check(ctx, body)
    forward_p50 = one["forward"]["model_forward_ms_p50"]
    return {
        "measured_at": measured_at,
        "model_forward_ms_p50": forward_p50,
        "model_forward": one["forward"],
        "concurrency_1": one["boto3"],
        "concurrency_8": eight,
        "throughput_rps": eight["throughput_rps"],
        "model_server_workers": deployed["model_server_workers"],
        "concurrency_8_one_worker": eight_one_worker,
        "p99_c8_workers_to_one_worker": round(eight["invoke_ms_p99"] / eight_one_worker["invoke_ms_p99"], 2),
        "one_worker_deploy_seconds": one_worker["deploy_seconds"],
        "overhead_ms_p50": round(one["boto3"]["invoke_ms_p50"] - forward_p50, 2),
        # Without botocore: what the local SageMaker itself adds to the forward (HTTP, routing, the worker hop,
        # PNG decode and JSON in the hooks, data capture).
        "plain_http": one["plain_http"],
        "server_overhead_ms_p50": round(one["plain_http"]["http_ms_p50"] - forward_p50, 2),
        "image_bytes": len(body),
        "signature_check": signatures,
        "signature_check_ms_p50": signatures["signature_check_ms_p50"],
        "data_capture": deployed["data_capture"],
        "deploy_seconds": deployed["deploy_seconds"],
        "load_average_before_after": [load_before, load_after],
    }
