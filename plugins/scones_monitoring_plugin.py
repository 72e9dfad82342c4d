"""Airflow UI plugin: the latest monitoring report of the live endpoint (issue #6).

The API server mounts a small FastAPI app at /monitoring/ and the UI gets a "Scones monitoring" entry under
Browse that shows it in a frame at /plugin/scones/monitoring/ (the UI appends the frame's own path to the
entry's route, so route and prefix are chosen to read as one path). The app serves what the workflow DAG keeps
under s3://<bucket>/monitoring/latest/, read through the provider's S3Hook on the project's connection:

    GET /                  report.html, or a 404 page saying no report exists yet and which DAG writes it;
                           without a login, a redirect to Airflow's login page, which comes back here
    GET /summary.json      the report's summary
    GET /charts/<name>.png confidence_over_time, confidence_histogram or class_mix (anything else: 404)
    GET /health            {"status": "ok"}, without S3 or login

and the Review page (issue #18), its own UI entry "Scones review" under Browse:

    GET  /review/          the filtered inferences, newest first (?offset=N pages), each to label with a class or
                           "neither" by mouse or keys (include/scones/review_view.py, labelling.py)
    POST /review/labels    one label, JSON {inference_id, label, state, issued, signature}: 200 with what was stored
                           and the next ticket; 400 ValidationException (bad body, unknown class), 403
                           AccessDeniedException (cross-origin, forged or expired), 404 ResourceNotFoundException
                           (unknown id), 409 ConflictException (replayed or stale), 415 (not JSON)

Every route but /health needs an Airflow login (the report shows captured inputs): the API server's JWT, from
the UI's session cookie or an `Authorization: Bearer` header. The page redirects a browser without one to the
login; the JSON and chart routes answer 401. S3 failures answer 502 with a one-line reason.

Importing this module creates no boto3 client and imports no Airflow security or provider module; each request
builds its own S3Hook. The project root must be on PYTHONPATH (as for the DAGs, which import `include` too).
"""

from __future__ import annotations

import json
import logging
from typing import Protocol
from urllib.parse import urlencode

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from include.scones import labelling, review_view
from include.scones import monitoring_view as view
from include.scones.monitoring.layout import CHART_NAMES, REPORT_HTML, SUMMARY_JSON

log = logging.getLogger(__name__)

URL_PREFIX = "/monitoring"
UI_ROUTE = "scones"
PAGES = frozenset({"/", "/review/"})  # routes people open in a browser (the rest are fetched by the page or by scripts)
NAME = "Scones monitoring"
REVIEW_NAME = "Scones review"
REVIEW_UI_ROUTE = "scones-review"
NO_CACHE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class ReportReader(Protocol):
    """Reads one file of the latest report (see monitoring_view.SERVED_FILES)."""

    def uri(self, file_name: str) -> str: ...

    def read(self, file_name: str) -> bytes | None:
        """The bytes, None when nothing is published yet; raises monitoring_view.ReportStoreError on failure."""
        ...


def project_bucket() -> str:
    """The project's bucket: Airflow Variable SCONES_BUCKET, then the environment, then the default. Only that
    Variable is looked up; if the lookup itself fails, the environment and the default still answer."""
    from include.scones.settings import load

    def variable(name: str) -> str | None:
        if name != "SCONES_BUCKET":
            return None
        try:
            from airflow.sdk import Variable

            value = Variable.get(name, default=None)
        except Exception:
            log.debug("Variable %s could not be read; using the environment", name, exc_info=True)
            return None
        return None if value is None else str(value)

    return load(variables=variable).bucket


def get_reader() -> ReportReader:
    """Per request: the bucket from the settings, the S3Hook on the project's connection (built on first read)."""
    from include.scones.airflow_runtime import s3_hook

    return view.S3ReportReader(bucket=project_bucket(), hook_factory=s3_hook)


