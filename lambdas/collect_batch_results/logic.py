"""collect_batch_results's pure logic: turn a Distributed Map's ResultWriter export (a manifest naming one file per
child status) into one results file, a line per image, and a summary of the run.

A succeeded child's output is the batch machine's Routed or NotRouted state: {"s3_key", "inferences", "routed"}.
A failed child keeps its input ({"s3_bucket", "s3_key"}) and its Error and Cause."""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, TypedDict

# What the batch machine's children end with, and what a results line says of each image.
Status = Literal["routed", "not_routed", "error"]


class InvalidEvent(ValueError):
    """The event is not the batch machine's state after its Map: the request plus map_run.ResultWriterDetails."""


class InvalidResults(ValueError):
    """The manifest or a results file is not what a ResultWriter writes."""


class BatchRequest(TypedDict):
    s3_bucket: str
    prefix: str
    results_prefix: str
    latest_key: str
    classes: list[str]


class ResultLine(TypedDict):
    s3_key: str
    status: Status
    label: str | None
    confidence: float | None
    inferences: list[float]
    error: NotRequired[str]
    cause: NotRequired[str]


class BatchSummary(TypedDict):
    """The function's result, <results_prefix>/summary.json and <latest_key>: records.BatchSummary reads it."""

    s3_bucket: str
    prefix: str
    results_key: str
    map_run_arn: str
    finished_at: str
    images: int
    routed: int
    not_routed: int
    errors: int
    routed_by_label: dict[str, int]


REQUEST_FIELDS = {"s3_bucket": str, "prefix": str, "results_prefix": str, "latest_key": str, "classes": list}


def parse_event(event: Any) -> tuple[BatchRequest, str, str, str]:
    """The request, the manifest's bucket and key, and the Map Run's ARN."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"expected the batch machine's state (an object), got {type(event).__name__}")
    for field, kind in REQUEST_FIELDS.items():
        if not isinstance(event.get(field), kind):
            raise InvalidEvent(f"event key {field!r} must be a {kind.__name__}")
    if not all(isinstance(name, str) for name in event["classes"]):
        raise InvalidEvent("event key 'classes' must list class names")
    map_run: dict[str, Any] = event["map_run"] if isinstance(event.get("map_run"), dict) else {}
    details = map_run.get("ResultWriterDetails")
    if not isinstance(details, dict) or not all(isinstance(details.get(k), str) for k in ("Bucket", "Key")):
        raise InvalidEvent("event key 'map_run.ResultWriterDetails' must hold the manifest's Bucket and Key")
    request = BatchRequest(**{field: event[field] for field in REQUEST_FIELDS})  # type: ignore[typeddict-item]
    return request, details["Bucket"], details["Key"], str(map_run.get("MapRunArn", ""))


def result_files(manifest_text: str) -> list[tuple[str, str]]:
    """(status, key) of every results file the manifest names; PENDING lists children that never ran."""
    try:
        files = json.loads(manifest_text)["ResultFiles"]
        return [(status, entry["Key"]) for status in sorted(files) for entry in files[status]]
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidResults(f"the manifest is not a ResultWriter manifest ({error!r})") from error


def parse_records(key: str, text: str) -> list[dict[str, Any]]:
    """The records of one results file: a JSON array, or one object per line (.jsonl)."""
    try:
        records = [json.loads(line) for line in text.splitlines() if line.strip()] if key.endswith(".jsonl") else (
            json.loads(text))  # fmt: skip
    except ValueError as error:
        raise InvalidResults(f"{key} is not JSON ({error})") from error
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InvalidResults(f"{key} must list one object per child execution")
    return records


def _json_field(record: dict[str, Any], field: str) -> Any:
    value = record.get(field)
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return value


def result_line(record: dict[str, Any], classes: list[str]) -> ResultLine:
    """One image's line. A record with Status is a full ResultWriter record; one without is a COMPACT output."""
    status = record.get("Status", "SUCCEEDED")
    if status == "SUCCEEDED":
        output = _json_field(record, "Output") if "Status" in record else record
        if not isinstance(output, dict) or not isinstance(output.get("s3_key"), str):
            raise InvalidResults(f"a succeeded child's output is not {{s3_key, inferences, routed}}: {output!r}")
        inferences = [float(p) for p in output.get("inferences") or []]
        best = max(range(len(inferences)), key=inferences.__getitem__) if inferences else None
        return ResultLine(
            s3_key=output["s3_key"],
            status="routed" if output.get("routed") is True else "not_routed",
            label=None if best is None else (classes[best] if best < len(classes) else str(best)),
            confidence=None if best is None else inferences[best],
            inferences=inferences,
        )
    child_input = _json_field(record, "Input")
    key = child_input.get("s3_key") if isinstance(child_input, dict) else None
    return ResultLine(
        s3_key=str(key), status="error", label=None, confidence=None, inferences=[],
        error=str(record.get("Error") or status), cause=str(record.get("Cause") or ""),
    )  # fmt: skip


def results_body(lines: list[ResultLine]) -> bytes:
    """results.jsonl: one line per image, ordered by key, so a re-run writes the same bytes."""
    ordered = sorted(lines, key=lambda line: line["s3_key"])
    return "".join(json.dumps(line, sort_keys=True) + "\n" for line in ordered).encode("utf-8")


def summarize(
    lines: list[ResultLine], request: BatchRequest, results_key: str, map_run_arn: str, finished_at: str
) -> BatchSummary:
    routed_by_label: dict[str, int] = {}
    for line in lines:
        if line["status"] == "routed" and line["label"] is not None:
            routed_by_label[line["label"]] = routed_by_label.get(line["label"], 0) + 1
    return BatchSummary(
        s3_bucket=request["s3_bucket"],
        prefix=request["prefix"],
        results_key=results_key,
        map_run_arn=map_run_arn,
        finished_at=finished_at,
        images=len(lines),
        routed=sum(line["status"] == "routed" for line in lines),
        not_routed=sum(line["status"] == "not_routed" for line in lines),
        errors=sum(line["status"] == "error" for line in lines),
        routed_by_label=dict(sorted(routed_by_label.items())),
    )
