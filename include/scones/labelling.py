"""The review queue and its labels: the inferences the state machine filtered (confidence below the threshold),
labelled by a person on the plugin's Review page (Browse → Scones review), and stored as ground truth in SageMaker
Model Monitor's format (monitoring/ground_truth.py).

S3 layout under the project's bucket (`review/` is Settings.review_prefix):

    review/index.json                   the queue, newest inference first: id, time, predicted class, confidence
    review/items/<sha256 of id>.json    one queued inference: the above plus probabilities and the captured image
    review/labels/<sha256 of id>.json   its current label: the last one given (LabelState)
    ground_truth/YYYY/MM/DD/HH/<MMSS>-<µs>-<hex>.jsonl
                                        every label ever given, one object each, dated when it was given

The monitoring report fills the queue (monitoring/live.py offers each filtered record under `candidate_key`, then
`publish_queue`): a seeded uniform sample of at most
Settings.review_queue_per_report distinct filtered inferences per report, each with its InferenceId (a capture
without one could never be merged with its label, so it is not queued). Re-queuing an id keeps one entry.

A label is accepted only with a `LabelTicket` the page was given for that item and user: an HMAC over the user,
the inference id and the item's label state when the page was drawn. So a forged request (no or a wrong
signature) and a replayed one (the state has moved on since) are refused, and every accepted label gets a new
ticket, which is how the page changes a label again. The last label counts; the ground truth keeps them all.

Plain logic over a boto3 S3 client (duck-typed), no Airflow or FastAPI import.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from include.scones.monitoring.capture import CaptureRecord, utc_text
from include.scones.monitoring.ground_truth import GROUND_TRUTH_PREFIX, NEITHER, label_key, label_line

log = logging.getLogger(__name__)

REVIEW_PREFIX = "review"
INDEX_CAPACITY = 5000  # queue entries kept in index.json; older ones drop off (their labels stay in S3)
TICKET_LIFETIME_S = 12 * 3600
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class ReviewError(Exception):
    """A request the review page refuses: an HTTP status, an AWS-style error code and a message fit to show."""

    status = 400
    code = "ValidationException"


class UnknownInference(ReviewError):
    status, code = 404, "ResourceNotFoundException"


class UnknownClass(ReviewError):
    status, code = 400, "ValidationException"


class ForgedRequest(ReviewError):
    status, code = 403, "AccessDeniedException"


class StaleRequest(ReviewError):
    status, code = 409, "ConflictException"


def id_key(inference_id: str) -> str:
    """The S3-safe stem of an inference id (ids may hold any printable character, `/` included)."""
    return hashlib.sha256(inference_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Layout:
    prefix: str = REVIEW_PREFIX
    ground_truth_prefix: str = GROUND_TRUTH_PREFIX

    @property
    def index(self) -> str:
        return f"{self.prefix}/index.json"

    def item(self, inference_id: str) -> str:
        return f"{self.prefix}/items/{id_key(inference_id)}.json"

    def label(self, inference_id: str) -> str:
        return f"{self.prefix}/labels/{id_key(inference_id)}.json"

    @property
    def labels_prefix(self) -> str:
        return f"{self.prefix}/labels/"


@dataclass(frozen=True)
class QueueEntry:
    """One line of index.json: enough to list the queue without reading the items."""

    inference_id: str
    inference_time: str
    predicted: str
    confidence: float

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> QueueEntry:
        return cls(str(data["inference_id"]), str(data["inference_time"]), str(data["predicted"]),
                   float(data["confidence"]))  # fmt: skip


@dataclass(frozen=True)
class ReviewItem:
    """A queued inference with what the page shows: its captured image (base64, as captured) and probabilities."""

    inference_id: str
    inference_time: str
    predicted: str
    confidence: float
    probabilities: dict[str, float]
    image_base64: str
    endpoint_name: str
    classes: tuple[str, ...]

    @classmethod
    def from_record(cls, record: CaptureRecord, classes: Sequence[str], endpoint_name: str) -> ReviewItem:
        assert record.inference_id is not None and record.input_base64 is not None
        return cls(
            inference_id=record.inference_id,
            inference_time=utc_text(record.inference_time),
            predicted=classes[record.predicted],
            confidence=round(record.confidence, 6),
            probabilities={name: round(p, 6) for name, p in zip(classes, record.probabilities, strict=True)},
            image_base64=record.input_base64,
            endpoint_name=endpoint_name,
            classes=tuple(classes),
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ReviewItem:
        return cls(**{**data, "classes": tuple(data["classes"]), "probabilities": dict(data["probabilities"])})

    def entry(self) -> QueueEntry:
        return QueueEntry(self.inference_id, self.inference_time, self.predicted, self.confidence)

    def image_bytes(self) -> bytes:
        return base64.b64decode(self.image_base64)

    @property
    def choices(self) -> tuple[str, ...]:
        """What a person may answer: one of the model's classes, or neither."""
        return (*self.classes, NEITHER)


