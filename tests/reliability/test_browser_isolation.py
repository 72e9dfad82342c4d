"""Scenario 8, browser isolation: a web page in real headless Chromium cannot use the local cloud.

The page is served from another loopback port (another origin) and tries `fetch()` against MiniStack, the local
SageMaker and a model server: simple requests (a `text/plain` POST, which needs no preflight and is sent even
though the page may not read the answer) and preflighted ones. A second page, whose name Chromium resolves to
127.0.0.1 (`--host-resolver-rules`, the state a DNS-rebinding attack reaches), reads the services as its own
origin. Every attempt fails, and afterwards nothing it tried to create exists.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import LocalCloud
from tests.localcloud.test_hosting import worker_pids
from tests.reliability.conftest import Clients
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: apt-get install -y chromium"),
]

REBOUND = "rebound.attacker.test"  # resolved to 127.0.0.1 by Chromium only
PAGE_FUNCTION = "scones-browser-attack"
PAGE_BUCKET = "scones-browser-attack"
PAGE_JOB = "scones-browser-attack"

# What the page tries, for each target `base` (a service's URL): every request a page could use to create
# something, as a simple (no-cors) and as a preflighted (cors) fetch. Each outcome is recorded.
ATTACK = """
async ({targets, names}) => {
  const results = [];
  const attempt = async (name, url, init) => {
    try {
      const response = await fetch(url, init);
      let body = null;
      try { body = await response.text(); } catch (e) {}
      results.push({name, url, type: response.type, status: response.status, body});
    } catch (error) {
      results.push({name, url, error: String(error)});
    }
  };
  const lambdaBody = JSON.stringify({FunctionName: names.function, Runtime: "python3.11",
    Role: "arn:aws:iam::000000000000:role/x", Handler: "index.handler", Code: {ZipFile: names.zip}});
  const jobBody = JSON.stringify({TrainingJobName: names.job});
  for (const [service, base] of Object.entries(targets)) {
    if (service === "ministack") {
      await attempt("ministack simple CreateFunction", base + "/2015-03-31/functions",
        {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: lambdaBody});
      await attempt("ministack cors CreateFunction", base + "/2015-03-31/functions",
        {method: "POST", headers: {"Content-Type": "application/json"}, body: lambdaBody});
      await attempt("ministack cors CreateBucket", base + "/" + names.bucket, {method: "PUT"});
      await attempt("ministack simple CreateBucket", base + "/" + names.bucket, {method: "PUT", mode: "no-cors"});
      await attempt("ministack read ListFunctions", base + "/2015-03-31/functions", {});
    } else if (service === "sagemaker") {
      await attempt("sagemaker simple CreateTrainingJob", base + "/",
        {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: jobBody});
      await attempt("sagemaker cors CreateTrainingJob", base + "/",
        {method: "POST", headers: {"X-Amz-Target": "SageMaker.CreateTrainingJob",
         "Content-Type": "application/x-amz-json-1.1"}, body: jobBody});
      await attempt("sagemaker read health", base + "/_localcloud/health", {});
    } else {
      await attempt("worker simple invocations", base + "/invocations",
        {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: "x"});
      await attempt("worker read ping", base + "/ping", {});
    }
  }
  return results;
}
"""


def _handler_zip() -> str:
    """A valid function package: an unguarded MiniStack creates the function from it (a page ran code)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return 'ran as the user'\n")
    return base64.b64encode(buffer.getvalue()).decode()


NAMES = {"function": PAGE_FUNCTION, "job": PAGE_JOB, "bucket": PAGE_BUCKET, "zip": _handler_zip()}


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = tmp_path_factory.mktemp("attacker-page")
    (root / "index.html").write_text("<!doctype html><title>a page on the web</title><h1>hello</h1>")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def worker_port(cloud: LocalCloud, endpoint: str) -> int:
    for pid in worker_pids(cloud, endpoint):
        for connection in psutil.Process(pid).net_connections(kind="inet"):
            if connection.status == psutil.CONN_LISTEN:
                return int(connection.laddr.port)
    raise AssertionError(f"no listening model server for {endpoint}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1"]
        )
        yield chromium
        chromium.close()


def run_attack(browser: Any, page_url: str, targets: dict[str, str], tmp_path: Path) -> list[dict[str, Any]]:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(page_url)
        results = list(page.evaluate(ATTACK, {"targets": targets, "names": NAMES}))
        (tmp_path / "results.json").write_text(json.dumps(results, indent=2))
        return results
    finally:
        context.close()


def assert_every_attempt_failed(results: list[dict[str, Any]]) -> None:
    assert results
    for result in results:
        if "error" in result:
            continue  # the browser refused to give the page the answer (no CORS headers): the request failed
        # A no-cors request's answer is opaque to the page; what the server did is checked below.
        assert result["type"] == "opaque" or result["status"] == 403, result


def assert_nothing_was_created(aws: Clients) -> None:
    functions = [f["FunctionName"] for f in aws.lambda_.list_functions()["Functions"]]
    assert PAGE_FUNCTION not in functions
    assert PAGE_BUCKET not in [b["Name"] for b in aws.s3.list_buckets()["Buckets"]]
    jobs = aws.sagemaker.list_training_jobs(NameContains=PAGE_JOB)["TrainingJobSummaries"]
    assert jobs == []


def test_a_page_from_another_origin_can_use_no_service(
    cloud: LocalCloud, aws: Clients, deployment: dict[str, Any], browser: Any, page_server: int, tmp_path: Path
) -> None:
    worker = worker_port(cloud, deployment["endpoint_name"])
    targets = {
        "ministack": cloud.cfg.ministack_url,
        "sagemaker": cloud.cfg.sagemaker_url,
        "worker": f"http://127.0.0.1:{worker}",
    }
    results = run_attack(browser, f"http://127.0.0.1:{page_server}/index.html", targets, tmp_path)
    assert_every_attempt_failed(results)
    readable = [r for r in results if "error" not in r and r["type"] != "opaque"]
    assert readable == [], readable  # not one answer reached the page: no service sent a CORS header
    assert_nothing_was_created(aws)


def test_a_rebound_name_reads_nothing(
    cloud: LocalCloud, aws: Clients, deployment: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    """The page's own name now resolves to 127.0.0.1, so to the browser the services are its own origin: the
    answers would be readable, and only the Host check stands in the way."""
    worker = worker_port(cloud, deployment["endpoint_name"])
    ports = {"ministack": cloud.cfg.ministack_port, "sagemaker": cloud.cfg.sagemaker_port, "worker": worker}
    probes = {"ministack": "/2015-03-31/functions", "sagemaker": "/_localcloud/health", "worker": "/ping"}
    context = browser.new_context()
    try:
        page = context.new_page()
        for service, port in ports.items():
            response = page.goto(f"http://{REBOUND}:{port}{probes[service]}")
            assert response is not None and response.status == 403, (service, response and response.status)
            body = page.content()
            assert "Functions" not in body and "operations" not in body  # nothing of the service's answer
            same_origin = page.evaluate(
                "async (u) => { const r = await fetch(u, {method: 'POST', body: 'x'}); return r.status; }",
                f"http://{REBOUND}:{port}/",
            )
            assert same_origin == 403, service
    finally:
        context.close()
    assert_nothing_was_created(aws)
