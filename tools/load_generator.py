"""Start many state machine executions over the test images at a steady rate, to watch the monitoring react.

    python -m tools.load_generator --count 200 --rate 10

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
from typing import Any

from include.scones import registry
from include.scones import settings as scones_settings
from include.scones.smoke import LOW_CONFIDENCE_ERROR, pick_smoke_images, wait_for_executions
from include.scones.state_machine_deploy import STATE_MACHINE_NAME, execution_input, find_state_machine


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


def start_burst(
    sfn: Any,
    machine_arn: str,
    inputs: Sequence[dict[str, str]],
    count: int,
    rate_per_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Start `count` executions cycling over `inputs`, paced to at most `rate_per_s`; returns their ARNs."""
    if count < 0 or rate_per_s <= 0 or (count and not inputs):
        raise ValueError("count must be ≥ 0, rate > 0, and there must be inputs to send")
    started, begin = [], clock()
    for number, payload in zip(range(count), itertools.cycle(inputs), strict=False):
        delay = begin + number / rate_per_s - clock()
        if delay > 0:
            sleep(delay)
        started.append(sfn.start_execution(stateMachineArn=machine_arn, input=json.dumps(payload))["executionArn"])
    return started


def tally(descriptions: Sequence[dict[str, Any]]) -> dict[str, int]:
    """SUCCEEDED (passed the filter), LOW_CONFIDENCE (filtered out), or any other end."""
    counts: Counter[str] = Counter()
    for description in descriptions:
        if description["status"] == "FAILED" and description.get("error") == LOW_CONFIDENCE_ERROR:
            counts["LOW_CONFIDENCE"] += 1
        else:
            counts[description["status"]] += 1
    return dict(counts)


def run(count: int, rate_per_s: float, timeout_s: float = 600) -> dict[str, Any]:
    import boto3

    settings = scones_settings.load()
    s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
    deployment = registry.live_deployment(boto3.client("sagemaker"), settings.endpoint_name)
    if deployment is None:
        raise SystemExit(f"endpoint {settings.endpoint_name} serves no version of the Model Registry")
    images = pick_smoke_images(_BotoS3Reader(s3), deployment.data_uri, 40)
    inputs = [execution_input(image["s3_bucket"], image["s3_key"]) for image in images]
    began = time.monotonic()
    arns = start_burst(sfn, state_machine_arn(sfn), inputs, count, rate_per_s)
    outcomes = tally(wait_for_executions(sfn, arns, timeout_s=timeout_s, poll_s=1.0))
    return {"executions": len(arns), "outcomes": outcomes, "seconds": round(time.monotonic() - began, 1)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50, help="executions to start")
    parser.add_argument("--rate", type=float, default=10.0, help="executions started per second, at most")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.count, args.rate)))


if __name__ == "__main__":
    main()
