"""monitoring.capture: capture lines parsed or skipped by reason, streaming, and key selection by UTC hour."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from include.scones.monitoring.capture import (
    SKIP_REASONS,
    CaptureRecord,
    MalformedRecord,
    SkipLog,
    Window,
    display_time,
    duration_text,
    hour_prefixes,
    iter_records,
    key_hour,
    keys_in_window,
    parse_record,
)
from localcloud.sagemaker.runners.capture import build_record
from tools.synthetic_traffic import TINY_PNG, capture_line, tiny_png

WHEN = datetime(2026, 11, 21, 17, 25, 49, tzinfo=UTC)


def test_a_json_encoded_record() -> None:
    line = capture_line(WHEN, [0.25, 0.75], event_id="e-1", inference_id="req-7")

    record = parse_record(line, 2)

    assert record.inference_time == WHEN
    assert record.probabilities == (0.25, 0.75)
    assert (record.predicted, record.confidence) == (1, 0.75)
    assert (record.event_id, record.inference_id) == ("e-1", "req-7")
    assert record.input_bytes() == TINY_PNG


def test_a_base64_encoded_output_and_no_input() -> None:
    record = parse_record(capture_line(WHEN, [0.9, 0.1], image=None, output_encoding="BASE64"), 2)
    assert record.probabilities == (0.9, 0.1)
    assert record.input_bytes() is None


def test_a_csv_encoded_output_and_bytes_lines() -> None:
    line = json.loads(capture_line(WHEN, []))
    line["captureData"]["endpointOutput"] |= {"data": "0.4,0.6\n", "encoding": "CSV"}
    assert parse_record(json.dumps(line).encode(), 2).probabilities == (0.4, 0.6)


def test_keep_input_false_drops_the_image() -> None:
    assert parse_record(capture_line(WHEN, [0.5, 0.5]), 2, keep_input=False).input_base64 is None


def test_timestamps_are_utc_whatever_their_spelling() -> None:
    line = json.loads(capture_line(WHEN, [0.5, 0.5]))
    for spelling in ("2026-11-21T18:25:49+01:00", "2026-11-21T17:25:49", "2026-11-21T17:25:49.000Z"):
        line["eventMetadata"]["inferenceTime"] = spelling
        assert parse_record(json.dumps(line), 2).inference_time == WHEN


def test_the_local_cloud_writer_and_this_reader_agree() -> None:
    """The emulator's capture writer (same contract) produces lines this parser reads."""
    sdk_header = {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]}
    record = build_record(
        capture_options=[{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        capture_content_type_header=sdk_header,
        input_body=TINY_PNG,
        input_content_type="image/png",
        output_body=b"[0.97, 0.03]",
        output_content_type="application/json",
        when=WHEN,
        inference_id="abc",
    )
    parsed = parse_record(json.dumps(record), 2)
    assert (parsed.probabilities, parsed.inference_time, parsed.inference_id) == ((0.97, 0.03), WHEN, "abc")
    assert parsed.input_bytes() == TINY_PNG


def _edit(**changes: object) -> str:
    """A valid line with captureData.endpointOutput / eventMetadata members replaced (None deletes)."""
    record = json.loads(capture_line(WHEN, [0.5, 0.5]))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = record
        for parent in parents:
            target = target[parent]
        if value is None:
            del target[leaf]
        else:
            target[leaf] = value
    return json.dumps(record)


MALFORMED: dict[str, list[str | bytes]] = {
    "bad_json": ['{"captureData": ', b"\xff\xfe not utf-8", "[" * 100_000],
    "not_an_object": ["[1, 2]", '"text"'],
    "missing_capture_data": [_edit(captureData=None), _edit(captureData="x")],
    "missing_output": [_edit(captureData__endpointOutput=None), _edit(captureData__endpointOutput__data=None)],
    "bad_output_encoding": [_edit(captureData__endpointOutput__encoding="GZIP")],
    "bad_output_data": [
        _edit(captureData__endpointOutput__data="not json"),
        _edit(captureData__endpointOutput__data="%%%", captureData__endpointOutput__encoding="BASE64"),
    ],
    "not_a_list": [
        _edit(captureData__endpointOutput__data='{"bicycle": 0.5}'),
        _edit(captureData__endpointOutput__data="0.5"),
    ],
    "wrong_length": [
        _edit(captureData__endpointOutput__data="[1.0]"),
        _edit(captureData__endpointOutput__data="[0.2, 0.3, 0.5]"),
    ],
    "not_numbers": [
        _edit(captureData__endpointOutput__data='["0.5", 0.5]'),
        _edit(captureData__endpointOutput__data="[true, false]"),
        _edit(captureData__endpointOutput__data="a,b", captureData__endpointOutput__encoding="CSV"),
    ],
    "not_finite": [
        _edit(captureData__endpointOutput__data="[NaN, 0.5]"),
        _edit(captureData__endpointOutput__data="[Infinity, 0]"),
        _edit(captureData__endpointOutput__data="nan,0.5", captureData__endpointOutput__encoding="CSV"),
    ],
    "not_probabilities": [
        _edit(captureData__endpointOutput__data="[3.2, -1.7]"),
        _edit(captureData__endpointOutput__data=f"[{10**400}, 0]"),
    ],
    "missing_inference_time": [_edit(eventMetadata=None), _edit(eventMetadata__inferenceTime=None)],
    "bad_inference_time": [_edit(eventMetadata__inferenceTime="yesterday")],
}


def test_every_skip_reason_is_exercised() -> None:
    assert set(MALFORMED) == set(SKIP_REASONS)


@pytest.mark.parametrize(
    ("reason", "line"),
    [
        pytest.param(reason, line, id=f"{reason}-{i}")
        for reason, lines in MALFORMED.items()
        for i, line in enumerate(lines)
    ],
)
def test_malformed_line_raises_with_its_reason(reason: str, line: str | bytes) -> None:
    with pytest.raises(MalformedRecord) as caught:
        parse_record(line, 2)
    assert caught.value.reason == reason


def test_iter_records_skips_and_counts_by_reason_without_stopping() -> None:
    good = [capture_line(WHEN + timedelta(seconds=i), [0.5 + i / 10, 0.5 - i / 10]) for i in range(3)]
    bad = [line for lines in MALFORMED.values() for line in lines]
    mixed = [good[0], *bad[:10], "", "   ", good[1], *bad[10:], good[2]]
    skipped = SkipLog.empty()

    records = list(iter_records([mixed], 2, skipped))

    assert [r.probabilities[0] for r in records] == [0.5, 0.6, 0.7]
    assert dict(skipped.counts) == {reason: len(lines) for reason, lines in MALFORMED.items()}
    assert len(skipped.examples) == 5
    assert skipped.examples[0].startswith("source 0 line 2: bad_json")  # blank lines are not counted


def test_sources_can_be_files_bodies_or_records() -> None:
    lines = [capture_line(WHEN, [0.9, 0.1]), capture_line(WHEN, [0.2, 0.8])]
    text = "\n".join(lines) + "\n"
    ready = CaptureRecord(WHEN, (0.6, 0.4))
    sources = [io.StringIO(text), io.BytesIO(text.encode()), text, text.encode(), ready, iter(lines)]

    records = list(iter_records(sources, 2, SkipLog.empty()))

    assert [r.predicted for r in records] == [0, 1] * 4 + [0] + [0, 1]


def test_skip_examples_name_the_source() -> None:
    source = io.StringIO("not json\n")
    source.name = "data_capture/ep/AllTraffic/2026/11/21/17/a.jsonl"  # type: ignore[misc]
    skipped = SkipLog.empty()
    assert list(iter_records([source], 2, skipped)) == []
    assert skipped.examples == [f"{source.name} line 1: bad_json: the line is not JSON"]


def test_records_are_streamed_one_line_at_a_time() -> None:
    pulled: list[int] = []

    def lines() -> Iterator[str]:
        for i in range(1_000_000):
            pulled.append(i)
            yield capture_line(WHEN, [0.5, 0.5])

    stream = iter_records([lines()], 2, SkipLog.empty())
    next(stream)
    next(stream)
    assert len(pulled) == 2


def test_window_is_half_open_utc() -> None:
    window = Window(datetime(2026, 11, 21, 18, 25, tzinfo=timezone(timedelta(hours=1))), WHEN + timedelta(hours=2))
    assert window.start == datetime(2026, 11, 21, 17, 25, tzinfo=UTC) and window.start.tzinfo is UTC
    assert window.start in window and window.end not in window
    assert [h.hour for h in window.hours()] == [17, 18, 19]
    assert window.to_dict() == {"start": "2026-11-21T17:25:00Z", "end": "2026-11-21T19:25:49Z", "seconds": 7249.0}


def test_window_dict_keeps_fractions_of_a_second() -> None:
    # The next report starts at this end exactly; a truncated end would count a fraction of a second twice.
    window = Window(WHEN, WHEN + timedelta(seconds=21, microseconds=123456))
    assert window.to_dict() == {
        "start": "2026-11-21T17:25:49Z",
        "end": "2026-11-21T17:26:10.123456Z",
        "seconds": 21.123456,
    }


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (21, "21 seconds"),
        (1, "1 second"),
        (60, "1 minute"),
        (90, "1 minute 30 seconds"),
        (45 * 60, "45 minutes"),
        (3600, "1 hour"),
        (3 * 3600 + 20 * 60 + 7, "3 hours 20 minutes"),  # only the two largest units
        (49 * 3600, "2 days 1 hour"),
        (2 * 86400 + 5 * 60, "2 days"),  # a zero next unit is left out, and what is below it
        (86400, "1 day"),
        (21.4, "21 seconds"),
        (3599.9999, "1 hour"),  # rounded to the second before splitting
        (0.3, "less than 1 second"),
    ],
)
def test_duration_text_reads_naturally(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_duration_text_rejects_a_negative_duration() -> None:
    with pytest.raises(ValueError, match="negative"):
        duration_text(-1)


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 11, 20, 11, 0, 0, 999999, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 11, 20, 10, 0, 0, 5),  # naive: UTC
        "2026-11-20T10:00:00.123456Z",
        "2026-11-20T10:00:00.123456+00:00",
        "2026-11-20T05:00:00-05:00",
    ],
)
def test_display_time_is_utc_to_the_second(when: datetime | str) -> None:
    assert display_time(when) == "2026-11-20 10:00:00 UTC"


