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
from dataclasses import dataclass, field
from typing import Any

from include.scones.monitoring.capture import CaptureRecord, SkipLog, Window, iter_records
from include.scones.monitoring.charts import render_charts
from include.scones.monitoring.html import render_html
from include.scones.monitoring.layout import REPORT_HTML, SUMMARY_JSON
from include.scones.monitoring.stats import Baseline, Limits, WindowStats


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
) -> Report:
    """Stream `sources` (see capture.iter_records: line iterables, file objects, whole bodies, or records) once.

    `baseline` is evaluation.json's `baseline` (or the whole evaluation.json); `classes` and `threshold` come from
    the registry entry. Records whose inferenceTime falls outside `window` are counted, not reported. At most
    `max_samples` low-confidence records (a seeded uniform sample) are kept for the page."""
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct names, got {list(classes)}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    base = baseline if isinstance(baseline, Baseline) else Baseline.from_mapping(baseline)
    base.check_classes(classes)
    stats = WindowStats(window, classes, threshold, base.bin_edges, max_samples=max_samples, seed=seed)
    skipped = SkipLog.empty()
    for record in iter_records(sources, len(classes), skipped):
        stats.add(record)
    summary = stats.summary(base, limits or Limits(), skipped, endpoint_name)
    charts = render_charts(summary)
    samples = stats.samples()
    return Report(summary, charts, render_html(summary, charts, samples, max_samples), tuple(samples))


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
