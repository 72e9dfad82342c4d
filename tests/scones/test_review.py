"""review: what the reviewer reads (the evaluation beside the champion's) and what an answer means."""

from __future__ import annotations

from typing import Any

from include.scones import review
from tests.scones.helpers import deployment_record, evaluation_result

RESULT = evaluation_result()
METRICS: dict[str, Any] = {
    "images": 200,
    "threshold": 0.93,
    "per_class": {
        "bicycle": {"precision": 0.95, "recall": 0.96, "support": 100},
        "motorcycle": {"precision": 0.9596, "recall": 0.95, "support": 100},
    },
    "confusion_matrix": {"labels": ["bicycle", "motorcycle"], "matrix": [[96, 4], [5, 95]]},
}
CHAMPION_METRICS = {"per_class": {"bicycle": {"precision": 0.9, "recall": None, "support": 100}}}


def test_the_request_sets_the_candidate_beside_the_champion() -> None:
    champion = deployment_record(accuracy=0.95, model_package_version=2)
    request = review.request(7, RESULT, METRICS, champion, CHAMPION_METRICS, "deploying: fine", "ep")
    assert request["subject"] == "Deploy version 7 of the vehicle classifier?"
    body = request["body"]
    assert "| Metric | Candidate v7 | Champion v2 (scones-20250101-000000-aaaaaaaa) |" in body
    assert "| Test accuracy | 0.9550 | 0.9500 |" in body
    assert "| Share at or above the threshold 0.93 | 0.8200 | 0.8000 |" in body
    assert "| bicycle precision / recall | 0.9500 / 0.9600 | 0.9000 / n/a |" in body
    assert "| motorcycle precision / recall | 0.9596 / 0.9500 | n/a |" in body  # the champion lacks the class
    assert "| bicycle | 96 | 4 |" in body and "| motorcycle | 5 | 95 |" in body
    assert "on 200 test images. The gate's rules passed: deploying: fine." in body
    assert RESULT.evaluation_uri in body and "behind `ep`" in body


def test_with_no_champion_the_request_says_so() -> None:
    body = review.request(1, RESULT, METRICS, None, None, "deploying", "ep")["body"]
    assert "| Metric | Candidate v1 | Champion (none live) |" in body
    assert "| Test accuracy | 0.9550 | n/a |" in body


def answer(option: str, user: dict[str, str] | None, note: str = "") -> dict[str, Any]:
    return {"chosen_options": [option], "params_input": {"note": note}, "responded_by_user": user}


def test_an_approval_names_the_reviewer_and_keeps_the_note() -> None:
    verdict = review.verdict(answer("Approve", {"id": "1", "name": "ada"}, "  looks right "))
    assert verdict == review.Verdict(True, "ada", "looks right")
    assert verdict.description() == "Approved by ada: looks right"
    assert review.verdict(answer("Approve", {"id": "7", "name": ""})).description() == "Approved by 7."


def test_a_rejection_and_a_timeout() -> None:
    assert review.verdict(answer("Reject", {"id": "1", "name": "bo"}, "no")).description() == "Rejected by bo: no"
    timed_out = review.verdict(answer("Reject", None))  # Airflow's default answer at the timeout
    assert not timed_out.approved and timed_out.reviewer == "nobody"
    assert timed_out.description() == "Rejected: no answer within the review timeout."
    assert not review.verdict(None).approved
    assert not review.verdict({"chosen_options": ["Approve", "Reject"]}).approved  # only a clear Approve counts
