"""Where a monitoring report lives in S3 and which files it has: one definition for the workflow DAG that writes
reports, the UI plugin that serves them and `make demo`, which prints them. Standard library only: the plugin
imports it when the API server starts."""

from __future__ import annotations

# The workflow DAG uploads each report to monitoring/<timestamp>/ and copies it to monitoring/latest/.
MONITORING_PREFIX = "monitoring"
LATEST = "latest"
LATEST_PREFIX = f"{MONITORING_PREFIX}/{LATEST}"

REPORT_HTML = "report.html"
SUMMARY_JSON = "summary.json"
CHART_NAMES = ("confidence_over_time", "confidence_histogram", "class_mix")
REPORT_FILES = (SUMMARY_JSON, REPORT_HTML, *(f"{name}.png" for name in CHART_NAMES))


def report_key(folder: str, name: str) -> str:
    """`monitoring/<folder>/<name>`, folder being a report's timestamp or LATEST."""
    return f"{MONITORING_PREFIX}/{folder}/{name}"