def test_input_digest_is_of_the_decoded_image() -> None:
    same = [parse_record(capture_line(WHEN + timedelta(seconds=i), [0.5, 0.5], event_id=f"e{i}"), 2) for i in (1, 2)]
    other = parse_record(capture_line(WHEN, [0.5, 0.5], image=tiny_png(rgb=(1, 2, 3))), 2)
    no_image = parse_record(capture_line(WHEN, [0.5, 0.5], image=None), 2)

    assert same[0].input_digest() == same[1].input_digest() is not None
    assert len(same[0].input_digest() or b"") == 32
    assert other.input_digest() != same[0].input_digest()
    assert no_image.input_digest() is None
    assert CaptureRecord(WHEN, (0.5, 0.5), input_base64="not base64!").input_digest() is None


def test_window_rejects_naive_and_empty_intervals() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(datetime(2026, 11, 21), WHEN)
    with pytest.raises(ValueError, match="not after its start"):
        Window(WHEN, WHEN)


def test_window_since_the_last_report() -> None:
    now = datetime(2026, 11, 22, 6, 10, tzinfo=UTC)
    assert Window.since(WHEN, now) == Window(WHEN, datetime(2026, 11, 22, 5, 55, tzinfo=UTC))
    first = Window.since(None, now, lag=timedelta(0))
    assert (first.start, first.end) == (now - timedelta(hours=24), now)


