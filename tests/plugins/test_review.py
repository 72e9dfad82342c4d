"""The Review page's app routes against the real local S3 (MiniStack): the queue the report publishes, the page,
and every answer of POST /review/labels, good and bad. Only Airflow's login is replaced (by a fixed user), as
in test_app.py; the login itself is tested in tests/ui."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from include.scones import labelling
from include.scones.monitoring.capture import CaptureRecord
from include.scones.monitoring.ground_truth import parse_label

CLASSES = ("bicycle", "motorcycle")
KEY = labelling.signing_key("test secret")
ORIGIN = {"Origin": "http://testserver"}


def png(shade: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (shade, shade, 255 - shade)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def record(number: int, confidence: float = 0.6) -> CaptureRecord:
    when = datetime(2026, 12, 4, 10, tzinfo=UTC) + timedelta(minutes=number)
    return CaptureRecord(when, (confidence, 1 - confidence), f"event-{number}", f"inference-{number}", png(number))


@pytest.fixture
def store(s3: Any, request: pytest.FixtureRequest) -> labelling.ReviewStore:
    bucket = "review-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:20]
    s3.create_bucket(Bucket=bucket)
    items = [labelling.ReviewItem.from_record(record(n), CLASSES, "ep") for n in range(3)]
    labelling.publish_queue(s3, bucket, items)
    return labelling.ReviewStore(bucket, lambda: s3)


@pytest.fixture
def client(plugin: ModuleType, store: labelling.ReviewStore) -> Iterator[TestClient]:
    app = plugin.create_app()
    app.dependency_overrides[plugin.get_review_store] = lambda: store
    app.dependency_overrides[plugin.airflow_user_name] = lambda: "alice"
    app.dependency_overrides[plugin.review_signing_key] = lambda: KEY
    with TestClient(app) as test_client:
        yield test_client


def ticket(store: labelling.ReviewStore, inference_id: str, user: str = "alice") -> dict[str, Any]:
    current = store.label(inference_id)
    issued = labelling.LabelTicket.issue(KEY, user, inference_id, "" if current is None else current.event_id)
    return {"state": issued.state, "issued": issued.issued, "signature": issued.signature}


def post(client: TestClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    return client.post("/review/labels", content=json.dumps(body), headers={
        "Content-Type": "application/json", **ORIGIN, **(headers or {})})  # fmt: skip


def ground_truth(s3: Any, bucket: str) -> list[dict[str, Any]]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="ground_truth/").get("Contents", [])
    return [json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()) for o in listed]


def test_the_page_lists_the_queue_newest_first_with_a_ticket_each(client: TestClient) -> None:
    response = client.get("/review/")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'nonce-" in policy and "frame-ancestors 'self'" in policy and "connect-src 'self'" in policy
    nonce = policy.split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in response.text
    ids = [part.split('"')[0] for part in response.text.split('data-inference-id="')[1:]]
    assert ids == ["inference-2", "inference-1", "inference-0"]
    assert response.text.count("data:image/png;base64,") == 3
    assert "3 in the queue" in response.text
    assert response.text.count('data-label="neither"') == 3


def test_a_label_is_stored_as_ground_truth_and_the_last_one_counts(client: TestClient, store: Any, s3: Any) -> None:
    first = post(client, {"inference_id": "inference-1", "label": "bicycle", **ticket(store, "inference-1")})
    assert first.status_code == 200, first.text
    answer = first.json()
    assert (answer["label"], answer["labeled_by"]) == ("bicycle", "alice")
    assert answer["ground_truth_key"].startswith("ground_truth/") and answer["ground_truth_key"].endswith(".jsonl")
    # the answer's ticket changes it again; the old one is now a replay
    replay = post(client, {"inference_id": "inference-1", "label": "motorcycle", **ticket_of({"state": ""}, first)})
    assert replay.status_code == 409 and replay.json()["code"] == "ConflictException"
    again = post(client, {"inference_id": "inference-1", "label": "neither", **ticket_of(answer)})
    assert again.status_code == 200, again.text
    assert store.label("inference-1").label == "neither"
    records = ground_truth(s3, store.bucket)
    assert len(records) == 2  # every label is kept; the state says which counts
    assert {r["groundTruthData"]["data"] for r in records} == {"bicycle", "neither"}
    assert all(r["eventMetadata"]["inferenceId"] == "inference-1" for r in records)
    assert all(r["groundTruthData"]["encoding"] == "CSV" and r["eventVersion"] == "0" for r in records)
    parsed = sorted((parse_label(json.dumps(r)) for r in records), key=lambda label: label.label_time)
    assert parsed[-1].label == "neither"
    page = client.get("/review/").text
    assert "Labelled neither by alice" in page


def ticket_of(answer: dict[str, Any], response: Any = None) -> dict[str, Any]:
    """The ticket fields of a POST answer (or of the request that came before it)."""
    if response is not None:
        sent = json.loads(response.request.content)
        return {name: sent[name] for name in ("state", "issued", "signature")}
    return {name: answer[name] for name in ("state", "issued", "signature")}


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"inference_id": "inference-404"}, 404, "ResourceNotFoundException"),
        ({"label": "unicycle"}, 400, "ValidationException"),
        ({"signature": "0" * 64}, 403, "AccessDeniedException"),
        ({"issued": 1}, 403, "AccessDeniedException"),
        ({"issued": "now"}, 400, "ValidationException"),
        ({"state": "ground_truth/made-up"}, 403, "AccessDeniedException"),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_writes_nothing(
    client: TestClient, store: Any, s3: Any, change: dict[str, Any], status: int, code: str
) -> None:
    body = {"inference_id": "inference-0", "label": "bicycle", **ticket(store, "inference-0")} | change
    response = post(client, body)
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert response.json()["detail"]
    assert ground_truth(s3, store.bucket) == [] and store.label("inference-0") is None


def test_another_users_ticket_is_a_forgery(client: TestClient, store: Any) -> None:
    response = post(client, {"inference_id": "inference-0", "label": "bicycle", **ticket(store, "inference-0", "bob")})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "", "Sec-Fetch-Site": "cross-site"},
    ],
)
def test_cross_origin_requests_are_refused(client: TestClient, store: Any, headers: dict[str, str]) -> None:
    body = {"inference_id": "inference-0", "label": "bicycle", **ticket(store, "inference-0")}
    sent = {"Content-Type": "application/json", **headers}
    if not headers.get("Origin"):
        sent.pop("Origin")
    response = client.post("/review/labels", content=json.dumps(body), headers=sent)
    assert (response.status_code, response.json()["code"]) == (403, "AccessDeniedException")
    assert store.label("inference-0") is None


def test_a_form_post_is_refused_as_unsupported_media(client: TestClient, store: Any) -> None:
    response = client.post("/review/labels", data={"inference_id": "inference-0"}, headers=ORIGIN)
    assert response.status_code == 415


def test_a_script_with_a_bearer_token_needs_no_origin(client: TestClient, store: Any) -> None:
    body = {"inference_id": "inference-2", "label": "motorcycle", **ticket(store, "inference-2")}
    response = client.post("/review/labels", content=json.dumps(body),
                           headers={"Content-Type": "application/json", "Authorization": "Bearer x"})  # fmt: skip
    assert response.status_code == 200, response.text
    # without the bearer header and without an Origin, a cookie-borne request is refused
    body = {"inference_id": "inference-0", "label": "motorcycle", **ticket(store, "inference-0")}
    response = client.post("/review/labels", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 403


def test_publishing_the_same_items_again_keeps_one_entry_each(s3: Any, store: labelling.ReviewStore) -> None:
    items = [labelling.ReviewItem.from_record(record(n), CLASSES, "ep") for n in range(2, 5)]
    assert labelling.publish_queue(s3, store.bucket, items) == 2
    assert labelling.publish_queue(s3, store.bucket, items) == 0
    assert [e.inference_id for e in store.entries()] == [f"inference-{n}" for n in (4, 3, 2, 1, 0)]
    assert labelling.publish_queue(s3, store.bucket, [], capacity=2) == 0
    assert [e.inference_id for e in store.entries()] == ["inference-4", "inference-3"]


def test_candidates_need_an_inference_id_and_an_image() -> None:
    assert labelling.candidate_key(record(1)) is not None
    when = datetime(2026, 12, 4, tzinfo=UTC)
    assert labelling.candidate_key(CaptureRecord(when, (0.5, 0.5), "e", None, png(1))) is None
    assert labelling.candidate_key(CaptureRecord(when, (0.5, 0.5), "e", "i", None)) is None
