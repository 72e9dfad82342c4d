"""monitoring.report end to end: synthetic capture in, summary, PNG charts and a self-contained HTML page out."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import pytest
from PIL import Image

from include.scones.monitoring.capture import CaptureRecord, Window, keys_in_window
from include.scones.monitoring.charts import NO_TRAFFIC
from include.scones.monitoring.layout import REPORT_FILES
from include.scones.monitoring.report import (
    Report,
    ReportAlert,
    build_report,
    check_alerts,
    report_files,
)
from include.scones.monitoring.stats import BaselineError, Limits
from tools.synthetic_traffic import TINY_PNG, Traffic, capture_line, tiny_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
START = datetime(2026, 11, 21, tzinfo=UTC)
DAY = Window(START, START + timedelta(hours=24))
CLASSES = ["bicycle", "motorcycle"]


def baseline_for(classes: list[str]) -> dict[str, object]:
    """What the default synthetic traffic (20% low confidence, even class mix) looked like at training time."""
    return Traffic(0, START, classes=tuple(classes)).baseline()


@pytest.fixture(scope="module")
def day_report() -> Report:
    traffic = Traffic(2400, START, low_confidence_share=0.2, seed=7)
    return build_report([traffic.lines()], baseline_for(CLASSES), CLASSES, 0.93, DAY, endpoint_name="ep")


def decoded(png: bytes) -> Image.Image:
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def assert_non_trivial(png: bytes) -> None:
    image = decoded(png).convert("RGB")
    assert image.width >= 600 and image.height >= 300
    colours = image.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 20  # axes, text, bars: far more than a blank canvas


def test_a_day_of_traffic(day_report: Report) -> None:
    summary = day_report.summary
    assert summary["totals"]["records"] == 2400
    assert [row["records"] for row in summary["hours"]] == [100] * 24
    assert summary["totals"]["below_threshold_share"] == pytest.approx(0.2, abs=0.03)
    assert summary["totals"]["class_mix"]["bicycle"] == pytest.approx(0.5, abs=0.05)
    assert summary["drift"]["class_mix_psi"] < 0.01
    assert (summary["skipped_total"], summary["out_of_window"]) == (0, 0)
    assert len(summary["low_confidence_samples"]) == 12


def test_report_files_are_the_five_files(day_report: Report) -> None:
    files = report_files(day_report)
    assert tuple(files) == REPORT_FILES
    assert json.loads(files["summary.json"]) == day_report.summary
    assert files["report.html"].decode() == day_report.html
    for name in ("confidence_over_time.png", "confidence_histogram.png", "class_mix.png"):
        assert_non_trivial(files[name])
        assert "Description" not in decoded(files[name]).info
    psi = day_report.summary["drift"]["class_mix_psi"]
    assert decoded(files["class_mix.png"]).info["Title"] == f"Predicted class mix (PSI {psi:.3f})"


def test_the_page_is_self_contained(day_report: Report) -> None:
    page = day_report.html
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*(?!["']data:)""", page, re.IGNORECASE)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    chart_uris = re.findall(r'class="chart" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(chart_uris) == 3
    assert page.count('alt="captured input"') == 12
    sample_uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="captured input"', page)
    assert len(set(sample_uris)) == 12  # each synthetic request carries its own image
    assert decoded(base64.b64decode(sample_uris[0])).size == (8, 8)
    assert '<td class="text">2026-11-21 23:00:00 UTC</td><td>100</td>' in page  # the per-hour table
    assert "<p>Window 2026-11-21 00:00:00 UTC to 2026-11-22 00:00:00 UTC (1 day)." in page


def test_a_short_window_is_labelled_by_its_length() -> None:
    # Reported: a 21-second window read "(1 hours, UTC)", the count of per-hour rows, not the window's length.
    start = datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=UTC)
    window = Window(start, start + timedelta(seconds=21))
    lines = [capture_line(start + timedelta(seconds=5), [0.6, 0.4])]

    report = build_report([lines], baseline_for(CLASSES), CLASSES, 0.93, window)

    assert "(21 seconds)." in report.html and "hours" not in report.html.split("<h2>")[0]
    assert report.summary["window"]["seconds"] == 21.0
    assert report.summary["window"]["hours"] == 1  # still the number of per-hour rows, for whoever reads it


def test_the_page_shows_times_to_the_second_in_utc() -> None:
    # Reported: times like 2026-11-20T10:00:00.123456+00:00 on the page.
    start = datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=UTC)
    window = Window(start, start + timedelta(hours=3, minutes=20, microseconds=500))
    record = CaptureRecord(start + timedelta(minutes=1, microseconds=654321), (0.6, 0.4), event_id="e-1")

    report = build_report([record], baseline_for(CLASSES), CLASSES, 0.93, window)

    page = report.html
    assert "<p>Window 2026-11-20 10:00:00 UTC to 2026-11-20 13:20:00 UTC (3 hours 20 minutes)." in page
    assert '<td class="text">2026-11-20 10:00:00 UTC</td><td>1</td>' in page  # the per-hour table
    assert '<div class="muted">2026-11-20 10:01:00 UTC<br>e-1</div>' in page  # the sample
    assert not re.search(r"\d\d:\d\d:\d\d[.,]\d|\d\d:\d\d:\d\dZ|[+-]00:00", page)
    # summary.json keeps the exact ends: the next report's window starts at this end.
    assert report.summary["window"]["start"] == "2026-11-20T10:00:00.123456Z"
    assert report.summary["window"]["end"] == "2026-11-20T13:20:00.123956Z"


