"""Publish the monitoring report: read the captures since the last report, build it (report.py), upload it under
`monitoring/<timestamp>/` and `monitoring/latest/`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from include.scones.monitoring.layout import LATEST, REPORT_HTML, SUMMARY_JSON, report_key
from include.scones.records import DeploymentRecord

log = logging.getLogger(__name__)


class NothingNewToReport(Exception):
    """No time has passed since the last report's window ended: nothing to do this run."""


def _last_report_end(hook: Any, bucket: str) -> datetime | None:
    key = report_key(LATEST, SUMMARY_JSON)
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
    deployment: DeploymentRecord,
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
    endpoint = deployment.endpoint_name
    keys: list[str] = []
    for prefix in hour_prefixes(capture_prefix, endpoint, None, window.start, window.end):
        keys += hook.list_keys(bucket_name=bucket, prefix=prefix) or []
    keys = keys_in_window(keys, window.start, window.end)
    eval_bucket, eval_key = hook.parse_s3_url(deployment.evaluation_uri)
    evaluation = json.loads(hook.read_key(eval_key, bucket_name=eval_bucket))
    report = build_report(
        _capture_lines(hook, bucket, keys),
        evaluation["baseline"],
        deployment.classes,
        deployment.confidence_threshold,
        window,
        limits,
        endpoint_name=endpoint,
    )
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    # Recorded in summary.json too, so readers of latest/ know which report it is.
    report.summary["report_uri"] = f"s3://{bucket}/{report_key(stamp, REPORT_HTML)}"
    report.summary["capture_files"] = len(keys)
    for name, body in report_files(report).items():
        for folder in (stamp, LATEST):
            hook.load_bytes(body, key=report_key(folder, name), bucket_name=bucket, replace=True)
    summary = dict(report.summary)
    log.info("monitoring report for %s: %s", window, summary["report_uri"])
    return summary
