"""The inbox: raw records vendors pushed to ``/inbound/<connection>``, kept until every route
that reads them has delivered them.

A push is stored as one row per request: its raw records, sealed under the member's data key
like a dead letter's source record (`hub.keyring`, bound to connection, stream and the body's
digest), and a keyed digest of the body, so a vendor retrying the same body is stored once. The
runs of the connection's inbound routes read the rows after their checkpoint (state
``{"inbox": last row id}``) and map each raw record with the connector's `map_raw`, so from
there on a pushed record travels exactly as a polled one: transforms, the destination's write,
the checkpoint with usage and dead letters.

Checkpoints are row ids, so rows of one connection must become visible in id order: a push
locks its connection's row while it inserts (PostgreSQL; SQLite has one writer anyway), so no
row with a smaller id can commit after a larger one was read. Once every inbound route of the
stream has a committed checkpoint past a row, its records are dropped (`settle`); the row
itself stays for `DEDUP_WINDOW`, to recognise a late retry, then goes.

Signed pushes (the hub's scheme) also leave their signature's hash here until its timestamp
leaves the tolerance window: the same signed request sent again is a replay, refused by every
process sharing the database.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import delete, func, null, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.engine.checkpoint import load_state
from hub.engine.connections import RouteRow
from hub.keyring import Keyring, attached, keyring_for
from hub.model import Record
from hub.plugins import describe
from hub.redaction import redact_text
from hub.sdk.connector import Batch, Connector, Reject, State
from hub.sdk.errors import BadRecord
from hub.store.database import writing
from hub.store.tables import connections, inbound_signatures, inbox, routes, stream_states
from hub.vault import VaultError

#: How long a stored body is remembered after its records were delivered, so that a vendor's
#: retry of it (after a lost answer, say) is not stored and delivered again.
DEDUP_WINDOW = timedelta(hours=24)
#: Inbox rows read per query by a run.
PAGE_ROWS = 500

_encode = msgspec.json.Encoder(order="sorted").encode


class Replayed(Exception):
    """A signed request whose signature was accepted already: a replay."""


class Unknown(LookupError):
    """The connection is gone (removed while the push was being read)."""


class Seen(msgspec.Struct, frozen=True):
    """An accepted signature, as kept against replays: its hash and when it may be forgotten."""

    digest: str
    expires_at: datetime


def signature_seen(connection: str, signature: str, timestamp: int, tolerance: int) -> Seen:
    """What is kept of a signature accepted for `connection`: never the signature itself."""
    digest = hashlib.sha256(f"{connection}\0{signature.strip().lower()}".encode()).hexdigest()
    expires = datetime.fromtimestamp(timestamp, UTC) + timedelta(seconds=tolerance)
    return Seen(digest, expires)


class Stored(msgspec.Struct, frozen=True):
    """What became of a push: its inbox row (None: nothing to keep), and whether the same body
    was stored already (a retry)."""

    row: int | None
    duplicate: bool = False


def _place(connection: str, stream: str, digest: str) -> tuple[str, ...]:
    return ("inbox", connection, stream, digest)


async def body_digest(engine: AsyncEngine, connection: str, member: str | None, body: bytes) -> str:
    """The body's digest for recognising a retry: keyed by the member's data key when there is
    a master key (nobody without it can test a guess against it), else a plain SHA-256."""
    keyring = keyring_for(engine)
    if keyring is None:
        return hashlib.sha256(connection.encode() + b"\0" + body).hexdigest()
    await keyring.ensure(member)
    return await keyring.digest(member, ("inbox", connection), body)


async def replayed(engine: AsyncEngine, seen: Seen) -> bool:
    """Whether a signature was accepted already (still within its window)."""
    async with engine.connect() as conn:
        found = await conn.scalar(
            select(inbound_signatures.c.digest).where(
                inbound_signatures.c.digest == seen.digest,
                inbound_signatures.c.expires_at >= datetime.now(UTC),
            )
        )
    return found is not None


async def store(
    engine: AsyncEngine,
    *,
    connection: str,
    member: str | None,
    stream: str | None,
    raws: Sequence[dict[str, Any]],
    digest: str,
    seen: Seen | None,
) -> Stored:
    """Keep a push's raw records for the runs of `stream` (none: keep only its signature) in
    one transaction with its signature; Replayed if the signature was accepted meanwhile."""
    keyring = keyring_for(engine) if raws else None
    payload: Any = msgspec.to_builtins(list(raws))
    if keyring is not None and stream is not None:
        await keyring.ensure(member)
        payload = {
            "sealed": await keyring.seal(member, _place(connection, stream, digest), _encode(raws))
        }
    now = datetime.now(UTC)
    async with writing(engine) as conn:
        # Pushes to one connection commit one after another, in id order (see the module).
        locked = await conn.scalar(
            select(connections.c.name)
            .where(connections.c.name == connection)
            .with_for_update(key_share=True)
        )
        if locked is None:
            raise Unknown(connection)
        if seen is not None:
            await conn.execute(
                delete(inbound_signatures).where(inbound_signatures.c.expires_at < now)
            )
            taken = select(inbound_signatures.c.digest).where(
                inbound_signatures.c.digest == seen.digest
            )
            if await conn.scalar(taken) is not None:
                raise Replayed(connection)
            await conn.execute(
                inbound_signatures.insert().values(
                    digest=seen.digest, connection=connection, expires_at=seen.expires_at
                )
            )
        if not raws or stream is None:
            return Stored(None)
        earlier = await conn.scalar(
            select(inbox.c.id).where(
                inbox.c.connection == connection,
                inbox.c.digest == digest,
                inbox.c.received_at >= now - DEDUP_WINDOW,
            )
        )
        if earlier is not None:
            return Stored(earlier, duplicate=True)
        row = await conn.execute(
            inbox.insert().values(
                connection=connection,
                stream=stream,
                member=member,
                raws=payload,
                records=len(raws),
                digest=digest,
                received_at=now,
            )
        )
        return Stored(row.inserted_primary_key[0])


async def inbound_routes(
    conn: AsyncConnection, connection: str, stream: str | None = None
) -> list[str]:
    """The inbound routes reading `connection` (and `stream`), enabled or not: their inbox rows
    wait for a disabled one (until retention purges them)."""
    query = select(routes.c.name).where(routes.c.inbound.is_(True), routes.c.source == connection)
    if stream is not None:
        query = query.where(routes.c.source_stream == stream)
    return list((await conn.scalars(query.order_by(routes.c.name))).all())


def position(state: State | None) -> int:
    """The last inbox row a route's checkpoint is past (0: none)."""
    value = (state or {}).get("inbox", 0)
    return value if isinstance(value, int) else 0