def get_review_store() -> labelling.ReviewStore:
    """Per request: the review queue in the project's bucket, through the S3Hook's client (built on first use)."""
    from include.scones.airflow_runtime import s3_hook

    return labelling.ReviewStore(bucket=project_bucket(), client_factory=lambda: s3_hook().get_conn())


def review_signing_key() -> bytes:
    """The tickets' key, derived from the API server's [api] secret_key (the same on every API server worker)."""
    from airflow.configuration import conf

    return labelling.signing_key(conf.get("api", "secret_key"))


async def airflow_user_name(request: Request) -> str:
    """Airflow's own authentication (401 without a valid token), imported on first use; the user's name."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    credentials = None
    if scheme.lower() == "bearer" and token.strip():
        credentials = HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip())
    user = await get_user(request=request, _oauth_token=None, bearer_credentials=credentials)
    return str(user.get_name())


async def require_airflow_user(request: Request) -> None:
    await airflow_user_name(request)


def login_url(request: Request) -> str:
    """Airflow's own login entry point (whatever the auth manager), asked to come back to this page. The API
    server's base path is what the mount adds in front of URL_PREFIX."""
    api_root = request.scope.get("root_path", "").removesuffix(URL_PREFIX)
    return f"{api_root}/api/v2/auth/login?{urlencode({'next': str(request.url)})}"


async def login_for_pages(request: Request, error: Exception) -> Response:
    """A person who opens the report without a login goes to the login page and comes back (303); everything
    else keeps FastAPI's answer (401 for the JSON and chart routes, which scripts call)."""
    assert isinstance(error, HTTPException)
    route = request.url.path.removeprefix(request.scope.get("root_path", "")) or "/"
    if error.status_code == 401 and request.method == "GET" and route in PAGES:
        return RedirectResponse(login_url(request), status_code=303)
    return await http_exception_handler(request, error)


def _read(reader: ReportReader, file_name: str) -> bytes | None | view.ReportStoreError:
    try:
        return reader.read(file_name)
    except view.ReportStoreError as error:
        return error