@dataclass(frozen=True)
class LabelState:
    """The current label of one item: the last one given. `event_id` names that label (and the ground-truth
    object holding it); a ticket drawn before it was given no longer matches."""

    inference_id: str
    label: str
    event_id: str
    label_time: str
    labeled_by: str
    ground_truth_key: str

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> LabelState:
        return cls(**{name: str(data[name]) for name in cls.__dataclass_fields__})


# --- filling the queue (the monitoring report) ---------------------------------------------------------------
def candidate_key(record: CaptureRecord) -> bytes | None:
    """The dedup key of a record that can be queued (an InferenceId and a captured image), else None."""
    if record.inference_id is None or record.input_base64 is None:
        return None
    return hashlib.sha256(record.inference_id.encode("utf-8")).digest()


def _read_json(client: Any, bucket: str, key: str) -> Any | None:
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as error:
        response = getattr(error, "response", None)
        if isinstance(response, dict) and str(response.get("Error", {}).get("Code")) in _MISSING_CODES:
            return None
        raise
    return json.loads(body)


def _put_json(client: Any, bucket: str, key: str, value: Any) -> None:
    body = json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")
    client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def publish_queue(
    client: Any, bucket: str, items: Iterable[ReviewItem], layout: Layout = Layout(), capacity: int = INDEX_CAPACITY
) -> int:
    """Write the items and merge them into index.json (one entry per id, newest inference first, at most
    `capacity`). Idempotent: publishing the same items again leaves the same queue. Returns the entries added."""
    items = list(items)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda item: _put_json(client, bucket, layout.item(item.inference_id), asdict(item)), items))
    current = [QueueEntry.from_mapping(entry) for entry in (_read_json(client, bucket, layout.index) or {}).get(
        "entries", [])]  # fmt: skip
    known = {entry.inference_id for entry in current}
    added = [item.entry() for item in items if item.inference_id not in known]
    entries = sorted([*current, *added], key=lambda entry: entry.inference_time, reverse=True)[:capacity]
    _put_json(client, bucket, layout.index, {"entries": [asdict(entry) for entry in entries]})
    return len(added)


# --- tickets --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelTicket:
    """What the page sends back with a label: the item state it saw, when, and the signature over both."""

    state: str  # the LabelState.event_id the page saw, "" when the item had no label
    issued: int  # Unix seconds
    signature: str

    @classmethod
    def issue(cls, key: bytes, user: str, inference_id: str, state: str, now: float | None = None) -> LabelTicket:
        issued = int(time.time() if now is None else now)
        return cls(state, issued, _sign(key, user, inference_id, state, issued))

    def check(self, key: bytes, user: str, inference_id: str, now: float | None = None) -> None:
        """ForgedRequest unless this ticket was issued by this server, to this user, for this item, recently."""
        expected = _sign(key, user, inference_id, self.state, self.issued)
        if not hmac.compare_digest(expected, self.signature):
            raise ForgedRequest("the request's signature does not match: reload the review page and try again")
        age = (time.time() if now is None else now) - self.issued
        if not -60 <= age <= TICKET_LIFETIME_S:
            raise ForgedRequest("the review page is too old to label from: reload it and try again")


def _sign(key: bytes, user: str, inference_id: str, state: str, issued: int) -> str:
    message = "\x00".join(("scones-review-label", user, inference_id, state, str(issued))).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signing_key(secret: str) -> bytes:
    """The ticket key, derived from a server secret (Airflow's [api] secret_key) for this one use."""
    return hmac.new(secret.encode("utf-8"), b"scones review tickets", hashlib.sha256).digest()


