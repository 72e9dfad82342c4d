"""What the plugin's Review page (Browse → Scones review) serves, as plain logic: the page itself, the checks of a
label request before the store sees it (origin, body), and the answer. No Airflow or FastAPI import; the queue
and its labels are include/scones/labelling.py.

Cross-site requests are refused three ways: the POST must be JSON (a cross-site form cannot send it, and a
cross-site fetch of it needs a CORS preflight this app never grants); a browser's `Origin` (or, without one,
`Sec-Fetch-Site`) must be this server's own; and the ticket (labelling.LabelTicket) must be signed for this user
and item. A caller with an `Authorization: Bearer` header and no Origin is a script, not a browser, and passes
the origin check (it still needs a ticket).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from include.scones.labelling import ForgedRequest, LabelState, LabelTicket, PageRow, ReviewError
from include.scones.monitoring.capture import display_time
from include.scones.monitoring.templating import render

PAGE_SIZE = 48
MAX_BODY_BYTES = 4096


class UnsupportedMediaType(ReviewError):
    status, code = 415, "UnsupportedMediaTypeException"


def content_security_policy(nonce: str) -> str:
    """The page's own script (by nonce), its fetches to this origin, inline images and styles; framed by the
    Airflow UI of the same origin only."""
    return (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
    )


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def media_type(image_base64: str) -> str:
    """The captured image's type from its first bytes (the page shows PNG, JPEG, GIF and WebP)."""
    for prefix, kind in (("iVBORw0KGgo", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"),
                         ("UklGR", "image/webp")):  # fmt: skip
        if image_base64.startswith(prefix):
            return kind
    return "application/octet-stream"


@dataclass(frozen=True)
class ShownRow:
    item: Any
    label: LabelState | None
    ticket: LabelTicket
    media_type: str
    when: str


def render_page(
    rows: Sequence[PageRow], total: int, offset: int, bucket: str, ground_truth_prefix: str, nonce: str,
    page_size: int = PAGE_SIZE,
) -> str:  # fmt: skip
    shown = [
        ShownRow(
            row.item, row.label, row.ticket, media_type(row.item.image_base64), display_time(row.item.inference_time)
        )  # fmt: skip
        for row in rows
    ]
    return render(
        "review.html.j2",
        rows=shown,
        total=total,
        offset=offset,
        bucket=bucket,
        ground_truth_prefix=ground_truth_prefix,
        nonce=nonce,
        choices=list(rows[0].item.choices if rows else ()),
        previous_offset=max(offset - page_size, 0) if offset > 0 else None,
        next_offset=offset + page_size if offset + page_size < total else None,
    )


def check_origin(headers: Mapping[str, str], host: str, bearer: bool) -> None:
    """ForgedRequest for a browser request from another origin (see the module docstring)."""
    origin = headers.get("origin")
    if origin is not None:
        if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
            raise ForgedRequest(f"cross-origin request refused (Origin {origin[:100]!r})")
        return
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise ForgedRequest(f"cross-site request refused (Sec-Fetch-Site {fetch_site[:40]!r})")
    if fetch_site is None and not bearer:
        raise ForgedRequest("a label needs the review page's own request: no Origin header came with it")


def check_content_type(content_type: str | None) -> None:
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("send the label as JSON (Content-Type: application/json)")


def parse_label_request(body: Any) -> tuple[str, str, LabelTicket]:
    """The inference id, the label and the ticket of a POST body; ReviewError (400) for anything else."""
    fields = ("inference_id", "label", "state", "issued", "signature")
    if not isinstance(body, dict):
        raise ReviewError("the body must be a JSON object with " + ", ".join(fields))
    missing = [name for name in fields if name not in body]
    if missing:
        raise ReviewError(f"missing {', '.join(missing)}")
    texts = {name: body[name] for name in ("inference_id", "label", "state", "signature")}
    wrong = [name for name, value in texts.items() if not isinstance(value, str)]
    issued = body["issued"]
    if isinstance(issued, bool) or not isinstance(issued, int):
        wrong.append("issued")
    if wrong:
        raise ReviewError(f"wrong type for {', '.join(wrong)}: ids, label, state and signature are strings, "
                          "issued an integer")  # fmt: skip
    if not texts["inference_id"] or len(texts["inference_id"]) > 64:
        raise ReviewError("inference_id must be 1 to 64 characters")
    return texts["inference_id"], texts["label"], LabelTicket(texts["state"], issued, texts["signature"])


def label_answer(state: LabelState, ticket: LabelTicket) -> dict[str, Any]:
    """The POST's answer: what was stored, where, and the ticket for the next change."""
    return {
        "inference_id": state.inference_id,
        "label": state.label,
        "label_time": state.label_time,
        "labeled_by": state.labeled_by,
        "ground_truth_key": state.ground_truth_key,
        "state": ticket.state,
        "issued": ticket.issued,
        "signature": ticket.signature,
    }


def error_answer(error: ReviewError) -> dict[str, str]:
    return {"code": error.code, "detail": str(error)}
