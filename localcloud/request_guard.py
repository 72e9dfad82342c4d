"""Which requests the local cloud answers at all: the browser-isolation rules both services share, and the
signature check (`SignatureCheck`, over localcloud/sigv4.py) in front of MiniStack.

Binding to 127.0.0.1 does not keep a web page out: the browser on the same machine can reach loopback. A page
reaches a local service in two ways, and each is refused here before any operation runs:
- **Cross-origin requests.** A browser adds `Origin` to every cross-origin request, simple ones (a `text/plain`
  POST, which needs no preflight) included. boto3, the Airflow provider and the Lambdas never send it. So a
  request with an `Origin` outside `LOCALCLOUD_ALLOWED_ORIGINS` (empty by default, like LocalStack's allowlist)
  gets 403, and a preflight (`OPTIONS`) from it gets 403 with no CORS headers. An allowed origin gets its own
  origin back, never `*`.
- **DNS rebinding.** A page whose own name was made to resolve to 127.0.0.1 sends its own name as `Host`
  (same-origin to the browser, so no `Origin` check applies). Only loopback names and addresses are answered:
  `localhost` (and `*.localhost`, which browsers resolve to loopback themselves), 127.0.0.0/8 and ::1, plus the
  names in `LOCALCLOUD_ALLOWED_HOSTS` and their subdomains (docker-compose's service names, inside the compose
  network).

Standard library only, so MiniStack's interpreter can load it too (`localcloud/ministack/serve.py`). The ASGI
middleware passes lifespan and everything it allows through untouched.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from localcloud import sigv4

ALLOWED_ORIGINS_VARIABLE = "LOCALCLOUD_ALLOWED_ORIGINS"
ALLOWED_HOSTS_VARIABLE = "LOCALCLOUD_ALLOWED_HOSTS"
ERROR_CODE = "AccessDeniedException"
PREFLIGHT_MAX_AGE_S = "600"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _names(value: str | None) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in (value or "").split(",") if part.strip())


@dataclass(frozen=True)
class Policy:
    allowed_origins: frozenset[str] = frozenset()
    allowed_hosts: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Policy:
        env = os.environ if env is None else env
        origins = frozenset(origin.rstrip("/") for origin in _names(env.get(ALLOWED_ORIGINS_VARIABLE)))
        if "*" in origins:
            raise ValueError(f"{ALLOWED_ORIGINS_VARIABLE} takes origins such as http://localhost:3000, not '*'")
        return cls(allowed_origins=origins, allowed_hosts=_names(env.get(ALLOWED_HOSTS_VARIABLE)))


def host_name(host_header: str) -> str:
    """`Host` without its port, in lower case: `[::1]:4566` -> `::1`, `LocalHost:80` -> `localhost`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback_name(name: str, extra: Iterable[str] = ()) -> bool:
    """Loopback, or one of the `extra` names; a subdomain counts too (S3's virtual-hosted `bucket.ministack`)."""
    if any(name == allowed or name.endswith(f".{allowed}") for allowed in ("localhost", *extra)):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refusal(host: str | None, origin: str | None, policy: Policy) -> str | None:
    """Why a request must not be answered, or None when it may be."""
    name = host_name(host or "")
    if not is_loopback_name(name, policy.allowed_hosts):
        return (
            f"Host {name or '(none)'!r} is not a loopback name: the local cloud answers only localhost, 127.0.0.1 "
            f"and ::1 (and {ALLOWED_HOSTS_VARIABLE})"
        )
    if origin is not None and origin.rstrip("/").lower() not in policy.allowed_origins:
        return f"cross-origin request from {origin!r} refused; allow an origin with {ALLOWED_ORIGINS_VARIABLE}"
    return None


def refusal_body(reason: str) -> bytes:
    return json.dumps({"__type": ERROR_CODE, "message": reason}).encode()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class RequestGuard:
    """ASGI middleware applying `refusal` to every HTTP request, and answering allowed preflights itself."""

    def __init__(self, app: ASGIApp, policy: Policy | None = None) -> None:
        self.app = app
        self.policy = Policy.from_env() if policy is None else policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        reason = refusal(_header(scope, b"host"), origin, self.policy)
        if reason is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
                return
            headers = {"content-type": "application/json", "x-amzn-errortype": ERROR_CODE}
            await self._reply(send, 403, refusal_body(reason), headers)
            return
        if origin is None:
            await self.app(scope, receive, send)
            return
        cors = {"access-control-allow-origin": origin, "vary": "Origin"}
        if scope.get("method") == "OPTIONS" and _header(scope, b"access-control-request-method"):
            requested = _header(scope, b"access-control-request-headers") or ""
            await self._reply(send, 204, b"", cors | {
                "access-control-allow-methods": "GET, PUT, POST, DELETE, HEAD",
                "access-control-allow-headers": requested,
                "access-control-expose-headers": "x-amzn-requestid, x-amzn-errortype, etag",
                "access-control-max-age": PREFLIGHT_MAX_AGE_S,
            })  # fmt: skip
            return

        async def send_with_cors(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if not k.lower().startswith(b"access-control-")
                ]
                message["headers"] = headers + [(k.encode(), v.encode()) for k, v in cors.items()]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    async def _reply(send: Send, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        raw = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()] + [
            (b"content-length", str(len(body)).encode())
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


MAX_BUFFERED_BODY_BYTES = 96 * 1024 * 1024  # Lambda's direct-upload zip (50 MB) as base64 JSON, with room


class SignatureCheck:
    """ASGI middleware that answers only requests signed with one of `keys` (access key id -> secret), with
    the error of the request's own protocol otherwise (localcloud/sigv4.py). A request without a
    payload-hash header (every service but S3) is read into memory first, up to `max_body_bytes`, since its
    signature covers the body; S3's `x-amz-content-sha256` stands for its body, which then streams through.
    Unsigned requests are refused before their body is read. WebSockets are refused: nothing here signs them."""

    def __init__(
        self,
        app: ASGIApp,
        keys: Mapping[str, str],
        *,
        service: str | None = None,
        exempt: sigv4.Exemption = lambda request: False,
        max_body_bytes: int = MAX_BUFFERED_BODY_BYTES,
    ) -> None:
        self.app, self.keys, self.service, self.exempt = app, dict(keys), service, exempt
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "unsigned WebSocket refused"})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = sigv4.Request.from_asgi(scope)
        if self.exempt(request):
            await self.app(scope, receive, send)
            return
        signature = sigv4.parse(request)
        if isinstance(signature, sigv4.Refusal):
            await self._refuse(send, request, signature)
            return
        if request.header(sigv4.PAYLOAD_HASH_HEADER) is None:
            body = await _read_at_most(receive, self.max_body_bytes)
            if body is None:
                too_large = f"Request body is larger than {self.max_body_bytes} bytes, the most the local cloud reads."
                await self._refuse(send, request, sigv4.Refusal(sigv4.TOO_LARGE, too_large, signature.service))
                return
            request = dataclasses.replace(request, body=body)
            receive = _replay(body, receive)
        refusal = sigv4.verify(request, self.keys, service=self.service)
        if refusal is not None:
            await self._refuse(send, request, refusal)
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send: Send, request: sigv4.Request, refusal: sigv4.Refusal) -> None:
        rendered = sigv4.render(refusal, sigv4.protocol_of(request, refusal), str(uuid.uuid4()))
        await RequestGuard._reply(send, rendered.status, rendered.body, rendered.headers)


async def _read_at_most(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then whatever the connection says next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> MutableMapping[str, Any]:
        return pending.pop() if pending else await receive()

    return replay
