"""collect_batch_results: reading a ResultWriter export (manifest, SUCCEEDED and FAILED files, JSON or JSONL, full
or COMPACT records), the results file and the summary it writes, and the errors it raises on bad input. A fake S3
here; the batch machine's end-to-end test (tests/workflow/test_state_machine.py) runs it on MiniStack."""

from __future__ import annotations

import json
from typing import Any, get_type_hints

import pytest

from include.scones import records
from tests.lambdas.helpers import FakeLambdaContext, FakeS3, LoadedLambda, load_lambda

BUCKET = "scones-unlimited"
CLASSES = ["bicycle", "motorcycle"]
MANIFEST = "batch/run-1/0a1b/manifest.json"


@pytest.fixture
def collect() -> LoadedLambda:
    return load_lambda("collect_batch_results")


def request(**overrides: Any) -> dict[str, Any]:
    return {
        "s3_bucket": BUCKET, "prefix": "datasets/x/test/images/", "results_prefix": "batch/run-1",
        "latest_key": "batch/latest.json", "classes": CLASSES,
        "map_run": {"MapRunArn": "arn:aws:states:us-east-1:0:mapRun:m/l:1",
                    "ResultWriterDetails": {"Bucket": BUCKET, "Key": MANIFEST}},
    } | overrides  # fmt: skip


def succeeded(key: str, inferences: list[float], routed: bool) -> dict[str, Any]:
    """A ResultWriter record (Transformation NONE) of a child that ended in Routed or NotRouted."""
    output = {"s3_key": key, "inferences": inferences, "routed": routed}
    return {"Input": json.dumps({"s3_bucket": BUCKET, "s3_key": key}), "Output": json.dumps(output),
            "Status": "SUCCEEDED", "Name": key}  # fmt: skip


def failed(key: str, error: str) -> dict[str, Any]:
    return {"Input": json.dumps({"s3_bucket": BUCKET, "s3_key": key}), "Status": "FAILED", "Error": error,
            "Cause": json.dumps({"errorMessage": f"{key}: {error}"})}  # fmt: skip


def export(files: dict[str, list[dict[str, Any]]], jsonl: bool = False) -> FakeS3:
    """A ResultWriter export in a fake S3: one file per status and the manifest naming them."""
    objects: dict[tuple[str, str], bytes] = {}
    listed: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    for status, rows in files.items():
        key = f"batch/run-1/0a1b/{status}_0.json" + ("l" if jsonl else "")
        body = "".join(json.dumps(r) + "\n" for r in rows) if jsonl else json.dumps(rows)
        objects[BUCKET, key] = body.encode()
        listed[status].append({"Key": key, "Size": len(body)})
    manifest = {"DestinationBucket": BUCKET, "MapRunArn": "arn:m", "ResultFiles": listed}
    objects[BUCKET, MANIFEST] = json.dumps(manifest).encode()
    return FakeS3(objects)


def lines_of(s3: FakeS3, key: str = "batch/run-1/results.jsonl") -> list[dict[str, Any]]:
    return [json.loads(line) for line in s3.objects[BUCKET, key].decode().splitlines()]


@pytest.mark.parametrize("jsonl", [False, True], ids=["json", "jsonl"])
def test_every_child_becomes_one_line_and_the_summary_counts_them(collect: LoadedLambda, jsonl: bool) -> None:
    s3 = export({
        "SUCCEEDED": [succeeded("k/b.png", [0.02, 0.98], True), succeeded("k/a.png", [0.6, 0.4], False),
                      succeeded("k/c.png", [0.95, 0.05], True)],
        "FAILED": [failed("k/broken.png", "NotAnImage")],
    }, jsonl=jsonl)  # fmt: skip
    collect.handler.s3_client = lambda: s3
    summary = collect.handler.lambda_handler(request(), FakeLambdaContext())

    lines = lines_of(s3)
    assert [line["s3_key"] for line in lines] == ["k/a.png", "k/b.png", "k/broken.png", "k/c.png"]  # sorted
    by_key = {line["s3_key"]: line for line in lines}
    assert by_key["k/b.png"] == {"s3_key": "k/b.png", "status": "routed", "label": "motorcycle", "confidence": 0.98,
                                 "inferences": [0.02, 0.98]}  # fmt: skip
    assert by_key["k/a.png"]["status"] == "not_routed" and by_key["k/a.png"]["label"] == "bicycle"
    broken = by_key["k/broken.png"]
    assert (broken["status"], broken["error"], broken["label"]) == ("error", "NotAnImage", None)
    assert "k/broken.png: NotAnImage" in broken["cause"]
    assert {k: summary[k] for k in ("images", "routed", "not_routed", "errors")} == {
        "images": 4, "routed": 2, "not_routed": 1, "errors": 1}  # fmt: skip
    assert summary["routed_by_label"] == {"bicycle": 1, "motorcycle": 1}
    assert summary["results_key"] == "batch/run-1/results.jsonl" and summary["map_run_arn"].endswith(":1")
    # The same summary is the run's summary.json and the latest one, and it reads as records.BatchSummary
    for key in ("batch/run-1/summary.json", "batch/latest.json"):
        assert json.loads(s3.objects[BUCKET, key]) == summary
    assert records.BatchSummary.from_xcom(summary).routed_share == 0.5


