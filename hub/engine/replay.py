"""Dead-letter replay: map the kept source records again and deliver those that now pass.

A replay is a run of its route (trigger ``replay``): it goes through the route's transforms and
destination like any batch, its usage is metered once (keyed by the dead letters it delivered),
and dead letters that still fail keep their place with the new reason.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.engine.checkpoint import save_counts
from hub.engine.claims import claim
from hub.engine.connections import open_connector
from hub.engine.deadletters import open_raw
from hub.engine.run import ConnectionFailed, Run, RunSummary, finish
from hub.keyring import attached
from hub.metering import record_usage
from hub.model import Record
from hub.plugins import PluginHookError, PluginHost, describe
from hub.redaction import redact_text
from hub.sdk.connector import Batch, Connector
from hub.sdk.lifecycle import RunCounts, UsageQuantity
from hub.store.database import writing
from hub.store.tables import dead_letters
from hub.vault import VaultError


class ReplayOutcome(msgspec.Struct, kw_only=True):
    """What replaying one route's dead letters did."""

    run: RunSummary
    replayed: list[int]
    still_failing: dict[int, str]


async def replay(engine: AsyncEngine, host: PluginHost, ids: Sequence[int]) -> list[ReplayOutcome]:
    """Replay the open dead letters `ids`, one run per route."""
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    select(dead_letters)
                    .where(dead_letters.c.id.in_(ids), dead_letters.c.status == "open")
                    .order_by(dead_letters.c.id)
                )
            )
            .mappings()
            .all()
        )
    by_route: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_route[row["route"]].append(row)
    return [
        await _replay_route(engine, host, route, letters)
        for route, letters in sorted(by_route.items())
    ]


async def _replay_route(
    engine: AsyncEngine, host: PluginHost, name: str, letters: list
) -> ReplayOutcome:
    held = await claim(engine, name, "replay")
    route, run_id, start = held.route, held.run_id, held.start
    run = Run(engine, host, route, run_id, "replay", start, None, None)
    records: list[Record] = []
    delivered: list[int] = []
    failing: dict[int, str] = {}
    opened: list[Connector] = []
    status, error = "succeeded", None
    try:
        source = open_connector(host, route.source)
        opened.append(source)
        destination = open_connector(host, route.destination)
        opened.append(destination)
        keyring = attached(engine)
        for letter in letters:
            try:
                raw = await open_raw(letter, keyring)
            except VaultError as unreadable:
                # A purged member's record is gone for good: refused, never delivered.
                failing[letter["id"]] = f"cannot replay: record unreadable: {unreadable}"
                continue
            try:
                record = source.map_raw(letter["stream"], raw)
            except NotImplementedError as refused:
                raise ConnectionFailed(
                    host, route.source, "map a dead letter again", refused
                ) from None
            except Exception as still:
                failing[letter["id"]] = redact_text(
                    getattr(still, "reason", None) or describe(still)
                )
                continue
            records.append(record)
            delivered.append(letter["id"])
        run.counts.read = len(letters)
        run.counts.rejected = len(failing)
        if records:
            member = letters[0]["member"]
            written, usage = await run.send(
                destination, Batch(records=records, state={}, member=member)
            )
            run.counts.written = written
            run.counts.batches = 1
        else:
            usage = []
        await _commit(engine, run_id, route.service, name, delivered, failing, usage, run.counts)
    except Exception as failure:
        named = isinstance(failure, ConnectionFailed | PluginHookError)
        status, error = "failed", redact_text(str(failure) if named else describe(failure))
        delivered = []
    finally:
        for connector in opened:
            await connector.close()
    # A replay delivers a few records; it never completes (or starts) a full read cycle.
    await finish(
        engine, route, run_id, status, error, run.counts, start.generation, read_complete=False
    )
    summary = RunSummary(
        id=run_id, route=name, member=route.member, status=status, counts=run.counts, error=error
    )
    return ReplayOutcome(run=summary, replayed=delivered, still_failing=failing)


async def _commit(
    engine: AsyncEngine,
    run_id: int,
    service: str,
    route: str,
    delivered: list[int],
    failing: dict[int, str],
    usage: Sequence[UsageQuantity],
    counts: RunCounts,
) -> None:
    """Usage, dead-letter outcomes and the run's counters in one transaction."""
    now = datetime.now(UTC)
    fingerprint = (
        "replay-" + hashlib.sha256(",".join(map(str, delivered)).encode()).hexdigest()[:32]
    )
    async with writing(engine) as conn:
        await record_usage(
            conn,
            usage,
            fingerprint=fingerprint,
            service=service,
            occurred_at=now,
            route=route,
            run_id=run_id,
        )
        if delivered:
            await conn.execute(
                dead_letters.update()
                .where(dead_letters.c.id.in_(delivered))
                .values(status="replayed", resolution=f"replayed in run {run_id}", resolved_at=now)
            )
        for letter_id, reason in failing.items():
            await conn.execute(
                dead_letters.update().where(dead_letters.c.id == letter_id).values(reason=reason)
            )
        await save_counts(conn, run_id, counts)
