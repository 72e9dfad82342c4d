"""The plugin's FastAPI app with a fake S3 reader: the report, the no-report page, the chart allow-list, 502 on
S3 failures; and monitoring_view's S3 reader against a fake S3Hook raising real botocore errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from fastapi import HTTPException
from fastapi.testclient import TestClient

from include.scones import monitoring_view as view
from include.scones.monitoring.layout import CHART_NAMES, REPORT_FILES
from tests.plugins.conftest import PLUGIN_MODULE, PLUGINS_FOLDER, PROJECT_ROOT

PNG = b"\x89PNG\r\n\x1a\n" + b"fake chart"
REPORT = "<!doctype html><html><head><title>Monitoring report</title></head><body><h1>ep</h1></body></html>"
FILES = {
    "report.html": REPORT.encode(),
    "summary.json": json.dumps({"totals": {"records": 3}}).encode(),
    **{f"{name}.png": PNG + name.encode() for name in CHART_NAMES},
}


class FakeReader:
    def __init__(self, files: dict[str, bytes] | None = None, error: str | None = None) -> None:
        self.files = files or {}
        self.error = error
        self.reads: list[str] = []

    def uri(self, file_name: str) -> str:
        return view.s3_uri("test-bucket", file_name)

    def read(self, file_name: str) -> bytes | None:
        self.reads.append(file_name)
        if self.error:
            raise view.ReportStoreError(self.error)
        return self.files.get(file_name)


@pytest.fixture
def reader() -> FakeReader:
    return FakeReader(dict(FILES))


@pytest.fixture
def client(plugin: ModuleType, reader: FakeReader) -> Iterator[TestClient]:
    app = plugin.create_app()
    app.dependency_overrides[plugin.get_reader] = lambda: reader
    app.dependency_overrides[plugin.require_airflow_user] = lambda: None
    with TestClient(app) as test_client:
        yield test_client


def test_health(client: TestClient, reader: FakeReader) -> None:
    response = client.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert reader.reads == []


def test_report_is_served_as_html(client: TestClient, reader: FakeReader) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == REPORT
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
    assert reader.reads == ["report.html"]


def test_no_report_yet_is_a_friendly_404_page(client: TestClient, reader: FakeReader) -> None:
    reader.files.clear()
    response = client.get("/")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No monitoring report yet" in response.text
    assert "scones_inference_workflow" in response.text
    assert "s3://test-bucket/monitoring/latest/report.html" in response.text


def test_summary_and_charts(client: TestClient) -> None:
    summary = client.get("/summary.json")
    assert summary.status_code == 200
    assert summary.headers["content-type"] == "application/json"
    assert summary.json() == {"totals": {"records": 3}}
    for name in CHART_NAMES:
        chart = client.get(f"/charts/{name}.png")
        assert chart.status_code == 200, name
        assert chart.headers["content-type"] == "image/png"
        assert chart.content == FILES[f"{name}.png"]


def test_missing_summary_and_chart_are_404(client: TestClient, reader: FakeReader) -> None:
    reader.files.clear()
    for path in ("/summary.json", "/charts/class_mix.png"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "No monitoring report yet" in response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/charts/report.png",
        "/charts/summary.png",
        "/charts/CLASS_MIX.png",
        "/charts/class_mix.png.png",
        "/charts/class_mix.jpg",
        "/charts/class_mix",
        "/charts/.png",
        "/charts/...png",
        "/charts/../x.png",
        "/charts/..%2Fx.png",
        "/charts/..%2F..%2Fsecret.png",
        "/charts/%2e%2e%2freport.html.png",
        "/charts/..%5Cx.png",
        "/charts/class_mix%00.png",
        "/charts/../report.html",
        "/charts/%2E%2E/summary.json",
    ],
)
def test_anything_but_the_three_charts_is_404_without_reading_s3(
    client: TestClient, reader: FakeReader, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 404, response.text
    assert reader.reads == []


def test_s3_errors_are_502_with_the_reason(client: TestClient, reader: FakeReader) -> None:
    reader.error = "Could not read s3://test-bucket/monitoring/latest/report.html: AccessDenied"
    page = client.get("/")
    assert page.status_code == 502
    assert page.headers["content-type"].startswith("text/html")
    assert "Monitoring report unavailable" in page.text and "AccessDenied" in page.text
    assert "Traceback" not in page.text
    for path in ("/summary.json", "/charts/confidence_histogram.png"):
        response = client.get(path)
        assert response.status_code == 502, path
        assert "AccessDenied" in response.json()["detail"]


def test_every_route_but_health_requires_the_airflow_user(plugin: ModuleType, reader: FakeReader) -> None:
    def refuse() -> None:
        raise HTTPException(401, "Not authenticated")

    app = plugin.create_app()
    app.dependency_overrides[plugin.get_reader] = lambda: reader
    app.dependency_overrides[plugin.require_airflow_user] = refuse
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        for path in ("/summary.json", "/charts/class_mix.png"):
            assert client.get(path).status_code == 401, path
        # The page a person opens sends them to Airflow's login, which is asked to bring them back
        page = client.get("/", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"] == "/api/v2/auth/login?next=http%3A%2F%2Ftestserver%2F"
        assert client.post("/").status_code == 405
    assert reader.reads == []


def test_registration(plugin: ModuleType) -> None:
    registered = plugin.SconesMonitoringPlugin
    assert registered.name == "scones_monitoring"
    assert registered.fastapi_apps == [{"app": plugin.app, "url_prefix": "/monitoring", "name": "Scones monitoring"}]
    external, review = registered.external_views
    assert external["destination"] == "nav" and external["url_route"] == "scones"
    # Relative to the UI's base URL, so the frame also works when Airflow is served under a path.
    assert external["href"] == "monitoring/"
    assert (review["name"], review["href"], review["category"]) == ("Scones review", "monitoring/review/", "browse")
    assert review["url_route"] != external["url_route"]


def test_import_is_light() -> None:
    """Loading the plugin (every Airflow component does) creates no boto3 client and imports neither boto3, the
    Amazon provider nor Airflow's API security module."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import " + PLUGIN_MODULE + "; "
        "print(json.dumps(sorted(m for m in ('boto3', 'botocore', 'airflow.providers.amazon.aws.hooks.s3', "
        "'airflow.api_fastapi.core_api.security') if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(PLUGINS_FOLDER)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


