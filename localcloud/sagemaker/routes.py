"""URL routing: which HTTP request is which operation. Everything else is in responses.py."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from localcloud.request_guard import Policy, RequestGuard
from localcloud.sagemaker.models.backend import SageMakerBackend
from localcloud.sagemaker.responses import ControlPlane, Reply, Runtime, read_body

HEALTH_PATH = "/_localcloud/health"


def _response(reply: Reply) -> Response:
    return Response(content=reply.body, status_code=reply.status, headers=reply.headers)


def create_app(backend: SageMakerBackend, policy: Policy | None = None) -> FastAPI:
    app = FastAPI(title="Local SageMaker", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestGuard, policy=policy)  # browser isolation: Host and Origin (request_guard.py)
    control_plane = ControlPlane(backend)
    runtime = Runtime(backend)

    @app.post("/")
    async def control_plane_request(request: Request) -> Response:
        body = await read_body(request, control_plane.max_body_bytes)
        # Control-plane work touches SQLite and the filesystem: keep it off the event loop.
        reply = await run_in_threadpool(control_plane.handle, request.headers.get("x-amz-target"), body)
        return _response(reply)

    @app.post("/endpoints/{endpoint_name}/invocations")
    async def invoke_endpoint(endpoint_name: str, request: Request) -> Response:
        body = await read_body(request, runtime.max_body_bytes)
        reply = await runtime.invoke(endpoint_name, body, {k.lower(): v for k, v in request.headers.items()})
        return _response(reply)

    @app.get(HEALTH_PATH)
    async def health() -> JSONResponse:
        return JSONResponse({"status": "running", "operations": sorted(backend.operation_names)})

    return app
