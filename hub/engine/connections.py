"""Opening a configured connection: its connector class, parsed options and resolved secrets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.config import SECRET_REFERENCE, Restart, Schedule
from hub.plugins import PluginHost, describe
from hub.redaction import redact_text, register_secret
from hub.sdk import secrets as sdk_secrets
from hub.sdk.connector import ConnectionContext, Connector, StreamSpec
from hub.sdk.errors import ConnectorConfigError
from hub.store.tables import connections, routes, services
from hub.vault import VaultError, VaultResolver

log = structlog.get_logger("hub.engine.connections")


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
    #: Records arrive pushed to ``/inbound/<source>``: runs read the inbox, not the source.
    inbound: bool = False

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
    sdk_secrets.keep(connection.name, ConnectionSecrets(host, connection))
    return cls(options, secrets, context)


class ConnectionSecrets:
    """Where an opened connection's secrets are kept, for a connector whose vendor replaces one
    (`hub.sdk.secrets.rotate`): a ``vault:NAME`` secret is replaced in the vault; one from the
    environment, or given with a request and not stored, cannot be."""

    def __init__(self, host: PluginHost, connection: ConnectionRow) -> None:
        self.host = host
        self.connection = connection

    def _vault_name(self, secret: str) -> str | None:
        match = SECRET_REFERENCE.match(self.connection.secrets.get(secret, ""))
        return match["name"] if match is not None and match["scheme"] == "vault" else None

    def _resolver(self) -> VaultResolver | None:
        plugin = self.host.pm.get_plugin("vault")
        return plugin if isinstance(plugin, VaultResolver) else None

    def refusal(self, secret: str) -> str | None:
        reference = self.connection.secrets.get(secret)
        suggested = f"connection.{self.connection.name}.{secret}"
        if reference is None:
            return (
                f"secret {secret!r} was given with the request and is not stored, but the vendor "
                "replaces it on use: save the connection first (its secrets go to the vault)"
            )
        if self._vault_name(secret) is None:
            return (
                f"secret {secret!r} comes from {reference}, which the hub cannot update, but the "
                f"vendor replaces it on use: store it in the vault with `cohub secrets set "
                f"{suggested}` (the value on standard input) and reference it as "
                f'"vault:{suggested}" in the connection\'s [secrets]'
            )
        if self._resolver() is None:
            return f"secret {secret!r} cannot be replaced: the vault is not open (no master key)"
        return None

    async def store(self, secret: str, value: str) -> None:
        reason = self.refusal(secret)
        if reason is not None:
            raise ConnectorConfigError(f"connection {self.connection.name!r}: {reason}")
        name, resolver = self._vault_name(secret), self._resolver()
        assert name is not None and resolver is not None  # refusal() said so
        register_secret(value)
        actor = f"{self.connection.connector} (connection {self.connection.name})"
        try:
            await resolver.rotate(name, value, actor=actor)
        except VaultError as error:
            raise ConnectorConfigError(
                f"connection {self.connection.name!r}: the vendor replaced secret {secret!r} "
                f"and the new one could not be stored in vault:{name}: {error}"
            ) from None
        log.info("connection.secret_rotated", connection=self.connection.name, secret=secret)


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
