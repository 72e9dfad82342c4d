"""Publish the monitoring report: read the captures since the last report, build it (report.py), upload it under
`monitoring/<timestamp>/` and `monitoring/latest/`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from include.scones.monitoring.layout import LATEST, REPORT_HTML, SUMMARY_JSON, report_key
from include.scones.records import DeploymentRecord

# The training images' statistics, beside the dataset's manifest.json (transform.py writes it): input drift.
IMAGE_BASELINE_FILE = "image_baseline.json"

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


def _read_json(hook: Any, uri: str) -> Any | None:
    bucket, key = hook.parse_s3_url(uri)
    if not hook.check_for_key(key, bucket_name=bucket):
        return None
    return json.loads(hook.read_key(key, bucket_name=bucket))


def _labels(hook: Any, bucket: str, start: datetime, end: datetime) -> tuple[list[Any], int, Counter[str]]:
    """Every ground-truth label given in [start, end] (by the hour folders), its file count and skipped lines."""
    from include.scones.monitoring.ground_truth import hour_prefixes, iter_labels

    keys = [key for prefix in hour_prefixes(start, end) for key in hook.list_keys(bucket_name=bucket, prefix=prefix)
            or [] if key.endswith(".jsonl")]  # fmt: skip

    def read(key: str) -> tuple[str, str]:
        return key, hook.read_key(key, bucket_name=bucket)

    skipped: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        labels = list(iter_labels(pool.map(read, keys), skipped))
    return labels, len(keys), skipped


def build_monitoring_report(
    hook: Any,
    bucket: str,
    capture_prefix: str,
    deployment: DeploymentRecord,
    now: datetime,
    limits: Any = None,
    lag: timedelta = timedelta(minutes=15),
    *,
    label_lookback: timedelta = timedelta(hours=24),
    review_capacity: int = 0,
    batch_prefix: str | None = None,
) -> dict[str, Any]:
    """Report on the captures since the last report; upload it under monitoring/<timestamp>/ and latest/, and
    queue its filtered inferences for review (at most `review_capacity`). People's labels are merged with the
    captures of the last `label_lookback` (live accuracy). Returns the summary; the caller raises the alert (after
    the upload) with `report.check_alerts`. With `batch_prefix`, the latest batch classification's summary
    (<batch_prefix>/latest.json) is part of the report."""
    from include.scones import batch, labelling
    from include.scones.monitoring.capture import Window, hour_prefixes, keys_in_window
    from include.scones.monitoring.live import LiveInputs
    from include.scones.monitoring.report import build_report, report_files

    try:
        window = Window.since(_last_report_end(hook, bucket), now, lag=lag)
    except ValueError as exc:
        raise NothingNewToReport(str(exc)) from exc
    endpoint = deployment.endpoint_name
    label_start = min(window.end - label_lookback, window.start)
    keys: list[str] = []
    for prefix in hour_prefixes(capture_prefix, endpoint, None, label_start, window.end):
        keys += hook.list_keys(bucket_name=bucket, prefix=prefix) or []
    keys = keys_in_window(keys, label_start, window.end)
    evaluation = _read_json(hook, deployment.evaluation_uri)
    if evaluation is None:
        raise FileNotFoundError(f"{deployment.evaluation_uri} does not exist: the live version has no evaluation")
    labels, label_files, label_skipped = _labels(hook, bucket, label_start, now)
    live = LiveInputs(
        calibration=evaluation,
        image_baseline=_read_json(hook, deployment.data_uri.rstrip("/") + "/" + IMAGE_BASELINE_FILE),
        labels=labels,
        label_start=label_start,
        review_capacity=review_capacity,
        label_files=label_files,
        label_skipped=label_skipped,
    )
    latest_batch = batch.read_latest(hook, bucket, batch_prefix) if batch_prefix else None
    report = build_report(
        _capture_lines(hook, bucket, keys),
        evaluation["baseline"],
        deployment.classes,
        deployment.confidence_threshold,
        window,
        limits,
        endpoint_name=endpoint,
        live=live,
        batch=latest_batch.to_xcom() if latest_batch else None,
    )
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    # Recorded in summary.json too, so readers of latest/ know which report it is.
    report.summary["report_uri"] = f"s3://{bucket}/{report_key(stamp, REPORT_HTML)}"
    report.summary["capture_files"] = len(keys)
    # The queue first: the Review page lists what the report says it queued.
    items = [labelling.ReviewItem.from_record(r, deployment.classes, endpoint) for r in report.review]
    report.summary["review_queue_added"] = labelling.publish_queue(hook.get_conn(), bucket, items)
    for name, body in report_files(report).items():
        for folder in (stamp, LATEST):
            hook.load_bytes(body, key=report_key(folder, name), bucket_name=bucket, replace=True)
    summary = dict(report.summary)
    log.info("monitoring report for %s: %s", window, summary["report_uri"])
    return summary
