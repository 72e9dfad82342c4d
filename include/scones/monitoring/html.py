"""The report as one self-contained HTML page: inline CSS, charts and sample images as data: URIs, no external
assets, and a Content-Security-Policy that forbids loading anything else or running scripts.

The markup is templates/report.html.j2, rendered by Jinja2 with autoescape on (templating.py): every piece of
text from the summary or the captured records is escaped by the template engine, not by hand at each place it
is printed. This module only shapes the data: numbers formatted, images recognised and encoded."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from include.scones.monitoring.capture import CaptureRecord, display_time, duration_text
from include.scones.monitoring.templating import render

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
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


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


@dataclass(frozen=True)
class _Number:
    """A row of the summary table."""

    label: str
    value: str
    over: bool  # above its limit: highlighted
    note: str


@dataclass(frozen=True)
class _Chart:
    title: str
    uri: str


@dataclass(frozen=True)
class _Sample:
    """A low-confidence prediction as the page shows it; `picture` is None when no raster image was captured."""

    picture: str | None
    predicted: str
    confidence: str
    probabilities: list[tuple[str, str]]
    time: str
    event_id: str


def _over(value: float | None, limit: float) -> bool:
    return value is not None and value > limit


def _numbers(summary: Mapping[str, Any]) -> list[_Number]:
    totals, drift, limits, baseline = summary["totals"], summary["drift"], summary["limits"], summary["baseline"]
    share, share_limit, psi_limit = totals["below_threshold_share"], limits["low_confidence_share"], limits["psi"]
    confidence_psi, class_mix_psi = drift["confidence_psi"], drift["class_mix_psi"]
    skipped = ", ".join(f"{reason}: {count}" for reason, count in summary["skipped"].items()) or "none"
    return [
        _Number("Records in window", str(totals["records"]), False, ""),
        _Number("Mean confidence", _number(totals["mean_confidence"]), False, ""),
        _Number(
            f"Share below threshold {summary['threshold']}",
            _percent(share),
            _over(share, share_limit),
            f"limit {_percent(share_limit)}, baseline {_percent(baseline['below_threshold_share'])}",
        ),
        _Number("Confidence PSI", _number(confidence_psi), _over(confidence_psi, psi_limit), f"limit {psi_limit}"),
        _Number("Class mix PSI", _number(class_mix_psi), _over(class_mix_psi, psi_limit), f"limit {psi_limit}"),
        _Number("Skipped malformed lines", str(summary["skipped_total"]), False, skipped),
        _Number("Records outside the window", str(summary["out_of_window"]), False, "from files of the boundary hours"),
    ]


def _hour_rows(summary: Mapping[str, Any]) -> list[list[object]]:
    classes = summary["classes"]
    return [
        [
            display_time(row["hour"]),
            row["records"],
            _number(row["mean_confidence"]),
            _percent(row["below_threshold_share"]),
            *(row["class_counts"][name] for name in classes),
        ]
        for row in summary["hours"]
    ]


def _sample(record: CaptureRecord, classes: Sequence[str]) -> _Sample:
    payload = record.input_bytes()
    media_type = image_media_type(payload) if payload else None
    return _Sample(
        picture=data_uri(media_type, payload) if payload and media_type else None,
        predicted=classes[record.predicted],
        confidence=f"{record.confidence:.4f}",
        probabilities=[(name, f"{p:.4f}") for name, p in zip(classes, record.probabilities, strict=True)],
        time=display_time(record.inference_time),
        event_id=record.event_id or "",
    )


@dataclass(frozen=True)
class _Loop:
    """The labelling loop's sections (live.py): live accuracy, the estimate without labels, input drift."""

    accuracy: dict[str, Any]
    accuracy_text: str
    label_span: str
    confusion_rows: list[list[object]]
    class_rows: list[list[object]]
    hour_rows: list[list[object]]
    estimate: dict[str, Any] | None
    estimate_text: str
    drift: dict[str, Any] | None
    drift_rows: list[_Number]


