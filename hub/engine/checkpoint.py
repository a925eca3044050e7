"""Checkpoints: a delivered batch's state, usage, dead letters and run counters in ONE transaction.

Committing them together is what makes a crash harmless: either all of a batch's effects are in
the store, or none are and the batch is read again from the previous checkpoint, with the same
usage idempotency keys.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.billing.periods import FiscalCalendar
from hub.engine.deadletters import is_sealed_record, record_digest, seal_record
from hub.keyring import Keyring, keyring_for
from hub.metering import append_usage, ledger_entries
from hub.sdk.connector import Reject, State
from hub.sdk.lifecycle import RunCounts, UsageQuantity
from hub.store.database import writing
from hub.store.tables import dead_letters, runs, stream_states

#: This process, as run rows name the holder of a claim; only the holder commits checkpoints.
WORKER = f"{socket.gethostname()}:{os.getpid()}"

#: Which side of a route refused a dead letter's record (the ``side`` column): the source, the
#: destination, or a transform of the route that held it back (`sdk.Transformed`).
SOURCE, DESTINATION, HOLD = "source", "destination", "hold"


class ClaimLost(Exception):
    """The run's claim passed to another worker (its lease lapsed): this process must stop."""


class Delivered(msgspec.Struct, frozen=True, kw_only=True):
    """A batch the destination has written: what its checkpoint commits. Plain data, so a part
    of a partitioned read can send it from its own process (records stay there)."""

    state_before: State | None
    state: State
    member: str | None
    read: int
    written: int
    rejects: list[Reject]
    usage: list[UsageQuantity]
    #: Records the destination refused, each `raw` the canonical record as it was given.
    refused: list[Reject] = msgspec.field(default_factory=list)
    #: Records a transform held back, each `raw` the canonical record as it was given to it.
    held: list[Reject] = msgspec.field(default_factory=list)
    #: Records the destination marked deleted because the source reported them deleted.
    deleted: int = 0
    #: Calls to vendor systems retried while the batch was read and written, where the run's
    #: own counters did not see them (a part's process).
    retried: int = 0


class StreamState(msgspec.Struct, frozen=True, kw_only=True):
    """Where a route resumes: the source's state, and for full refreshes the run that began the
    current read cycle and whether that cycle finished."""

    state: State | None = None
    generation: int | None = None
    cycle_complete: bool = False


async def load_state(conn: AsyncConnection, route: str) -> StreamState:
    """The stored state of `route` (empty: from the beginning)."""
    row = (
        await conn.execute(
            select(
                stream_states.c.state, stream_states.c.generation, stream_states.c.cycle_complete
            ).where(stream_states.c.route == route)
        )
    ).first()
    if row is None:
        return StreamState()
    return StreamState(
        state=row.state, generation=row.generation, cycle_complete=row.cycle_complete
    )


async def save_state(
    conn: AsyncConnection,
    *,
    route: str,
    stream: str,
    state: State | None,
    run_id: int | None,
    **extra: Any,
) -> None:
    """Insert or replace the stored state of `route`."""
    values = {
        "stream": stream,
        "state": state,
        "run_id": run_id,
        "updated_at": datetime.now(UTC),
        **extra,
    }
    updated = await conn.execute(
        stream_states.update().where(stream_states.c.route == route).values(values)
    )
    if updated.rowcount == 0:
        await conn.execute(stream_states.insert().values(route=route, **values))


class BatchEffects(msgspec.Struct, frozen=True, kw_only=True):
    """What a delivered batch adds to the checkpoint that commits it, besides the route's state:
    its usage, keyed by the batch's `fingerprint`, and its dead letters (the source's `rejects`,
    the records the destination `refused` and those a transform `held`)."""

    member: str | None
    fingerprint: str
    usage: Sequence[UsageQuantity]
    rejects: Sequence[Reject] = ()
    refused: Sequence[Reject] = ()
    held: Sequence[Reject] = ()