def test_an_image_sent_again_is_one_sample() -> None:
    # Reported: the same image twice among the low-confidence samples.
    resent = [capture_line(START + timedelta(minutes=m), [0.6, 0.4], event_id=f"same-{m}") for m in range(4)]
    others = [capture_line(START, [0.7, 0.3], image=tiny_png(rgb=(m, 0, 0)), event_id=f"other-{m}") for m in range(2)]

    report = build_report([resent + others], baseline_for(CLASSES), CLASSES, 0.93, DAY)

    page = report.html
    payloads = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="captured input"', page)
    assert len(payloads) == len(set(payloads)) == 3
    assert payloads.count(base64.b64encode(TINY_PNG).decode()) == 1
    assert "<h2>Low-confidence samples (3 of 3)</h2>" in page
    assert report.summary["totals"]["below_threshold"] == 6  # the numbers still count every prediction
    assert [s.event_id for s in report.samples] == ["same-0", "other-0", "other-1"]


def test_the_sample_count_is_of_distinct_images() -> None:
    resent = [capture_line(START + timedelta(minutes=m), [0.6, 0.4]) for m in range(10)]
    others = [capture_line(START, [0.6, 0.4], image=tiny_png(rgb=(m, 1, 2))) for m in range(5)]

    report = build_report([resent + others], baseline_for(CLASSES), CLASSES, 0.93, DAY, max_samples=4)

    assert "<h2>Low-confidence samples (4 of 6)</h2>" in report.html


def test_a_file_per_hour_read_streaming_gives_the_same_report(tmp_path: Path) -> None:
    traffic = Traffic(480, START, hours=24, seed=3)
    paths = traffic.write_files(tmp_path, "data_capture", "ep")
    keys = [str(p.relative_to(tmp_path)) for p in paths]
    window = Window(START + timedelta(hours=6), START + timedelta(hours=12))
    selected = keys_in_window(reversed(keys), window.start, window.end)

    def opened() -> Iterator[IO[bytes]]:
        for key in selected:
            with (tmp_path / key).open("rb") as handle:
                yield handle

    from_files = build_report(opened(), baseline_for(CLASSES), CLASSES, 0.93, window)
    in_memory = build_report([traffic.lines()], baseline_for(CLASSES), CLASSES, 0.93, window)

    assert len(paths) == 24 and selected == keys[6:12]
    assert from_files.summary["totals"]["records"] == 120
    assert from_files.summary["totals"] == in_memory.summary["totals"]
    assert in_memory.summary["out_of_window"] == 360


def test_hostile_text_is_escaped_everywhere() -> None:
    classes = ["<script>alert(1)</script>", 'a"b&c $\\frac{1}{0}$']
    lines = [capture_line(START + timedelta(minutes=m), [0.6, 0.4], event_id="<img src=x onerror=y>") for m in range(5)]
    lines.append("<b>not json</b>")

    report = build_report([lines], baseline_for(classes), classes, 0.93, DAY, endpoint_name="<i>ep</i>")

    page = report.html
    assert "<script>" not in page and "<img src=x" not in page and "<i>ep" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a&#34;b&amp;c" in page  # Jinja2's autoescape (markupsafe) spells `"` as &#34;
    assert "&lt;img src=x onerror=y&gt;" in page
    for png in report.charts.values():  # a `$` in a class name does not break matplotlib's mathtext
        assert_non_trivial(png)


def test_only_raster_images_are_embedded() -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    jpeg_like = b"\xff\xd8\xff\xe0" + b"\x00" * 20
    lines = [capture_line(START, [0.6, 0.4], image=body) for body in (svg, jpeg_like, tiny_png(4, 4))]

    page = build_report([lines], baseline_for(CLASSES), CLASSES, 0.93, DAY).html

    assert "image/svg" not in page and "alert(1)" not in page
    assert page.count("data:image/jpeg;base64,") == 1
    assert page.count('alt="captured input"') == 2
    assert "no PNG, JPEG or GIF input captured" in page