def test_hour_prefixes_cross_midnight() -> None:
    start, end = datetime(2026, 12, 31, 22, 30, tzinfo=UTC), datetime(2027, 1, 1, 1, 0, tzinfo=UTC)
    assert hour_prefixes("data_capture/", "ep", "AllTraffic", start, end) == [
        "data_capture/ep/AllTraffic/2026/12/31/22/",
        "data_capture/ep/AllTraffic/2026/12/31/23/",
        "data_capture/ep/AllTraffic/2027/01/01/00/",
    ]
    assert hour_prefixes("", "ep", "v1", start, start + timedelta(minutes=1)) == ["ep/v1/2026/12/31/22/"]
    assert hour_prefixes("data_capture", "ep", None, start, end) == ["data_capture/ep/"]
    with pytest.raises(ValueError, match="not a URI"):
        hour_prefixes("s3://bucket/data_capture", "ep", None, start, end)


def test_keys_in_window_select_by_the_hour_in_their_path() -> None:
    def key(hour: int, name: str = "25-49-123-x.jsonl", variant: str = "AllTraffic") -> str:
        return f"data_capture/ep/{variant}/2026/11/21/{hour:02d}/{name}"

    keys = [key(19), key(16), key(17), key(18, variant="Canary"), key(18), key(20), key(17, "notes.txt")]
    keys += ["data_capture/ep/AllTraffic/2026/13/21/17/x.jsonl", "elsewhere/x.jsonl"]
    start, end = datetime(2026, 11, 21, 17, 25, tzinfo=UTC), datetime(2026, 11, 21, 19, 0, tzinfo=UTC)

    # oldest hour first, then by key; the hour 19:00-20:00 starts at the (exclusive) end
    assert keys_in_window(keys, start, end) == [key(17), key(18), key(18, variant="Canary")]
    assert keys_in_window(keys, start, end + timedelta(seconds=1))[-1] == key(19)
    assert key_hour(key(17)) == datetime(2026, 11, 21, 17, tzinfo=UTC)
    assert key_hour("data_capture/ep/AllTraffic/2026/13/21/17/x.jsonl") is None


def test_input_bytes_tolerate_broken_base64() -> None:
    record = CaptureRecord(WHEN, (1.0, 0.0), input_base64="%%%")
    assert record.input_bytes() is None
    assert CaptureRecord(WHEN, (1.0, 0.0), input_base64=base64.b64encode(b"x").decode()).input_bytes() == b"x"
