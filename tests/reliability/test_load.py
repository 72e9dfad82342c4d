"""Scenario 4, load: 500 executions of the per-image Express machine (StartSyncExecution) started at a bounded
rate through the load generator, then `make down` the moment the last one has answered (and `make up` again to
read what was kept).

Every execution must answer SUCCEEDED or the low-confidence end (none lost, none stuck), and data capture must
hold exactly one record per classified image, including the records still spooled when the cloud went down
(each execution classifies its image once: Express keeps no history to count invocations by, so the capture
is matched to the answers). Each execution gets its own copy of a test image, tagged in a PNG text chunk the
model ignores, so every capture record is matched to the execution that caused it, not just counted."""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.config import Config

from include.scones.state_machine_deploy import STATE_MACHINE_NAME
from localcloud import launcher
from tests.conftest import LocalCloud
from tests.localcloud.helpers import wait_for
from tests.reliability.conftest import BUCKET, MEASUREMENTS, Clients, classifies, held_out_image
from tests.reliability.dag_runs import LoggedRun
from tools.load_generator import run_burst, state_machine_arn, tally

pytestmark = pytest.mark.e2e

EXECUTIONS = 500
RATE_PER_S = 25.0
DISTINCT_IMAGES = 40  # copies are tagged per execution; the pixels cycle over this many test images
CONCURRENCY = 16
TAG_KEYWORD = b"scones-load"


def tagged_png(png: bytes, tag: str) -> bytes:
    """The same image with a tEXt chunk naming `tag` before IEND (decoders skip ancillary chunks)."""
    data = TAG_KEYWORD + b"\0" + tag.encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    assert png.endswith(b"IEND\xaeB`\x82"), "not a PNG ending in IEND"
    return png[:-12] + chunk + png[-12:]


def png_tag(png: bytes) -> str | None:
    start = png.find(b"tEXt" + TAG_KEYWORD + b"\0")
    if start < 0:
        return None
    (length,) = struct.unpack(">I", png[start - 4 : start])
    return png[start + 4 + len(TAG_KEYWORD) + 1 : start + 4 + length].decode()


def captured_tags(aws: Clients, endpoint: str) -> Counter[str]:
    tags: Counter[str] = Counter()
    pages = aws.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"data_capture/{endpoint}/")
    for key in (item["Key"] for page in pages for item in page.get("Contents", [])):
        for line in aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines():
            record = json.loads(line)
            tag = png_tag(base64.b64decode(record["captureData"]["endpointInput"]["data"]))
            if tag is not None:
                tags[tag] += 1
    return tags


def spooled_records(cloud: LocalCloud) -> int:
    """Capture records written locally but not yet delivered to S3 (the local SageMaker's spool)."""
    spool = cloud.cfg.sagemaker_home / "data-capture-spool"
    return sum(len(path.read_bytes().splitlines()) for path in spool.glob("*/*.jsonl"))


def upload_tagged_images(aws: Clients, deployment: dict[str, Any], run: str) -> list[dict[str, str]]:
    originals = [held_out_image(aws, deployment, position) for position in range(DISTINCT_IMAGES)]

    def put(number: int) -> dict[str, str]:
        key = f"load/{run}/{number:04d}.png"
        body = tagged_png(originals[number % DISTINCT_IMAGES], f"{run}:{number}")
        aws.s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="image/png")
        return {"s3_bucket": BUCKET, "s3_key": key}

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(put, range(EXECUTIONS)))


@pytest.mark.timeout(900)
def test_a_burst_of_500_executions_loses_no_execution_and_no_capture_across_make_down(
    cloud: LocalCloud, aws: Clients, deployment: dict[str, Any], first_workflow_run: LoggedRun
) -> None:
    run = uuid.uuid4().hex[:8]
    inputs = upload_tagged_images(aws, deployment, run)
    machine = state_machine_arn(aws.sfn, STATE_MACHINE_NAME)

    sfn = cloud.client("stepfunctions", config=Config(max_pool_connections=CONCURRENCY))

    began = time.monotonic()
    ends = run_burst(sfn, machine, inputs, EXECUTIONS, RATE_PER_S, CONCURRENCY)
    drained_s = time.monotonic() - began
    still_spooled = spooled_records(cloud)
    launcher.down(cloud.cfg)  # the moment the last execution answered, with captures possibly still spooled
    launcher.up(cloud.cfg)
    image = held_out_image(aws, deployment)
    assert wait_for(lambda: classifies(aws, deployment, image), 60, 0.2), "the endpoint should serve after `up`"
    back_s = time.monotonic() - began - drained_s

    outcomes = tally(ends)
    passed, filtered = outcomes.get("SUCCEEDED", 0), outcomes.get("LOW_CONFIDENCE", 0)
    lost = EXECUTIONS - passed - filtered
    assert lost == 0, outcomes
    assert all(":express:" in end["executionArn"] for end in ends), ends[0]
    captures = captured_tags(aws, deployment["endpoint_name"])
    ours = Counter({tag: count for tag, count in captures.items() if tag.startswith(f"{run}:")})
    classified = Counter(f"{run}:{number}" for number in range(EXECUTIONS))  # each answered image, exactly once
    assert ours == classified, {
        "missing": sorted(set(classified) - set(ours))[:5],
        "duplicated": sorted(tag for tag, count in ours.items() if count > 1)[:5],
    }
    MEASUREMENTS["load"] = (
        f"{EXECUTIONS} Express executions (at most {RATE_PER_S:.0f}/s, {CONCURRENCY} at once) all answered in "
        f"{drained_s:.1f} s: {passed} succeeded, {filtered} low confidence, {lost} lost; "
        f"{sum(ours.values())} capture records "
        f"({still_spooled} still spooled at `make down`), 0 lost; serving again {back_s:.1f} s after `make down`"
    )
