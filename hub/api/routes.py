"""Routes through the API: list, show, create, change, delete. As with connections, a route
from the configuration folder is shown but changed only in the folder (409 otherwise)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from sqlalchemy import select

from hub.api.auth import ADMIN
from hub.api.connections import Name
from hub.api.endpoints import Call, Page, Paging, api, listed, visible_row
from hub.api.errors import ApiError
from hub.api.scope import visible
from hub.audit import record
from hub.config import Restart, Route, Schedule, inbound_problems, route_problems
from hub.engine.connections import plain
from hub.store.database import writing
from hub.store.tables import connections, cooperative, routes, runs, services

TAG = "routes"
UNSET: Any = msgspec.UNSET


class RouteOut(Route, kw_only=True):
    name: str
    #: The member the route serves: its source connection's.
    member: str | None
    managed_by: str


class RouteIn(Route, kw_only=True):
    name: Annotated[str, Name]


class RoutePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields to change; absent fields stay (``"schedule": null`` removes the schedule)."""

    source_stream: str | msgspec.UnsetType = UNSET
    destination_stream: str | msgspec.UnsetType = UNSET
    service: str | msgspec.UnsetType = UNSET
    transforms: list[str] | msgspec.UnsetType = UNSET
    batch_size: int | msgspec.UnsetType = UNSET
    mode: str | msgspec.UnsetType = UNSET
    lookback_seconds: int | msgspec.UnsetType = UNSET
    call_timeout_seconds: float | msgspec.UnsetType = UNSET
    parallel_reads: int | msgspec.UnsetType = UNSET
    schedule: Schedule | msgspec.UnsetType | None = UNSET
    restart: Restart | msgspec.UnsetType = UNSET
    stall_seconds: float | msgspec.UnsetType = UNSET
    enabled: bool | msgspec.UnsetType = UNSET
    inbound: bool | msgspec.UnsetType = UNSET


ROUTE_FIELDS = Route.__struct_fields__


async def _members_of(conn: Any) -> dict[str, str | None]:
    return dict((await conn.execute(select(connections.c.name, connections.c.member))).all())


def answer(row: Any, owners: dict[str, str | None]) -> RouteOut:
    data = plain(row)
    if data.get("restart") is None:
        data.pop("restart", None)
    return msgspec.convert({**data, "member": owners.get(data["source"])}, RouteOut)


@api.endpoint(
    "GET", "/routes", summary="List routes", tag=TAG, query=Paging, response=Page[RouteOut]
)
async def list_routes(call: Call) -> Page[RouteOut]:
    async with call.runtime.engine.connect() as conn:
        owners = await _members_of(conn)
    query = visible(select(routes), routes, call.principal)
    return await listed(call, query, routes.c.name, lambda row: answer(row, owners))


async def _stored(call: Call, name: str) -> RouteOut:
    row = await visible_row(call, routes, "name", name, "route")
    async with call.runtime.engine.connect() as conn:
        member = await conn.scalar(
            select(connections.c.member).where(connections.c.name == row["source"])
        )
    return answer(row, {row["source"]: member})


@api.endpoint(
    "GET", "/routes/{name}", summary="Show a route", tag=TAG, response=RouteOut, errors=(404,)
)
async def get_route(call: Call) -> RouteOut:
    return await _stored(call, call.path["name"])


async def _validated(call: Call, conn: Any, route: Route) -> None:
    """What `cohub validate` would say about this route, as a 422 naming the field."""
    zone = await conn.scalar(select(cooperative.c.timezone)) or "UTC"
    problems = route_problems(route, zone)
    for end in ("source", "destination"):
        name = getattr(route, end)
        if await conn.scalar(select(connections.c.name).where(connections.c.name == name)) is None:
            problems.append((end, f"no connection {name!r}"))
    if route.inbound:
        problems += await _inbound_problems(call, conn, route.source)
    if await conn.scalar(select(services.c.code).where(services.c.code == route.service)) is None:
        problems.append(("service", f"no service {route.service!r}"))
    known = set(call.runtime.plugins.transforms())
    problems += [
        (f"transforms.{i}", f"no transform {t!r} is registered")
        for i, t in enumerate(route.transforms)
        if t not in known
    ]
    if problems:
        key, reason = problems[0]
        raise ApiError("invalid", reason, field=key)


