"""AWS Signature Version 4, checked: is a request signed with one of the local cloud's keys, and if not, the
error AWS would answer (docs: aws-contracts-2.md §5).

Protocol only: `verify` reads a request and returns None or a `Refusal`; `render` turns a refusal into the
status, headers and body of the request's own protocol, so boto3 raises the `ClientError` code its users
handle (`UnrecognizedClientException`, `InvalidSignatureException`, `SignatureDoesNotMatch`, ...). Where to
apply it is the callers' business (localcloud/request_guard.py's `SignatureCheck` for MiniStack, the local
SageMaker's routes).

The canonical request is built the way botocore builds it (tests/localcloud/test_sigv4.py signs with botocore
and checks that it verifies): the path normalised and encoded once more except for S3, the query pairs sorted
as sent, the signed headers with their whitespace collapsed, and the payload's SHA-256, or the
`x-amz-content-sha256` header that S3 clients send instead. Both header (`Authorization`) and query (presigned
URL) signatures are checked; SigV4a and the retired SigV2 are refused as unsupported.

Standard library only: MiniStack's interpreter loads this module too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 15 * 60
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
PAYLOAD_HASH_HEADER = "x-amz-content-sha256"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

MISSING, MALFORMED, UNKNOWN_KEY, BAD_SIGNATURE, WRONG_SERVICE, EXPIRED, TOO_LARGE = (
    "missing", "malformed", "unknown-key", "bad-signature", "wrong-service", "expired", "too-large",
)  # fmt: skip
# AWS's own rest-json services append the Coral namespace; botocore keeps the part before the colon.
CORAL_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.coral.service/"
JSON, REST_JSON, REST_XML, QUERY = "json", "rest-json", "rest-xml", "query"

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access "
    "Key and signing method. Consult the service documentation for details."
)
S3_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your key and signing method."
)
SIGV2_TEXT = (
    "Signature Version 2 is not supported: the local cloud takes AWS4-HMAC-SHA256 only "
    "(for boto3 presigned URLs: Config(signature_version='s3v4'))."
)
UNKNOWN_KEY_TEXT = "The security token included in the request is invalid."
S3_SIGV2_TEXT = (
    "Signature Version 2 is not supported: the local cloud takes AWS4-HMAC-SHA256 only "
    "(for boto3 presigned URLs: Config(signature_version='s3v4'))."
)
UNKNOWN_KEY_TEXT = "The AWS Access Key Id you provided does not exist in our records."


@dataclass(frozen=True)
class Request:
    """What the check needs of an HTTP request, as received. `body` is None when it was not read: then only a
    payload-hash header can stand for it."""

    method: str
    raw_path: str  # percent-encoded as sent, without the query
    query: str  # as sent
    headers: Mapping[str, tuple[str, ...]]  # lower-case name -> values, in order
    body: bytes | None = None

    @classmethod
    def from_asgi(cls, scope: Mapping[str, Any], body: bytes | None = None) -> Request:
        headers: dict[str, tuple[str, ...]] = {}
        for key, value in scope.get("headers") or ():
            name = key.decode("latin-1").lower()
            headers[name] = (*headers.get(name, ()), _text(value))
        raw_path = scope.get("raw_path") or str(scope.get("path", "/")).encode()
        return cls(
            method=str(scope.get("method", "GET")),
            raw_path=raw_path.decode("latin-1") if isinstance(raw_path, bytes) else str(raw_path),
            query=bytes(scope.get("query_string") or b"").decode("latin-1"),
            headers=headers,
            body=body,
        )

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None


def _text(value: bytes) -> str:
    """A header value as the signer had it: clients send non-ASCII values as UTF-8 (botocore signs the str)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


@dataclass(frozen=True)
class Refusal:
    kind: str  # MISSING, MALFORMED, ...
    message: str
    service: str | None = None  # the credential scope's service, when the request named one
    canonical_request: str | None = None  # for a bad signature: what the signer should have signed
    string_to_sign: str | None = None
    request_time: str | None = None  # for an expired signature


@dataclass(frozen=True)
class Signature:
    access_key_id: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    expires_s: int | None  # presigned URLs only
    presigned: bool


