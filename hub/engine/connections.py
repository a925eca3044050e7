"""Opening a configured connection: its connector class, parsed options and resolved secrets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.config import SECRET_REFERENCE, Restart, Schedule
from hub.plugins import PluginHost, describe
from hub.redaction import redact_text, register_secret
from hub.sdk.connector import ConnectionContext, Connector, StreamSpec
from hub.sdk.errors import ConnectorConfigError
from hub.store.tables import connections, routes, services


class ConnectionRow(msgspec.Struct, frozen=True, kw_only=True):
    """A connection as stored."""

    name: str
    connector: str
    member: str | None
    options: dict[str, Any]
    secrets: dict[str, str]
    base_dir: str
    enabled: bool = True
    description: str = ""


class RouteRow(msgspec.Struct, frozen=True, kw_only=True):
    """A route as stored, with both its connections."""

    name: str
    source: ConnectionRow
    source_stream: str
    destination: ConnectionRow
    destination_stream: str
    service: str
    transforms: list[str]
    batch_size: int
    mode: str = "incremental"
    lookback_seconds: int = 0
    call_timeout_seconds: float = 300.0
    parallel_reads: int = 1
    schedule: Schedule | None = None
    restart: Restart = msgspec.field(default_factory=Restart)
    stall_seconds: float = 900.0
    enabled: bool = True
    #: The service's meters besides the hub's own (None: every registered meter).
    meters: list[str] | None = None

    @property
    def member(self) -> str | None:
        """The member a route serves: its source connection's."""
        return self.source.member


class UnknownRoute(LookupError):
    """No route by that name."""


async def load_route(conn: AsyncConnection, name: str) -> RouteRow:
    """A route and its two connections; UnknownRoute if there is none by `name`."""
    found = await load_routes(conn, [name])
    if not found:
        raise UnknownRoute(f"no route {name!r}; `cohub apply` the configuration first")
    return found[0]


async def load_routes(conn: AsyncConnection, names: list[str] | None = None) -> list[RouteRow]:
    """Routes, all or those in `names`, with their connections, in three queries however many
    (the daemon reads thousands every few seconds)."""
    query = select(routes).order_by(routes.c.name)
    if names is not None:
        query = query.where(routes.c.name.in_(names))
    rows = [plain(row) for row in (await conn.execute(query)).mappings()]
    if not rows:
        return []
    wanted = sorted({row[end] for row in rows for end in ("source", "destination")})
    ends = {c.name: c for c in await stored_connections(conn, wanted)}
    meters = dict(
        (
            await conn.execute(
                select(services.c.code, services.c.meters).where(
                    services.c.code.in_({row["service"] for row in rows})
                )
            )
        ).all()
    )
    loaded = []
    for row in rows:
        if row["restart"] is None:  # applied before routes had a restart policy
            del row["restart"]
        row.update(
            source=ends[row["source"]],
            destination=ends[row["destination"]],
            meters=meters.get(row["service"]),
        )
        loaded.append(msgspec.convert(row, RouteRow))
    return loaded


def plain(row: Any) -> dict[str, Any]:
    """A row mapping as a dict with plain ``str`` keys (SQLAlchemy's are a str subclass)."""
    return {str(key): value for key, value in row.items()}


async def stored_connections(
    conn: AsyncConnection, names: list[str] | None = None
) -> list[ConnectionRow]:
    """Stored connections, all or those in `names`, sorted by name."""
    query = select(connections).order_by(connections.c.name)
    if names is not None:
        query = query.where(connections.c.name.in_(names))
    return [
        msgspec.convert(plain(row), ConnectionRow) for row in (await conn.execute(query)).mappings()
    ]


async def route_names(conn: AsyncConnection, *, enabled_only: bool = True) -> list[str]:
    """Names of stored routes, sorted; with `enabled_only`, those that may run (the route and
    both its connections enabled)."""
    query = select(routes.c.name).order_by(routes.c.name)
    if enabled_only:
        source, destination = connections.alias("source"), connections.alias("destination")
        query = (
            query.join(source, source.c.name == routes.c.source)
            .join(destination, destination.c.name == routes.c.destination)
            .where(
                routes.c.enabled.is_(True),
                source.c.enabled.is_(True),
                destination.c.enabled.is_(True),
            )
        )
    return list((await conn.scalars(query)).all())


def open_connector(
    host: PluginHost, connection: ConnectionRow, values: Mapping[str, str] | None = None
) -> Connector:
    """An instance of the connection's connector with options parsed and secrets resolved;
    `values` are secrets given as they are (a connection tested before it is saved)."""
    try:
        cls = host.connector(connection.connector)
    except KeyError as error:
        raise ConnectorConfigError(f"connection {connection.name!r}: {error.args[0]}") from None
    try:
        options = cls.parse_options(connection.options)
    except msgspec.ValidationError as error:
        raise ConnectorConfigError(f"connection {connection.name!r}: options: {error}") from None
    secrets: dict[str, str] = {}
    for secret, value in (values or {}).items():
        register_secret(value)
        secrets[secret] = value
    for secret, reference in connection.secrets.items():
        match = SECRET_REFERENCE.match(reference)
        if match is None:
            raise ConnectorConfigError(
                f"connection {connection.name!r}: secret {secret!r} is not a reference"
            )
        value = host.resolve_secret(match["scheme"], match["name"], connection.name)
        if value is None:
            raise ConnectorConfigError(
                f"connection {connection.name!r}: secret {secret!r} ({reference}) is not set"
            )
        register_secret(value)
        secrets[secret] = value
    context = ConnectionContext(
        connection=connection.name, member=connection.member, base_dir=connection.base_dir
    )
    return cls(options, secrets, context)


async def check_connection(
    host: PluginHost, row: ConnectionRow, values: Mapping[str, str] | None = None
) -> tuple[str, list[StreamSpec]]:
    """Open a connection, run its connector's check and discovery: ("ok", its streams) or the
    error (secrets scrubbed) and no streams."""
    connector = None
    try:
        connector = open_connector(host, row, values)
        await connector.check()
        streams = await connector.streams()
    except Exception as error:
        return redact_text(describe(error)), []
    finally:
        if connector is not None:
            await connector.close()
    return "ok", streams
