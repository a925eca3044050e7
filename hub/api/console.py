"""The web console: server-rendered pages over the same functions the API runs.

A page never reads the store itself: it builds a `Call` and hands it to the API module's
function (`read_status`, `get_dead_letter`, `create_connection`...), so what a viewer may see
(`hub.api.scope`), how a connection is validated and where its secrets go are decided in one
place for both. Signing in turns an API token into a session cookie (HttpOnly, SameSite=Strict);
every POST form carries the session's CSRF token, checked before anything is done.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import wraps
from pathlib import Path
from typing import Any

import jinja2
import msgspec
import structlog
from aiohttp import web
from sqlalchemy import select

from hub.api import catalog, deadletters, routes, runs, statements, usage
from hub.api import connections as connections_api
from hub.api.app import REQUEST_ID, SESSION_COOKIE, VERIFIER
from hub.api.auth import ADMIN, BILLING, OPERATE, Principal, Role
from hub.api.charts import bar_chart
from hub.api.endpoints import CSRF, PRINCIPAL, RUNTIME, Call
from hub.api.errors import ApiError, from_validation
from hub.api.forms import SECRET, option_fields, raw_values, read_options, read_secrets
from hub.api.scope import visible
from hub.audit import note
from hub.billing.documents import line_cells
from hub.store.tables import connections, members, services

HERE = Path(__file__).parent
log = structlog.get_logger("hub.console")
LOGIN_COOKIE = "cohub_login"
#: How many rows a console list shows (the API pages further).
LIST_LIMIT = 200

templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def _quantity(value: Decimal) -> str:
    return f"{value.normalize():,f}"


templates.filters["when"] = _when
templates.filters["quantity"] = _quantity

Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


def render(
    request: web.Request, name: str, *, http_status: int = 200, **values: Any
) -> web.Response:
    principal = request.get(PRINCIPAL)
    text = templates.get_template(name).render(
        principal=principal,
        csrf=request.get(CSRF, ""),
        may_operate=principal is not None and principal.role in OPERATE,
        may_admin=principal is not None and principal.role in ADMIN,
        may_bill=principal is not None and principal.role in BILLING,
        **values,
    )
    return web.Response(text=text, status=http_status, content_type="text/html")


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "error.html", http_status=status, code=status, message=message)


def call_for(
    request: web.Request, *, path: dict[str, Any] | None = None, query: Any = None, body: Any = None
) -> Call:
    return Call(request, request.get(PRINCIPAL), path or {}, query, body)


def page(allow: frozenset[Role] | None = None) -> Callable[[Page], Page]:
    """A console page: signed in (else to /login), of a role in `allow`, a POST with the
    session's CSRF token; an `ApiError` shown as a page with its status."""

    def wrap(handler: Page) -> Page:
        @wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            principal: Principal | None = request.get(PRINCIPAL)
            if principal is None:
                raise web.HTTPSeeOther("/login")
            if allow is not None and principal.role not in allow:
                return error_page(request, 403, f"A {principal.role} may not do this.")
            if request.method == "POST":
                form = await request.post()
                sent = str(form.get("csrf", ""))
                if not hmac.compare_digest(sent.encode(), request.get(CSRF, "").encode()):
                    return error_page(request, 403, "The form's CSRF token is missing or wrong.")
            try:
                return await handler(request)
            except ApiError as error:
                return error_page(request, error.body.status, error.body.message)
            except web.HTTPException:
                raise
            except Exception:
                log.exception("console.failed", request_id=request.get(REQUEST_ID))
                return error_page(
                    request,
                    500,
                    f"Internal error; the hub's log has request {request.get(REQUEST_ID)}.",
                )

        return run

    return wrap


# Signing in and out


async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console" if request.get(PRINCIPAL) else "/login")