async def _raws(row: Any, keyring: Keyring | None) -> list[dict[str, Any]]:
    """The raw records of inbox `row`; VaultError if they cannot be opened."""
    raws = row.raws
    if isinstance(raws, dict) and "sealed" in raws:
        if keyring is None or not keyring.available():
            raise VaultError("the records are sealed and no master key is present")
        place = _place(row.connection, row.stream, row.digest)
        return msgspec.json.decode(await keyring.open_sealed(row.member, place, raws["sealed"]))
    return list(raws)


def _mapped(
    source: Connector, stream: str, row: Any, raws: list[dict[str, Any]]
) -> tuple[list[Record], list[Reject]]:
    """Row `row`'s raw records mapped by the source; those it cannot map are rejects with the
    reason. A source that cannot map at all fails the run (NotImplementedError goes up)."""
    records: list[Record] = []
    rejects: list[Reject] = []
    for index, raw in enumerate(raws, start=1):
        where = f"inbox {row.id} record {index}"
        try:
            records.append(source.map_raw(stream, raw))
        except NotImplementedError:
            raise
        except BadRecord as bad:
            rejects.append(Reject(position=bad.position or where, reason=bad.reason, raw=raw))
        except Exception as error:
            rejects.append(Reject(position=where, reason=redact_text(describe(error)), raw=raw))
    return records, rejects


