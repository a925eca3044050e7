"""Retention: copies of district records and their history destroyed once their period is over.

The hub keeps four things that can outlive their use: dead letters (the source record as read,
PII included), the state snapshots of finished runs, manual state changes, and pushed records
waiting in the inbox for a run that does not come (`hub.engine.inbox`). ``[retention]`` in
cooperative.toml says how long each is kept, per stream where it says so; `purge` destroys what is
older, in one transaction with the audit entry that records what went (``data.purge``), and
reports it per member and stream. A dry run counts the same rows and changes nothing.

Runs themselves stay (their counts are the history usage and billing are checked against); only
their state snapshots go. Streams are the ones dead letters name, and for runs and state
changes the source stream of their route; inbox rows name their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import null, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub import audit
from hub.config import Retention
from hub.store.database import writing
from hub.store.tables import connections, dead_letters, inbox, routes, runs, state_changes

#: What a run's stream is when its route is gone.
UNKNOWN_STREAM = "-"


class Periods(msgspec.Struct, frozen=True):
    """One stream's retention periods in days (None: kept for good)."""

    dead_letters_days: int | None
    resolved_dead_letters_days: int | None
    runs_days: int | None
    state_changes_days: int | None
    inbox_days: int | None


def periods_for(retention: Retention, stream: str) -> Periods:
    """`stream`'s periods: its own overrides, the rest from ``[retention]``."""
    override = retention.streams.get(stream)
    values = {}
    for field in msgspec.structs.fields(Periods):
        own = getattr(override, field.name) if override is not None else None
        values[field.name] = own if own is not None else getattr(retention, field.name)
    return Periods(**values)


class PurgeLine(msgspec.Struct, kw_only=True):
    """What a purge destroyed (or would) for one member and stream."""

    member: str
    stream: str
    dead_letters_open: int = 0
    dead_letters_resolved: int = 0
    run_snapshots: int = 0
    state_changes: int = 0
    inbox_rows: int = 0

    def total(self) -> int:
        return (
            self.dead_letters_open
            + self.dead_letters_resolved
            + self.run_snapshots
            + self.state_changes
            + self.inbox_rows
        )


class PurgeReport(msgspec.Struct, kw_only=True):
    """Every line with something destroyed, the time periods were counted back from, and
    whether it was a dry run."""

    at: datetime
    dry_run: bool
    lines: list[PurgeLine]

    def totals(self) -> dict[str, int]:
        keys = (
            "dead_letters_open",
            "dead_letters_resolved",
            "run_snapshots",
            "state_changes",
            "inbox_rows",
        )
        return {key: sum(getattr(line, key) for line in self.lines) for key in keys}


def _older(stamp: datetime | None, days: int | None, now: datetime) -> bool:
    return days is not None and stamp is not None and stamp < now - timedelta(days=days)


async def _route_streams(conn: AsyncConnection) -> dict[str, tuple[str | None, str]]:
    """route → (member, source stream), for runs and state changes."""
    rows = await conn.execute(
        select(routes.c.name, connections.c.member, routes.c.source_stream).join(
            connections, connections.c.name == routes.c.source
        )
    )
    return {name: (member, stream) for name, member, stream in rows}


async def purge(
    engine: AsyncEngine,
    retention: Retention,
    *,
    actor: str,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PurgeReport:
    """Destroy dead letters, run state snapshots, state changes and inbox rows older than their
    periods
    (`dry_run`: only count them); a real purge appends a ``data.purge`` audit entry in the
    same transaction, so what went and the record of it land together."""
    now = now or datetime.now(UTC)
    lines: dict[tuple[str, str], PurgeLine] = {}

    def line(member: str | None, stream: str) -> PurgeLine:
        key = (member or "-", stream)
        if key not in lines:
            lines[key] = PurgeLine(member=key[0], stream=stream)
        return lines[key]

    # A dry run only reads: no write lock, nothing to roll back.
    async with engine.connect() if dry_run else writing(engine) as conn:
        route_info = await _route_streams(conn)
        letters: dict[str, list[int]] = {"open": [], "resolved": []}
        for row in await conn.execute(
            select(
                dead_letters.c.id,
                dead_letters.c.member,
                dead_letters.c.stream,
                dead_letters.c.status,
                dead_letters.c.created_at,
                dead_letters.c.resolved_at,
            )
        ):
            periods = periods_for(retention, row.stream)
            if row.status == "open":
                if _older(row.created_at, periods.dead_letters_days, now):
                    letters["open"].append(row.id)
                    line(row.member, row.stream).dead_letters_open += 1
            elif _older(row.resolved_at or row.created_at, periods.resolved_dead_letters_days, now):
                letters["resolved"].append(row.id)
                line(row.member, row.stream).dead_letters_resolved += 1

        snapshots: list[int] = []
        for row in await conn.execute(
            select(
                runs.c.id,
                runs.c.route,
                runs.c.member,
                runs.c.finished_at,
                runs.c.state_before,
                runs.c.state_after,
            ).where(runs.c.finished_at.is_not(None))
        ):
            if row.state_before is None and row.state_after is None:
                continue  # nothing left to destroy (JSON null reads back as None too)
            stream = route_info.get(row.route, (None, UNKNOWN_STREAM))[1]
            if _older(row.finished_at, periods_for(retention, stream).runs_days, now):
                snapshots.append(row.id)
                line(row.member, stream).run_snapshots += 1

        changes: list[int] = []
        for row in await conn.execute(
            select(state_changes.c.id, state_changes.c.route, state_changes.c.changed_at)
        ):
            member, stream = route_info.get(row.route, (None, UNKNOWN_STREAM))
            if _older(row.changed_at, periods_for(retention, stream).state_changes_days, now):
                changes.append(row.id)
                line(member, stream).state_changes += 1

        pushed: list[int] = []
        for row in await conn.execute(
            select(inbox.c.id, inbox.c.member, inbox.c.stream, inbox.c.received_at)
        ):
            if _older(row.received_at, periods_for(retention, row.stream).inbox_days, now):
                pushed.append(row.id)
                line(row.member, row.stream).inbox_rows += 1

        report = PurgeReport(
            at=now,
            dry_run=dry_run,
            lines=sorted(lines.values(), key=lambda x: (x.member, x.stream)),
        )
        if dry_run:
            return report
        for ids in _chunks(letters["open"] + letters["resolved"]):
            await conn.execute(dead_letters.delete().where(dead_letters.c.id.in_(ids)))
        for ids in _chunks(snapshots):
            await conn.execute(
                runs.update()
                .where(runs.c.id.in_(ids))
                .values(state_before=null(), state_after=null())
            )
        for ids in _chunks(changes):
            await conn.execute(state_changes.delete().where(state_changes.c.id.in_(ids)))
        for ids in _chunks(pushed):
            await conn.execute(inbox.delete().where(inbox.c.id.in_(ids)))
        await audit.record(
            conn,
            actor=actor,
            action="data.purge",
            target="retention",
            details={
                "totals": report.totals(),
                "lines": msgspec.to_builtins(report.lines),
                "periods": msgspec.to_builtins(retention),
            },
        )
    return report


def _chunks(ids: list[int], size: int = 500) -> Iterable[list[int]]:
    """Ids in pieces small enough for any driver's parameter limit."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def report_rows(report: PurgeReport) -> list[dict[str, Any]]:
    """The report's lines as plain rows (JSON and CSV output)."""
    return [{**msgspec.to_builtins(line), "total": line.total()} for line in report.lines]


__all__ = ["Periods", "PurgeLine", "PurgeReport", "periods_for", "purge", "report_rows"]