# --- the store the page reads and writes ------------------------------------------------------------------------
@dataclass(frozen=True)
class PageRow:
    item: ReviewItem
    label: LabelState | None
    ticket: LabelTicket


@dataclass
class ReviewStore:
    """The review queue in S3. `client_factory` builds the S3 client on first use."""

    bucket: str
    client_factory: Callable[[], Any]
    layout: Layout = Layout()
    _client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    def entries(self) -> list[QueueEntry]:
        data = _read_json(self.client, self.bucket, self.layout.index) or {}
        return [QueueEntry.from_mapping(entry) for entry in data.get("entries", [])]

    def item(self, inference_id: str) -> ReviewItem | None:
        data = _read_json(self.client, self.bucket, self.layout.item(inference_id))
        return None if data is None else ReviewItem.from_mapping(data)

    def label(self, inference_id: str) -> LabelState | None:
        data = _read_json(self.client, self.bucket, self.layout.label(inference_id))
        return None if data is None else LabelState.from_mapping(data)

    def page(self, key: bytes, user: str, limit: int, offset: int = 0) -> tuple[list[PageRow], int]:
        """One page of the queue, newest first, each row with its current label and a fresh ticket; and the
        queue's length."""
        entries = self.entries()
        chosen = entries[offset : offset + limit]

        def row(entry: QueueEntry) -> PageRow | None:
            item, label = self.item(entry.inference_id), self.label(entry.inference_id)
            if item is None:
                return None
            state = "" if label is None else label.event_id
            return PageRow(item, label, LabelTicket.issue(key, user, item.inference_id, state))

        with ThreadPoolExecutor(max_workers=8) as pool:
            rows = [r for r in pool.map(row, chosen) if r is not None]
        return rows, len(entries)

    def save_label(
        self, key: bytes, user: str, inference_id: str, label: str, ticket: LabelTicket, now: datetime | None = None
    ) -> tuple[LabelState, LabelTicket]:
        """Check and store one label: UnknownInference, UnknownClass, ForgedRequest or StaleRequest (checked in
        that order, before anything is written); then the ground-truth object, then the item's label state.
        Returns the new state and the ticket for the next change."""
        item = self.item(inference_id)
        if item is None:
            raise UnknownInference(f"no queued inference has the id {inference_id[:80]!r}")
        if label not in item.choices:
            raise UnknownClass(f"{label[:40]!r} is not an answer for this model: use one of {', '.join(item.choices)}")
        ticket.check(key, user, inference_id)
        current = self.label(inference_id)
        if (current.event_id if current else "") != ticket.state:
            raise StaleRequest(
                "this item was labelled after the page was drawn (a replayed or stale request); reload the page "
                f"to see its current label{'' if current is None else f' ({current.label!r})'}"
            )
        when = (now or datetime.now(UTC)).astimezone(UTC)
        event = secrets.token_hex(4)
        ground_truth_key = label_key(when, event, self.layout.ground_truth_prefix)
        line = label_line(inference_id, label, when, user)
        self.client.put_object(Bucket=self.bucket, Key=ground_truth_key, Body=line.encode("utf-8"),
                               ContentType="application/jsonl")  # fmt: skip
        state = LabelState(inference_id, label, ground_truth_key, utc_text(when), user, ground_truth_key)
        _put_json(self.client, self.bucket, self.layout.label(inference_id), asdict(state))
        log.info("%s labelled %s as %s (%s)", user, inference_id, label, ground_truth_key)
        return state, LabelTicket.issue(key, user, inference_id, state.event_id)

    def current_labels(self) -> list[LabelState]:
        """Every item's current label (the last one given), for the training set; none while the bucket does not
        exist yet (a first run)."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            keys = [
                obj["Key"]
                for page in paginator.paginate(Bucket=self.bucket, Prefix=self.layout.labels_prefix)
                for obj in page.get("Contents", [])
            ]
        except Exception as error:
            if str(getattr(error, "response", {}).get("Error", {}).get("Code")) == "NoSuchBucket":
                return []
            raise
        with ThreadPoolExecutor(max_workers=8) as pool:
            docs = pool.map(lambda k: _read_json(self.client, self.bucket, k), keys)
            return [LabelState.from_mapping(doc) for doc in docs if doc is not None]
