"""Dead-letter replay: deliver again the records that could not be delivered.

A source's reject keeps the source row: it is mapped again (`map_raw`) and goes through the
route's transforms and destination like any batch. A destination's reject keeps the canonical
record as the destination was given it (transformed already): it is written again as it is.
A record a transform held back keeps the record as that transform was given it: it goes through
the route's transforms again, so whatever held it decides afresh (a contract added since). A replay is a run of its route (trigger ``replay``); its usage is metered once (keyed by the
dead letters it delivered), and dead letters that still fail keep their place with the new
reason.
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

from hub.engine.checkpoint import DESTINATION, HOLD, SOURCE, save_counts
from hub.engine.claims import claim
from hub.engine.connections import open_connector
from hub.engine.deadletters import open_raw
from hub.engine.run import ConnectionFailed, Run, RunFailed, RunSummary, finish
from hub.keyring import Keyring, attached
from hub.metering import record_usage
from hub.model import Record, record_type
from hub.plugins import PluginHookError, PluginHost, describe
from hub.redaction import redact_text
from hub.sdk.connector import Batch, Connector, Reject, StreamSpec
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
    delivered: list[int] = []
    failing: dict[int, str] = {}
    usage: list[UsageQuantity] = []
    opened: list[Connector] = []
    status, error = "succeeded", None
    try:
        source = open_connector(host, route.source)
        opened.append(source)
        destination = open_connector(host, route.destination)
        opened.append(destination)
        keyring = attached(engine)
        member = letters[0]["member"]
        mapped = await _mapped(run, source, _of(letters, SOURCE), keyring, failing)
        kept = await _kept(run, source, _of(letters, DESTINATION), keyring, failing)
        # A held record goes through the transforms again: whatever held it may let it pass now.
        held = await _kept(run, source, _of(letters, HOLD), keyring, failing)
        for records, transform in ((mapped, True), (kept, False), (held, True)):
            if not records:
                continue
            batch = Batch(records=list(records.values()), state={}, member=member)
            if transform:
                sent = await run.send(destination, batch)
            else:  # the record the destination refused, transformed already
                sent = await run.deliver(
                    destination, run.batch_context(batch.records, member), batch
                )
            failing |= _refused_letters(records, sent.refused + sent.held)
            delivered += [letter for letter in records if letter not in failing]
            usage += sent.usage
            run.counts.written += sent.written
            run.counts.batches += 1
        run.counts.read = len(letters)
        run.counts.rejected = len(failing)
        await _commit(engine, run_id, route.service, name, delivered, failing, usage, run.counts)
    except Exception as failure:
        named = isinstance(failure, RunFailed | PluginHookError)
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


def _of(letters: list, side: str) -> list:
    return [letter for letter in letters if letter["side"] == side]


async def _opened(letter: Any, keyring: Keyring | None, failing: dict[int, str]) -> Any:
    """The kept record of `letter`, or None (and why, in `failing`) if it cannot be read."""
    try:
        return await open_raw(letter, keyring)
    except VaultError as unreadable:
        # A purged member's record is gone for good: refused, never delivered.
        failing[letter["id"]] = f"cannot replay: record unreadable: {unreadable}"
        return None


async def _mapped(
    run: Run, source: Connector, letters: list, keyring: Keyring | None, failing: dict[int, str]
) -> dict[int, Record]:
    """The source rows the source refused, mapped again, by dead letter; those that still fail
    go to `failing` with the reason."""
    records: dict[int, Record] = {}
    for letter in letters:
        raw = await _opened(letter, keyring, failing)
        if raw is None:
            continue
        try:
            records[letter["id"]] = source.map_raw(letter["stream"], raw)
        except NotImplementedError as refused:
            raise ConnectionFailed(
                run.host, run.route.source, "map a dead letter again", refused
            ) from None
        except Exception as still:
            failing[letter["id"]] = redact_text(getattr(still, "reason", None) or describe(still))
    return records


async def _kept(
    run: Run, source: Connector, letters: list, keyring: Keyring | None, failing: dict[int, str]
) -> dict[int, Record]:
    """The records the destination refused, as they were given to it, by dead letter: their
    record type is the one the source names for the route's stream."""
    if not letters:
        return {}
    kind = await _stream_record(run, source)
    records: dict[int, Record] = {}
    for letter in letters:
        raw = await _opened(letter, keyring, failing)
        if raw is None:
            continue
        try:
            records[letter["id"]] = msgspec.convert(raw, kind, strict=False)
        except msgspec.ValidationError as invalid:
            failing[letter["id"]] = f"cannot replay: not a valid {kind.record_name}: {invalid}"
    return records


async def _stream_record(run: Run, source: Connector) -> type[Record]:
    """The record type of the route's source stream, as the source's `streams` names it."""
    route = run.route

    def blame(error: BaseException) -> ConnectionFailed:
        return ConnectionFailed(run.host, route.source, "name its streams", error)

    specs = await run.call(source.streams(), "streams", blame, expect=list)
    named = {spec.name: spec.record for spec in specs if isinstance(spec, StreamSpec)}
    try:
        return record_type(named.get(route.source_stream, ""))
    except KeyError:
        raise blame(
            LookupError(f"no record type for stream {route.source_stream!r}: cannot replay")
        ) from None


def _refused_letters(records: dict[int, Record], refused: list[Reject]) -> dict[int, str]:
    """The dead letters whose record the destination refused again, with its reason."""
    if not refused:
        return {}
    kind = type(next(iter(records.values())))
    reasons = {msgspec.convert(r.raw, kind, strict=False).key: r.reason for r in refused}
    return {
        letter: reasons[record.key] for letter, record in records.items() if record.key in reasons
    }


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
