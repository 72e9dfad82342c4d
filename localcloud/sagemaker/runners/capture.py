"""Endpoint data capture in SageMaker's exact format (contracts doc section 5), delivered to S3.

Two halves:
- pure functions that decide and shape what is captured: `should_capture`, `encode`,
  `capture_sides`, `build_record`, `capture_key`;
- `CaptureWriter`, which loses no record S3 can take: `record()` only appends one JSON line to a local
  spool file (no S3 call on the invoke path), a background thread rotates the spool files every
  `flush_interval_s` and uploads each as one `.jsonl` object, deleting a file only after its upload
  succeeded, or after `max_upload_attempts` failed uploads (a destination that stays unwritable must not
  be retried for ever). Spool files left behind by a crashed process are uploaded by the next writer, and
  `retire()` delivers and then removes the spool of a deleted endpoint.

Spool layout (all under spool_dir):
    <EndpointName>--<VariantName>--<hash of the three>/destination.json   where the files go
    <EndpointName>--<VariantName>--<hash of the three>/<epoch ms>-<uuid4>.jsonl
One spool file never spans two UTC hours, so its S3 key's hour folder matches all its records.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import shutil
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from localcloud.sagemaker.models.invocation import Invocation, InvocationResult
from localcloud.sagemaker.runners.artifacts import parse_s3_uri

log = logging.getLogger(__name__)

EVENT_VERSION = "0"
DESTINATION_FILE = "destination.json"
SPOOL_SUFFIX = ".jsonl"
# Records reach S3 within about this long. Short, because a report that runs right after traffic (the workflow
# DAG's smoke executions, then its report, with SCONES_REPORT_LAG_MINUTES=0 locally) must find them delivered;
# at 2 s it sometimes did not, and those records fell between two report windows.
FLUSH_INTERVAL_S = 0.5
# About 5 minutes of retries: long enough to ride out a MiniStack restart, bounded for a bucket deleted under a
# live endpoint. Counted per server process.
MAX_UPLOAD_ATTEMPTS = int(300 / FLUSH_INTERVAL_S)


# --- pure functions ---------------------------------------------------------------------------
def should_capture(sampling_percentage: float, rng: random.Random) -> bool:
    """Sampling is decided per request; 0 and 100 are exact (no random draw can flip them)."""
    if sampling_percentage >= 100:
        return True
    if sampling_percentage <= 0:
        return False
    return rng.random() * 100 < sampling_percentage


def media_type(content_type: str | None) -> str:
    """`Application/JSON; charset=utf-8` -> `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def encode(
    data: bytes, content_type: str | None, capture_content_type_header: dict[str, Any] | None
) -> tuple[str, str]:
    """(encoding, text) for one side of a record. CSV/JSON only when the media type is listed and the
    payload is valid UTF-8 (a record must always be writable); everything else is BASE64."""
    header = capture_content_type_header or {}
    observed = media_type(content_type)
    for encoding, listed in (("CSV", header.get("CsvContentTypes")), ("JSON", header.get("JsonContentTypes"))):
        if listed and observed in {media_type(t) for t in listed}:
            try:
                return encoding, data.decode("utf-8")
            except UnicodeDecodeError:
                break
    return "BASE64", base64.b64encode(data).decode("ascii")


def capture_sides(capture_options: Iterable[dict[str, str]] | None) -> tuple[bool, bool]:
    """(capture input?, capture output?) from CaptureOptions[{CaptureMode}]."""
    modes = {option.get("CaptureMode") for option in capture_options or []}
    both = "InputAndOutput" in modes
    return both or "Input" in modes, both or "Output" in modes


def inference_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_record(
    *,
    capture_options: Iterable[dict[str, str]] | None,
    capture_content_type_header: dict[str, Any] | None,
    input_body: bytes,
    input_content_type: str,
    output_body: bytes,
    output_content_type: str,
    when: datetime,
    inference_id: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """One capture record; only the sides chosen by CaptureMode appear."""
    capture_input, capture_output = capture_sides(capture_options)
    capture_data: dict[str, Any] = {}
    sides = (
        (capture_input, "endpointInput", "INPUT", input_body, input_content_type),
        (capture_output, "endpointOutput", "OUTPUT", output_body, output_content_type),
    )
    for wanted, member, mode, body, content_type in sides:
        if wanted:
            encoding, text = encode(body, content_type, capture_content_type_header)
            capture_data[member] = {
                "observedContentType": content_type,
                "mode": mode,
                "data": text,
                "encoding": encoding,
            }
    metadata = {"eventId": event_id or str(uuid.uuid4()), "inferenceTime": inference_time(when)}
    if inference_id:
        metadata["inferenceId"] = inference_id
    return {"captureData": capture_data, "eventMetadata": metadata, "eventVersion": EVENT_VERSION}


def capture_key(
    destination_s3_uri: str, endpoint: str, variant: str, when: datetime, file_id: str | None = None
) -> str:
    """`<prefix>/<Endpoint>/<Variant>/YYYY/MM/DD/HH/MM-SS-mmm-<uuid4>.jsonl`, a key in the destination's
    bucket (the prefix is the destination URI's path; empty when it names only a bucket)."""
    _, prefix = parse_s3_uri(destination_s3_uri)
    utc = when.astimezone(UTC)
    name = f"{utc:%M-%S}-{utc.microsecond // 1000:03d}-{file_id or uuid.uuid4()}{SPOOL_SUFFIX}"
    parts = [prefix.strip("/"), endpoint, variant, f"{utc:%Y/%m/%d/%H}", name]
    return "/".join(p for p in parts if p)


def complete_lines(spooled: bytes) -> bytes:
    """A process killed inside record() can leave half a line; that call never answered its caller,
    so the fragment is dropped rather than shipped as a corrupt JSON line."""
    return spooled[: spooled.rfind(b"\n") + 1]


def enabled_sampling(data_capture_config: dict[str, Any] | None) -> float | None:
    """The sampling percentage when capture is on for this config, else None."""
    # The API documents EnableCapture as "defaults to enabled" when it is omitted.
    if not data_capture_config or not data_capture_config.get("EnableCapture", True):
        return None
    if not data_capture_config.get("DestinationS3Uri"):
        return None
    return float(data_capture_config.get("InitialSamplingPercentage", 0))


def _endpoint_of(stream: Path) -> str | None:
    """The endpoint a spool folder belongs to, from its destination file (its name alone is ambiguous)."""
    try:
        return str(json.loads((stream / DESTINATION_FILE).read_text())["EndpointName"])
    except (OSError, ValueError, KeyError):
        return None


# --- the writer -------------------------------------------------------------------------------
@dataclass
class _OpenSpool:
    path: Path
    handle: IO[bytes]  # unbuffered: each record is one write() to the OS, so a crash right after keeps it
    hour: str  # YYYYMMDDHH (UTC) of every record in this file


class CaptureWriter:
    """Spools capture records locally and ships them to S3 from a background thread."""

    def __init__(
        self,
        s3_client: Any,
        spool_dir: Path,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        rng: random.Random | None = None,
        max_upload_attempts: int = MAX_UPLOAD_ATTEMPTS,
    ):
        self.s3 = s3_client
        self.spool_dir = spool_dir
        self.flush_interval_s = flush_interval_s
        self.max_upload_attempts = max_upload_attempts
        self._failed_uploads: dict[Path, int] = {}  # spool file -> failed uploads so far
        self._rng = rng or random.Random()
        self._lock = threading.Lock()  # guards _open and spool file creation/rotation
        self._upload_lock = threading.Lock()  # one uploader at a time (thread vs. close())
        self._open: dict[Path, _OpenSpool] = {}  # stream dir -> its current spool file
        self._stream_dirs: dict[tuple[str, str, str, str | None], Path] = {}
        self._stop = threading.Event()
        spool_dir.mkdir(parents=True, exist_ok=True)
        # The thread's first round runs at once: it uploads leftovers from a crashed predecessor.
        self._thread = threading.Thread(target=self._run, name="data-capture-flusher", daemon=True)
        self._thread.start()

    # hot path ---------------------------------------------------------------------------------
    def record(
        self,
        endpoint_name: str,
        variant_name: str,
        data_capture_config: dict[str, Any] | None,
        invocation: Invocation,
        result: InvocationResult,
    ) -> bool:
        """Capture one successful invocation if the config says so. Returns whether it was spooled."""
        sampling = enabled_sampling(data_capture_config)
        if sampling is None or not should_capture(sampling, self._rng):
            return False
        assert data_capture_config is not None
        when = datetime.now(UTC)
        record = build_record(
            capture_options=data_capture_config.get("CaptureOptions"),
            capture_content_type_header=data_capture_config.get("CaptureContentTypeHeader"),
            input_body=invocation.body,
            input_content_type=invocation.content_type,
            output_body=result.body,
            output_content_type=result.content_type,
            when=when,
            inference_id=invocation.inference_id,
        )
        destination = data_capture_config["DestinationS3Uri"]
        self.append(destination, endpoint_name, variant_name, record, when, data_capture_config.get("KmsKeyId"))
        return True

    def append(
        self,
        destination: str,
        endpoint: str,
        variant: str,
        record: dict[str, Any],
        when: datetime,
        kms_key_id: str | None = None,
    ) -> None:
        """Append one record line to its stream's spool file (flushed to the OS, so a crash keeps it)."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        stream = self._stream_dir(destination, endpoint, variant, kms_key_id)
        hour = f"{when.astimezone(UTC):%Y%m%d%H}"
        with self._lock:
            spool = self._open.get(stream)
            if spool is not None and spool.hour != hour:
                spool.handle.close()
                spool = None
            if spool is None:
                spool = self._new_spool(stream, destination, endpoint, variant, hour, when, kms_key_id)
                self._open[stream] = spool
            written = 0
            while written < len(line):  # a raw write may be short; the line must land whole
                written += spool.handle.write(line[written:]) or 0

    # flushing ---------------------------------------------------------------------------------
    def flush(self) -> int:
        """Rotate every open spool file and upload every closed one. Returns how many were uploaded;
        a failed upload keeps its file for the next round."""
        with self._upload_lock:
            with self._lock:
                for spool in self._open.values():
                    spool.handle.close()
                self._open.clear()
                ready = sorted(self.spool_dir.glob(f"*/*{SPOOL_SUFFIX}"))
            return sum(self._upload(path) for path in ready)

    def close(self) -> None:
        """Stop the background thread and deliver everything spooled so far, synchronously."""
        self._stop.set()
        self._thread.join(timeout=self.flush_interval_s + 30)
        self.flush()

    def pending_files(self) -> list[Path]:
        return sorted(self.spool_dir.glob(f"*/*{SPOOL_SUFFIX}"))

    def retire(self, endpoint: str) -> None:
        """The endpoint is deleted: one last upload of each of its spool files, then its spool folders go."""
        with self._upload_lock:
            with self._lock:
                streams = [s for s in self.spool_dir.iterdir() if s.is_dir() and _endpoint_of(s) == endpoint]
                for stream in streams:
                    spool = self._open.pop(stream, None)
                    if spool is not None:
                        spool.handle.close()
                self._stream_dirs = {k: v for k, v in self._stream_dirs.items() if k[1] != endpoint}
            for stream in streams:
                undelivered = [path for path in sorted(stream.glob(f"*{SPOOL_SUFFIX}")) if not self._upload(path)]
                for path in undelivered:
                    self._failed_uploads.pop(path, None)
                if undelivered:
                    log.error("endpoint %s deleted; dropping %d undelivered capture files", endpoint, len(undelivered))
                shutil.rmtree(stream, ignore_errors=True)

    def _run(self) -> None:
        while True:
            try:
                self.flush()
            except Exception:  # the flusher must outlive any one bad round
                log.exception("data capture flush failed; will retry")
            if self._stop.wait(self.flush_interval_s):
                return

    def _upload(self, path: Path) -> bool:
        try:
            target = json.loads((path.parent / DESTINATION_FILE).read_text())
            millis, file_id = path.stem.split("-", 1)
            when = datetime.fromtimestamp(int(millis) / 1000, UTC)
            bucket, _ = parse_s3_uri(target["DestinationS3Uri"])
            key = capture_key(target["DestinationS3Uri"], target["EndpointName"], target["VariantName"], when, file_id)
            body = complete_lines(path.read_bytes())
            if body:
                # SSE-KMS, as SageMaker writes captures: the config's key, else the account's aws/s3 key.
                kms = {"SSEKMSKeyId": target["KmsKeyId"]} if target.get("KmsKeyId") else {}
                self.s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/jsonl",
                    ServerSideEncryption="aws:kms",
                    **kms,
                )
        except Exception as error:
            failures = self._failed_uploads[path] = self._failed_uploads.get(path, 0) + 1
            if failures >= self.max_upload_attempts:
                log.error("data capture upload of %s failed %d times; dropping it: %s", path, failures, error)
                self._failed_uploads.pop(path, None)
                path.unlink(missing_ok=True)
            elif failures == 1:  # one warning per file, not one per flush round
                log.warning("data capture upload of %s failed (kept for retry): %s", path, error)
            return False
        self._failed_uploads.pop(path, None)
        path.unlink()
        return True

    # spool files ------------------------------------------------------------------------------
    def _stream_dir(self, destination: str, endpoint: str, variant: str, kms_key_id: str | None = None) -> Path:
        key = (destination, endpoint, variant, kms_key_id)
        stream = self._stream_dirs.get(key)  # on every record: hashing and path building are not free
        if stream is None:
            # Endpoint and variant names are [a-zA-Z0-9-], safe in a path. The hash keeps destinations apart, and
            # endpoint "a--b" with variant "c" apart from endpoint "a" with variant "b--c".
            named = f"{destination}\n{endpoint}\n{variant}\n{kms_key_id or ''}"
            digest = hashlib.sha256(named.encode()).hexdigest()[:12]
            stream = self._stream_dirs[key] = self.spool_dir / f"{endpoint}--{variant}--{digest}"
        return stream

    def _new_spool(
        self,
        stream: Path,
        destination: str,
        endpoint: str,
        variant: str,
        hour: str,
        when: datetime,
        kms_key_id: str | None = None,
    ) -> _OpenSpool:
        target = stream / DESTINATION_FILE
        if not target.exists():
            stream.mkdir(parents=True, exist_ok=True)
            partial = stream / f".{DESTINATION_FILE}.tmp"
            described = {"DestinationS3Uri": destination, "EndpointName": endpoint, "VariantName": variant}
            partial.write_text(json.dumps(described | ({"KmsKeyId": kms_key_id} if kms_key_id else {})))
            os.replace(partial, target)  # atomic: a spool file never exists without its destination
        path = stream / f"{int(when.timestamp() * 1000)}-{uuid.uuid4()}{SPOOL_SUFFIX}"
        return _OpenSpool(path=path, handle=path.open("ab", buffering=0), hour=hour)
