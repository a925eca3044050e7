"""The audit log: who changed what, when, append-only and hash-chained.

Each entry's hash covers its own content and the previous entry's hash (SHA-256 over a canonical
JSON array), so editing, removing or reordering any entry breaks the chain where it happened.
Entries are written in the transaction of the change they record: the change and its entry land
together or not at all. Details never hold a secret value (they are masked before hashing).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.redaction import mask
from hub.store.database import writing
from hub.store.tables import audit_log

#: The previous hash of the first entry.
GENESIS = "0" * 64


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def entry_hash(
    prev_hash: str, at: datetime, actor: str, action: str, target: str, details: Any
) -> str:
    """SHA-256 of ``[prev_hash, at (ISO 8601, UTC), actor, action, target, details]`` as JSON
    with sorted keys and no spaces: what an auditor recomputes from an export."""
    body = json.dumps(
        [prev_hash, at.astimezone(UTC).isoformat(), actor, action, target, details],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


async def record(
    conn: AsyncConnection,
    *,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append an entry in the caller's transaction. On PostgreSQL writers take the table's lock
    in turn, so two workers never chain onto the same previous entry."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE"))
    prev = await conn.scalar(select(audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1))
    prev = prev or GENESIS
    at = datetime.now(UTC)
    # Through JSON and back, so what is hashed is exactly what the column gives back.
    clean = json.loads(json.dumps(mask(dict(details or {})), default=str))
    await conn.execute(
        audit_log.insert().values(
            at=at,
            actor=actor,
            action=action,
            target=target,
            details=clean,
            prev_hash=prev,
            hash=entry_hash(prev, at, actor, action, target, clean),
        )
    )


async def entries(conn: AsyncConnection) -> AsyncIterator[Entry]:
    """Every entry in the order written."""
    result = await conn.stream(select(audit_log).order_by(audit_log.c.id))
    async for row in result.mappings():
        yield msgspec.convert({str(k): v for k, v in row.items()}, Entry)


class Break(msgspec.Struct, frozen=True):
    """Where the chain does not hold, and why."""

    id: int
    problem: str


async def verify(conn: AsyncConnection) -> tuple[int, str, list[Break]]:
    """Walk the chain: (entries, the last hash, every break found)."""
    count, previous, breaks = 0, GENESIS, []
    last_id = 0
    async for entry in entries(conn):
        count += 1
        if entry.id <= last_id:
            breaks.append(Break(entry.id, "out of order"))
        if entry.prev_hash != previous:
            breaks.append(
                Break(entry.id, "does not follow the entry before it (one was removed or moved)")
            )
        expected = entry_hash(
            entry.prev_hash, entry.at, entry.actor, entry.action, entry.target, entry.details
        )
        if entry.hash != expected:
            breaks.append(Break(entry.id, "its content was changed after it was written"))
        previous, last_id = entry.hash, entry.id
    return count, previous, breaks


async def note(
    engine: AsyncEngine,
    *,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """`record` in a transaction of its own, for an action that has none to join (a run
    started, a login)."""
    async with writing(engine) as conn:
        await record(conn, actor=actor, action=action, target=target, details=details)
