"""The data inventory: which personal data flows where, per member, service and route.

New York (Education Law 2-d, Part 121) and Colorado (the Student Data Transparency and Security
Act) ask an agency to list the personally identifiable data it holds or passes on for each
district, and where it goes. For each stored route this says: the member and service, the
source connection and stream, the canonical record the stream carries and that record's PII
fields, the raw columns the source connector declares PII, the destination it is copied to, and
the copies that stay inside the hub (dead letters: the source record as read, sealed under the
member's data key or, written without a master key, in the clear; kept until `cohub data purge`
destroys them after the ``[retention]`` period).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.config import Retention
from hub.engine.connections import ConnectionRow, load_routes
from hub.engine.deadletters import is_sealed_record
from hub.model import RECORD_TYPES
from hub.plugins import PluginHost
from hub.retention import periods_for
from hub.sdk.connector import ConnectionContext, Connector
from hub.store.tables import dead_letters, members, services

#: How long a source connector may take to list its streams (it is asked without secrets).
DISCOVERY_SECONDS = 10.0


class Flow(msgspec.Struct, kw_only=True):
    """One route's personal data: where it comes from, what it holds, where copies go."""

    member: str
    member_name: str
    service: str
    service_name: str
    route: str
    enabled: bool
    source: str
    source_connector: str
    source_stream: str
    record: str
    destination: str
    destination_connector: str
    #: Whose system the destination is: a member code, or "cooperative".
    destination_owner: str
    destination_stream: str
    #: The canonical record's PII fields (nested ones as ``parent.child``).
    pii_fields: list[str]
    #: Raw source columns the connector says hold PII (what a dead letter holds).
    pii_columns: list[str]
    dead_letters_open: int
    dead_letters_resolved: int
    #: Of those, how many hold the source record sealed under the member's data key, and how
    #: many in the clear (written without a master key): readable by whoever reads the database.
    dead_letters_sealed: int
    dead_letters_unsealed: int
    #: Days open and resolved dead letters are kept (None: for good), from ``[retention]``.
    dead_letters_days: int | None
    resolved_dead_letters_days: int | None


def _instance(host: PluginHost, row: ConnectionRow) -> Connector | None:
    """The connection's connector with its options and no secrets (nothing it says here needs
    them), or None if its connector is not loaded or the options no longer parse."""
    try:
        cls = host.connector(row.connector)
        options = cls.parse_options(row.options)
    except (KeyError, msgspec.ValidationError):
        return None
    context = ConnectionContext(connection=row.name, member=row.member, base_dir=row.base_dir)
    return cls(options, {}, context)


async def _record_of(connector: Connector | None, stream: str) -> str:
    """The canonical record `stream` carries, as the source connector declares it ("" if it
    cannot say without reaching its system)."""
    if connector is None:
        return ""
    try:
        specs = await asyncio.wait_for(connector.streams(), DISCOVERY_SECONDS)
    except Exception:  # unreachable without secrets, or not discoverable: say nothing
        return ""
    finally:
        await connector.close()
    return next((spec.record for spec in specs if spec.name == stream), "")


def _pii_columns(connector: Connector | None, stream: str) -> list[str]:
    if connector is None:
        return []
    try:
        return sorted(connector.pii_columns(stream))
    except Exception:  # a stream the connector does not know (any more)
        return []


async def inventory(
    engine: AsyncEngine, host: PluginHost, retention: Retention | None = None
) -> list[Flow]:
    """One `Flow` per stored route, ordered by member, service and route."""
    retention = retention or Retention()
    async with engine.connect() as conn:
        rows = await load_routes(conn)
        member_names = dict((await conn.execute(select(members.c.code, members.c.name))).all())
        service_names = dict((await conn.execute(select(services.c.code, services.c.name))).all())
        letters: dict[tuple[str, str], int] = {}
        held = await conn.stream(
            select(dead_letters.c.route, dead_letters.c.status, dead_letters.c.raw)
        )
        async for route, status, raw in held:
            for kind in (
                "open" if status == "open" else "resolved",
                "sealed" if is_sealed_record(raw) else "unsealed",
            ):
                letters[route, kind] = letters.get((route, kind), 0) + 1
    flows = []
    for row in rows:
        source = _instance(host, row.source)
        record = await _record_of(source, row.source_stream)
        record_type = RECORD_TYPES.get(record)
        periods = periods_for(retention, row.source_stream)
        flows.append(
            Flow(
                member=row.member or "cooperative",
                member_name=member_names.get(row.member, "") if row.member else "",
                service=row.service,
                service_name=service_names.get(row.service, ""),
                route=row.name,
                enabled=row.enabled,
                source=row.source.name,
                source_connector=row.source.connector,
                source_stream=row.source_stream,
                record=record,
                destination=row.destination.name,
                destination_connector=row.destination.connector,
                destination_owner=row.destination.member or "cooperative",
                destination_stream=row.destination_stream,
                pii_fields=sorted(record_type.pii_fields()) if record_type else [],
                pii_columns=_pii_columns(source, row.source_stream),
                dead_letters_open=letters.get((row.name, "open"), 0),
                dead_letters_resolved=letters.get((row.name, "resolved"), 0),
                dead_letters_sealed=letters.get((row.name, "sealed"), 0),
                dead_letters_unsealed=letters.get((row.name, "unsealed"), 0),
                dead_letters_days=periods.dead_letters_days,
                resolved_dead_letters_days=periods.resolved_dead_letters_days,
            )
        )
    return sorted(flows, key=lambda f: (f.member, f.service, f.route))


def flow_rows(flows: list[Flow]) -> list[dict[str, Any]]:
    """Flows as flat rows for CSV: lists joined with ``;``, None as ""."""
    rows = []
    for flow in flows:
        row = msgspec.to_builtins(flow)
        for key, value in row.items():
            if isinstance(value, list):
                row[key] = ";".join(value)
            elif value is None:
                row[key] = ""
        rows.append(row)
    return rows


__all__ = ["Flow", "flow_rows", "inventory"]
