"""Data capture's pure parts: sampling, encoding, record shape and S3 key layout. No services."""

from __future__ import annotations

import base64
import json
import random
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from localcloud.sagemaker.runners.capture import (
    build_record,
    capture_key,
    capture_sides,
    complete_lines,
    enabled_sampling,
    encode,
    should_capture,
)

SDK_HEADER = {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]}
WHEN = datetime(2026, 11, 21, 17, 25, 49, 123456, tzinfo=UTC)


# --- sampling ---------------------------------------------------------------------------------
@pytest.mark.parametrize("percentage, expected", [(100, True), (100.0, True), (0, False), (0.0, False)])
def test_sampling_extremes_are_exact(percentage: float, expected: bool) -> None:
    rng = random.Random(7)
    assert {should_capture(percentage, rng) for _ in range(500)} == {expected}


def test_sampling_is_per_request_at_the_given_rate() -> None:
    rng = random.Random(1234)
    captured = sum(should_capture(30, rng) for _ in range(10_000))
    assert 2_700 < captured < 3_300


@pytest.mark.parametrize(
    "config, expected",
    [
        (None, None),
        ({"EnableCapture": False, "InitialSamplingPercentage": 100, "DestinationS3Uri": "s3://b/p"}, None),
        ({"InitialSamplingPercentage": 100, "DestinationS3Uri": "s3://b/p"}, 100.0),  # EnableCapture defaults on
        ({"EnableCapture": True, "InitialSamplingPercentage": 40, "DestinationS3Uri": "s3://b/p"}, 40.0),
    ],
)
def test_capture_is_enabled_only_by_enable_capture(config: dict | None, expected: float | None) -> None:
    assert enabled_sampling(config) == expected


# --- encoding ---------------------------------------------------------------------------------
def test_listed_json_type_is_stored_as_raw_text() -> None:
    assert encode(b'{"a": [1, 2]}', "application/json", SDK_HEADER) == ("JSON", '{"a": [1, 2]}')


def test_listed_csv_type_is_stored_as_raw_text() -> None:
    assert encode(b"1,2,3\n", "text/csv", SDK_HEADER) == ("CSV", "1,2,3\n")


def test_media_type_parameters_and_case_are_ignored() -> None:
    assert encode(b"[0.9]", "Application/JSON; charset=utf-8", SDK_HEADER) == ("JSON", "[0.9]")
    assert encode(b"1,2", "text/csv;charset=UTF-8", {"CsvContentTypes": ["TEXT/CSV"]}) == ("CSV", "1,2")


def test_unlisted_type_is_base64() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\xff"
    assert encode(png, "image/png", SDK_HEADER) == ("BASE64", base64.b64encode(png).decode())


@pytest.mark.parametrize("header", [None, {}, {"CsvContentTypes": [], "JsonContentTypes": []}])
def test_without_lists_everything_is_base64(header: dict | None) -> None:
    assert encode(b'{"a": 1}', "application/json", header) == ("BASE64", base64.b64encode(b'{"a": 1}').decode())


def test_only_the_listed_family_is_text() -> None:
    json_only = {"JsonContentTypes": ["application/json"]}
    assert encode(b"1,2", "text/csv", json_only)[0] == "BASE64"
    assert encode(b"[1]", "application/json", json_only)[0] == "JSON"


def test_listed_type_with_invalid_utf8_falls_back_to_base64() -> None:
    assert encode(b"\xff\xfe", "application/json", SDK_HEADER) == ("BASE64", "//4=")


# --- records ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, expected",
    [
        ([{"CaptureMode": "Input"}], (True, False)),
        ([{"CaptureMode": "Output"}], (False, True)),
        ([{"CaptureMode": "InputAndOutput"}], (True, True)),
        ([{"CaptureMode": "Input"}, {"CaptureMode": "Output"}], (True, True)),
        ([], (False, False)),
    ],
)
def test_capture_sides_follow_capture_mode(options: list, expected: tuple[bool, bool]) -> None:
    assert capture_sides(options) == expected


def _record(options: list, **overrides: object) -> dict:
    arguments: dict = {
        "capture_options": options,
        "capture_content_type_header": SDK_HEADER,
        "input_body": b"\x89PNG-bytes",
        "input_content_type": "image/png",
        "output_body": b"[0.25, 0.75]",
        "output_content_type": "application/json",
        "when": WHEN,
    } | overrides
    return build_record(**arguments)


def test_record_with_both_sides_has_sagemakers_exact_shape() -> None:
    record = _record([{"CaptureMode": "Input"}, {"CaptureMode": "Output"}], event_id="e-1", inference_id="inf-9")
    assert record == {
        "captureData": {
            "endpointInput": {
                "observedContentType": "image/png",
                "mode": "INPUT",
                "data": base64.b64encode(b"\x89PNG-bytes").decode(),
                "encoding": "BASE64",
            },
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": "[0.25, 0.75]",
                "encoding": "JSON",
            },
        },
        "eventMetadata": {"eventId": "e-1", "inferenceTime": "2026-11-21T17:25:49Z", "inferenceId": "inf-9"},
        "eventVersion": "0",
    }
    json.dumps(record)  # must serialize as one JSON line


def test_record_has_only_the_chosen_side_and_no_inference_id_unless_sent() -> None:
    record = _record([{"CaptureMode": "Input"}])
    assert list(record["captureData"]) == ["endpointInput"]
    assert "inferenceId" not in record["eventMetadata"]
    assert uuid.UUID(record["eventMetadata"]["eventId"]).version == 4
    assert list(_record([{"CaptureMode": "Output"}])["captureData"]) == ["endpointOutput"]


def test_inference_time_is_utc() -> None:
    local = WHEN.astimezone(timezone(timedelta(hours=-5)))
    assert _record([{"CaptureMode": "Input"}], when=local)["eventMetadata"]["inferenceTime"] == "2026-11-21T17:25:49Z"


# --- keys -------------------------------------------------------------------------------------
KEY = re.compile(r"^(?P<dir>.+)/(?P<mm>\d{2})-(?P<ss>\d{2})-(?P<ms>\d{3})-(?P<id>[0-9a-f-]{36})\.jsonl$")


def test_capture_key_layout() -> None:
    key = capture_key("s3://bucket/data-capture/", "scones-ep", "AllTraffic", WHEN)
    match = KEY.match(key)
    assert match, key
    assert match["dir"] == "data-capture/scones-ep/AllTraffic/2026/11/21/17"
    assert (match["mm"], match["ss"], match["ms"]) == ("25", "49", "123")
    assert uuid.UUID(match["id"]).version == 4


def test_capture_key_hour_is_utc_and_file_id_is_kept() -> None:
    local = WHEN.astimezone(timezone(timedelta(hours=9)))  # 02:25 on the 22nd in that zone
    key = capture_key("s3://bucket/a/b", "ep", "v1", local, file_id="f00d")
    assert key == "a/b/ep/v1/2026/11/21/17/25-49-123-f00d.jsonl"


def test_capture_key_for_a_bare_bucket() -> None:
    assert capture_key("s3://bucket", "ep", "v1", WHEN, file_id="x") == "ep/v1/2026/11/21/17/25-49-123-x.jsonl"


def test_a_half_written_last_line_is_dropped_from_a_spool_file() -> None:
    assert complete_lines(b'{"a":1}\n{"b":2}\n{"c":') == b'{"a":1}\n{"b":2}\n'
    assert complete_lines(b'{"a":1}\n') == b'{"a":1}\n'
    assert complete_lines(b'{"partial') == b""
    assert complete_lines(b"") == b""
