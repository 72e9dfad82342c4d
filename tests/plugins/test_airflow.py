"""The plugin inside Airflow itself: discovered from the plugins folder by `airflow plugins`, and its app
mounted by the real API server app, behind Airflow's authentication, reading S3 through the real S3Hook."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import free_port
from tests.plugins.conftest import PLUGINS_FOLDER, PROJECT_ROOT


def airflow_env(**extra: str) -> dict[str, str]:
    """A deployment's view: the project's plugins folder, and the project root on PYTHONPATH (as for the DAGs)."""
    return {
        **os.environ,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        **extra,
    }


def test_airflow_plugins_lists_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "plugins", "--output", "json"],
        env=airflow_env(),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Failed to import plugin" not in result.stderr
    plugins = {entry["name"]: entry for entry in json.loads(result.stdout)}
    plugin = plugins["scones_monitoring"]
    assert plugin["source"] == "$PLUGINS_FOLDER/scones_monitoring_plugin.py"
    assert plugin["fastapi_apps"] == [
        {"app": "fastapi.applications.FastAPI", "url_prefix": "/monitoring", "name": "Scones monitoring"}
    ]
    assert plugin["external_views"] == [
        {
            "name": "Scones monitoring",
            "href": "monitoring/",
            "destination": "nav",
            "url_route": "scones",
            "category": "browse",
        },
        {
            "name": "Scones review",
            "href": "monitoring/review/",
            "destination": "nav",
            "url_route": "scones-review",
            "category": "browse",
        },
    ]


# Runs in a child process: Airflow reads its plugins folder once per process.
API_SERVER_PROBE = """
import json, sys
from fastapi.testclient import TestClient
from airflow.api_fastapi.app import create_app, get_auth_manager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

results = {}
with TestClient(create_app("core")) as client:
    results["health"] = client.get("/monitoring/health").status_code
    anonymous = client.get("/monitoring/", follow_redirects=False)
    results["anonymous"] = [anonymous.status_code, anonymous.headers.get("location")]
    results["anonymous_json"] = client.get("/monitoring/summary.json").status_code
    login = client.get(anonymous.headers["location"], follow_redirects=False)
    results["login"] = [login.status_code, login.headers.get("location")]
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="ADMIN"))
    report = client.get("/monitoring/", headers={"Authorization": f"Bearer {token}"})
    results["bearer"] = [report.status_code, report.text]
    client.cookies.set("_token", token)  # what the UI's frame sends
    chart = client.get("/monitoring/charts/class_mix.png")
    results["cookie"] = [chart.status_code, chart.json()]
    results["bad_chart"] = client.get("/monitoring/charts/secret.png").status_code
    client.cookies.clear()
    review = client.get("/monitoring/review/", follow_redirects=False)
    results["review_anonymous"] = [review.status_code, review.headers.get("location")]
    label = {"inference_id": "i", "label": "bicycle", "state": "", "issued": 0, "signature": "x"}
    results["label_anonymous"] = client.post("/monitoring/review/labels", json=label).status_code
    client.cookies.set("_token", token)
    results["review_cookie"] = client.get("/monitoring/review/").status_code
    stored = client.post("/monitoring/review/labels", json=label, headers={"Origin": "http://testserver"})
    results["label_cookie"] = [stored.status_code, stored.json()]
print("RESULTS " + json.dumps(results))
"""


def test_mounted_in_the_api_server_behind_airflow_login(airflow_db: None) -> None:
    """Health is open; the report needs an Airflow JWT (header or the UI's cookie); S3 is read through the S3Hook
    of the project's connection, here one whose endpoint refuses connections: 502 with the reason."""
    port = free_port()  # nothing listens there
    connection = {
        "conn_type": "aws",
        "login": "test",
        "password": "test",
        "extra": {
            "region_name": "us-east-1",
            "endpoint_url": f"http://127.0.0.1:{port}",
            "config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}, "connect_timeout": 2},
        },
    }
    env = airflow_env(
        SCONES_AWS_CONN_ID="scones_plugin_unreachable",
        AIRFLOW_CONN_SCONES_PLUGIN_UNREACHABLE=json.dumps(connection),
        SCONES_BUCKET="scones-plugin-test",
        AIRFLOW__API_AUTH__JWT_SECRET="scones-plugin-test-" + "0123456789abcdef" * 4,
    )
    result = subprocess.run(
        [sys.executable, "-c", API_SERVER_PROBE],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(lines[-1].removeprefix("RESULTS "))
    assert results["health"] == 200
    # A browser without a login is sent to Airflow's login, which is asked to come back to the page
    status, location = results["anonymous"]
    assert status == 303 and location == "/api/v2/auth/login?next=http%3A%2F%2Ftestserver%2Fmonitoring%2F"
    status, location = results["login"]
    assert status == 307 and location == "/auth/login?next=http%3A%2F%2Ftestserver%2Fmonitoring%2F", location
    assert results["anonymous_json"] == 401  # what an API client is told
    status, page = results["bearer"]
    assert status == 502, page
    assert "Could not read s3://scones-plugin-test/monitoring/latest/report.html" in page
    assert "EndpointConnectionError" in page and "Traceback" not in page
    status, body = results["cookie"]
    assert status == 502 and "EndpointConnectionError" in body["detail"]
    assert results["bad_chart"] == 404
    # The Review page and its POST are behind the same login; past it, S3 answers (here: cannot)
    status, location = results["review_anonymous"]
    assert status == 303 and location.endswith("next=http%3A%2F%2Ftestserver%2Fmonitoring%2Freview%2F")
    assert results["label_anonymous"] == 401
    assert results["review_cookie"] == 502
    status, body = results["label_cookie"]
    assert status == 502 and body["code"] == "ServiceUnavailable" and "EndpointConnectionError" in body["detail"]
