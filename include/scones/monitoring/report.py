"""The monitoring report (issue #6) from end to end: capture lines in, summary + charts + HTML out, and the alert
the DAG raises once the report is uploaded.

    report = build_report(sources, evaluation["baseline"], deployment.classes, deployment.confidence_threshold,
                          Window(start, end), Limits(), endpoint_name=deployment.endpoint_name)
    for name, body in report_files(report).items():
        hook.load_bytes(body, key=f"{report_prefix}/{name}", bucket_name=bucket, replace=True)
    check_alerts(report.summary, report_uri=f"s3://{bucket}/{report_prefix}/report.html")
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from include.scones.monitoring.capture import CaptureRecord, SkipLog, Window, iter_records
from include.scones.monitoring.charts import render_charts
from include.scones.monitoring.html import render_html
from include.scones.monitoring.layout import REPORT_HTML, SUMMARY_JSON
from include.scones.monitoring.live import LiveInputs, LiveStats, input_drift_alerts
from include.scones.monitoring.stats import Baseline, Limits, WindowStats, alerts


class ReportAlert(Exception):
    """The window exceeded a limit. Raised after the report is stored, so the failed task points at it."""

    def __init__(self, alerts: Sequence[str], message: str) -> None:
        super().__init__(message)
        self.alerts = list(alerts)


@dataclass(frozen=True)
class Report:
    summary: dict[str, Any]
    charts: dict[str, bytes]
    html: str
    samples: tuple[CaptureRecord, ...] = field(default=())
    review: tuple[CaptureRecord, ...] = field(default=())  # filtered inferences for the Review page's queue


def build_report(
    sources: Iterable[Any],
    baseline: Mapping[str, Any] | Baseline,
    classes: Sequence[str],
    threshold: float,
    window: Window,
    limits: Limits | None = None,
    *,
    endpoint_name: str = "",
    max_samples: int = 12,
    seed: int = 0,
    live: LiveInputs | None = None,
    batch: Mapping[str, Any] | None = None,
) -> Report:
    """Stream `sources` (see capture.iter_records: line iterables, file objects, whole bodies, or records) once.

    `baseline` is evaluation.json's `baseline` (or the whole evaluation.json); `classes` and `threshold` come from
    the registry entry. Records whose inferenceTime falls outside `window` are counted, not reported. At most
    `max_samples` low-confidence records (a seeded uniform sample) are kept for the page.

    `live` adds the labelling loop's numbers (live.py): live accuracy over its label window, which may start
    before `window` (those earlier records feed the merge only), the CBPE estimate, input drift, and the review
    candidates. `batch` is the latest batch classification's summary (records.BatchSummary as JSON), shown as
    it is: a batch run is not traffic of the window."""
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct names, got {list(classes)}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    base = baseline if isinstance(baseline, Baseline) else Baseline.from_mapping(baseline)
    base.check_classes(classes)
    limits = limits or Limits()
    stats = WindowStats(window, classes, threshold, base.bin_edges, max_samples=max_samples, seed=seed)
    loop = LiveStats(window, classes, threshold, live or LiveInputs(), seed)
    skipped = SkipLog.empty()
    for record in iter_records(sources, len(classes), skipped):
        if loop.covers(record):
            loop.add(record)
            if record.inference_time not in window:
                continue  # before the report window: for the label merge only, not "out of the window"
        stats.add(record)
    summary = stats.summary(base, limits, skipped, endpoint_name)
    summary |= loop.summary(limits.image_psi, limits.min_records)
    summary["alerts"] += input_drift_alerts(summary)
    summary["held_back"] = held_back(summary, limits)
    summary["batch"] = dict(batch) if batch is not None else None
    charts = render_charts(summary)
    samples = stats.samples()
    html = render_html(summary, charts, samples, max_samples)
    return Report(summary, charts, html, tuple(samples), tuple(loop.review_records()))


def held_back(summary: Mapping[str, Any], limits: Limits) -> list[str]:
    """What would be an alert, were the window not too small to judge (fewer records than min_records)."""
    if summary["totals"]["records"] >= limits.min_records:
        return []
    return alerts(summary, replace(limits, min_records=0)) + input_drift_alerts(summary, held_back_too=True)


def report_files(report: Report) -> dict[str, bytes]:
    """File name (layout.REPORT_FILES) -> content, ready to upload."""
    return {
        SUMMARY_JSON: json.dumps(report.summary, indent=2, allow_nan=False).encode("utf-8"),
        REPORT_HTML: report.html.encode("utf-8"),
        **{f"{name}.png": png for name, png in report.charts.items()},
    }


def check_alerts(summary: Mapping[str, Any], report_uri: str | None = None) -> None:
    """Raise ReportAlert listing every alert of the summary; return quietly when there is none."""
    alerts = list(summary.get("alerts") or [])
    if not alerts:
        return
    window = summary.get("window", {})
    endpoint = summary.get("endpoint_name") or "the endpoint"
    lines = [
        f"{len(alerts)} monitoring alert(s) for {endpoint}, window {window.get('start')} to {window.get('end')}:",
        *(f"  - {alert}" for alert in alerts),
    ]
    if report_uri:
        lines.append(f"report: {report_uri}")
    raise ReportAlert(alerts, "\n".join(lines))


@dataclass(frozen=True)
class RetrainingRequest:
    """What the workflow's `request_retraining` does with a report: publish the Asset event (with `extra`), or
    skip it for `skip_reason`."""

    alerts: list[str]
    extra: dict[str, Any]
    skip_reason: str | None = None


def retraining_request(summary: Mapping[str, Any], *, enabled: bool) -> RetrainingRequest:
    """Any alert of the report requests a training run, unless the trigger is off (SCONES_RETRAIN_ON_ALERT)."""
    alerts = list(summary.get("alerts") or [])
    extra = {
        "alerts": alerts,
        "report_uri": summary.get("report_uri"),
        "endpoint_name": summary.get("endpoint_name"),
        "window": summary.get("window"),
    }
    if not alerts:
        return RetrainingRequest(alerts, extra, "no alert in the report: no retraining is requested")
    if not enabled:
        reason = "SCONES_RETRAIN_ON_ALERT is false: the alert is reported (check_alerts), no retraining is requested"
        return RetrainingRequest(alerts, extra, reason)
    return RetrainingRequest(alerts, extra)
