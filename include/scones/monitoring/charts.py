"""The report's charts as PNG bytes, drawn from the summary dict alone (so they can be redrawn from summary.json).

matplotlib is imported inside the functions and used through `Figure` with the Agg canvas: no pyplot, no global
backend switch, nothing loaded when a DAG file imports this module. Every chart still renders for a window
without records, saying "no traffic in window".
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from include.scones.monitoring.capture import display_time

CHART_NAMES = ("confidence_over_time", "confidence_histogram", "class_mix")
NO_TRAFFIC = "no traffic in window"
BASELINE_COLOR, WINDOW_COLOR, THRESHOLD_COLOR = "#8c8c8c", "#1f77b4", "#d62728"


def _plain(text: object) -> str:
    """Text shown literally: a `$` in a class name would otherwise start matplotlib mathtext."""
    return str(text).replace("$", r"\$")


def _figure(width: float = 9.0, height: float = 4.2) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any, title: str, empty: bool) -> bytes:
    """PNG bytes; the title, and "no traffic in window" for an empty window, also go into PNG text chunks."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Title": title, "Description": NO_TRAFFIC if empty else None})
    return buffer.getvalue()


def _no_traffic(axes: Any) -> None:
    axes.text(0.5, 0.5, NO_TRAFFIC, transform=axes.transAxes, ha="center", va="center", fontsize=18, color="#555")


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def confidence_over_time_png(summary: Mapping[str, Any]) -> bytes:
    """Per UTC hour: mean confidence (line), share below the threshold (squares), records (grey bars, right axis),
    with the confidence threshold and the low-confidence alert limit as horizontal lines."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    rows = summary["hours"]
    # Each hour's numbers sit at its middle, its bar spans most of it.
    hours = [datetime.fromisoformat(row["hour"]) + timedelta(minutes=30) for row in rows]
    figure = _figure()
    axes = figure.add_subplot()
    counts = axes.twinx()
    records = [row["records"] for row in rows]
    counts.bar(hours, records, width=0.9 / 24, color="#dddddd", label="records")
    counts.set_ylabel("records per hour")
    counts.set_ylim(0, max([*records, 1]) * 1.1)
    axes.set_zorder(counts.get_zorder() + 1)  # lines over the bars
    axes.patch.set_visible(False)
    threshold, share_limit = summary["threshold"], summary["limits"]["low_confidence_share"]
    mean = [_or_nan(row["mean_confidence"]) for row in rows]
    below = [_or_nan(row["below_threshold_share"]) for row in rows]
    axes.plot(hours, mean, marker="o", color=WINDOW_COLOR, label="mean confidence")
    axes.scatter(hours, below, marker="s", color="#ff7f0e", label="share below threshold", zorder=3)
    axes.axhline(threshold, color=THRESHOLD_COLOR, linestyle="--", label=f"confidence threshold {threshold}")
    axes.axhline(share_limit, color="#9467bd", linestyle=":", label=f"share alert limit {share_limit}")
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("confidence / share")
    if hours:
        locator = AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    window = summary["window"]
    title = f"Confidence per hour, {display_time(window['start'])} to {display_time(window['end'])}"
    axes.set_title(_plain(title))
    axes.legend(loc="lower left", fontsize=8)
    empty = not summary["totals"]["records"]
    if empty:
        _no_traffic(axes)
    return _png(figure, title, empty)


def _grouped_bars(
    title: str, labels: Sequence[str], baseline: Sequence[float], window: Sequence[float] | None, xlabel: str
) -> bytes:
    figure = _figure()
    axes = figure.add_subplot()
    positions = list(range(len(labels)))
    width = 0.4
    axes.bar([p - width / 2 for p in positions], baseline, width, color=BASELINE_COLOR, label="training baseline")
    if window is not None:
        axes.bar([p + width / 2 for p in positions], window, width, color=WINDOW_COLOR, label="this window")
    axes.set_xticks(positions, [_plain(label) for label in labels], rotation=30 if len(labels) > 6 else 0)
    axes.set_ylim(0, max([*baseline, *(window or []), 0.1]) * 1.15)
    axes.set_ylabel("share of predictions")
    axes.set_xlabel(xlabel)
    axes.set_title(_plain(title))
    axes.legend(fontsize=8)
    if window is None:
        _no_traffic(axes)
    return _png(figure, title, window is None)


def confidence_histogram_png(summary: Mapping[str, Any]) -> bytes:
    """Shares per confidence bin (the baseline's edges): training baseline against this window."""
    edges = summary["baseline"]["confidence_bin_edges"]
    labels = [f"{low:.2f}-{high:.2f}" for low, high in zip(edges, edges[1:], strict=False)]
    psi = summary["drift"]["confidence_psi"]
    title = "Confidence histogram" + ("" if psi is None else f" (PSI {psi:.3f})")
    return _grouped_bars(
        title, labels, summary["baseline"]["confidence_shares"], summary["totals"]["confidence_shares"], "confidence"
    )


def class_mix_png(summary: Mapping[str, Any]) -> bytes:
    """Share of predictions per class: training baseline against this window."""
    classes = summary["classes"]
    mix = summary["totals"]["class_mix"]
    psi = summary["drift"]["class_mix_psi"]
    title = "Predicted class mix" + ("" if psi is None else f" (PSI {psi:.3f})")
    baseline = [summary["baseline"]["class_mix"].get(name, 0.0) for name in classes]
    return _grouped_bars(title, classes, baseline, None if mix is None else [mix[name] for name in classes], "class")


def render_charts(summary: Mapping[str, Any]) -> dict[str, bytes]:
    """Chart name (CHART_NAMES) -> PNG bytes."""
    return {
        "confidence_over_time": confidence_over_time_png(summary),
        "confidence_histogram": confidence_histogram_png(summary),
        "class_mix": class_mix_png(summary),
    }