def parse(request: Request) -> Signature | Refusal:
    """The signature a request carries, from its `Authorization` header or its query; or why there is none."""
    authorization = request.header("authorization")
    if authorization is not None:
        algorithm, _, rest = authorization.strip().partition(" ")
        if algorithm == "AWS":
            return Refusal(MALFORMED, SIGV2_TEXT)
        if algorithm != ALGORITHM:
            return Refusal(MALFORMED, f"Unsupported AWS 'algorithm': '{algorithm}'; the local cloud takes {ALGORITHM}")
        fields = dict(part.strip().partition("=")[::2] for part in rest.split(",") if "=" in part)
        missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not fields.get(name)]
        if missing:
            return Refusal(MALFORMED, f"Authorization header requires '{missing[0]}' parameter.")
        amz_date = request.header("x-amz-date")
        if amz_date is None:
            return Refusal(MALFORMED, "Authorization header requires existence of a 'X-Amz-Date' header.")
        return _signature(fields["Credential"], fields["SignedHeaders"], fields["Signature"], amz_date, None, False)
    query = dict(parse_qsl(request.query, keep_blank_values=True))
    if "AWSAccessKeyId" in query and "Signature" in query:
        return Refusal(MALFORMED, SIGV2_TEXT, "s3")
    if "X-Amz-Signature" not in query and "X-Amz-Credential" not in query:
        return Refusal(MISSING, "Missing Authentication Token")
    if query.get("X-Amz-Algorithm") != ALGORITHM:
        return Refusal(MALFORMED, f"X-Amz-Algorithm must be {ALGORITHM}")
    try:
        expires = int(query.get("X-Amz-Expires", "604800"))
    except ValueError:
        return Refusal(MALFORMED, "X-Amz-Expires should be a number")
    names = ("X-Amz-Credential", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Date")
    if any(not query.get(name) for name in names):
        return Refusal(MALFORMED, f"Query-string authentication requires the {', '.join(names)} parameters.")
    credential, signed_headers, signature, amz_date = (query[name] for name in names)
    return _signature(credential, signed_headers, signature, amz_date, expires, True)


def _signature(
    credential: str, signed_headers: str, signature: str, amz_date: str, expires: int | None, presigned: bool
) -> Signature | Refusal:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        form = "<key>/<date>/<region>/<service>/aws4_request"
        return Refusal(MALFORMED, f"Credential should be of the form {form}, got '{credential}'.")
    key, date, region, service, _ = parts
    headers = tuple(signed_headers.split(";"))
    if "host" not in headers:
        return Refusal(MALFORMED, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.", service)
    return Signature(key, date, region, service, headers, signature, amz_date, expires, presigned)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, and consecutive slashes merged, as botocore's `normalize_url_path` does."""
    if not path:
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and segments else ""
    return first + "/".join(segments) + last


def canonical_uri(raw_path: str, service: str) -> str:
    if service == "s3":  # S3 signs the path as sent
        return raw_path or "/"
    return quote(remove_dot_segments(raw_path), safe="/~")


def canonical_query(query: str, presigned: bool) -> str:
    pairs = [pair.partition("=")[::2] for pair in query.split("&") if pair]
    if presigned:
        pairs = [(key, value) for key, value in pairs if key != "X-Amz-Signature"]
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def canonical_request(request: Request, signature: Signature) -> str:
    headers = "".join(
        f"{name}:{','.join(' '.join(value.split()) for value in request.headers.get(name, ()))}\n"
        for name in signature.signed_headers
    )
    payload = request.header(PAYLOAD_HASH_HEADER)
    if payload is None:
        if signature.presigned and signature.service == "s3":
            payload = UNSIGNED_PAYLOAD
        else:
            payload = hashlib.sha256(request.body or b"").hexdigest()
    return "\n".join(
        (
            request.method.upper(),
            canonical_uri(request.raw_path, signature.service),
            canonical_query(request.query, signature.presigned),
            headers,
            ";".join(signature.signed_headers),
            payload,
        )
    )


@lru_cache(maxsize=64)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _utc(amz_date: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _time_refusal(signature: Signature, now: float) -> Refusal | None:
    signed_at = _utc(signature.amz_date)
    if signed_at is None:
        text = f"X-Amz-Date must be in the ISO8601 Long Format yyyyMMdd'T'HHmmss'Z', got '{signature.amz_date}'"
        return Refusal(MALFORMED, text, signature.service)
    current = dt.datetime.fromtimestamp(now, dt.UTC)
    stamp = current.strftime(AMZ_DATE_FORMAT)
    window = dt.timedelta(seconds=MAX_SKEW_S)
    if signature.presigned and signature.expires_s is not None:
        if current > signed_at + dt.timedelta(seconds=signature.expires_s):
            return Refusal(EXPIRED, "Request has expired", signature.service, request_time=signature.amz_date)
        return None
    if signed_at < current - window:
        limit = (current - window).strftime(AMZ_DATE_FORMAT)
        text = f"Signature expired: {signature.amz_date} is now earlier than {limit} ({stamp} - 15 min.)"
        return Refusal(EXPIRED, text, signature.service, request_time=signature.amz_date)
    if signed_at > current + window:
        limit = (current + window).strftime(AMZ_DATE_FORMAT)
        text = f"Signature not yet current: {signature.amz_date} is still later than {limit} ({stamp} + 15 min.)"
        return Refusal(EXPIRED, text, signature.service, request_time=signature.amz_date)
    return None


def verify(
    request: Request, keys: Mapping[str, str], *, service: str | None = None, now: float | None = None
) -> Refusal | None:
    """None when `request` is signed with a key of `keys` (access key id -> secret), for `service` if given."""
    signature = parse(request)
    if isinstance(signature, Refusal):
        return signature
    secret = keys.get(signature.access_key_id)
    if secret is None:
        return Refusal(UNKNOWN_KEY, UNKNOWN_KEY_TEXT, signature.service)
    if service is not None and signature.service != service:
        text = f"Credential should be scoped to correct service: '{service}'. "
        return Refusal(WRONG_SERVICE, text, signature.service)
    refusal = _time_refusal(signature, time.time() if now is None else now)
    if refusal is not None:
        return refusal
    canonical = canonical_request(request, signature)
    scope = f"{signature.date}/{signature.region}/{signature.service}/aws4_request"
    to_sign = f"{ALGORITHM}\n{signature.amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = signing_key(secret, signature.date, signature.region, signature.service)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if signature.date != signature.amz_date[:8] or not hmac.compare_digest(expected, signature.signature):
        text = S3_SIGNATURE_MISMATCH if signature.service == "s3" else SIGNATURE_MISMATCH
        return Refusal(BAD_SIGNATURE, text, signature.service, canonical, to_sign)
    return None


# --- the error each protocol answers ---------------------------------------------------------------------------

REST_JSON_PATH = re.compile(r"^/(\d{4}-\d{2}-\d{2}/|endpoints/)")


def protocol_of(request: Request, refusal: Refusal) -> str:
    """Which wire protocol the request speaks: from the target header and body form, then the signed service."""
    content_type = (request.header("content-type") or "").lower()
    if request.header("x-amz-target"):
        return JSON
    if refusal.service == "s3":
        return REST_XML
    if REST_JSON_PATH.match(request.raw_path):
        return REST_JSON
    form = request.method == "POST" and content_type.startswith("application/x-www-form-urlencoded")
    if form or "Action=" in request.query:
        return QUERY
    if refusal.service is not None:
        return REST_JSON
    return REST_XML  # unsigned and unrecognisable: MiniStack's default service is S3


_CODES: dict[str, dict[str, tuple[int, str]]] = {
    JSON: {
        MISSING: (400, "MissingAuthenticationTokenException"),
        MALFORMED: (400, "IncompleteSignatureException"),
        UNKNOWN_KEY: (400, "UnrecognizedClientException"),
        BAD_SIGNATURE: (400, "InvalidSignatureException"),
        WRONG_SERVICE: (400, "InvalidSignatureException"),
        EXPIRED: (400, "InvalidSignatureException"),
        TOO_LARGE: (413, "RequestEntityTooLargeException"),
    },
    REST_JSON: {
        MISSING: (403, "MissingAuthenticationTokenException"),
        MALFORMED: (403, "IncompleteSignatureException"),
        UNKNOWN_KEY: (403, "UnrecognizedClientException"),
        BAD_SIGNATURE: (403, "InvalidSignatureException"),
        WRONG_SERVICE: (403, "InvalidSignatureException"),
        EXPIRED: (403, "InvalidSignatureException"),
        TOO_LARGE: (413, "RequestEntityTooLargeException"),
    },
    QUERY: {
        MISSING: (403, "MissingAuthenticationToken"),
        MALFORMED: (400, "IncompleteSignature"),
        UNKNOWN_KEY: (403, "InvalidClientTokenId"),
        BAD_SIGNATURE: (403, "SignatureDoesNotMatch"),
        WRONG_SERVICE: (403, "SignatureDoesNotMatch"),
        EXPIRED: (403, "SignatureDoesNotMatch"),
        TOO_LARGE: (413, "RequestEntityTooLarge"),
    },
    REST_XML: {
        MISSING: (403, "AccessDenied"),
        MALFORMED: (400, "AuthorizationHeaderMalformed"),
        UNKNOWN_KEY: (403, "InvalidAccessKeyId"),
        BAD_SIGNATURE: (403, "SignatureDoesNotMatch"),
        WRONG_SERVICE: (403, "SignatureDoesNotMatch"),
        EXPIRED: (403, "RequestTimeTooSkewed"),
        TOO_LARGE: (400, "EntityTooLarge"),
    },
}


@dataclass(frozen=True)
class Rendered:
    status: int
    headers: dict[str, str]
    body: bytes


def render(refusal: Refusal, protocol: str, request_id: str) -> Rendered:
    status, code = _CODES[protocol][refusal.kind]
    message = refusal.message
    if protocol == REST_XML:
        headers = {"content-type": "application/xml", "x-amz-request-id": request_id}
        return Rendered(status, headers, _s3_error(refusal, code, request_id))
    if refusal.kind == BAD_SIGNATURE and refusal.canonical_request is not None:
        message += (
            f"\n\nThe Canonical String for this request should have been\n'{refusal.canonical_request}'\n\n"
            f"The String-to-Sign should have been\n'{refusal.string_to_sign}'\n"
        )
    if protocol == QUERY:
        body = (
            '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId>"
            "</ErrorResponse>"
        ).encode()
        return Rendered(status, {"content-type": "text/xml", "x-amzn-requestid": request_id}, body)
    error_type = code + CORAL_SUFFIX if refusal.kind == MISSING else code
    headers = {"content-type": "application/json", "x-amzn-errortype": error_type, "x-amzn-requestid": request_id}
    if protocol == JSON:
        body = json.dumps({"__type": code, "message": message}).encode()
        return Rendered(status, headers | {"content-type": "application/x-amz-json-1.1"}, body)
    return Rendered(status, headers, json.dumps({"message": message}).encode())


def _s3_error(refusal: Refusal, code: str, request_id: str) -> bytes:
    if refusal.kind == MISSING:
        refusal = Refusal(MISSING, "Access Denied")
    fields: list[tuple[str, str]] = [("Code", code), ("Message", refusal.message)]
    if refusal.kind == BAD_SIGNATURE:
        fields.append(("StringToSign", refusal.string_to_sign or ""))
        fields.append(("CanonicalRequest", refusal.canonical_request or ""))
    if refusal.kind == EXPIRED and refusal.message != "Request has expired":
        fields = [
            ("Code", code),
            ("Message", "The difference between the request time and the current time is too large."),
            ("RequestTime", refusal.request_time or ""),
            ("MaxAllowedSkewMilliseconds", str(MAX_SKEW_S * 1000)),
        ]
    elif refusal.kind == EXPIRED:
        fields = [("Code", "AccessDenied"), ("Message", refusal.message)]
    fields.append(("RequestId", request_id))
    inner = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{inner}</Error>'.encode()


# --- who may call without a signature ----------------------------------------------------------------------------

Exemption = Callable[[Request], bool]


def exempt_paths(paths: Iterable[str]) -> Exemption:
    """Health checks (docker compose's, the launcher's) are unsigned GETs that change nothing."""
    allowed = frozenset(paths)
    return lambda request: request.method in ("GET", "HEAD") and request.raw_path in allowed and not request.query
