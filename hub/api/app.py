"""The hub's web server: the admin API under /api/v1, the console, /metrics, the health
endpoints and the inbound endpoint vendors push to, with the middlewares every request passes:
a request log, JSON errors, and who is calling (a bearer token, or a console session cookie;
pushes prove themselves by signature instead, see `hub.api.inbound`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import structlog
from aiohttp import web

# Every API module registers its endpoints on import.
from hub.api import (  # noqa: F401
    catalog,
    connections,
    deadletters,
    metrics,
    routes,
    runs,
    statements,
    tokens,
    usage,
)
from hub.api.auth import Verifier
from hub.api.deliveries import deliver_pushes
from hub.api.endpoints import CONFIG_DIR, CSRF, PRINCIPAL, RUNTIME, api
from hub.api.errors import CODES, ApiError, ErrorBody, ErrorResponse
from hub.api.inbound import PATH as INBOUND_PATH
from hub.api.inbound import is_inbound
from hub.api.inbound import receive as receive_push
from hub.api.openapi import document_bytes
from hub.api.ratelimit import RateLimit
from hub.api.runs import STARTED, STOP
from hub.runtime import Runtime

if TYPE_CHECKING:
    from hub.worker import Worker

log = structlog.get_logger("hub.api")
VERIFIER: web.AppKey[Verifier] = web.AppKey("verifier")
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
SESSION_COOKIE = "cohub_session"
#: The largest request body taken (a batch of a thousand usage events fits many times over).
MAX_BODY = 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _machine(request: web.Request) -> bool:
    """Whether the request is for a program (JSON errors) rather than a person (HTML pages)."""
    return request.path.startswith("/api/") or request.path == "/metrics" or is_inbound(request)


def error_response(body: ErrorBody) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(ErrorResponse(error=body)),
        status=body.status,
        content_type="application/json",
    )


@web.middleware
async def request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One structured line per request: method, route, status, time, caller; never the query
    string or the body (they can carry member data)."""
    request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex[:16]
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        principal = request.get(PRINCIPAL)
        route = request.match_info.route.resource
        seconds = time.perf_counter() - started
        metrics.observe(route.canonical if route is not None else None, status, seconds)
        log.info(
            "http.request",
            request_id=request_id,
            method=request.method,
            path=request.path,
            route=route.canonical if route is not None else None,
            status=status,
            duration_ms=round(seconds * 1000, 2),
            token=principal.token if principal else None,
            role=principal.role.value if principal else None,
        )


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure of an API request as the one JSON error shape, a 500 included (logged with
    its traceback, answered with the request id only)."""
    if not _machine(request):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.body)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = CODES.get(error.status, "bad_request" if error.status < 500 else "internal")
        message = {
            404: f"no endpoint {request.path}",
            405: f"{request.method} is not allowed here",
            413: f"the body is larger than {MAX_BODY} bytes",
        }.get(error.status, error.reason)
        return error_response(ErrorBody(status=error.status, code=code, message=message))
    except Exception:
        log.exception("http.failed", request_id=request.get(REQUEST_ID))
        return error_response(
            ErrorBody(
                status=500,
                code="internal",
                message=f"internal error; the hub's log has request {request.get(REQUEST_ID)}",
            )
        )


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A bearer token for programs, the session cookie for console pages; a token that is sent
    but not valid is refused at once, never treated as no token."""
    verifier = request.app[VERIFIER]
    request[PRINCIPAL] = None
    header = request.headers.get("Authorization")
    if is_inbound(request):  # a vendor's own Authorization header is its connector's to read
        return await handler(request)
    if header is not None and _machine(request):
        scheme, _, token = header.partition(" ")
        principal = await verifier.verify(token.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            raise ApiError("unauthorized", "the API token is not valid (revoked or expired?)")
        request[PRINCIPAL] = principal
    elif not _machine(request) and (cookie := request.cookies.get(SESSION_COOKIE)):
        found = await verifier.session(cookie)
        if found is not None:
            request[PRINCIPAL], request[CSRF] = found
    return await handler(request)


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type="application/json")


async def _stop_runs(app: web.Application) -> AsyncIterator[None]:
    """Runs started through the API stop with the server: each releases its claim after the
    batch in hand, for a worker (or the next start) to resume."""
    app[STARTED] = set()
    app[STOP] = asyncio.Event()
    yield
    app[STOP].set()
    if app[STARTED]:
        await asyncio.wait(set(app[STARTED]), timeout=30)


def build_app(
    runtime: Runtime, config_dir: Path, *, worker: Worker | None = None
) -> web.Application:
    """The whole web application; with `worker`, also its /healthz and /readyz."""
    from hub.api import console  # Jinja2 loads only where pages are served

    app = web.Application(
        middlewares=[request_log, json_errors, RateLimit(), authenticate],
        client_max_size=MAX_BODY,
    )
    app[RUNTIME] = runtime
    app[CONFIG_DIR] = config_dir
    app[VERIFIER] = Verifier(runtime.engine)
    app.cleanup_ctx.append(_stop_runs)
    app.cleanup_ctx.append(deliver_pushes)
    app.router.add_post(INBOUND_PATH, receive_push)
    app.router.add_get("/api/v1/openapi.json", openapi_json)
    app.router.add_routes(api.routes())
    app.router.add_get("/metrics", metrics.metrics)
    console.add_routes(app)
    if worker is not None:
        from hub.api.health import WORKER_KEY, healthz, readyz

        app[WORKER_KEY] = worker
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
    return app
