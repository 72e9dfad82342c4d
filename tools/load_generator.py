"""Run many executions of the per-image Express machine over the test images at a steady rate, to watch the
monitoring react.

    python -m tools.load_generator --count 200 --rate 10 --concurrency 16

Each execution is a StartSyncExecution whose answer is its end (Express keeps no history to read afterwards), so
executions start on schedule from a pool of `--concurrency` callers and are tallied as they answer.

Uses plain boto3 with the standard AWS environment (after `make up`: `source .localcloud/env`; on AWS: your
credentials and region). Finds the state machine by name and the test images through the deployment registry.
Demo and test plumbing, not part of the workflow (the demo and the reliability suite's load scenario use it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from include.scones import registry
from include.scones import settings as scones_settings
from include.scones.smoke import LOW_CONFIDENCE_ERROR, pick_smoke_images
from include.scones.state_machine_deploy import (
    STATE_MACHINE_NAME,
    SYNC_READ_TIMEOUT_S,
    execution_input,
    find_state_machine,
    run_sync_execution,
)

DEFAULT_CONCURRENCY = 16


class _BotoS3Reader:
    """The S3Hook methods pick_smoke_images needs, over a plain boto3 client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def read_key(self, key: str, bucket_name: str) -> str:
        return self.client.get_object(Bucket=bucket_name, Key=key)["Body"].read().decode()

    @staticmethod
    def parse_s3_url(uri: str) -> tuple[str, str]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook.parse_s3_url(uri)


def state_machine_arn(sfn: Any, name: str = STATE_MACHINE_NAME) -> str:
    arn = find_state_machine(sfn, name)
    if arn is None:
        raise LookupError(f"no state machine named {name}: run scones_inference_workflow first")
    return arn


def run_burst(
    sfn: Any,
    machine_arn: str,
    inputs: Sequence[dict[str, str]],
    count: int,
    rate_per_s: float,
    concurrency: int = DEFAULT_CONCURRENCY,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Run `count` executions cycling over `inputs`, started at most `rate_per_s` and at most `concurrency` at
    a time; returns their ends (run_sync_execution's answers) in start order. A slow execution delays no start
    while a caller is free."""
    if count < 0 or rate_per_s <= 0 or concurrency < 1 or (count and not inputs):
        raise ValueError("count must be ≥ 0, rate > 0, concurrency ≥ 1, and there must be inputs to send")
    running: list[Future[dict[str, Any]]] = []
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="load") as pool:
        begin = clock()
        for number, payload in zip(range(count), itertools.cycle(inputs), strict=False):
            delay = begin + number / rate_per_s - clock()
            if delay > 0:
                sleep(delay)
            running.append(pool.submit(run_sync_execution, sfn, machine_arn, payload))
        return [future.result() for future in running]


def tally(ends: Sequence[dict[str, Any]]) -> dict[str, int]:
    """SUCCEEDED (passed the filter), LOW_CONFIDENCE (filtered out), or any other end."""
    counts: Counter[str] = Counter()
    for end in ends:
        if end["status"] == "FAILED" and end.get("error") == LOW_CONFIDENCE_ERROR:
            counts["LOW_CONFIDENCE"] += 1
        else:
            counts[end["status"]] += 1
    return dict(counts)


def run(count: int, rate_per_s: float, concurrency: int = DEFAULT_CONCURRENCY) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    settings = scones_settings.load()
    # Locally, .localcloud/env sets AWS_DISABLE_HOST_PREFIX_INJECTION (StartSyncExecution's `sync-` host prefix).
    sfn = boto3.client(
        "stepfunctions", config=Config(read_timeout=SYNC_READ_TIMEOUT_S, max_pool_connections=concurrency)
    )
    s3 = boto3.client("s3")
    deployment = registry.live_deployment(boto3.client("sagemaker"), settings.endpoint_name)
    if deployment is None:
        raise SystemExit(f"endpoint {settings.endpoint_name} serves no version of the Model Registry")
    images = pick_smoke_images(_BotoS3Reader(s3), deployment.data_uri, 40)
    inputs = [execution_input(image["s3_bucket"], image["s3_key"]) for image in images]
    began = time.monotonic()
    ends = run_burst(sfn, state_machine_arn(sfn), inputs, count, rate_per_s, concurrency)
    return {"executions": len(ends), "outcomes": tally(ends), "seconds": round(time.monotonic() - began, 1)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50, help="executions to run")
    parser.add_argument("--rate", type=float, default=10.0, help="executions started per second, at most")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="executions at once, at most")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.count, args.rate, args.concurrency)))


if __name__ == "__main__":
    main()
