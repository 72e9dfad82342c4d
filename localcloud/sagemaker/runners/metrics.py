"""Endpoint invocation metrics to CloudWatch (MiniStack), namespace `AWS/SageMaker`, as SageMaker publishes them.

Per request the hot path adds to in-memory sums (one lock, no I/O); a background thread sends them about once a
second with `PutMetricData` as statistic sets, so CloudWatch's Sum, Average, Minimum, Maximum and SampleCount over
any period are those of the requests in it. AWS aggregates per minute; sending each second lets an alarm that
watches a minute see a burst of errors within a second or two, which is what a guarded deployment needs locally.

Series, per variant (dimensions `EndpointName` + `VariantName`, and once a deployment has shifted traffic the same
series with `EndpointConfigName` added, so the old and the new fleet can be told apart):
- `Invocations` (1 per request the model answered), `InvocationsPerInstance` (1 / instance count);
- `Invocation4XXErrors`, `Invocation5XXErrors` (1 if the model answered 4xx/5xx, else 0);
- `InvocationModelErrors` (1 for a non-2xx answer, a dropped connection or a timeout, else 0);
- `ModelLatency` (time in the model server) and `OverheadLatency` (the rest of the request), in microseconds.

Like CloudWatch Logs here, metrics are a convenience: when MiniStack refuses, the batch is dropped with a warning
and serving goes on."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

NAMESPACE = "AWS/SageMaker"
FLUSH_INTERVAL_S = 1.0
MAX_DATA_PER_CALL = 1000  # PutMetricData's limit on MetricData entries


@dataclass(frozen=True)
class Series:
    """Where one request's figures go: an endpoint's variant, on one deployment (config)."""

    endpoint_name: str
    variant_name: str
    config_name: str
    instance_count: int
    by_config: bool  # also publish the series with EndpointConfigName

    def dimension_sets(self) -> Iterator[list[dict[str, str]]]:
        base = [
            {"Name": "EndpointName", "Value": self.endpoint_name},
            {"Name": "VariantName", "Value": self.variant_name},
        ]
        yield base
        if self.by_config:
            yield [*base, {"Name": "EndpointConfigName", "Value": self.config_name}]


@dataclass(frozen=True)
class Outcome:
    """One request as the metrics see it: the model's HTTP status (None: no answer) and the two latencies."""

    status: int | None
    model_us: float
    overhead_us: float


@dataclass
class Statistic:
    count: float = 0.0
    total: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)

    def values(self) -> dict[str, float]:
        return {"SampleCount": self.count, "Sum": self.total, "Minimum": self.low, "Maximum": self.high}


@dataclass
class Window:
    """The sums of one series since the last flush."""

    metrics: dict[str, Statistic] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.metrics.setdefault(name, Statistic()).add(value)


def figures(series: Series, outcome: Outcome) -> dict[str, float]:
    """The metric values one request contributes (a request the model never answered counts as a model error)."""
    status = outcome.status
    if status is None:
        return {"InvocationModelErrors": 1.0}
    return {
        "Invocations": 1.0,
        "InvocationsPerInstance": 1.0 / max(1, series.instance_count),
        "Invocation4XXErrors": 1.0 if 400 <= status < 500 else 0.0,
        "Invocation5XXErrors": 1.0 if 500 <= status < 600 else 0.0,
        "InvocationModelErrors": 0.0 if 200 <= status < 300 else 1.0,
        "ModelLatency": outcome.model_us,
        "OverheadLatency": outcome.overhead_us,
    }


UNITS = {"ModelLatency": "Microseconds", "OverheadLatency": "Microseconds"}


def metric_data(windows: dict[Series, Window]) -> list[dict[str, Any]]:
    data = []
    for series, window in windows.items():
        for dimensions in series.dimension_sets():
            for name, statistic in window.metrics.items():
                data.append(
                    {
                        "MetricName": name,
                        "Dimensions": dimensions,
                        "StatisticValues": statistic.values(),
                        "Unit": UNITS.get(name, "None"),
                    }
                )
    return data


class MetricPublisher:
    """Collects per-request figures and sends them to CloudWatch in the background; `close()` sends the rest."""

    def __init__(self, cloudwatch: Any, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.cloudwatch = cloudwatch
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._windows: dict[Series, Window] = {}
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._flush_periodically, name="endpoint-metrics", daemon=True)
        self._thread.start()

    def record(self, series: Series, outcome: Outcome) -> None:
        values = figures(series, outcome)
        with self._lock:
            window = self._windows.setdefault(series, Window())
            for name, value in values.items():
                window.add(name, value)

    def flush(self) -> None:
        with self._lock:
            windows, self._windows = self._windows, {}
        data = metric_data(windows)
        for start in range(0, len(data), MAX_DATA_PER_CALL):
            batch = data[start : start + MAX_DATA_PER_CALL]
            try:
                self.cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=batch)
            except (BotoCoreError, ClientError) as error:
                log.warning("dropped %d endpoint metric data: %s", len(batch), error)

    def _flush_periodically(self) -> None:
        while not self._closed.wait(self.interval_s):
            self.flush()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=self.interval_s * 5)
        self.flush()
