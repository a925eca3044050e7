"""Checkpoints: a delivered batch's state, usage, dead letters and run counters in ONE transaction.

Committing them together is what makes a crash harmless: either all of a batch's effects are in
the store, or none are and the batch is read again from the previous checkpoint, with the same
usage idempotency keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.metering import record_usage
from hub.sdk.connector import Reject, State
from hub.sdk.lifecycle import RunCounts, UsageQuantity
from hub.store.database import writing
from hub.store.tables import dead_letters, runs, stream_states


async def load_state(conn: AsyncConnection, route: str) -> State | None:
    """The state a route resumes from (None: from the beginning)."""
    return await conn.scalar(select(stream_states.c.state).where(stream_states.c.route == route))


async def commit_batch(
    engine: AsyncEngine,
    *,
    run_id: int,
    route: str,
    stream: str,
    member: str | None,
    service: str,
    state: State,
    counts: RunCounts,
    usage: Sequence[UsageQuantity],
    fingerprint: str,
    rejects: Sequence[Reject],
) -> None:
    """Store a delivered batch's checkpoint, usage, dead letters and the run's counters at once."""
    now = datetime.now(UTC)
    async with writing(engine) as conn:
        updated = await conn.execute(
            stream_states.update()
            .where(stream_states.c.route == route)
            .values(stream=stream, state=state, run_id=run_id, updated_at=now)
        )
        if updated.rowcount == 0:
            await conn.execute(
                stream_states.insert().values(
                    route=route, stream=stream, state=state, run_id=run_id, updated_at=now
                )
            )
        await record_usage(
            conn,
            usage,
            fingerprint=fingerprint,
            service=service,
            occurred_at=now,
            route=route,
            run_id=run_id,
        )
        fresh = await _not_yet_dead_lettered(conn, route, rejects)
        if fresh:
            await conn.execute(
                dead_letters.insert(),
                [_dead_letter(r, run_id, route, member, stream, now) for r in fresh],
            )
        await conn.execute(
            runs.update()
            .where(runs.c.id == run_id)
            .values(
                records_read=counts.read,
                records_written=counts.written,
                records_rejected=counts.rejected,
                batches=counts.batches,
                state_after=state,
            )
        )


async def _not_yet_dead_lettered(
    conn: AsyncConnection, route: str, rejects: Sequence[Reject]
) -> list[Reject]:
    """Rejects without an open dead letter for the same position, reason and record: a source
    read again (a re-exported file) does not pile up copies of the same failure."""
    if not rejects:
        return []
    query = select(dead_letters.c.position, dead_letters.c.reason, dead_letters.c.raw).where(
        dead_letters.c.route == route,
        dead_letters.c.status == "open",
        dead_letters.c.position.in_([r.position for r in rejects]),
    )
    existing = {(p, reason, _encode(raw)) for p, reason, raw in (await conn.execute(query)).all()}
    return [
        r for r in rejects if (r.position, r.reason, _encode(_json_safe(r.raw))) not in existing
    ]


_encode = msgspec.json.Encoder(order="sorted").encode


def _json_safe(raw: Any) -> Any:
    """A source record as JSON can hold it (dates, decimals and bytes become text)."""
    return msgspec.to_builtins(raw, enc_hook=str)


def _dead_letter(
    reject: Reject, run_id: int, route: str, member: str | None, stream: str, now: datetime
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "route": route,
        "member": member,
        "stream": stream,
        "position": reject.position,
        "reason": reject.reason,
        "raw": _json_safe(reject.raw),
        "status": "open",
        "created_at": now,
    }