async def login_form(request: web.Request, *, problem: str = "", status: int = 200) -> web.Response:
    """The sign-in form with a fresh double-submit token (there is no session to bind to)."""
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", http_status=status, login_token=token, problem=problem)
    response.set_cookie(
        LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/login", max_age=3600
    )
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    return await login_form(request)


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    expected = request.cookies.get(LOGIN_COOKIE, "")
    sent = str(form.get("login_token", ""))
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return await login_form(request, problem="The form expired; sign in again.", status=403)
    principal = await request.app[VERIFIER].verify(str(form.get("token", "")).strip())
    if principal is None:
        await note(
            request.app[RUNTIME].engine,
            actor="anonymous",
            action="login.failed",
            target="console",
            details={"address": request.remote or "unknown"},
        )
        return await login_form(
            request, problem="That token is not valid (revoked or expired?).", status=401
        )
    cookie, _ = await request.app[VERIFIER].start_session(principal, request.remote or "unknown")
    response = web.HTTPSeeOther("/console")
    response.set_cookie(
        SESSION_COOKIE, cookie, httponly=True, samesite="Strict", path="/", secure=request.secure
    )
    response.del_cookie(LOGIN_COOKIE, path="/login")
    raise response


@page()
async def logout(request: web.Request) -> web.StreamResponse:
    await request.app[VERIFIER].end_session(request.cookies.get(SESSION_COOKIE, ""))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


# Overview, runs, dead letters


@page()
async def overview(request: web.Request) -> web.StreamResponse:
    status = await catalog.read_status(call_for(request))
    return render(request, "overview.html", summary=status)


