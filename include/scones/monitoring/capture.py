"""Reading SageMaker data capture (contracts doc section 5): which capture files cover a report window, and the
records inside them, parsed one line at a time.

- `Window`: the half-open UTC interval `[start, end)` a report covers; `Window.since` starts at the last report.
- Key layout `<prefix>/<endpoint>/<variant>/YYYY/MM/DD/HH/<file>.jsonl` (UTC hour): `hour_prefixes` says what to
  list, `keys_in_window` which listed keys to read.
- `parse_record`: one JSON line -> `CaptureRecord`, or `MalformedRecord` whose `reason` is one of `SKIP_REASONS`.
- `iter_records`: streams records out of line sources (file objects, an S3 body's `iter_lines()`, lists of lines),
  skipping malformed lines and counting them by reason. Nothing is held beyond the line being parsed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

HOUR = timedelta(hours=1)
# Why a line was skipped. Lines that are blank are ignored without being counted.
SKIP_REASONS = (
    "bad_json",  # not JSON (or not UTF-8)
    "not_an_object",  # JSON, but not an object
    "missing_capture_data",  # no captureData object
    "missing_output",  # no endpointOutput with a string `data` (e.g. CaptureMode Input)
    "bad_output_encoding",  # endpointOutput.encoding is not JSON, BASE64 or CSV
    "bad_output_data",  # the output's BASE64 or JSON text does not decode
    "not_a_list",  # the output is not a list
    "wrong_length",  # the list does not hold one probability per class
    "not_numbers",  # an element is not a number (strings and booleans included)
    "not_finite",  # NaN or infinity
    "not_probabilities",  # a number outside [0, 1]
    "missing_inference_time",  # no eventMetadata.inferenceTime string
    "bad_inference_time",  # inferenceTime is not an ISO 8601 timestamp
)
MAX_SKIP_EXAMPLES = 5
_PROBABILITY_TOLERANCE = 1e-6  # float noise of a softmax may sit a hair outside [0, 1]
_HOUR_IN_KEY = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+\.jsonl$")


def utc_text(when: datetime) -> str:
    """`2026-11-21T17:25:49Z`, the capture format (fractions of a second kept when present)."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def display_time(when: datetime | str) -> str:
    """`2026-11-21 17:25:49 UTC`, for people: seconds precision (the fraction is dropped, not rounded, so a time
    never shows later than it was). Takes a datetime or the ISO text of summary.json; a naive one is UTC."""
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


_DURATION_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def duration_text(seconds: float) -> str:
    """`21 seconds`, `1 minute`, `3 hours 20 minutes`, `2 days 1 hour`: the largest unit and, when not zero, the
    next one down; smaller units are dropped. Rounded to the second first, because a window's ends carry
    microseconds and 3599.9999 seconds should read `1 hour`."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {seconds} seconds")
    remaining = round(seconds)
    if remaining == 0:
        return "less than 1 second"
    counts = []
    for name, size in _DURATION_UNITS:
        count, remaining = divmod(remaining, size)
        counts.append((count, name))
    first = next(i for i, (count, _) in enumerate(counts) if count)
    shown = [(count, name) for count, name in counts[first : first + 2] if count]
    return " ".join(f"{count} {name}{'' if count == 1 else 's'}" for count, name in shown)


def floor_hour(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Window:
    """The half-open interval `[start, end)` a report covers, held in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"window {name} must be timezone-aware, got {value.isoformat()}")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.end <= self.start:
            raise ValueError(f"window end {utc_text(self.end)} is not after its start {utc_text(self.start)}")

    @classmethod
    def since(
        cls,
        last_end: datetime | None,
        now: datetime,
        *,
        lag: timedelta = timedelta(minutes=15),
        first_span: timedelta = timedelta(hours=24),
    ) -> Window:
        """The window from the last report's end (or `first_span` back) to `now - lag`. AWS delivers capture
        files minutes late, so the newest minutes wait for the next report instead of being missed by both."""
        end = now - lag
        return cls(last_end if last_end is not None else end - first_span, end)

    def __contains__(self, when: object) -> bool:
        return isinstance(when, datetime) and self.start <= when < self.end

    def hours(self) -> list[datetime]:
        """Start of every UTC hour that overlaps the window, in order."""
        hour, hours = floor_hour(self.start), []
        while hour < self.end:
            hours.append(hour)
            hour += HOUR
        return hours

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def to_dict(self) -> dict[str, str | float]:
        # `start`/`end` keep their fractions of a second: the next report's window starts at this `end` exactly
        # (workflow_steps._last_report_end), so a truncated end would count the records of that fraction twice.
        return {"start": utc_text(self.start), "end": utc_text(self.end), "seconds": self.duration.total_seconds()}