def create_app() -> FastAPI:
    app = FastAPI(title=NAME, docs_url=None, redoc_url=None, openapi_url=None)
    authenticated = [Depends(require_airflow_user)]
    app.add_exception_handler(HTTPException, login_for_pages)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, dependencies=authenticated)
    def report(reader: ReportReader = Depends(get_reader)) -> Response:
        headers = {**NO_CACHE, "Content-Security-Policy": view.CONTENT_SECURITY_POLICY}
        body = _read(reader, REPORT_HTML)
        if isinstance(body, view.ReportStoreError):
            return HTMLResponse(view.error_page(str(body)), status_code=502, headers=headers)
        if body is None:
            return HTMLResponse(view.no_report_page(reader.uri(REPORT_HTML)), status_code=404, headers=headers)
        return HTMLResponse(body, headers=headers)

    @app.get("/summary.json", dependencies=authenticated)
    def summary(reader: ReportReader = Depends(get_reader)) -> Response:
        return _file(reader, SUMMARY_JSON, "application/json")

    @app.get("/charts/{name}.png", dependencies=authenticated)
    def chart(name: str, reader: ReportReader = Depends(get_reader)) -> Response:
        file_name = view.chart_file(name)
        if file_name is None:
            allowed = ", ".join(f"{chart}.png" for chart in CHART_NAMES)
            return JSONResponse({"detail": f"Unknown chart; the charts are {allowed}"}, 404, headers=NO_CACHE)
        return _file(reader, file_name, "image/png")

    @app.get("/review/", response_class=HTMLResponse)
    def review_page(
        offset: int = 0,
        user: str = Depends(airflow_user_name),
        store: labelling.ReviewStore = Depends(get_review_store),
        key: bytes = Depends(review_signing_key),
    ) -> Response:
        nonce = review_view.new_nonce()
        headers = {**NO_CACHE, "Content-Security-Policy": review_view.content_security_policy(nonce)}
        offset = max(offset, 0)
        try:
            rows, total = store.page(key, user, review_view.PAGE_SIZE, offset)
        except Exception as error:  # S3 unreachable, denied, or a broken queue file: one line, never a traceback
            message = f"Could not read the review queue in s3://{store.bucket}/{store.layout.prefix}/: "
            log.warning("%s%s", message, view.describe_error(error), exc_info=True)
            return HTMLResponse(view.error_page(message + view.describe_error(error)), 502, headers=headers)
        body = review_view.render_page(rows, total, offset, store.bucket, store.layout.ground_truth_prefix, nonce)
        return HTMLResponse(body, headers=headers)

    @app.post("/review/labels")
    async def review_label(
        request: Request,
        user: str = Depends(airflow_user_name),
        store: labelling.ReviewStore = Depends(get_review_store),
        key: bytes = Depends(review_signing_key),
    ) -> Response:
        try:
            review_view.check_origin(request.headers, request.headers.get("host", ""), _bearer(request))
            review_view.check_content_type(request.headers.get("content-type"))
            raw = await request.body()
            if len(raw) > review_view.MAX_BODY_BYTES:
                raise labelling.ReviewError(f"the body is over {review_view.MAX_BODY_BYTES} bytes")
            try:
                body = json.loads(raw)
            except ValueError:
                raise labelling.ReviewError("the body is not JSON") from None
            inference_id, label, ticket = review_view.parse_label_request(body)
            # S3 calls block: off the API server's event loop, as FastAPI runs the plain-def routes
            state, next_ticket = await run_in_threadpool(store.save_label, key, user, inference_id, label, ticket)
        except labelling.ReviewError as error:
            return JSONResponse(review_view.error_answer(error), error.status, headers=NO_CACHE)
        except Exception as error:  # S3 failed: nothing half-written is taken as stored; the page says so
            log.warning("storing a label failed", exc_info=True)
            detail = {"code": "ServiceUnavailable", "detail": view.describe_error(error)}
            return JSONResponse(detail, 502, headers=NO_CACHE)
        return JSONResponse(review_view.label_answer(state, next_ticket), headers=NO_CACHE)

    return app


def _bearer(request: Request) -> bool:
    return request.headers.get("authorization", "").lower().startswith("bearer ")


def _file(reader: ReportReader, file_name: str, media_type: str) -> Response:
    body = _read(reader, file_name)
    if isinstance(body, view.ReportStoreError):
        return JSONResponse({"detail": str(body)}, 502, headers=NO_CACHE)
    if body is None:
        detail = f"No monitoring report yet: {reader.uri(file_name)} does not exist ({view.PRODUCER_DAG_ID} writes it)"
        return JSONResponse({"detail": detail}, 404, headers=NO_CACHE)
    return Response(body, media_type=media_type, headers=NO_CACHE)


app = create_app()

# Where the API server mounts the app, and the UI entry that frames it. The href is relative (no leading slash):
# the UI resolves it against its base URL, so it also works when Airflow is served under a path ([api] base_url).
fastapi_app = {"app": app, "url_prefix": URL_PREFIX, "name": NAME}


def browse_entry(name: str, path: str, route: str) -> dict[str, str]:
    """A Browse menu entry that frames this app's `path` (relative to URL_PREFIX) inside the UI."""
    return {"name": name, "href": URL_PREFIX.removeprefix("/") + path, "destination": "nav", "url_route": route,
            "category": "browse"}  # fmt: skip


external_view = browse_entry(NAME, "/", UI_ROUTE)
review_view_entry = browse_entry(REVIEW_NAME, "/review/", REVIEW_UI_ROUTE)


class SconesMonitoringPlugin(AirflowPlugin):
    name = "scones_monitoring"
    fastapi_apps = [fastapi_app]
    external_views = [external_view, review_view_entry]
