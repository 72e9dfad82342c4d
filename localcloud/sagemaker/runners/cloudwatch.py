"""Ship a process's output to CloudWatch Logs (MiniStack) the way SageMaker's log agent does.

Lines are buffered and sent in batches by a background thread about once a second and once
more on close. CloudWatch is a convenience, not the job: when MiniStack refuses or is gone the
lines are dropped with a warning in the server log and the job carries on (the runner keeps a
local copy of every line)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
# PutLogEvents limits: 10,000 events and 1,048,576 bytes per batch, counting 26 bytes per event.
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD_BYTES = 26
MAX_MESSAGE_BYTES = 256 * 1024 - EVENT_OVERHEAD_BYTES


def ensure_log_group(logs: Any, group: str) -> None:
    try:
        logs.create_log_group(logGroupName=group)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise


def _event_size(message: str) -> int:
    return len(message.encode("utf-8")) + EVENT_OVERHEAD_BYTES


def _clip(message: str) -> str:
    encoded = message.encode("utf-8")
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return message
    return encoded[:MAX_MESSAGE_BYTES].decode("utf-8", errors="ignore")


def batches(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split events (already in time order) into PutLogEvents-sized batches."""
    result: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for event in events:
        event_size = _event_size(event["message"])
        if current and (len(current) >= MAX_BATCH_EVENTS or size + event_size > MAX_BATCH_BYTES):
            result.append(current)
            current, size = [], 0
        current.append(event)
        size += event_size
    if current:
        result.append(current)
    return result


class LogStream:
    """One CloudWatch log stream fed line by line; `close()` sends what is still buffered."""

    def __init__(self, logs: Any, group: str, stream: str) -> None:
        self.logs = logs
        self.group = group
        self.stream = stream
        self._pending: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        self._closed = threading.Event()
        self._available = self._create()
        self._flusher = threading.Thread(target=self._flush_periodically, name=f"logs-{stream}", daemon=True)
        self._flusher.start()

    def _create(self) -> bool:
        try:
            ensure_log_group(self.logs, self.group)
            self.logs.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        except (BotoCoreError, ClientError) as error:
            log.warning(
                "CloudWatch Logs unavailable for %s/%s, keeping only the local log: %s", self.group, self.stream, error
            )
            return False
        return True

    def write(self, line: str) -> None:
        message = line.rstrip("\r\n")
        if not message or not self._available:
            return  # CloudWatch rejects empty messages
        with self._pending_lock:
            self._pending.append({"timestamp": int(time.time() * 1000), "message": _clip(message)})

    def flush(self) -> None:
        with self._pending_lock:
            events, self._pending = self._pending, []
        for batch in batches(events):
            try:
                self.logs.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=batch)
            except (BotoCoreError, ClientError) as error:
                log.warning("dropped %d log events for %s: %s", len(batch), self.stream, error)

    def _flush_periodically(self) -> None:
        while not self._closed.wait(FLUSH_INTERVAL_S):
            self.flush()

    def close(self) -> None:
        self._closed.set()
        self._flusher.join(timeout=FLUSH_INTERVAL_S * 5)
        self.flush()
