"""The report as one self-contained HTML page: inline CSS, charts and sample images as data: URIs, no external
assets, and a Content-Security-Policy that forbids loading anything else or running scripts. Every piece of
text from the summary or the captured records goes through html.escape."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from include.scones.monitoring.capture import CaptureRecord, display_time, duration_text

CHART_TITLES = {
    "confidence_over_time": "Confidence over time",
    "confidence_histogram": "Confidence histogram vs baseline",
    "class_mix": "Predicted class mix vs baseline",
}
# Raster formats a browser shows from a data: URI, recognised by their first bytes rather than by the captured
# content type (SVG is left out on purpose: it can carry script).
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1100px; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: right; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; }
.alerts { background: #fdecea; border: 2px solid #d62728; padding: .5rem 1rem; }
.alerts li { color: #a51d1d; font-weight: bold; }
.ok { background: #eaf6ea; border: 2px solid #2ca02c; padding: .5rem 1rem; }
.over { color: #a51d1d; font-weight: bold; }
img.chart { max-width: 100%; display: block; margin: .5rem 0 1rem; }
.samples { display: flex; flex-wrap: wrap; gap: 1rem; }
.sample { border: 1px solid #ddd; padding: .5rem; width: 14rem; font-size: .85rem; }
.sample img { width: 128px; height: 128px; image-rendering: pixelated; display: block; }
.muted { color: #777; }
"""
OVER = ' class="over"'
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def data_uri(media_type: str, payload: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(payload).decode('ascii')}"


def image_media_type(payload: bytes) -> str | None:
    for signature, media_type in _IMAGE_SIGNATURES:
        if payload.startswith(signature):
            return media_type
    return None


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], text_columns: int = 1) -> str:
    def cell(tag: str, index: int, value: object) -> str:
        kind = ' class="text"' if index < text_columns else ""
        return f"<{tag}{kind}>{esc(value)}</{tag}>"

    head = "".join(cell("th", i, name) for i, name in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _alerts(summary: Mapping[str, Any]) -> str:
    if not summary["totals"]["records"]:
        return (
            f'<div class="ok"><strong>No traffic in window</strong>: no capture record has an inference time in it '
            f"({esc(summary['skipped_total'])} malformed lines skipped, {esc(summary['out_of_window'])} records "
            "outside the window). No alerts.</div>"
        )
    if not summary["alerts"]:
        return '<div class="ok">No alerts: every number is within its limit.</div>'
    items = "".join(f"<li>{esc(alert)}</li>" for alert in summary["alerts"])
    return f'<div class="alerts"><strong>{len(summary["alerts"])} alert(s)</strong><ul>{items}</ul></div>'


def _over(value: float | None, limit: float) -> bool:
    return value is not None and value > limit


def _numbers(summary: Mapping[str, Any]) -> str:
    totals, drift, limits, baseline = summary["totals"], summary["drift"], summary["limits"], summary["baseline"]
    share, share_limit, psi_limit = totals["below_threshold_share"], limits["low_confidence_share"], limits["psi"]
    confidence_psi, class_mix_psi = drift["confidence_psi"], drift["class_mix_psi"]
    skipped = ", ".join(f"{reason}: {count}" for reason, count in summary["skipped"].items()) or "none"
    rows = [  # label, value, over its limit?, note
        ("Records in window", str(totals["records"]), False, ""),
        ("Mean confidence", _number(totals["mean_confidence"]), False, ""),
        (
            f"Share below threshold {summary['threshold']}",
            _percent(share),
            _over(share, share_limit),
            f"limit {_percent(share_limit)}, baseline {_percent(baseline['below_threshold_share'])}",
        ),
        ("Confidence PSI", _number(confidence_psi), _over(confidence_psi, psi_limit), f"limit {psi_limit}"),
        ("Class mix PSI", _number(class_mix_psi), _over(class_mix_psi, psi_limit), f"limit {psi_limit}"),
        ("Skipped malformed lines", str(summary["skipped_total"]), False, skipped),
        ("Records outside the window", str(summary["out_of_window"]), False, "from files of the boundary hours"),
    ]
    body = "".join(
        f'<tr><th class="text">{esc(label)}</th><td{OVER if over else ""}>{esc(value)}</td>'
        f'<td class="text">{esc(note)}</td></tr>'
        for label, value, over, note in rows
    )
    return f"<table><tbody>{body}</tbody></table>"


def _hours(summary: Mapping[str, Any]) -> str:
    classes = summary["classes"]
    header = ["hour", "records", "mean confidence", "below threshold", *classes]
    rows = [
        [
            display_time(row["hour"]),
            row["records"],
            _number(row["mean_confidence"]),
            _percent(row["below_threshold_share"]),
            *(row["class_counts"][name] for name in classes),
        ]
        for row in summary["hours"]
    ]
    return _table(header, rows)


def _sample(record: CaptureRecord, classes: Sequence[str]) -> str:
    payload = record.input_bytes()
    media_type = image_media_type(payload) if payload else None
    if payload and media_type:
        picture = f'<img src="{data_uri(media_type, payload)}" alt="captured input">'
    else:
        picture = '<p class="muted">no PNG, JPEG or GIF input captured</p>'
    probabilities = "".join(
        f"<li>{esc(name)}: {p:.4f}</li>" for name, p in zip(classes, record.probabilities, strict=True)
    )
    return (
        f'<div class="sample">{picture}<div><strong>{esc(classes[record.predicted])}</strong> '
        f"{record.confidence:.4f}</div><ul>{probabilities}</ul>"
        f'<div class="muted">{esc(display_time(record.inference_time))}<br>{esc(record.event_id or "")}</div></div>'
    )


def render_html(
    summary: Mapping[str, Any], charts: Mapping[str, bytes], samples: Sequence[CaptureRecord], max_samples: int = 12
) -> str:
    window = summary["window"]
    title = f"Monitoring report {summary['endpoint_name']}".strip()
    figures = "".join(
        f'<h2>{esc(CHART_TITLES.get(name, name))}</h2><img class="chart" src="{data_uri("image/png", png)}" '
        f'alt="{esc(CHART_TITLES.get(name, name))}">'
        for name, png in charts.items()
    )
    shown = samples[:max_samples]
    if shown:
        sample_html = (
            '<p class="muted">A random sample of the distinct images predicted below the threshold (an image sent '
            'more than once is shown once).</p><div class="samples">'
            + "".join(_sample(r, summary["classes"]) for r in shown)
            + "</div>"
        )
    else:
        sample_html = '<p class="muted">No low-confidence predictions in this window.</p>'
    offered = summary["totals"]["low_confidence_offered"]
    span = f"{display_time(window['start'])} to {display_time(window['end'])} ({duration_text(window['seconds'])})"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">
<title>{esc(title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p>Window {esc(span)}.
Classes: {esc(", ".join(summary["classes"]))}.</p>
{_alerts(summary)}
<h2>Summary</h2>
{_numbers(summary)}
{figures}
<h2>Per hour</h2>
{_hours(summary)}
<h2>Low-confidence samples ({len(shown)} of {esc(offered)})</h2>
{sample_html}
</body>
</html>
"""
