"""What the Airflow UI plugin (plugins/scones_monitoring_plugin.py) serves: the latest monitoring report, read
from s3://<bucket>/monitoring/latest/ through the provider's S3Hook on the project's connection.

Plain logic, no Airflow or FastAPI import: the allow-list of files, the S3 keys, the pages shown when there is
no report yet or S3 cannot be reached (Jinja2 templates with autoescape: monitoring/templates/no_report.html.j2
and store_error.html.j2), and a reader that turns every S3 failure into one exception with a message fit for a
browser.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from include.scones.monitoring.layout import (
    CHART_NAMES,
    LATEST_PREFIX,
    MONITORING_PREFIX,
    REPORT_FILES,
)
from include.scones.monitoring.templating import render

log = logging.getLogger(__name__)

PRODUCER_DAG_ID = "scones_inference_workflow"

# The only files served: a name outside this tuple never reaches S3 (no path traversal, no other keys).
SERVED_FILES = REPORT_FILES

# The report is self-contained (inline styles, data: images, no script); the plugin page may only be framed by
# the Airflow UI of the same origin.
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
# S3 error codes that mean "nothing published yet" rather than "S3 is broken".
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})


class ReportStoreError(Exception):
    """S3 could not be read (connection, credentials, permissions, endpoint). The message is safe to show."""


def chart_file(name: str) -> str | None:
    """The file name of an allowed chart (`class_mix` -> `class_mix.png`), or None for anything else."""
    return f"{name}.png" if name in CHART_NAMES else None


def latest_key(file_name: str) -> str:
    if file_name not in SERVED_FILES:
        raise ValueError(f"not a report file: {file_name!r}")
    return f"{LATEST_PREFIX}/{file_name}"


def s3_uri(bucket: str, file_name: str) -> str:
    return f"s3://{bucket}/{latest_key(file_name)}"


def is_missing(error: BaseException) -> bool:
    """True when a botocore ClientError says the key (or the bucket) does not exist."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in _MISSING_CODES or status == 404


def describe_error(error: BaseException) -> str:
    """One line for the page: the exception's class and message, never a traceback."""
    text = " ".join(str(error).split()) or "no details"
    return f"{type(error).__name__}: {text[:500]}"


@dataclass
class S3ReportReader:
    """Reads one file of the latest report. `hook_factory` builds the provider's S3Hook (on the project's
    connection) the first time a file is read, so constructing a reader never touches boto3."""

    bucket: str
    hook_factory: Callable[[], Any]
    _hook: Any = field(default=None, init=False, repr=False)

    def uri(self, file_name: str) -> str:
        return s3_uri(self.bucket, file_name)

    def read(self, file_name: str) -> bytes | None:
        """The file's bytes, or None when no report has been published. Raises ReportStoreError otherwise."""
        key = latest_key(file_name)
        try:
            if self._hook is None:
                self._hook = self.hook_factory()
            response = self._hook.get_conn().get_object(Bucket=self.bucket, Key=key)
            return bytes(response["Body"].read())
        except Exception as error:  # every failure becomes a 404 (missing) or a ReportStoreError (502)
            if is_missing(error):
                return None
            message = f"Could not read {self.uri(file_name)}: {describe_error(error)}"
            log.warning("%s", message)
            log.debug("S3 read failed", exc_info=True)
            raise ReportStoreError(message) from error


def no_report_page(report_uri: str, dag_id: str = PRODUCER_DAG_ID) -> str:
    return render(
        "no_report.html.j2",
        report_uri=report_uri,
        dag_id=dag_id,
        monitoring_prefix=MONITORING_PREFIX,
        latest_prefix=LATEST_PREFIX,
    )


def error_page(message: str) -> str:
    return render("store_error.html.j2", message=message)
