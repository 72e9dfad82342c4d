"""URL routing: which HTTP request is which operation. Everything else is in responses.py."""

from __future__ import annotations

import uuid

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from localcloud import sigv4
from localcloud.credentials import Credentials
from localcloud.request_guard import Policy, RequestGuard
from localcloud.sagemaker.models.backend import SageMakerBackend
from localcloud.sagemaker.responses import ControlPlane, OversizedBody, Reply, Runtime, read_body

HEALTH_PATH = "/_localcloud/health"
SIGNING_SERVICE = "sagemaker"  # the control plane and the runtime both sign with it


def _response(reply: Reply) -> Response:
    return Response(content=reply.body, status_code=reply.status, headers=reply.headers)


def refusal(request: Request, body: bytes | OversizedBody, keys: dict[str, str]) -> Response | None:
    """The signature check (localcloud/sigv4.py), once the body is read: an oversized body is refused as such
    by the operation, before any work, whoever sent it."""
    if isinstance(body, OversizedBody):
        return None
    signed = sigv4.Request.from_asgi(request.scope, body)
    found = sigv4.verify(signed, keys, service=SIGNING_SERVICE)
    if found is None:
        return None
    rendered = sigv4.render(found, sigv4.protocol_of(signed, found), str(uuid.uuid4()))
    return Response(content=rendered.body, status_code=rendered.status, headers=rendered.headers)


def create_app(
    backend: SageMakerBackend, policy: Policy | None = None, credentials: Credentials | None = None
) -> FastAPI:
    app = FastAPI(title="Local SageMaker", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestGuard, policy=policy)  # browser isolation: Host and Origin (request_guard.py)
    keys = (credentials or Credentials.from_env()).signing_keys()
    control_plane = ControlPlane(backend)
    runtime = Runtime(backend)

    @app.post("/")
    async def control_plane_request(request: Request) -> Response:
        body = await read_body(request, control_plane.max_body_bytes)
        if (refused := refusal(request, body, keys)) is not None:
            return refused
        # Control-plane work touches SQLite and the filesystem: keep it off the event loop.
        reply = await run_in_threadpool(control_plane.handle, request.headers.get("x-amz-target"), body)
        return _response(reply)

    @app.post("/endpoints/{endpoint_name}/invocations")
    async def invoke_endpoint(endpoint_name: str, request: Request) -> Response:
        body = await read_body(request, runtime.max_body_bytes)
        if (refused := refusal(request, body, keys)) is not None:
            return refused
        reply = await runtime.invoke(endpoint_name, body, {k.lower(): v for k, v in request.headers.items()})
        return _response(reply)

    @app.get(HEALTH_PATH)
    async def health() -> JSONResponse:
        return JSONResponse({"status": "running", "operations": sorted(backend.operation_names)})

    return app