def test_a_window_without_traffic_still_renders() -> None:
    lines = ["not json", capture_line(START - timedelta(hours=1), [0.5, 0.5])]

    report = build_report([lines], baseline_for(CLASSES), CLASSES, 0.93, DAY, Limits(0.0, 0.0, min_records=1))

    summary = report.summary
    assert summary["totals"]["records"] == 0 and summary["alerts"] == []
    assert (summary["skipped"], summary["out_of_window"]) == ({"bad_json": 1}, 1)
    assert "No traffic in window</strong>: no capture record has an inference time in it (1 malformed lines " in (
        report.html
    )
    assert "No low-confidence predictions" in report.html
    files = report_files(report)
    for name in ("confidence_over_time.png", "confidence_histogram.png", "class_mix.png"):
        assert_non_trivial(files[name])
        assert decoded(files[name]).info["Description"] == NO_TRAFFIC
    json.loads(files["summary.json"])
    check_alerts(summary)  # nothing to raise


def test_the_latest_batch_run_is_in_the_summary_and_on_the_page(day_report: Report) -> None:
    assert day_report.summary["batch"] is None
    assert "No batch classification has run yet" in day_report.html
    latest = {
        "s3_bucket": "bkt", "prefix": "datasets/x/test/images/", "results_key": "batch/run-7/results.jsonl",
        "map_run_arn": "arn:map", "finished_at": "2026-11-21T09:30:15.5+00:00", "images": 200, "routed": 150,
        "not_routed": 48, "errors": 2, "routed_by_label": {"bicycle": 80, "motorcycle": 70},
    }  # fmt: skip
    report = build_report([], baseline_for(CLASSES), CLASSES, 0.93, DAY, batch=latest)
    assert report.summary["batch"] == latest
    json.loads(report_files(report)["summary.json"])
    section = report.html.split("<h2>Batch classification (latest run)</h2>", 1)[1].split("<h2>", 1)[0]
    cells = re.findall(r"<th class=\"text\">([^<]*)</th><td( class=\"over\")?>([^<]*)</td>", section)
    assert [(name, value, bool(over)) for name, over, value in cells] == [
        ("images", "200", False), ("routed automatically", "75.0%", False), ("not routed", "48", False),
        ("errors", "2", True), ("routed as bicycle", "80", False), ("routed as motorcycle", "70", False),
        ("results", "batch/run-7/results.jsonl", False),
    ]  # fmt: skip
    assert "finished 2026-11-21 09:30:15 UTC" in section and "under s3://bkt/datasets/x/test/images/" in section


def test_a_no_traffic_chart_differs_from_a_busy_one(day_report: Report) -> None:
    empty = build_report([], baseline_for(CLASSES), CLASSES, 0.93, DAY)
    for name, png in empty.charts.items():
        assert png != day_report.charts[name]


def test_alerts_are_highlighted_and_raised_after_the_fact() -> None:
    traffic = Traffic(200, START, low_confidence_share=0.9, class_mix=(0.95, 0.05), seed=1)
    report = build_report([traffic.lines()], baseline_for(CLASSES), CLASSES, 0.93, DAY, endpoint_name="ep")
    alerts = report.summary["alerts"]
    assert len(alerts) == 3
    assert alerts[0].startswith("low-confidence share ")
    assert '<div class="alerts">' in report.html and all(f"<li>{a}</li>" in report.html for a in alerts)

    with pytest.raises(ReportAlert) as raised:
        check_alerts(report.summary, report_uri="s3://bucket/reports/ep/report.html")

    message = str(raised.value)
    assert message.startswith(
        "3 monitoring alert(s) for ep, window 2026-11-21T00:00:00Z to 2026-11-22T00:00:00Z:\n  - low-confidence share"
    )
    assert message.endswith("\nreport: s3://bucket/reports/ep/report.html")
    assert raised.value.alerts == alerts


def test_quiet_traffic_raises_nothing(day_report: Report) -> None:
    assert day_report.summary["alerts"] == []
    assert '<div class="ok">' in day_report.html
    check_alerts(day_report.summary)


def test_inputs_are_checked_before_reading() -> None:
    with pytest.raises(BaselineError, match="do not match"):
        build_report([], baseline_for(["cat", "dog"]), CLASSES, 0.93, DAY)
    with pytest.raises(ValueError, match="distinct"):
        build_report([], baseline_for(CLASSES), ["bicycle", "bicycle"], 0.93, DAY)
    with pytest.raises(ValueError, match="threshold"):
        build_report([], baseline_for(CLASSES), CLASSES, 1.5, DAY)


def test_the_synthetic_input_is_a_real_png() -> None:
    assert decoded(TINY_PNG).size == (8, 8)
    assert decoded(tiny_png(3, 2, (1, 2, 3))).convert("RGB").getpixel((2, 1)) == (1, 2, 3)


def test_too_few_records_says_so_instead_of_claiming_every_number_is_within_its_limit() -> None:
    # Six mostly unsure predictions: over both limits, but too few to judge, so no alert and no "all within" claim
    traffic = Traffic(6, START, low_confidence_share=0.9, class_mix=(0.95, 0.05), seed=1)
    report = build_report([traffic.lines()], baseline_for(CLASSES), CLASSES, 0.93, DAY, Limits(min_records=50))
    assert report.summary["alerts"] == []
    assert "Too few records to judge</strong>: 6 in the window, fewer than the 50 the limits need" in report.html
    assert "every number is within its limit" not in report.html
