"""A real browser on the real plugin app: the report built by include/scones/monitoring is uploaded to the local
cloud's S3 (MiniStack), the plugin's app is served by uvicorn and read through the S3Hook of the local cloud's
connection, and headless Chromium takes screenshots of the page before and after the report exists."""

from __future__ import annotations

import base64
import io
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import uvicorn
from PIL import Image

from include.scones.monitoring.capture import Window
from include.scones.monitoring.report import build_report, report_files
from tests.conftest import LocalCloud, free_port
from tools.synthetic_traffic import Traffic

CHROMIUM = Path("/usr/bin/chromium")
BUCKET = "scones-plugin-e2e"
WINDOW_SIZE = (1280, 2000)
START = datetime(2026, 11, 20, tzinfo=UTC)
CHART_IMG = re.compile(r'<img class="chart" src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
ANY_DATA_IMG = re.compile(r'<img[^>]* src="data:(image/[a-z]+);base64,([A-Za-z0-9+/=]+)"')

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: apt-get install -y chromium"),
]


@pytest.fixture
def served(plugin: ModuleType, local_cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The plugin's app on 127.0.0.1 with the local cloud's connection and a throw-away bucket. Airflow's login
    is not part of this app outside the API server (test_airflow covers it), so it is overridden here."""
    monkeypatch.setenv("SCONES_BUCKET", BUCKET)
    monkeypatch.delenv("SCONES_AWS_CONN_ID", raising=False)  # aws_default: AIRFLOW_CONN_AWS_DEFAULT of the cloud
    app = plugin.create_app()
    app.dependency_overrides[plugin.require_airflow_user] = lambda: None
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="plugin-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def screenshot(url: str, path: Path) -> Image.Image:
    profile = path.parent / f"{path.stem}-profile"
    command = [
        str(CHROMIUM),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={path}",
        f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert path.is_file(), f"no screenshot (rc {result.returncode}): {result.stderr[-2000:]}"
    image = Image.open(path)
    image.load()
    return image.convert("RGB")


def ink(image: Image.Image) -> int:
    """Pixels that are not (near) white."""
    grey = image.convert("L")
    histogram = grey.histogram()
    return sum(histogram[:245])


def coloured(image: Image.Image) -> int:
    """Clearly coloured pixels (HSV saturation above a third): chart bars, lines and markers; text is grey."""
    saturation = image.convert("HSV").getchannel("S").histogram()
    return sum(saturation[85:])


def raw_status(base_url: str, path: str) -> int:
    """The status for a request line sent as is (httpx would normalise `..` away before sending)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = sock.recv(4096).decode("latin-1")
    return int(head.split(" ", 2)[1])


def upload_report(local_cloud: LocalCloud) -> dict[str, bytes]:
    classes = ["bicycle", "motorcycle"]
    traffic = Traffic(1200, START, low_confidence_share=0.2, seed=3)
    window = Window(START, START + timedelta(hours=24))
    report = build_report([traffic.lines()], traffic.baseline(), classes, 0.93, window, endpoint_name="ep")
    files = report_files(report)
    s3 = local_cloud.client("s3")
    for name, body in files.items():
        s3.put_object(Bucket=BUCKET, Key=f"monitoring/{START:%Y%m%dT%H%M%SZ}/{name}", Body=body)
        s3.put_object(Bucket=BUCKET, Key=f"monitoring/latest/{name}", Body=body)
    return files


def test_the_browser_shows_the_latest_report(served: str, local_cloud: LocalCloud, tmp_path: Path) -> None:
    s3 = local_cloud.client("s3")
    s3.create_bucket(Bucket=BUCKET)

    # Before the workflow DAG has run: the friendly page, through the real S3Hook and MiniStack.
    empty = httpx.get(f"{served}/", timeout=30)
    assert empty.status_code == 404 and "No monitoring report yet" in empty.text
    assert httpx.get(f"{served}/charts/class_mix.png", timeout=30).status_code == 404
    blank = screenshot(f"{served}/", tmp_path / "no-report.png")

    files = upload_report(local_cloud)

    page = httpx.get(f"{served}/", timeout=30)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.content == files["report.html"]
    charts = CHART_IMG.findall(page.text)
    assert len(charts) == 3
    for media_type, payload in ANY_DATA_IMG.findall(page.text):
        assert media_type == "image/png"
        image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
        image.verify()
        assert image.format == "PNG"
    chart_sizes = [Image.open(io.BytesIO(base64.b64decode(payload))).size for payload in charts]
    assert all(width >= 600 and height >= 300 for width, height in chart_sizes), chart_sizes

    assert httpx.get(f"{served}/summary.json", timeout=30).json()["totals"]["records"] == 1200
    for name in ("confidence_over_time", "confidence_histogram", "class_mix"):
        chart = httpx.get(f"{served}/charts/{name}.png", timeout=30)
        assert (chart.status_code, chart.headers["content-type"]) == (200, "image/png")
        assert chart.content == files[f"{name}.png"]
    for path in (
        "/charts/../summary.json",
        "/charts/..%2Fsummary.json.png",
        "/charts/...png",
        "/charts/x/../class_mix",
    ):
        assert raw_status(served, path) == 404, path

    shot = screenshot(f"{served}/", tmp_path / "report.png")
    assert shot.size == WINDOW_SIZE
    assert blank.size == WINDOW_SIZE
    # The charts and tables render: far more ink than the text-only "no report" page, and coloured chart areas
    # where that page has none.
    area = WINDOW_SIZE[0] * WINDOW_SIZE[1]
    assert ink(shot) > 10 * max(ink(blank), 1) and ink(shot) > 0.05 * area, (ink(shot), ink(blank))
    assert coloured(shot) > 10 * max(coloured(blank), 1) and coloured(shot) > 0.02 * area, (
        coloured(shot),
        coloured(blank),
    )