# --- key layout -------------------------------------------------------------------------------------------
def _join(*parts: str) -> str:
    return "/".join(part.strip("/") for part in parts if part.strip("/"))


def hour_prefixes(prefix: str, endpoint: str, variant: str | None, start: datetime, end: datetime) -> list[str]:
    """S3 prefixes to list for the window: one per UTC hour `<prefix>/<endpoint>/<variant>/YYYY/MM/DD/HH/`.

    `prefix` is the key prefix inside the bucket (Settings.capture_prefix; empty when capture writes to the
    bucket root). With `variant=None` the variant folder, which comes before the date, is unknown: the one prefix
    `<prefix>/<endpoint>/` is returned, and `keys_in_window` picks the hours from its listing."""
    if prefix.startswith("s3://"):
        raise ValueError(f"hour_prefixes takes the key prefix inside the bucket, not a URI: {prefix}")
    if variant is None:
        return [_join(prefix, endpoint) + "/"]
    base = _join(prefix, endpoint, variant)
    return [f"{base}/{hour:%Y/%m/%d/%H}/" for hour in Window(start, end).hours()]


def key_hour(key: str) -> datetime | None:
    """The UTC hour in a capture key's path, or None for a key outside the layout."""
    match = _HOUR_IN_KEY.search(key)
    if match is None:
        return None
    year, month, day, hour = (int(group) for group in match.groups())
    try:
        return datetime(year, month, day, hour, tzinfo=UTC)
    except ValueError:  # e.g. month 13
        return None


def keys_in_window(keys: Iterable[str], start: datetime, end: datetime) -> list[str]:
    """The `.jsonl` keys whose hour folder overlaps `[start, end)`, oldest hour first. A file of a partly covered
    hour is read whole; `iter_records` callers drop its records outside the window by their inferenceTime."""
    window = Window(start, end)
    selected = []
    for key in keys:
        hour = key_hour(key)
        if hour is not None and hour < window.end and hour + HOUR > window.start:
            selected.append((hour, key))
    return [key for _, key in sorted(selected)]


