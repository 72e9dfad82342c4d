"""Scenario 2, endpoint worker crash: a model server process is killed (SIGKILL) while it answers a request.

The request in flight and a new one must both fail promptly with a 5xx the SDKs retry (`ServiceUnavailable`),
never hang until a timeout; the endpoint stays InService while the local SageMaker restarts the worker, and serves
again within seconds. The model is the pure-Python echo fixture, whose `slow` body keeps a request in flight."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import LocalCloud
from tests.localcloud.helpers import unique, wait_for
from tests.localcloud.test_hosting import Deployer, serves, worker_pids
from tests.reliability.conftest import MEASUREMENTS, Clients

pytestmark = pytest.mark.e2e

PROMPT_S = 2.0  # an error on a dead worker must come this fast (an answer may take up to 60 s)
BACK_IN_SERVICE_S = 20.0


def timed_invoke(runtime: Any, endpoint: str, body: bytes) -> tuple[dict[str, Any] | None, float]:
    """(the error response, or None on success; the monotonic time the call returned)."""
    try:
        runtime.invoke_endpoint(EndpointName=endpoint, Body=body, ContentType="application/json")
        return None, time.monotonic()
    except ClientError as error:
        return dict(error.response), time.monotonic()


def assert_prompt_service_unavailable(error: dict[str, Any] | None, seconds: float) -> None:
    assert error is not None, "the call should have failed: its worker was killed"
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("ServiceUnavailable", 503)
    assert seconds < PROMPT_S


def test_a_killed_worker_fails_in_flight_and_new_calls_fast_then_is_restarted(cloud: LocalCloud, aws: Clients) -> None:
    bucket = unique("worker-crash")
    aws.s3.create_bucket(Bucket=bucket)
    deployer = Deployer(aws.sagemaker, aws.s3, bucket)
    name = deployer.endpoint(deployer.config(("AllTraffic", deployer.model("phoenix"), 1.0)))
    [pid] = worker_pids(cloud, name)

    with ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(timed_invoke, aws.runtime_first_answer, name, b"slow")
        time.sleep(0.5)  # well inside the worker's 2 s answer
        assert not in_flight.done()
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        in_flight_error, in_flight_returned = in_flight.result(timeout=30)
    assert_prompt_service_unavailable(in_flight_error, in_flight_returned - killed_at)

    assert wait_for(lambda: pid not in worker_pids(cloud, name), 5, 0.02)
    asked = time.monotonic()
    new_error, new_returned = timed_invoke(aws.runtime_first_answer, name, b"{}")
    assert_prompt_service_unavailable(new_error, new_returned - asked)

    statuses: list[str] = []

    def serving_again() -> bool:
        statuses.append(aws.sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"])
        return serves(aws.runtime_first_answer, name, "phoenix")

    assert wait_for(serving_again, BACK_IN_SERVICE_S, 0.1)
    back_after = time.monotonic() - killed_at
    assert set(statuses) == {"InService"}, statuses
    assert len(worker_pids(cloud, name) - {pid}) == 1
    MEASUREMENTS["endpoint worker crash"] = (
        f"in-flight call 503 {in_flight_returned - killed_at:.2f} s after the kill, new call 503 in "
        f"{new_returned - asked:.2f} s; serving again {back_after:.1f} s after the kill, InService throughout"
    )
    deployer.delete(name)