def _loop(summary: Mapping[str, Any]) -> _Loop:
    accuracy, estimate, drift = summary["live_accuracy"], summary["estimated_accuracy"], summary["input_drift"]
    classes = summary["classes"]
    matrix = accuracy["confusion_matrix"]["rows"]
    estimate_text = "no calibration table in this model's evaluation"
    if estimate is not None and estimate["estimated_accuracy"] is not None:
        ece = estimate["calibration_error"]
        estimate_text = (
            f"{_percent(estimate['estimated_accuracy'])} over {estimate['records']} predictions, trustworthy to about "
            f"±{ece:.1%} (the model's expected calibration error on the test split)"
        )
    elif estimate is not None:
        estimate_text = "no predictions in the window"
    rows = []
    if drift is not None:
        for name, row in drift["statistics"].items():
            rows.append(_Number(name, _number(row["psi"]), bool(row["over_limit"]),
                                f"limit {drift['limit']}, live mean {_number(row['live_mean'], 4)}"))  # fmt: skip
    return _Loop(
        accuracy=accuracy,
        accuracy_text=_percent(accuracy["accuracy"]),
        label_span=f"{display_time(accuracy['window']['start'])} to {display_time(accuracy['window']['end'])}",
        confusion_rows=[[name, *matrix[i]] for i, name in enumerate(classes)],
        class_rows=[
            [name, row["labelled"], _percent(row["recall"]), _percent(row["precision"])]
            for name, row in accuracy["per_class"].items()
        ],  # fmt: skip
        hour_rows=[
            [
                display_time(row["hour"]),
                row["predictions"] if row["predictions"] is not None else "–",
                row["labelled"],
                _percent(row["labelled_share"]),
                _percent(row["accuracy"]),
            ]
            for row in accuracy["hours"]
            if row["labelled"] or row["predictions"]
        ],  # fmt: skip
        estimate=estimate,
        estimate_text=estimate_text,
        drift=drift,
        drift_rows=rows,
    )


def _batch(batch: Mapping[str, Any] | None) -> list[_Number] | None:
    """The latest batch classification's counts, as rows: routed share, the other outcomes, and where it is."""
    if batch is None:
        return None
    images = batch["images"]
    share = batch["routed"] / images if images else None
    rows = [
        _Number("images", str(images), False, f"under s3://{batch['s3_bucket']}/{batch['prefix']}"),
        _Number("routed automatically", _percent(share), False, f"{batch['routed']} confident images"),
        _Number("not routed", str(batch["not_routed"]), False, "below the threshold: a person decides"),
        _Number("errors", str(batch["errors"]), bool(batch["errors"]), "missing or unreadable objects"),
    ]
    rows += [_Number(f"routed as {label}", str(n), False, "") for label, n in batch["routed_by_label"].items()]
    return rows + [_Number("results", batch["results_key"], False, f"finished {display_time(batch['finished_at'])}")]


def render_html(
    summary: Mapping[str, Any], charts: Mapping[str, bytes], samples: Sequence[CaptureRecord], max_samples: int = 12
) -> str:
    window = summary["window"]
    classes = summary["classes"]
    return render(
        "report.html.j2",
        csp=CSP,
        title=f"Monitoring report {summary['endpoint_name']}".strip(),
        span=f"{display_time(window['start'])} to {display_time(window['end'])} ({duration_text(window['seconds'])})",
        classes=classes,
        records=summary["totals"]["records"],
        min_records=summary["limits"]["min_records"],
        skipped_total=summary["skipped_total"],
        out_of_window=summary["out_of_window"],
        alerts=summary["alerts"],
        held_back=summary.get("held_back", []),
        live=_loop(summary),
        batch=_batch(summary.get("batch")),
        numbers=_numbers(summary),
        charts=[_Chart(CHART_TITLES.get(name, name), data_uri("image/png", png)) for name, png in charts.items()],
        hour_header=["hour", "records", "mean confidence", "below threshold", *classes],
        hour_rows=_hour_rows(summary),
        samples=[_sample(record, classes) for record in samples[:max_samples]],
        offered=summary["totals"]["low_confidence_offered"],
    )