# --- records ----------------------------------------------------------------------------------------------
class MalformedRecord(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """What the report needs from one capture record. The input image stays base64 text until asked for."""

    inference_time: datetime
    probabilities: tuple[float, ...]
    event_id: str | None = None
    inference_id: str | None = None
    input_base64: str | None = None

    @property
    def predicted(self) -> int:
        """Index of the highest probability; the first one on a tie, as evaluation.evaluate counts it."""
        probabilities = self.probabilities
        return max(range(len(probabilities)), key=probabilities.__getitem__)

    @property
    def confidence(self) -> float:
        return max(self.probabilities)

    def input_bytes(self) -> bytes | None:
        """The captured request body (the image), when the input side was captured as BASE64."""
        if self.input_base64 is None:
            return None
        try:
            return base64.b64decode(self.input_base64, validate=True)
        except (binascii.Error, ValueError):
            return None

    def input_digest(self) -> bytes | None:
        """SHA-256 of the decoded input: the same image gives the same digest, however often it was sent."""
        payload = self.input_bytes()
        return None if payload is None else hashlib.sha256(payload).digest()


def _output_value(output: Any) -> Any:
    if not isinstance(output, dict) or not isinstance(output.get("data"), str):
        raise MalformedRecord("missing_output", "no endpointOutput with string data")
    data, encoding = output["data"], output.get("encoding")
    if encoding == "CSV":
        try:
            return [float(cell) for cell in data.strip().split(",")]
        except ValueError:
            raise MalformedRecord("not_numbers", f"CSV output {data[:60]!r}") from None
    if encoding == "BASE64":
        try:
            text: str | bytes = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedRecord("bad_output_data", "endpointOutput.data is not base64") from None
    elif encoding == "JSON":
        text = data
    else:
        raise MalformedRecord("bad_output_encoding", f"endpointOutput.encoding {str(encoding)[:40]!r}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise MalformedRecord("bad_output_data", "endpointOutput is not JSON") from None


def _probabilities(value: Any, n_classes: int) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise MalformedRecord("not_a_list", f"expected a list of {n_classes} probabilities, got {type(value).__name__}")
    if len(value) != n_classes:
        raise MalformedRecord("wrong_length", f"expected {n_classes} probabilities, got {len(value)}")
    for element in value:
        if isinstance(element, bool) or not isinstance(element, int | float):
            raise MalformedRecord("not_numbers", f"{str(element)[:40]!r} in the output is not a number")
        if isinstance(element, float) and not math.isfinite(element):
            raise MalformedRecord("not_finite", f"{element} in the output")
        if not -_PROBABILITY_TOLERANCE <= element <= 1 + _PROBABILITY_TOLERANCE:
            raise MalformedRecord("not_probabilities", f"{element} in the output is outside [0, 1]")
    return tuple(float(element) for element in value)


def _inference_time(metadata: Any) -> datetime:
    raw = metadata.get("inferenceTime") if isinstance(metadata, dict) else None
    if not isinstance(raw, str):
        raise MalformedRecord("missing_inference_time", "no eventMetadata.inferenceTime")
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise MalformedRecord("bad_inference_time", f"inferenceTime {raw[:40]!r}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _optional_text(mapping: Any, key: str) -> str | None:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, str) else None


def json_object(line: str | bytes, error: Callable[[str, str], Exception]) -> dict[str, Any]:
    """A JSON line that must hold an object; `error(reason, detail)` ("bad_json" or "not_an_object") otherwise."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise error("bad_json", "the line is not JSON") from None
    if not isinstance(record, dict):
        raise error("not_an_object", f"the line holds a JSON {type(record).__name__}")
    return record


def parse_record(line: str | bytes, n_classes: int, *, keep_input: bool = True) -> CaptureRecord:
    """One capture line -> record. Raises MalformedRecord (with a reason from SKIP_REASONS) for anything else."""
    record = json_object(line, MalformedRecord)
    capture = record.get("captureData")
    if not isinstance(capture, dict):
        raise MalformedRecord("missing_capture_data", "no captureData object")
    probabilities = _probabilities(_output_value(capture.get("endpointOutput")), n_classes)
    metadata = record.get("eventMetadata")
    endpoint_input = capture.get("endpointInput")
    image = None
    if keep_input and isinstance(endpoint_input, dict) and endpoint_input.get("encoding") == "BASE64":
        image = _optional_text(endpoint_input, "data")
    return CaptureRecord(
        inference_time=_inference_time(metadata),
        probabilities=probabilities,
        event_id=_optional_text(metadata, "eventId"),
        inference_id=_optional_text(metadata, "inferenceId"),
        input_base64=image,
    )


@dataclass
class SkipLog:
    """Malformed lines by reason, plus the first few with where they were."""

    counts: Counter[str]
    examples: list[str]

    @classmethod
    def empty(cls) -> SkipLog:
        return cls(Counter(), [])

    def add(self, where: str, error: MalformedRecord) -> None:
        self.counts[error.reason] += 1
        if len(self.examples) < MAX_SKIP_EXAMPLES:
            self.examples.append(f"{where}: {error}")


def iter_records(
    sources: Iterable[Any], n_classes: int, skipped: SkipLog, *, keep_input: bool = True
) -> Iterator[CaptureRecord]:
    """Records from each source in turn, lazily: a source is an iterable of lines (str or bytes; a file object,
    `StreamingBody.iter_lines()`), a whole file body as one str/bytes, or an already parsed CaptureRecord.
    Sources are consumed one line at a time, so a generator that opens each file when reached keeps memory flat.
    A source's `name` attribute (file objects have one) labels the skip examples."""
    for index, source in enumerate(sources):
        if isinstance(source, CaptureRecord):
            yield source
            continue
        label = str(getattr(source, "name", f"source {index}"))
        lines = source.splitlines() if isinstance(source, str | bytes) else source
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield parse_record(line, n_classes, keep_input=keep_input)
            except MalformedRecord as error:
                skipped.add(f"{label} line {number}", error)