@page(OPERATE)
async def start_run(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    started = await runs.start_run(
        call_for(request, body=runs.StartRun(route=str(form.get("route", ""))))
    )
    raise web.HTTPSeeOther(f"/console/runs/{started.id}")


@page()
async def run_detail(request: web.Request) -> web.StreamResponse:
    run = await runs.get_run(call_for(request, path={"id": _id(request)}))
    return render(request, "run.html", run=run)


def _id(request: web.Request) -> int:
    value = int(request.match_info["id"])
    if value > 2**63 - 1:
        raise ApiError("not_found", f"no such id {value}")
    return value


@page()
async def dead_letter_list(request: web.Request) -> web.StreamResponse:
    route = request.query.get("route") or None
    run = request.query.get("run") or None
    status = request.query.get("status") or "open"
    try:
        query = msgspec.convert(
            {"route": route, "run": run, "status": status, "limit": LIST_LIMIT},
            deadletters.DeadLetterQuery,
            strict=False,
        )
    except msgspec.ValidationError as error:
        raise from_validation(error, where="query") from None
    found = await deadletters.list_dead_letters(call_for(request, query=query))
    return render(
        request,
        "dead_letters.html",
        letters=found.items,
        route=route or "",
        run=run or "",
        chosen_status=status,
        statuses=("open", "replayed", "discarded", "any"),
    )


@page()
async def dead_letter_detail(request: web.Request) -> web.StreamResponse:
    letter = await deadletters.get_dead_letter(call_for(request, path={"id": _id(request)}))
    return render(request, "dead_letter.html", letter=letter)


@page(OPERATE)
async def replay_dead_letter(request: web.Request) -> web.StreamResponse:
    ids = deadletters.DeadLetterIds(ids=[_id(request)])
    result = await deadletters.replay_dead_letters(call_for(request, body=ids))
    if result.runs:
        raise web.HTTPSeeOther(f"/console/runs/{result.runs[0].run.id}")
    raise web.HTTPSeeOther(f"/console/dead-letters/{ids.ids[0]}")


@page(OPERATE)
async def discard_dead_letter(request: web.Request) -> web.StreamResponse:
    ids = deadletters.DeadLetterIds(ids=[_id(request)])
    await deadletters.discard_dead_letters(call_for(request, body=ids))
    raise web.HTTPSeeOther(f"/console/dead-letters/{ids.ids[0]}")


# Connections and routes


async def _choices(request: web.Request) -> dict[str, list[str]]:
    """Members, services and connections the caller may see, for the forms' selects."""
    principal = request.get(PRINCIPAL)
    async with request.app[RUNTIME].engine.connect() as conn:
        found = {}
        for key, table, column in (
            ("members", members, members.c.code),
            ("services", services, services.c.code),
            ("connections", connections, connections.c.name),
        ):
            query = visible(select(column), table, principal).order_by(column)
            found[key] = list((await conn.execute(query)).scalars())
    return found


@page()
async def connection_detail(request: web.Request) -> web.StreamResponse:
    found = await connections_api.get_connection(
        call_for(request, path={"name": request.match_info["name"]})
    )
    return render(request, "connection.html", connection=found)


def _connector(infos: list[catalog.ConnectorInfo], name: str) -> catalog.ConnectorInfo | None:
    return next((info for info in infos if info.name == name), None)


@page(ADMIN)
async def connection_form(request: web.Request) -> web.StreamResponse:
    infos = catalog.connector_infos(call_for(request))
    if not infos:
        raise ApiError("not_found", "no connector is loaded: install or enable a plugin")
    chosen = _connector(infos, request.query.get("connector", "")) or infos[0]
    return await _show_connection_form(request, infos, chosen, {}, {})


async def _show_connection_form(
    request: web.Request,
    infos: list[catalog.ConnectorInfo],
    chosen: catalog.ConnectorInfo,
    sent: dict[str, Any],
    problems: dict[str, str],
    *,
    check: connections_api.CheckResult | None = None,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "connection_new.html",
        http_status=status,
        connectors=infos,
        chosen=chosen,
        fields=option_fields(chosen.options_schema),
        secret_prefix=SECRET,
        sent=sent,
        problems=problems,
        check=check,
        choices=await _choices(request),
    )


def _problem_key(field: str | None) -> str:
    """The form input an API error's field path belongs to: ``options.streams.x.y`` is the
    ``streams`` input."""
    if not field:
        return ""
    return ".".join(field.split(".")[:2])


@page(ADMIN)
async def connection_submit(request: web.Request) -> web.StreamResponse:
    """ "Test connection" (store nothing) or "Create", from the same form."""
    form = await request.post()
    infos = catalog.connector_infos(call_for(request))
    chosen = _connector(infos, str(form.get("connector", "")))
    if chosen is None:
        raise ApiError("invalid", f"no connector {form.get('connector')!r}")
    fields = option_fields(chosen.options_schema)
    options, problems = read_options(fields, form)
    testing = form.get("action") == "test"
    name = str(form.get("name", "")).strip()
    sent = {
        "name": name,
        "member": str(form.get("member", "")),
        "description": str(form.get("description", "")),
        "options": raw_values(fields, form),
    }
    body = {
        "name": name or ("unsaved" if testing else ""),
        "connector": chosen.name,
        "member": sent["member"] or None,
        "description": sent["description"],
        "options": options,
        "secrets": read_secrets(chosen.secrets, form),
    }
    check = None
    if not problems:
        try:
            given = msgspec.convert(body, connections_api.ConnectionIn)
            call = call_for(request, body=given)
            if testing:
                check = await connections_api.check_unsaved(call)
            else:
                created = await connections_api.create_connection(call)
                raise web.HTTPSeeOther(f"/console/connections/{created.name}")
        except msgspec.ValidationError as error:
            problem = from_validation(error, where="body").body
            problems[_problem_key(problem.field)] = problem.message
        except ApiError as error:
            if error.body.status not in (409, 422):
                raise
            problems[_problem_key(error.body.field)] = error.body.message
    return await _show_connection_form(
        request,
        infos,
        chosen,
        sent,
        problems,
        check=check,
        status=422 if problems else 200,
    )


ROUTE_INPUTS = ("name", "source", "source_stream", "destination", "destination_stream", "service")


@page(ADMIN)
async def route_form(request: web.Request) -> web.StreamResponse:
    sent = {key: request.query.get(key, "") for key in ROUTE_INPUTS} | {"inbound": ""}
    return render(
        request, "route_new.html", sent=sent, problems={}, choices=await _choices(request)
    )


@page(ADMIN)
async def route_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    sent = {key: str(form.get(key, "")).strip() for key in ROUTE_INPUTS}
    sent["inbound"] = "on" if form.get("inbound") == "on" else ""
    problems: dict[str, str] = {}
    try:
        given = msgspec.convert({**sent, "inbound": bool(sent["inbound"])}, routes.RouteIn)
        created = await routes.create_route(call_for(request, body=given))
        raise web.HTTPSeeOther(f"/console#route-{created.name}")
    except msgspec.ValidationError as error:
        problem = from_validation(error, where="body").body
        problems[problem.field or ""] = problem.message
    except ApiError as error:
        if error.body.status not in (409, 422):
            raise
        problems[_problem_key(error.body.field)] = error.body.message
    return render(
        request,
        "route_new.html",
        http_status=422,
        sent=sent,
        problems=problems,
        choices=await _choices(request),
    )


# Usage and statements


USAGE_FILTERS = ("member", "service", "meter", "period")


@page()
async def usage_page(request: web.Request) -> web.StreamResponse:
    chosen = {key: request.query.get(key, "") for key in USAGE_FILTERS}
    by = request.query.get("by", "day")
    if by not in ("day", "month"):
        raise ApiError("bad_request", "by must be day or month")
    values = {key: value for key, value in chosen.items() if value}
    try:
        totals = msgspec.convert({**values, "by": "total"}, usage.UsageQuery)
        buckets = msgspec.convert({**values, "by": by}, usage.UsageQuery)
    except msgspec.ValidationError as error:
        raise from_validation(error, where="query") from None
    table = (await usage.read_usage(call_for(request, query=totals))).items
    series = (await usage.read_usage(call_for(request, query=buckets))).items
    meters = sorted({row.meter for row in series})
    charted = chosen["meter"] or ("records_synced" if "records_synced" in meters else "")
    charted = charted or (meters[0] if meters else "")
    per_bucket: dict[str, Decimal] = {}
    unit = ""
    for row in series:
        if row.meter == charted:
            per_bucket[row.bucket] = per_bucket.get(row.bucket, Decimal(0)) + row.quantity
            unit = row.unit
    chart = bar_chart(sorted(per_bucket.items()), unit, f"{charted or 'usage'} per {by}: " + unit)
    return render(
        request,
        "usage.html",
        rows=table,
        chart=chart,
        charted=charted,
        chosen=chosen,
        by=by,
        choices=await _choices(request),
        meters=sorted(request.app[RUNTIME].plugins.meters()),
    )


def _this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


@page(BILLING)
async def statement_list(request: web.Request) -> web.StreamResponse:
    period = request.query.get("period") or _this_month()
    member = request.query.get("member") or None
    found = await statements.statements_for(call_for(request), period, member)
    return render(request, "statements.html", found=found, period=period)


@page(BILLING)
async def statement_detail(request: web.Request) -> web.StreamResponse:
    period, member = request.match_info["period"], request.match_info["member"]
    found = (await statements.statements_for(call_for(request), period, member)).items
    if not found:
        raise ApiError("not_found", f"no statement for member {member!r} in {period}")
    rows = [line_cells(line) for line in found[0].lines]
    return render(request, "statement.html", statement=found[0], rows=rows)


@page(BILLING)
async def statement_download(request: web.Request) -> web.StreamResponse:
    """The API's CSV or printable HTML statement, for a signed-in browser."""
    path = {"period": request.match_info["period"], "member": request.match_info["member"]}
    query = statements.DocumentQuery(format=request.match_info["format"])  # type: ignore[arg-type]
    answer = await statements.download_statement(call_for(request, path=path, query=query))
    assert isinstance(answer, web.Response)
    return answer


@page()
async def not_found(request: web.Request) -> web.StreamResponse:
    return error_page(request, 404, f"There is no console page {request.path}.")


def add_routes(app: web.Application) -> None:
    """The console's pages, its stylesheet, and `/` leading to them."""
    member = "{member:[a-z0-9][a-z0-9_-]*}"
    app.router.add_static("/static/", HERE / "static", name="static")
    app.router.add_get("/", root)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/console", overview)
    app.router.add_post("/console/runs", start_run)
    app.router.add_get("/console/runs/{id:[0-9]+}", run_detail)
    app.router.add_get("/console/dead-letters", dead_letter_list)
    app.router.add_get("/console/dead-letters/{id:[0-9]+}", dead_letter_detail)
    app.router.add_post("/console/dead-letters/{id:[0-9]+}/replay", replay_dead_letter)
    app.router.add_post("/console/dead-letters/{id:[0-9]+}/discard", discard_dead_letter)
    app.router.add_get("/console/connections/new", connection_form)
    app.router.add_post("/console/connections/new", connection_submit)
    app.router.add_get("/console/connections/{name}", connection_detail)
    app.router.add_get("/console/routes/new", route_form)
    app.router.add_post("/console/routes/new", route_submit)
    app.router.add_get("/console/usage", usage_page)
    app.router.add_get("/console/statements", statement_list)
    app.router.add_get(
        f"/console/statements/{{period}}/{member}.{{format:csv|html}}", statement_download
    )
    app.router.add_get(f"/console/statements/{{period}}/{member}", statement_detail)
    app.router.add_get("/console/{tail:.*}", not_found)
