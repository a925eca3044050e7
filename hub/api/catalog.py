"""Read-only parts of the API: who is calling, members, services, connectors, meters, and the
status overview the console's front page and a monitoring script read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import func, select

from hub.api.auth import Role
from hub.api.endpoints import Call, Page, Paging, api, listed, visible_row
from hub.api.scope import visible
from hub.engine.connections import plain
from hub.store.tables import connections, dead_letters, members, routes, runs, services

TAG = "catalog"


class Whoami(msgspec.Struct, kw_only=True):
    token: str
    name: str
    role: Role
    member: str | None


@api.endpoint("GET", "/whoami", summary="Show the calling token", tag=TAG, response=Whoami)
async def whoami(call: Call) -> Whoami:
    p = call.caller
    return Whoami(token=p.token, name=p.name, role=p.role, member=p.member)


class Member(msgspec.Struct, kw_only=True):
    code: str
    name: str
    nces_id: str | None
    state_code: str | None
    enrollment: int | None
    employees: int | None


class Service(msgspec.Struct, kw_only=True):
    code: str
    name: str
    description: str
    coser: str | None
    meters: list[str] | None


async def _listed(call: Call, table: Any, key: str, kind: type) -> Page[Any]:
    """A page of `table` by its text key, as `call`'s caller may see it."""
    query = visible(select(table), table, call.principal)
    return await listed(call, query, table.c[key], lambda row: msgspec.convert(plain(row), kind))


async def _one(call: Call, table: Any, key: str, value: str, kind: type, noun: str) -> Any:
    return msgspec.convert(plain(await visible_row(call, table, key, value, noun)), kind)


@api.endpoint(
    "GET", "/members", summary="List members", tag=TAG, query=Paging, response=Page[Member]
)
async def list_members(call: Call) -> Page[Member]:
    return await _listed(call, members, "code", Member)


@api.endpoint(
    "GET", "/members/{code}", summary="Show a member", tag=TAG, response=Member, errors=(404,)
)
async def get_member(call: Call) -> Member:
    return await _one(call, members, "code", call.path["code"], Member, "member")


@api.endpoint(
    "GET", "/services", summary="List services", tag=TAG, query=Paging, response=Page[Service]
)
async def list_services(call: Call) -> Page[Service]:
    return await _listed(call, services, "code", Service)


@api.endpoint(
    "GET", "/services/{code}", summary="Show a service", tag=TAG, response=Service, errors=(404,)
)
async def get_service(call: Call) -> Service:
    return await _one(call, services, "code", call.path["code"], Service, "service")


class StreamInfo(msgspec.Struct, kw_only=True):
    name: str
    record: str
    description: str
    readable: bool
    writable: bool


class ConnectorInfo(msgspec.Struct, kw_only=True):
    """A loaded connector: what the console's connection form is generated from."""

    name: str
    title: str
    plugin: str
    secrets: list[str]
    options_schema: dict[str, Any]


def connector_infos(call: Call) -> list[ConnectorInfo]:
    host = call.runtime.plugins
    return [
        ConnectorInfo(
            name=name,
            title=cls.title or name,
            plugin=host.owner("connector", name),
            secrets=list(cls.secrets),
            options_schema=cls.options_schema(),
        )
        for name, cls in sorted(host.connectors().items())
    ]


@api.endpoint(
    "GET", "/connectors", summary="List connectors", tag=TAG, response=list[ConnectorInfo]
)
async def list_connectors(call: Call) -> list[ConnectorInfo]:
    return connector_infos(call)


class MeterInfo(msgspec.Struct, kw_only=True):
    name: str
    unit: str
    aggregation: str
    description: str


@api.endpoint("GET", "/meters", summary="List meters", tag=TAG, response=list[MeterInfo])
async def list_meters(call: Call) -> list[MeterInfo]:
    return [
        MeterInfo(
            name=name, unit=m.unit, aggregation=m.aggregation, description=m.description or ""
        )
        for name, m in sorted(call.runtime.plugins.meters().items())
    ]


class LastRun(msgspec.Struct, kw_only=True):
    id: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    records_read: int
    records_written: int
    records_rejected: int


class RouteStatus(msgspec.Struct, kw_only=True):
    route: str
    member: str | None
    source: str
    destination: str
    service: str
    enabled: bool
    scheduled: bool
    open_dead_letters: int
    last_run: LastRun | None


class ConnectionStatus(msgspec.Struct, kw_only=True):
    name: str
    connector: str
    member: str | None
    enabled: bool
    #: The status of the latest run of any route that reads or writes it.
    last_status: str | None
    last_run_at: datetime | None


class Status(msgspec.Struct, kw_only=True):
    running: int
    failed_last: int
    open_dead_letters: int
    routes: list[RouteStatus]
    connections: list[ConnectionStatus]


async def read_status(call: Call) -> Status:
    """Every visible route with its latest run, and every visible connection's latest outcome."""
    p = call.principal
    latest = (
        visible(select(func.max(runs.c.id).label("id")), runs, p).group_by(runs.c.route)
    ).subquery()
    async with call.runtime.engine.connect() as conn:
        route_rows = (
            (await conn.execute(visible(select(routes), routes, p).order_by(routes.c.name)))
            .mappings()
            .all()
        )
        last = {
            row["route"]: row
            for row in (
                await conn.execute(select(runs).where(runs.c.id.in_(select(latest.c.id))))
            ).mappings()
        }
        letters = dict(
            (
                await conn.execute(
                    visible(
                        select(dead_letters.c.route, func.count()),
                        dead_letters,
                        p,
                    )
                    .where(dead_letters.c.status == "open")
                    .group_by(dead_letters.c.route)
                )
            ).all()
        )
        connection_rows = (
            (
                await conn.execute(
                    visible(select(connections), connections, p).order_by(connections.c.name)
                )
            )
            .mappings()
            .all()
        )
    # A route is visible only with its source connection, so the visible ones name every owner.
    owners = {c["name"]: c["member"] for c in connection_rows}
    statuses = []
    used: dict[str, Any] = {}
    for row in route_rows:
        run = last.get(row["name"])
        statuses.append(
            RouteStatus(
                route=row["name"],
                member=owners.get(row["source"]),
                source=row["source"],
                destination=row["destination"],
                service=row["service"],
                enabled=row["enabled"],
                scheduled=row["schedule"] is not None,
                open_dead_letters=letters.get(row["name"], 0),
                last_run=msgspec.convert(plain(run), LastRun) if run else None,
            )
        )
        for end in (row["source"], row["destination"]):
            if run is not None and (end not in used or used[end]["id"] < run["id"]):
                used[end] = run
    return Status(
        running=sum(1 for s in statuses if s.last_run and s.last_run.status == "running"),
        failed_last=sum(1 for s in statuses if s.last_run and s.last_run.status == "failed"),
        open_dead_letters=sum(letters.values()),
        routes=statuses,
        connections=[
            ConnectionStatus(
                name=c["name"],
                connector=c["connector"],
                member=c["member"],
                enabled=c["enabled"],
                last_status=used[c["name"]]["status"] if c["name"] in used else None,
                last_run_at=used[c["name"]]["started_at"] if c["name"] in used else None,
            )
            for c in connection_rows
        ],
    )


@api.endpoint("GET", "/status", summary="Show the status overview", tag=TAG, response=Status)
async def status(call: Call) -> Status:
    return await read_status(call)
