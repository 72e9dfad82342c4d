"""collect_batch_results: after the batch machine's Distributed Map, write one results file and a summary.

Event: the batch machine's state after its Map, {"s3_bucket", "prefix", "results_prefix", "latest_key",
"classes", "map_run": {"MapRunArn", "ResultWriterDetails": {"Bucket", "Key"}}}. Reads the ResultWriter manifest and
the files it names, writes s3://<s3_bucket>/<results_prefix>/results.jsonl (a line per image), then
<results_prefix>/summary.json and <latest_key> (the same summary), and returns the summary. Environment: none."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from logic import BatchSummary, parse_event, parse_records, result_files, result_line, results_body, summarize

S3_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"})


@functools.cache
def s3_client() -> Any:
    return boto3.client("s3", config=S3_CONFIG)


def _read(s3: Any, bucket: str, key: str) -> str:
    return str(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8"))


def lambda_handler(event: Any, context: Any) -> BatchSummary:
    request, bucket, manifest_key, map_run_arn = parse_event(event)
    s3 = s3_client()
    lines = [
        result_line(record, request["classes"])
        for _status, key in result_files(_read(s3, bucket, manifest_key))
        for record in parse_records(key, _read(s3, bucket, key))
    ]
    results_key = f"{request['results_prefix'].rstrip('/')}/results.jsonl"
    s3.put_object(Bucket=request["s3_bucket"], Key=results_key, Body=results_body(lines),
                  ContentType="application/x-ndjson")  # fmt: skip
    summary = summarize(lines, request, results_key, map_run_arn, datetime.now(UTC).isoformat())
    body = json.dumps(summary, indent=2).encode("utf-8")
    for key in (f"{request['results_prefix'].rstrip('/')}/summary.json", request["latest_key"]):
        s3.put_object(Bucket=request["s3_bucket"], Key=key, Body=body, ContentType="application/json")
    return summary
