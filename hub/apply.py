"""Applying a validated configuration to the store: a diff, then one transaction.

`plan` compares the configuration with what is stored and lists changes; `apply` makes them
all or none. Applying the same configuration twice changes nothing the second time. Connections
and routes created through the admin API are left alone unless the folder names them too (then
the folder takes them over).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.audit import record
from hub.config import HubConfig
from hub.store.database import writing
from hub.store.tables import connections, cooperative, members, routes, services


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """One row to add, change or remove, with what differs."""

    action: Literal["add", "change", "remove"]
    kind: str
    name: str
    details: list[str] = msgspec.field(default_factory=list)

    def __str__(self) -> str:
        sign = {"add": "+", "change": "~", "remove": "-"}[self.action]
        text = f"{sign} {self.kind} {self.name}"
        return text + "".join(f"\n    {d}" for d in self.details)


def desired_rows(config: HubConfig) -> list[tuple[str, Table, str, dict[str, dict[str, Any]]]]:
    """(kind, table, key column, rows by key) in dependency order."""
    as_row = msgspec.structs.asdict
    return [
        ("cooperative", cooperative, "code", {config.cooperative.code: as_row(config.cooperative)}),
        ("member", members, "code", {k: as_row(v) for k, v in config.members.items()}),
        ("service", services, "code", {k: as_row(v) for k, v in config.services.items()}),
        (
            "connection",
            connections,
            "name",
            {
                k: {**as_row(v), "base_dir": config.directory, "managed_by": "config"}
                for k, v in config.connections.items()
            },
        ),
        # Nested tables (schedule, restart) as plain dicts, for JSON columns.
        (
            "route",
            routes,
            "name",
            {
                k: {**msgspec.to_builtins(v), "managed_by": "config"}
                for k, v in config.routes.items()
            },
        ),
    ]


async def plan(conn: AsyncConnection, config: HubConfig) -> list[Change]:
    """The changes that would make the store match `config`."""
    changes: list[Change] = []
    removals: list[Change] = []
    for kind, table, key, wanted in desired_rows(config):
        stored = {row[key]: dict(row) for row in (await conn.execute(select(table))).mappings()}
        for name, row in wanted.items():
            full = {key: name, **row}
            if name not in stored:
                changes.append(Change(action="add", kind=kind, name=name))
            elif diff := _differences(stored[name], full):
                changes.append(Change(action="change", kind=kind, name=name, details=diff))
        # Connections and routes created through the API are not the folder's to remove.
        removals.extend(
            Change(action="remove", kind=kind, name=n)
            for n, row in stored.items()
            if n not in wanted and row.get("managed_by", "config") == "config"
        )
    return changes + removals[::-1]


def _differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    return [
        f"{column}: {stored.get(column)!r} → {value!r}"
        for column, value in wanted.items()
        if stored.get(column) != value
    ]


async def apply(
    engine: AsyncEngine, config: HubConfig, *, dry_run: bool = False, actor: str = "cohub apply"
) -> list[Change]:
    """Make the store match `config` in one transaction and return what changed; each change
    is recorded in the audit log, in the same transaction."""
    async with writing(engine) as conn:
        changes = await plan(conn, config)
        if dry_run or not changes:
            return changes
        tables = {kind: (table, key, rows) for kind, table, key, rows in desired_rows(config)}
        for change in changes:
            table, key, rows = tables[change.kind]
            if change.action == "add":
                await conn.execute(table.insert().values({key: change.name, **rows[change.name]}))
            elif change.action == "change":
                await conn.execute(
                    table.update().where(table.c[key] == change.name).values(rows[change.name])
                )
            else:
                await conn.execute(table.delete().where(table.c[key] == change.name))
            await record(
                conn,
                actor=actor,
                action=f"config.{change.action}",
                target=f"{change.kind} {change.name}",
                details={"folder": config.directory, "changes": change.details},
            )
    return changes