async def _inbound_problems(call: Call, conn: Any, source: str) -> list[tuple[str, str]]:
    """Why pushes to `source` cannot reach an inbound route (its connector takes none, it lacks
    the webhook secret), as problems of the route's ``inbound`` field."""
    found = (
        await conn.execute(
            select(connections.c.connector, connections.c.secrets).where(
                connections.c.name == source
            )
        )
    ).first()
    if found is None:
        return []
    connector = call.runtime.plugins.connectors().get(found.connector)
    return [
        ("inbound", reason if key == "inbound" else f"connection {source!r}: {key}: {reason}")
        for key, reason in inbound_problems(found.secrets, connector)
    ]


def _row(route: Route) -> dict[str, Any]:
    return {name: msgspec.to_builtins(getattr(route, name)) for name in ROUTE_FIELDS}


@api.endpoint(
    "POST",
    "/routes",
    summary="Create a route",
    tag=TAG,
    allow=ADMIN,
    body=RouteIn,
    response=RouteOut,
    status=201,
    errors=(409, 422),
)
async def create_route(call: Call) -> RouteOut:
    body: RouteIn = call.body
    async with writing(call.runtime.engine) as conn:
        await _validated(call, conn, body)
        if await conn.scalar(select(routes.c.name).where(routes.c.name == body.name)):
            raise ApiError("conflict", f"route {body.name!r} exists", field="name")
        await conn.execute(routes.insert().values(name=body.name, managed_by="api", **_row(body)))
        await record(
            conn,
            actor=call.caller.actor,
            action="route.create",
            target=f"route {body.name}",
            details=_row(body),
        )
    return await _stored(call, body.name)


def _owned(route: RouteOut) -> None:
    if route.managed_by != "api":
        raise ApiError(
            "conflict",
            f"route {route.name!r} comes from the configuration folder: edit routes.toml "
            "and run `cohub apply`",
        )


@api.endpoint(
    "PATCH",
    "/routes/{name}",
    summary="Change a route",
    tag=TAG,
    allow=ADMIN,
    body=RoutePatch,
    response=RouteOut,
    errors=(404, 409, 422),
)
async def change_route(call: Call) -> RouteOut:
    current = await _stored(call, call.path["name"])
    _owned(current)
    changes = {
        name: value
        for name in RoutePatch.__struct_fields__
        if (value := getattr(call.body, name)) is not msgspec.UNSET
    }
    merged = {**_row(current), **msgspec.to_builtins(changes)}
    try:
        route = msgspec.convert(merged, Route)
    except msgspec.ValidationError as error:
        raise ApiError("invalid", str(error).split(" - at ")[0]) from None
    async with writing(call.runtime.engine) as conn:
        await _validated(call, conn, route)
        await conn.execute(routes.update().where(routes.c.name == current.name).values(_row(route)))
        await record(
            conn,
            actor=call.caller.actor,
            action="route.change",
            target=f"route {current.name}",
            details=msgspec.to_builtins(changes),
        )
    return await _stored(call, current.name)


@api.endpoint(
    "DELETE",
    "/routes/{name}",
    summary="Delete a route",
    tag=TAG,
    allow=ADMIN,
    status=204,
    errors=(404, 409),
)
async def delete_route(call: Call) -> None:
    current = await _stored(call, call.path["name"])
    _owned(current)
    async with writing(call.runtime.engine) as conn:
        running = await conn.scalar(
            select(runs.c.id).where(runs.c.route == current.name, runs.c.status == "running")
        )
        if running is not None:
            raise ApiError("conflict", f"route {current.name!r} is running (run {running})")
        await conn.execute(routes.delete().where(routes.c.name == current.name))
        await record(
            conn, actor=call.caller.actor, action="route.delete", target=f"route {current.name}"
        )
