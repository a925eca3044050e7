"""Declaring API endpoints once: the aiohttp route, who may call it, how its query and body are
decoded, and what it answers, so the OpenAPI document is generated from the same declarations
the server runs (and cannot drift from them).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from aiohttp import web
from sqlalchemy import Select, Table, select
from sqlalchemy.sql.elements import ColumnElement

from hub.api.auth import EVERYONE, Principal
from hub.api.errors import ApiError, from_validation, not_found
from hub.api.scope import visible
from hub.runtime import Runtime

T = TypeVar("T")
PREFIX = "/api/v1"
PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal")
#: A console session's CSRF token, which every console form must echo.
CSRF: web.RequestKey[str] = web.RequestKey("csrf")
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime")
CONFIG_DIR: web.AppKey[Path] = web.AppKey("config_dir")


class Page(msgspec.Struct, Generic[T], kw_only=True):
    """One page of a list; pass `next_cursor` as `cursor` for the next (null: the last page)."""

    items: list[T]
    next_cursor: str | None = None


class Paging(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Query parameters every list takes."""

    limit: int = 50
    cursor: str | None = None


MAX_LIMIT = 500
#: The largest id the store holds (a 64-bit integer): a larger one names nothing.
MAX_ID = 2**63 - 1
#: An id in a query or a body: from 1 to `MAX_ID`.
Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]


async def listed(
    call: Call,
    query: Select,
    column: ColumnElement[Any],
    answer: Callable[[Any], Any],
    *,
    newest_first: bool = False,
) -> Page[Any]:
    """A page of `query`'s rows in `column`'s order (a unique key), each row made an item by
    `answer`; the query is already limited to what the caller may see (`hub.api.scope`)."""
    limit = checked_limit(call.query)
    after = decode_cursor(call.query.cursor, int if column.type.python_type is int else str)
    if after is not None:
        query = query.where(column < after if newest_first else column > after)
    query = query.order_by(column.desc() if newest_first else column).limit(limit + 1)
    async with call.runtime.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(rows[-1][column.key]) if more and rows else None
    return Page(items=[answer(row) for row in rows], next_cursor=cursor)


async def visible_row(call: Call, table: Table, column: str, value: Any, noun: str) -> Any:
    """The row of `table` whose `column` is `value`, if the caller may see it; a 404 naming
    `noun` otherwise (another member's row answers as if it did not exist)."""
    query = visible(select(table), table, call.principal).where(table.c[column] == value)
    async with call.runtime.engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise not_found(noun, value)
    return row


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: type) -> Any:
    """The sort key a cursor carries; a cursor that is not ours is a 400."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ApiError("bad_request", "not a cursor this API gave out", field="cursor") from None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ApiError("bad_request", "not a cursor this API gave out", field="cursor")
    return value


def checked_limit(paging: Paging) -> int:
    if not 1 <= paging.limit <= MAX_LIMIT:
        raise ApiError("bad_request", f"must be from 1 to {MAX_LIMIT}", field="limit")
    return paging.limit


@dataclass
class Call:
    """What a handler gets: the request, the caller, and its decoded path, query and body."""

    request: web.Request
    principal: Principal | None
    path: dict[str, Any]
    query: Any
    body: Any

    @property
    def runtime(self) -> Runtime:
        return self.request.app[RUNTIME]

    @property
    def caller(self) -> Principal:
        assert self.principal is not None  # every endpoint but the public ones has a caller
        return self.principal


Handler = Callable[[Call], Awaitable[Any]]


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    allow: frozenset[str] | None  # None: public
    query: type | None = None
    body: type | None = None
    response: Any = None
    status: int = 200
    path_types: dict[str, type] = field(default_factory=dict)
    #: Other media types the endpoint can answer with (`?format=`), e.g. text/csv.
    media: tuple[str, ...] = ()
    errors: tuple[int, ...] = ()


class Api:
    """The registry of `Endpoint`s that `routes` turns into aiohttp routes."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def endpoint(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        allow: frozenset[str] | None = EVERYONE,
        **details: Any,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(Endpoint(method, path, handler, summary, tag, allow, **details))
            return handler

        return register

    def routes(self) -> list[web.RouteDef]:
        return [
            web.route(e.method, PREFIX + _aiohttp_path(e), _dispatcher(e)) for e in self.endpoints
        ]


api = Api()


def _aiohttp_path(endpoint: Endpoint) -> str:
    path = endpoint.path
    for name, kind in endpoint.path_types.items():
        if kind is int:
            path = path.replace("{" + name + "}", "{" + name + ":[0-9]+}")
    return path


def _dispatcher(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def dispatch(request: web.Request) -> web.StreamResponse:
        principal = request.get(PRINCIPAL)
        if endpoint.allow is not None:
            if principal is None:
                raise ApiError("unauthorized", "send an API token: Authorization: Bearer TOKEN")
            if principal.role not in endpoint.allow:
                raise ApiError(
                    "forbidden", f"a {principal.role} token may not {endpoint.summary.lower()}"
                )
        path = {
            name: endpoint.path_types.get(name, str)(value)
            for name, value in request.match_info.items()
        }
        for name, value in path.items():
            if (isinstance(value, int) and value > MAX_ID) or "\x00" in str(value):
                raise ApiError("not_found", f"no such {name}")
        query = decode_query(request, endpoint.query)
        body = await decode_body(request, endpoint.body)
        result = await endpoint.handler(Call(request, principal, path, query, body))
        if isinstance(result, web.StreamResponse):
            return result
        if endpoint.status == 204:
            return web.Response(status=204)
        return web.Response(
            body=msgspec.json.encode(result),
            status=endpoint.status,
            content_type="application/json",
        )

    return dispatch


def decode_query(request: web.Request, kind: type | None) -> Any:
    """Query parameters as `kind` (strings converted); unknown or repeated ones are a 400."""
    keys = list(request.query.keys())
    if kind is None:
        if keys:
            raise ApiError("bad_request", "unknown query parameter", field=keys[0])
        return None
    seen: dict[str, str] = {}
    for key in keys:
        if len(request.query.getall(key)) > 1:
            raise ApiError("bad_request", "given more than once", field=key)
        if "\x00" in request.query[key]:
            raise ApiError("bad_request", "must not contain NUL characters", field=key)
        seen[key] = request.query[key]
    try:
        return msgspec.convert(seen, kind, strict=False)
    except msgspec.ValidationError as error:
        raise from_validation(error, where="query") from None


async def decode_body(request: web.Request, kind: type | None) -> Any:
    """The JSON body as `kind`; malformed JSON is a 400, a wrong type or unknown field a 422."""
    if kind is None:
        if request.can_read_body and await request.read():
            raise ApiError("bad_request", "this endpoint takes no body")
        return None
    if request.content_type != "application/json":
        raise ApiError("unsupported_media_type", "send the body as application/json")
    raw = await request.read()  # over the app's client_max_size: 413 from aiohttp
    if not raw.strip():
        raise ApiError("bad_request", "a JSON body is required")
    if b"\\u0000" in raw:  # no text column takes NUL (PostgreSQL refuses it)
        raise ApiError("invalid", "text must not contain NUL characters (\\u0000)")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as error:
        raise from_validation(error, where="body") from None
    except msgspec.DecodeError as error:
        raise ApiError("bad_request", f"malformed JSON: {error}") from None