def test_a_rerun_writes_the_same_results_file(collect: LoadedLambda) -> None:
    files = {"SUCCEEDED": [succeeded(f"k/{i}.png", [0.99, 0.01], True) for i in (3, 1, 2)]}
    first, second = export(files), export({"SUCCEEDED": list(reversed(files["SUCCEEDED"]))})
    for s3 in (first, second):
        collect.handler.s3_client = lambda s3=s3: s3
        collect.handler.lambda_handler(request(), FakeLambdaContext())
    key = (BUCKET, "batch/run-1/results.jsonl")
    assert first.objects[key] == second.objects[key]


def test_compact_records_are_the_outputs_alone(collect: LoadedLambda) -> None:
    line = collect.logic.result_line({"s3_key": "k/x.png", "inferences": [0.1, 0.9], "routed": True}, CLASSES)
    assert (line["status"], line["label"], line["confidence"]) == ("routed", "motorcycle", 0.9)


def test_a_class_index_beyond_the_names_is_named_by_its_number(collect: LoadedLambda) -> None:
    line = collect.logic.result_line(succeeded("k/x.png", [0.1, 0.2, 0.7], True), CLASSES)
    assert line["label"] == "2"


def test_an_export_with_no_children_is_an_empty_results_file(collect: LoadedLambda) -> None:
    s3 = export({})
    collect.handler.s3_client = lambda: s3
    summary = collect.handler.lambda_handler(request(), FakeLambdaContext())
    assert s3.objects[BUCKET, "batch/run-1/results.jsonl"] == b""
    assert (summary["images"], summary["routed_by_label"]) == (0, {})
    assert records.BatchSummary.from_xcom(summary).routed_share is None


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "expected the batch machine's state"),
        (request(prefix=None), "'prefix' must be a str"),
        (request(classes="bicycle"), "'classes' must be a list"),
        (request(classes=[1, 2]), "must list class names"),
        (request(map_run={}), "map_run.ResultWriterDetails"),
        (request(map_run={"ResultWriterDetails": {"Bucket": BUCKET}}), "map_run.ResultWriterDetails"),
    ],
)
def test_a_bad_event_is_refused_by_name_before_any_s3_call(collect: LoadedLambda, event: Any, message: str) -> None:
    s3 = export({})
    collect.handler.s3_client = lambda: s3
    with pytest.raises(collect.logic.InvalidEvent, match=message):
        collect.handler.lambda_handler(event, FakeLambdaContext())
    assert s3.downloaded == []


def test_a_manifest_or_file_that_is_not_a_result_writer_export_is_refused(collect: LoadedLambda) -> None:
    logic = collect.logic
    with pytest.raises(logic.InvalidResults, match="not a ResultWriter manifest"):
        logic.result_files('{"Files": []}')
    with pytest.raises(logic.InvalidResults, match="is not JSON"):
        logic.parse_records("x/SUCCEEDED_0.json", "{not json")
    with pytest.raises(logic.InvalidResults, match="one object per child"):
        logic.parse_records("x/SUCCEEDED_0.json", '{"Status": "SUCCEEDED"}')
    with pytest.raises(logic.InvalidResults, match="succeeded child's output"):
        logic.result_line({"Status": "SUCCEEDED", "Output": '"just text"'}, CLASSES)


def test_the_lambdas_types_are_the_records_the_dag_reads(collect: LoadedLambda) -> None:
    """The Lambda cannot import include/, so its TypedDicts repeat the records' fields: they must agree."""
    logic = collect.logic
    assert set(get_type_hints(logic.BatchSummary)) == set(records.BatchSummary.model_fields)
    assert set(get_type_hints(logic.BatchRequest)) == set(records.BatchRequest.model_fields)
    assert set(logic.REQUEST_FIELDS) == set(records.BatchRequest.model_fields)