async def commit_checkpoint(
    engine: AsyncEngine,
    *,
    run_id: int,
    route: str,
    stream: str,
    service: str,
    state: State,
    generation: int,
    counts: RunCounts,
    batches: Sequence[BatchEffects] = (),
    calendar: FiscalCalendar | None = None,
) -> bool:
    """Store the route's state and the run's counters with the usage and dead letters of the
    `batches` delivered since the last checkpoint, all at once; return whether the run was asked
    to stop (`cohub runs cancel`). Several batches in one transaction cost about what one does:
    the parts of a partitioned read deliver faster than one checkpoint each can keep up with."""
    now = datetime.now(UTC)
    letters = [
        (
            batch,
            [(SOURCE, r) for r in batch.rejects]
            + [(DESTINATION, r) for r in batch.refused]
            + [(HOLD, r) for r in batch.held],
        )
        for batch in batches
    ]
    letters = [(batch, theirs) for batch, theirs in letters if theirs]
    # Dead letters are sealed under the member's data key when there is a master key; the key
    # is made (in its own transaction) before the checkpoint's transaction opens.
    keyring = keyring_for(engine) if letters else None
    if keyring is not None:
        for member in dict.fromkeys(batch.member for batch, _ in letters):
            await keyring.ensure(member)
    async with writing(engine) as conn:
        await save_state(
            conn,
            route=route,
            stream=stream,
            state=state,
            run_id=run_id,
            generation=generation,
            cycle_complete=False,
        )
        events = [
            event
            for batch in batches
            for event in ledger_entries(
                batch.usage,
                fingerprint=batch.fingerprint,
                service=service,
                occurred_at=now,
                route=route,
                run_id=run_id,
            )
        ]
        await append_usage(conn, events, calendar)
        rows = []
        for batch, theirs in letters:
            fresh = await _not_yet_dead_lettered(conn, route, stream, batch.member, theirs, keyring)
            rows += [
                await _dead_letter(r, side, run_id, route, batch.member, stream, now, keyring)
                for side, r in fresh
            ]
        if rows:
            await conn.execute(dead_letters.insert(), rows)
        return await save_counts(conn, run_id, counts, state_after=state)


def stored_counts(row: Any) -> RunCounts:
    """A run's counters as its row holds them (what `save_counts` and the run's end stored)."""
    return RunCounts(
        read=row["records_read"],
        written=row["records_written"],
        rejected=row["records_rejected"],
        batches=row["batches"],
        retried=row["retries"],
        deleted=row["records_deleted"],
    )


async def save_counts(conn: AsyncConnection, run_id: int, counts: RunCounts, **extra: Any) -> bool:
    """Store a run's running totals (and any other run columns in `extra`); return whether the
    run was asked to stop, read by the same statement. Raise ClaimLost, rolling the caller's
    transaction back, if the run is no longer this process's to commit."""
    stored = await conn.execute(
        runs.update()
        .where(runs.c.id == run_id, runs.c.worker == WORKER)
        .values(
            records_read=counts.read,
            records_written=counts.written,
            records_rejected=counts.rejected,
            batches=counts.batches,
            retries=counts.retried,
            records_deleted=counts.deleted,
            **extra,
        )
        .returning(runs.c.cancel_requested)
    )
    row = stored.first()
    if row is None:
        raise ClaimLost(f"run {run_id} is no longer held by {WORKER}")
    return bool(row[0])


async def _not_yet_dead_lettered(
    conn: AsyncConnection,
    route: str,
    stream: str,
    member: str | None,
    letters: Sequence[tuple[str, Reject]],
    keyring: Keyring | None,
) -> list[tuple[str, Reject]]:
    """(side, reject) pairs without an open dead letter for the same side, position, reason and
    record: a source read again (a re-exported file) does not pile up copies of the same
    failure. Sealed records are compared by their keyed digest (a ciphertext differs every
    time), plain ones as JSON."""
    if not letters:
        return []
    query = select(
        dead_letters.c.side, dead_letters.c.position, dead_letters.c.reason, dead_letters.c.raw
    ).where(
        dead_letters.c.route == route,
        dead_letters.c.status == "open",
        dead_letters.c.position.in_([r.position for _, r in letters]),
    )
    existing = {
        (side, p, reason, "digest:" + raw["digest"] if is_sealed_record(raw) else _encode(raw))
        for side, p, reason, raw in (await conn.execute(query)).all()
    }
    fresh = []
    for side, r in letters:
        raw = _json_safe(r.raw)
        if (side, r.position, r.reason, _encode(raw)) in existing:
            continue
        if keyring is not None:
            digest = await record_digest(
                keyring,
                member=member,
                route=route,
                stream=stream,
                position=r.position,
                reason=r.reason,
                raw=raw,
            )
            if (side, r.position, r.reason, "digest:" + digest) in existing:
                continue
        fresh.append((side, r))
    return fresh


_encode = msgspec.json.Encoder(order="sorted").encode


def _json_safe(raw: Any) -> Any:
    """A source record as JSON can hold it (dates, decimals and bytes become text)."""
    return msgspec.to_builtins(raw, enc_hook=str)


async def _dead_letter(
    reject: Reject,
    side: str,
    run_id: int,
    route: str,
    member: str | None,
    stream: str,
    now: datetime,
    keyring: Keyring | None,
) -> dict[str, Any]:
    raw = _json_safe(reject.raw)
    if keyring is not None:
        raw = await seal_record(
            keyring,
            member=member,
            route=route,
            stream=stream,
            position=reject.position,
            reason=reject.reason,
            raw=raw,
        )
    return {
        "run_id": run_id,
        "route": route,
        "member": member,
        "stream": stream,
        "position": reject.position,
        "reason": reject.reason,
        "raw": raw,
        "side": side,
        "status": "open",
        "created_at": now,
    }
