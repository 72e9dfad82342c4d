"""localcloud/sigv4.py against botocore itself: what boto3 signs verifies, any change to it does not, and each
refusal parses, through botocore's own protocol parsers, into the error code boto3 users handle."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.parsers
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localcloud import sigv4
from localcloud.credentials import LAMBDA_ACCESS_KEY, Credentials
from localcloud.request_guard import SignatureCheck

# Assembled, so the repository's credential scan (tests/reliability/test_security.py) finds no literal key.
KEYS = Credentials("LKIA" + "EXAMPLE" * 2 + "23", "s3cr3t/with+odd=chars_0123456789abcdefgh")
ENDPOINT = "http://127.0.0.1:4566"


class Captured(Exception):
    def __init__(self, request: Any) -> None:
        self.request = request


def signed(service: str, call: Callable[[Any], Any], keys: Credentials = KEYS, **config: Any) -> sigv4.Request:
    """The request boto3 would send for `call`, captured just before it leaves (nothing is sent)."""
    client = boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=keys.access_key_id,
        aws_secret_access_key=keys.secret_access_key,
        config=Config(retries={"max_attempts": 0}, **config),
    )

    def capture(request: Any, **_: Any) -> None:
        raise Captured(request)

    client.meta.events.register("before-send", capture)
    try:
        call(client)
    except Captured as captured:
        return as_received(
            captured.request.method, captured.request.url, captured.request.headers, captured.request.body
        )
    raise AssertionError("boto3 sent nothing")


def as_received(method: str, url: str, headers: Any, body: Any) -> sigv4.Request:
    parts = urlsplit(url)
    received: dict[str, tuple[str, ...]] = {}
    for name, value in headers.items():
        text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        received[name.lower()] = (*received.get(name.lower(), ()), text)
    received.setdefault("host", (parts.netloc,))
    if hasattr(body, "read"):
        body = body.read()
    data = body.encode() if isinstance(body, str) else (body or b"")
    return sigv4.Request(method, parts.path or "/", parts.query, received, data)


CALLS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "sagemaker control plane (json)": ("sagemaker", lambda c: c.list_endpoints(NameContains="a b/ü")),
    "sagemaker runtime (rest-json)": (
        "sagemaker-runtime",
        lambda c: c.invoke_endpoint(EndpointName="ep-1", Body=b"\x89PNG\x00\xff", CustomAttributes="a=b, c"),
    ),
    "lambda invoke by ARN (rest-json, colons in the path)": (
        "lambda",
        lambda c: c.invoke(FunctionName="arn:aws:lambda:us-east-1:000000000000:function:f", Payload=b'{"x": 1}'),
    ),
    "lambda list with a query": ("lambda", lambda c: c.list_functions(Marker="m/ü =&", MaxItems=5)),
    "step functions (json 1.0)": ("stepfunctions", lambda c: c.list_state_machines()),
    "iam (query)": ("iam", lambda c: c.get_role(RoleName="scones role+1")),
    "logs (json)": ("logs", lambda c: c.describe_log_groups(logGroupNamePrefix="/aws/sagemaker/")),
    "s3 put with odd key": ("s3", lambda c: c.put_object(Bucket="bkt", Key="a b/ü+x~y/../z.txt", Body=b"hi")),
    "s3 list with prefix": ("s3", lambda c: c.list_objects_v2(Bucket="bkt", Prefix="data capture/", MaxKeys=3)),
    "s3 multipart create (?uploads)": ("s3", lambda c: c.create_multipart_upload(Bucket="bkt", Key="k")),
}


@pytest.mark.parametrize("name", CALLS)
def test_what_botocore_signs_verifies(name: str) -> None:
    service, call = CALLS[name]
    request = signed(service, call)
    assert sigv4.verify(request, KEYS.signing_keys()) is None


@pytest.mark.parametrize("name", CALLS)
def test_any_change_breaks_the_signature(name: str) -> None:
    service, call = CALLS[name]
    request = signed(service, call)
    host = request.headers["host"][0]
    changes = {
        "path": request.__class__(request.method, request.raw_path + "x", request.query, request.headers, request.body),
        "query": request.__class__(
            request.method, request.raw_path, request.query + "&extra=1", request.headers, request.body
        ),
        "host": request.__class__(
            request.method, request.raw_path, request.query, {**request.headers, "host": (host + "0",)}, request.body
        ),
    }
    if "x-amz-content-sha256" not in request.headers:  # otherwise that header stands for the body
        changes["body"] = request.__class__(
            request.method, request.raw_path, request.query, request.headers, (request.body or b"") + b" "
        )
    for what, changed in changes.items():
        refusal = sigv4.verify(changed, KEYS.signing_keys())
        assert refusal is not None and refusal.kind == sigv4.BAD_SIGNATURE, what


def test_a_wrong_secret_an_unknown_key_and_the_lambdas_key() -> None:
    call = CALLS["step functions (json 1.0)"]
    wrong_secret = signed(call[0], call[1], Credentials(KEYS.access_key_id, "not-the-secret"))
    refusal = sigv4.verify(wrong_secret, KEYS.signing_keys())
    assert refusal is not None and refusal.kind == sigv4.BAD_SIGNATURE
    assert refusal.canonical_request and refusal.canonical_request.startswith("POST\n/\n")
    unknown = signed(call[0], call[1], Credentials("AKIA" + "REALAWSKEY" + "0" * 6, KEYS.secret_access_key))
    assert (sigv4.verify(unknown, KEYS.signing_keys()) or sigv4.Refusal("none", "")).kind == sigv4.UNKNOWN_KEY
    # MiniStack's Lambdas sign with the account id as key and the install's secret: accepted, and only with it.
    lambdas = signed(call[0], call[1], Credentials(LAMBDA_ACCESS_KEY, KEYS.secret_access_key))
    assert sigv4.verify(lambdas, KEYS.signing_keys()) is None
    assert sigv4.verify(lambdas, {KEYS.access_key_id: KEYS.secret_access_key}) is not None


def test_the_local_sagemaker_takes_only_its_own_signing_service() -> None:
    request = signed("stepfunctions", lambda c: c.list_state_machines())
    refusal = sigv4.verify(request, KEYS.signing_keys(), service="sagemaker")
    assert refusal == sigv4.Refusal(
        sigv4.WRONG_SERVICE, "Credential should be scoped to correct service: 'sagemaker'. ", "states"
    )
    assert (
        sigv4.verify(signed(*CALLS["sagemaker control plane (json)"]), KEYS.signing_keys(), service="sagemaker") is None
    )


def test_the_request_time_is_checked_both_ways() -> None:
    request = signed("sagemaker", lambda c: c.list_endpoints())
    signed_at = dt.datetime.strptime(request.header("x-amz-date") or "", sigv4.AMZ_DATE_FORMAT).replace(tzinfo=dt.UTC)
    at = signed_at.timestamp()
    assert sigv4.verify(request, KEYS.signing_keys(), now=at + 14 * 60) is None
    late = sigv4.verify(request, KEYS.signing_keys(), now=at + 16 * 60)
    assert late is not None and late.kind == sigv4.EXPIRED and late.message.startswith("Signature expired: ")
    early = sigv4.verify(request, KEYS.signing_keys(), now=at - 16 * 60)
    assert early is not None and early.kind == sigv4.EXPIRED and "not yet current" in early.message


def test_presigned_urls_verify_until_they_expire() -> None:
    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=KEYS.access_key_id,
        aws_secret_access_key=KEYS.secret_access_key,
        config=Config(signature_version="s3v4"),
    )
    url = client.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "a b/ü.png"}, ExpiresIn=60)
    request = as_received("GET", url, {"host": urlsplit(url).netloc}, b"")
    assert sigv4.verify(request, KEYS.signing_keys()) is None
    expired = sigv4.verify(request, KEYS.signing_keys(), now=time.time() + 120)
    assert expired is not None and (expired.kind, expired.message) == (sigv4.EXPIRED, "Request has expired")
    tampered = as_received("GET", url.replace("a%20b", "a%20c"), {"host": urlsplit(url).netloc}, b"")
    assert (sigv4.verify(tampered, KEYS.signing_keys()) or sigv4.Refusal("none", "")).kind == sigv4.BAD_SIGNATURE
    # boto3's default presigner for S3 in us-east-1 is still SigV2: refused, with the fix named.
    sigv2 = as_received("GET", "http://127.0.0.1:4566/bkt/k?AWSAccessKeyId=A&Signature=x&Expires=1", {}, b"")
    refusal = sigv4.verify(sigv2, KEYS.signing_keys())
    assert refusal is not None and refusal.kind == sigv4.MALFORMED and "s3v4" in refusal.message


def test_unsigned_and_malformed_requests() -> None:
    bare = sigv4.Request("POST", "/", "", {"host": ("127.0.0.1",), "x-amz-target": ("SageMaker.ListEndpoints",)})
    assert sigv4.verify(bare, KEYS.signing_keys()) == sigv4.Refusal(sigv4.MISSING, "Missing Authentication Token")
    for header in ("AWS4-HMAC-SHA256 Credential=k/20261201/us-east-1/s3/aws4_request", "Bearer x", "AWS4-HMAC-SHA256"):
        request = sigv4.Request("GET", "/", "", {"host": ("h",), "authorization": (header,), "x-amz-date": ("x",)})
        refusal = sigv4.verify(request, KEYS.signing_keys())
        assert refusal is not None and refusal.kind == sigv4.MALFORMED, header
    no_host = "AWS4-HMAC-SHA256 Credential=k/20261201/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date, Signature=0"
    request = sigv4.Request("GET", "/", "", {"host": ("h",), "authorization": (no_host,), "x-amz-date": ("x",)})
    assert "'Host'" in (sigv4.verify(request, KEYS.signing_keys()) or sigv4.Refusal("", "")).message


# --- each refusal as boto3 sees it ------------------------------------------------------------------------------

PARSE_CASES = {
    # service, operation, refusal kind -> (status, code)
    ("sagemaker", "ListEndpoints", sigv4.UNKNOWN_KEY): (400, "UnrecognizedClientException"),
    ("sagemaker", "ListEndpoints", sigv4.BAD_SIGNATURE): (400, "InvalidSignatureException"),
    ("sagemaker", "ListEndpoints", sigv4.MISSING): (400, "MissingAuthenticationTokenException"),
    ("sagemaker-runtime", "InvokeEndpoint", sigv4.MISSING): (403, "MissingAuthenticationTokenException"),
    ("sagemaker-runtime", "InvokeEndpoint", sigv4.BAD_SIGNATURE): (403, "InvalidSignatureException"),
    ("lambda", "ListFunctions", sigv4.UNKNOWN_KEY): (403, "UnrecognizedClientException"),
    ("stepfunctions", "ListStateMachines", sigv4.UNKNOWN_KEY): (400, "UnrecognizedClientException"),
    ("iam", "GetRole", sigv4.UNKNOWN_KEY): (403, "InvalidClientTokenId"),
    ("iam", "GetRole", sigv4.BAD_SIGNATURE): (403, "SignatureDoesNotMatch"),
    ("s3", "ListObjectsV2", sigv4.MISSING): (403, "AccessDenied"),
    ("s3", "ListObjectsV2", sigv4.UNKNOWN_KEY): (403, "InvalidAccessKeyId"),
    ("s3", "ListObjectsV2", sigv4.BAD_SIGNATURE): (403, "SignatureDoesNotMatch"),
    ("s3", "ListObjectsV2", sigv4.EXPIRED): (403, "RequestTimeTooSkewed"),
}
SIGNING_NAMES = {"sagemaker-runtime": "sagemaker", "stepfunctions": "states"}


@pytest.mark.parametrize("case", PARSE_CASES, ids=lambda case: "-".join(case))
def test_each_refusal_parses_into_the_code_boto3_users_handle(case: tuple[str, str, str]) -> None:
    service, operation, kind = case
    model = boto3.session.Session().client(service, region_name="us-east-1").meta.service_model
    operation_model = model.operation_model(operation)
    calls = {
        "sagemaker": CALLS["sagemaker control plane (json)"],
        "sagemaker-runtime": CALLS["sagemaker runtime (rest-json)"],
        "lambda": ("lambda", lambda c: c.list_functions()),
        "stepfunctions": CALLS["step functions (json 1.0)"],
        "iam": CALLS["iam (query)"],
        "s3": CALLS["s3 list with prefix"],
    }
    request = signed(*calls[service])
    if kind == sigv4.MISSING:
        request = sigv4.Request(
            request.method,
            request.raw_path,
            request.query,
            {k: v for k, v in request.headers.items() if k != "authorization"},
            request.body,
        )
    refusal = sigv4.Refusal(
        kind, "why", SIGNING_NAMES.get(service, service), "CANONICAL", "TO SIGN", "20261201T000000Z"
    )
    if kind == sigv4.MISSING:
        refusal = sigv4.Refusal(kind, "Missing Authentication Token")
    rendered = sigv4.render(refusal, sigv4.protocol_of(request, refusal), "req-1")
    parser = botocore.parsers.create_parser(model.protocol)
    parsed = parser.parse(
        {"status_code": rendered.status, "headers": rendered.headers, "body": rendered.body},
        operation_model.output_shape,
    )
    assert (rendered.status, parsed["Error"]["Code"]) == PARSE_CASES[case]
    error = ClientError(parsed, operation)
    assert error.response["Error"]["Message"]


def test_the_s3_signature_mismatch_carries_what_should_have_been_signed() -> None:
    refusal = sigv4.Refusal(sigv4.BAD_SIGNATURE, sigv4.S3_SIGNATURE_MISMATCH, "s3", "GET\n/<k>", "AWS4\n...")
    body = sigv4.render(refusal, sigv4.REST_XML, "r").body.decode()
    assert "<CanonicalRequest>GET\n/&lt;k&gt;</CanonicalRequest>" in body and "<StringToSign>" in body


# --- the ASGI middleware in front of MiniStack ------------------------------------------------------------------


def run_asgi(app: Any, request: sigv4.Request, body_chunks: list[bytes]) -> tuple[int, bytes, list[bytes]]:
    scope = {
        "type": "http",
        "method": request.method,
        "path": request.raw_path,
        "raw_path": request.raw_path.encode(),
        "query_string": request.query.encode(),
        "headers": [(k.encode(), v.encode("latin-1")) for k, values in request.headers.items() for v in values],
    }
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(body_chunks) - 1} for i, c in enumerate(body_chunks)
    ]
    read: list[bytes] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not queue:
            return {"type": "http.disconnect"}
        message = queue.pop(0)
        read.append(message["body"])
        return message

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), read


def echo_app() -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"app got " + body})

    return app


def test_the_middleware_hands_the_app_the_body_it_checked() -> None:
    request = signed("lambda", CALLS["lambda invoke by ARN (rest-json, colons in the path)"][1])
    body = request.body or b""
    check = SignatureCheck(echo_app(), KEYS.signing_keys())
    assert run_asgi(check, request, [body[:3], body[3:]])[:2] == (200, b"app got " + body)
    status, answer, _ = run_asgi(check, request, [body + b"!"])
    assert status == 403 and b"does not match" in answer


def test_the_middleware_refuses_unsigned_requests_before_reading_their_body() -> None:
    request = sigv4.Request("POST", "/2015-03-31/functions", "", {"host": ("127.0.0.1",)})
    status, answer, read = run_asgi(SignatureCheck(echo_app(), KEYS.signing_keys()), request, [b"x" * 10])
    assert (status, json.loads(answer), read) == (403, {"message": "Missing Authentication Token"}, [])


def test_the_middleware_caps_what_it_buffers_and_lets_health_checks_through() -> None:
    request = signed("lambda", CALLS["lambda invoke by ARN (rest-json, colons in the path)"][1])
    check = SignatureCheck(echo_app(), KEYS.signing_keys(), max_body_bytes=4, exempt=sigv4.exempt_paths(["/health"]))
    status, answer, _ = run_asgi(check, request, [b"12345"])
    assert status == 413 and b"larger than 4 bytes" in answer
    health = sigv4.Request("GET", "/health", "", {"host": ("127.0.0.1",)})
    assert run_asgi(check, health, [b""])[0] == 200
    assert run_asgi(check, sigv4.Request("POST", "/health", "", {"host": ("127.0.0.1",)}), [b""])[0] == 403


def test_non_ascii_header_values_verify_as_sent_on_the_wire() -> None:
    # botocore signs the str and the HTTP client sends it as UTF-8: the check reads the bytes the same way
    request = signed(
        "sagemaker-runtime", lambda c: c.invoke_endpoint(EndpointName="e", Body=b"x", CustomAttributes="café")
    )
    scope = {
        "type": "http",
        "method": request.method,
        "raw_path": request.raw_path.encode(),
        "query_string": request.query.encode(),
        "headers": [(k.encode(), v.encode("utf-8")) for k, values in request.headers.items() for v in values],
    }
    assert sigv4.verify(sigv4.Request.from_asgi(scope, request.body), KEYS.signing_keys()) is None
