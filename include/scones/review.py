"""Human approval of a registered version (Param `approval=manual`): what the reviewer reads, and what the answer
means for the version.

The training DAG's `review` task is Airflow's `ApprovalOperator` (Browse → Required Actions; `ReviewOperator`
keeps its answer in XCom). Its subject and body come from `request`: the candidate's evaluation beside the
champion's, and what Approve and Reject do. Its answer (`chosen_options`, `params_input`, `responded_by_user`)
becomes a `Verdict`; no answer within the review timeout is Airflow's default answer, Reject, with no reviewer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from include.scones.records import DeploymentRecord, EvaluationResult

APPROVE, REJECT = "Approve", "Reject"  # ApprovalOperator's two options
ANSWER_KEY = "answer"  # the review task's XCom with the answer (include/scones/operators.py: ReviewOperator)
NOTE_PARAM = "note"
NOTE_SCHEMA: dict[str, Any] = {
    "default": "",
    "type": "string",
    "title": "Note",
    "description": "Why you approve or reject it; stored with the version in the Model Registry.",
}


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _class_rows(candidate: Mapping[str, Any], champion: Mapping[str, Any] | None) -> list[str]:
    rows = []
    for name, scores in candidate.get("per_class", {}).items():
        theirs = (champion or {}).get("per_class", {}).get(name)
        mine = f"{_score(scores['precision'])} / {_score(scores['recall'])}"
        other = f"{_score(theirs['precision'])} / {_score(theirs['recall'])}" if theirs else "n/a"
        rows.append(f"| {name} precision / recall | {mine} | {other} |")
    return rows


def request(
    version: int,
    result: EvaluationResult,
    metrics: Mapping[str, Any],
    champion: DeploymentRecord | None,
    champion_metrics: Mapping[str, Any] | None,
    gate_reason: str,
    endpoint_name: str,
) -> dict[str, str]:
    """The subject and Markdown body of the approval request for version `version`."""
    threshold = metrics.get("threshold")
    head = f"Champion {champion.version_label}" if champion else "Champion (none live)"
    rows = [
        f"| Metric | Candidate v{version} | {head} |",
        "|---|---|---|",
        f"| Test accuracy | {_score(result.accuracy)} | {_score(champion.accuracy if champion else None)} |",
        f"| Share at or above the threshold {threshold} | {_score(result.pass_share_at_threshold)} | "
        f"{_score(champion.pass_share_at_threshold if champion else None)} |",
        f"| Accuracy among that share | {_score(result.accuracy_among_passed)} | "
        f"{_score(champion.accuracy_among_passed if champion else None)} |",
        *_class_rows(metrics, champion_metrics),
    ]
    labels = metrics.get("confusion_matrix", {}).get("labels", [])
    matrix = metrics.get("confusion_matrix", {}).get("matrix", [])
    confusion = [
        "| true \\ predicted | " + " | ".join(labels) + " |",
        "|---" * (len(labels) + 1) + "|",
        *(f"| {name} | " + " | ".join(str(v) for v in row) + " |" for name, row in zip(labels, matrix, strict=False)),
    ]
    body = "\n".join(
        [
            f"**Evaluation summary** of version {version}, training job `{result.training_job_name}`, on "
            f"{metrics.get('images', '?')} test images. The gate's rules passed: {gate_reason}.",
            "",
            *rows,
            "",
            "Confusion matrix of the candidate:",
            "",
            *confusion,
            "",
            f"Full evaluation: `{result.evaluation_uri}`.",
            "",
            f"**Approve** marks the version Approved and deploys it behind `{endpoint_name}`. **Reject** marks it "
            "Rejected and keeps the champion. Your note is stored with the version.",
        ]
    )
    return {"subject": f"Deploy version {version} of the vehicle classifier?", "body": body}


@dataclass(frozen=True)
class Verdict:
    approved: bool
    reviewer: str  # the person's name; "nobody" when the review timed out
    note: str

    def description(self) -> str:
        verb = "Approved" if self.approved else "Rejected"
        if self.reviewer == "nobody":
            return f"{verb}: no answer within the review timeout. {self.note}".strip()
        return f"{verb} by {self.reviewer}: {self.note}" if self.note else f"{verb} by {self.reviewer}."


def verdict(answer: Mapping[str, Any] | None) -> Verdict:
    """The ApprovalOperator's XCom as a decision. Anything but an explicit Approve is a rejection."""
    if not answer:
        return Verdict(False, "nobody", "")
    user = answer.get("responded_by_user") or {}
    reviewer = str(user.get("name") or user.get("id") or "nobody")
    note = str((answer.get("params_input") or {}).get(NOTE_PARAM) or "").strip()
    return Verdict(list(answer.get("chosen_options") or []) == [APPROVE], reviewer, note)