async def read(
    engine: AsyncEngine, source: Connector, route: RouteRow, state: State | None
) -> AsyncIterator[Batch]:
    """The inbox rows of the route's source and stream after `state`, as batches of about the
    route's batch size (whole rows: a checkpoint is a row id)."""
    keyring = attached(engine)
    after = position(state)
    records: list[Record] = []
    rejects: list[Reject] = []
    while True:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(inbox)
                    .where(
                        inbox.c.connection == route.source.name,
                        inbox.c.stream == route.source_stream,
                        inbox.c.id > after,
                        inbox.c.raws.is_not(None),
                    )
                    .order_by(inbox.c.id)
                    .limit(PAGE_ROWS)
                )
            ).all()
        for row in rows:
            try:
                raws = await _raws(row, keyring)
            except VaultError as unreadable:
                reason = f"record unreadable: {unreadable}"
                rejects.append(Reject(position=f"inbox {row.id}", reason=reason, raw={}))
            else:
                mapped, refused = _mapped(source, route.source_stream, row, raws)
                records += mapped
                rejects += refused
            after = row.id
            if len(records) + len(rejects) >= route.batch_size:
                yield Batch(records=records, rejects=rejects, state={"inbox": after})
                records, rejects = [], []
        if len(rows) < PAGE_ROWS:
            break
    if records or rejects:
        yield Batch(records=records, rejects=rejects, state={"inbox": after})


async def settle(engine: AsyncEngine, connection: str, stream: str) -> int:
    """Drop the records of rows every inbound route of (`connection`, `stream`) has a committed
    checkpoint past, and rows delivered longer ago than the dedup window; how many dropped."""
    now = datetime.now(UTC)
    async with writing(engine) as conn:
        names = await inbound_routes(conn, connection, stream)
        if not names:
            return 0
        floor = min([position((await load_state(conn, name)).state) for name in names])
        done = await conn.execute(
            update(inbox)
            .where(
                inbox.c.connection == connection,
                inbox.c.stream == stream,
                inbox.c.id <= floor,
                inbox.c.raws.is_not(None),
            )
            .values(raws=null(), delivered_at=now)  # SQL NULL, not JSON null
        )
        await conn.execute(
            delete(inbox).where(
                inbox.c.connection == connection, inbox.c.delivered_at < now - DEDUP_WINDOW
            )
        )
    return done.rowcount


async def pending(engine: AsyncEngine) -> list[str]:
    """The enabled inbound routes (both connections enabled) with pushed records past their
    checkpoint: the routes a run should start for."""
    source, destination = connections.alias("source"), connections.alias("destination")
    async with engine.connect() as conn:
        newest = {
            (name, stream): last
            for name, stream, last in await conn.execute(
                select(inbox.c.connection, inbox.c.stream, func.max(inbox.c.id))
                .where(inbox.c.raws.is_not(None))
                .group_by(inbox.c.connection, inbox.c.stream)
            )
        }
        if not newest:
            return []
        candidates = (
            await conn.execute(
                select(
                    routes.c.name, routes.c.source, routes.c.source_stream, stream_states.c.state
                )
                .join(source, source.c.name == routes.c.source)
                .join(destination, destination.c.name == routes.c.destination)
                .outerjoin(stream_states, stream_states.c.route == routes.c.name)
                .where(
                    routes.c.inbound.is_(True),
                    routes.c.enabled.is_(True),
                    source.c.enabled.is_(True),
                    destination.c.enabled.is_(True),
                )
                .order_by(routes.c.name)
            )
        ).all()
    return [
        name
        for name, connection, stream, state in candidates
        if newest.get((connection, stream), 0) > position(state)
    ]