# --- monitoring_view ------------------------------------------------------------------------------------------


class FakeHook:
    """The provider's S3Hook as the reader uses it: get_conn() is the boto3 client."""

    def __init__(self, outcome: bytes | Exception) -> None:
        self.outcome = outcome
        self.calls: list[dict[str, str]] = []

    def get_conn(self) -> FakeHook:
        return self

    def get_object(self, **kwargs: str) -> dict[str, Any]:
        self.calls.append(kwargs)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        body = self.outcome

        class Body:
            def read(self) -> bytes:
                return body

        return {"Body": Body()}


def client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"{code} message"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")


def test_reader_builds_the_hook_on_first_read_only() -> None:
    hooks: list[FakeHook] = []

    def factory() -> FakeHook:
        hooks.append(FakeHook(b"<html>"))
        return hooks[-1]

    reader = view.S3ReportReader("bkt", factory)
    assert hooks == []
    assert reader.read("report.html") == b"<html>"
    assert reader.read("summary.json") == b"<html>"
    assert len(hooks) == 1
    assert hooks[0].calls == [
        {"Bucket": "bkt", "Key": "monitoring/latest/report.html"},
        {"Bucket": "bkt", "Key": "monitoring/latest/summary.json"},
    ]


@pytest.mark.parametrize(
    "error", [client_error("NoSuchKey", 404), client_error("404", 404), client_error("NoSuchBucket", 404)]
)
def test_reader_missing_key_or_bucket_is_none(error: ClientError) -> None:
    assert view.S3ReportReader("bkt", lambda: FakeHook(error)).read("report.html") is None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (client_error("AccessDenied", 403), "ClientError: An error occurred (AccessDenied)"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1/bkt"), "EndpointConnectionError: Could not connect"),
    ],
)
def test_reader_failures_are_report_store_errors(error: Exception, expected: str) -> None:
    with pytest.raises(view.ReportStoreError) as raised:
        view.S3ReportReader("bkt", lambda: FakeHook(error)).read("class_mix.png")
    message = str(raised.value)
    assert message.startswith("Could not read s3://bkt/monitoring/latest/class_mix.png: ")
    assert expected in message and "\n" not in message


def test_reader_connection_lookup_failure_is_a_report_store_error() -> None:
    def no_connection() -> FakeHook:
        raise LookupError("The conn_id `scones_aws` isn't defined")

    with pytest.raises(view.ReportStoreError, match="LookupError: The conn_id `scones_aws` isn't defined"):
        view.S3ReportReader("bkt", no_connection).read("report.html")


def test_only_report_files_have_keys() -> None:
    assert set(view.SERVED_FILES) == set(REPORT_FILES)
    assert view.chart_file("class_mix") == "class_mix.png"
    for name in ("../class_mix", "class_mix.png", "report", "", "summary"):
        assert view.chart_file(name) is None
    with pytest.raises(ValueError):
        view.latest_key("../../etc/passwd")


def test_pages_escape_what_they_show() -> None:
    page = view.no_report_page("s3://b/<script>.html")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<script>" not in view.error_page("boom <script>alert(1)</script>")
