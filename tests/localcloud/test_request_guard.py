"""Browser isolation (localcloud/request_guard.py): the rules, the ASGI middleware, and the real local SageMaker
refusing a rebound Host and any cross-origin request while boto3 keeps working."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from localcloud.request_guard import Policy, RequestGuard, host_name, refusal

NONE_ALLOWED = Policy()


@pytest.mark.parametrize(
    ("header", "name"),
    [("127.0.0.1:4566", "127.0.0.1"), ("[::1]:4567", "::1"), ("LocalHost", "localhost"), ("::1", "::1"), ("", "")],
)
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize("host", ["127.0.0.1:4566", "127.9.9.9", "localhost:1", "app.localhost", "[::1]:80"])
def test_loopback_hosts_are_answered(host: str) -> None:
    assert refusal(host, None, NONE_ALLOWED) is None


@pytest.mark.parametrize(
    "host", ["attacker.example:4566", "127.0.0.1.nip.io", "localhost.attacker.example", "10.0.0.1", "", None]
)
def test_other_hosts_are_refused(host: str | None) -> None:
    reason = refusal(host, None, NONE_ALLOWED)
    assert reason is not None and "is not a loopback name" in reason


def test_extra_host_names_are_a_setting() -> None:
    policy = Policy.from_env({"LOCALCLOUD_ALLOWED_HOSTS": "ministack, Local-SageMaker"})
    assert refusal("local-sagemaker:4567", None, policy) is None
    assert refusal("ministack", None, policy) is None
    assert refusal("other:4567", None, policy) is not None


def test_any_origin_is_refused_unless_allowed() -> None:
    for origin in ("http://127.0.0.1:8000", "http://localhost:3000", "null", "https://attacker.example"):
        reason = refusal("127.0.0.1:4566", origin, NONE_ALLOWED)
        assert reason is not None and "cross-origin request" in reason
    allowed = Policy.from_env({"LOCALCLOUD_ALLOWED_ORIGINS": "http://localhost:3000/"})
    assert refusal("127.0.0.1:4566", "http://localhost:3000", allowed) is None
    assert refusal("127.0.0.1:4566", "http://localhost:3001", allowed) is not None


def test_a_wildcard_origin_is_not_a_setting() -> None:
    with pytest.raises(ValueError, match="not '\\*'"):
        Policy.from_env({"LOCALCLOUD_ALLOWED_ORIGINS": "*"})


# --- the middleware ------------------------------------------------------------------------------------------
async def _hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    headers = [(b"content-type", b"text/plain"), (b"access-control-allow-origin", b"*")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ran"})


def call(policy: Policy, method: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    transport = httpx.ASGITransport(app=RequestGuard(_hello, policy))

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:4566") as client:
            return await client.request(method, "/", headers=headers)

    response = asyncio.run(go())
    return response.status_code, dict(response.headers), response.content


def test_a_refused_request_never_reaches_the_app() -> None:
    status, headers, body = call(NONE_ALLOWED, "POST", {"Origin": "http://127.0.0.1:9", "Content-Type": "text/plain"})
    assert status == 403 and b"ran" not in body
    assert headers["x-amzn-errortype"] == "AccessDeniedException"
    assert not any(name.startswith("access-control-") for name in headers)  # no CORS answer at all
    status, _, body = call(NONE_ALLOWED, "GET", {"Host": "attacker.example"})
    assert status == 403 and b"ran" not in body


def test_a_preflight_from_a_page_gets_no_cors_headers() -> None:
    status, headers, _ = call(
        NONE_ALLOWED, "OPTIONS", {"Origin": "http://127.0.0.1:9", "Access-Control-Request-Method": "POST"}
    )
    assert status == 403 and "access-control-allow-origin" not in headers


def test_an_allowed_origin_gets_itself_back_never_a_wildcard() -> None:
    policy = Policy(allowed_origins=frozenset({"http://localhost:3000"}))
    status, headers, body = call(policy, "POST", {"Origin": "http://localhost:3000"})
    assert (status, body) == (200, b"ran")
    assert headers["access-control-allow-origin"] == "http://localhost:3000"  # the app's own '*' is replaced
    status, headers, _ = call(
        policy,
        "OPTIONS",
        {
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-amz-target",
        },
    )
    assert status == 204 and headers["access-control-allow-headers"] == "x-amz-target"


def test_clients_without_origin_pass() -> None:
    assert call(NONE_ALLOWED, "POST", {})[::2] == (200, b"ran")


# --- the real local SageMaker --------------------------------------------------------------------------------
@pytest.mark.e2e
def test_the_local_sagemaker_refuses_pages_and_serves_boto3(local_cloud: Any, sagemaker: Any) -> None:
    url = local_cloud.cfg.sagemaker_url
    target = {"X-Amz-Target": "SageMaker.ListEndpoints", "Content-Type": "application/x-amz-json-1.1"}
    rebound = httpx.post(
        url, content=b"{}", headers=target | {"Host": f"attacker.example:{local_cloud.cfg.sagemaker_port}"}
    )
    simple = httpx.post(url, content=b"{}", headers={"Origin": "http://127.0.0.1:9", "Content-Type": "text/plain"})
    preflight = httpx.options(
        f"{url}/endpoints/x/invocations",
        headers={"Origin": "http://127.0.0.1:9", "Access-Control-Request-Method": "POST"},
    )
    for response in (rebound, simple, preflight):
        assert response.status_code == 403, response.text
        assert response.json()["__type"] == "AccessDeniedException"
        assert "access-control-allow-origin" not in response.headers
    assert "Endpoints" in sagemaker.list_endpoints()  # boto3 sends no Origin and a loopback Host
