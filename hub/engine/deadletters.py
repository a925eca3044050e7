"""Dead letters beyond replay: their source records sealed at rest, the one way to read them
back, what to mask when one is shown, and discarding them.

A dead letter's source record holds PII (SSN, bank account, birth date). With a master key, its
``raw`` column holds an envelope instead of the record: ``{"sealed": "s1:...", "digest": HEX}``,
the record sealed under its member's data key (bound to route, stream and position, see
`hub.keyring`) and a keyed hash of reason and record that finds duplicates without opening them.
Every reader goes through `raw_record` (or `open_raw`), so a purged member's dead letters read as
unreadable everywhere. Without any master key (an embedded hub never initialised) records stay
plain JSON, as before, with one warning per process.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.audit import record
from hub.engine.connections import load_route
from hub.keyring import Keyring, SealedUnreadable
from hub.model import RECORD_TYPES
from hub.plugins import PluginHost
from hub.sdk.connector import ConnectionContext
from hub.store.database import writing
from hub.store.tables import dead_letters
from hub.vault import VaultError


@functools.cache
def record_pii_names() -> frozenset[str]:
    """Every field name any canonical record marks PII: a raw record using the same names is
    masked. Worked out when first needed, not on import: reading every record type's hints
    took 30 ms of every command's start-up."""
    return frozenset(
        name.rsplit(".", 1)[-1] for record in RECORD_TYPES.values() for name in record.pii_fields()
    )


_encode = msgspec.json.Encoder(order="sorted").encode


def _place(route: str, stream: str, position: str) -> tuple[str, ...]:
    return ("dead_letter", route, stream, position)


def is_sealed_record(raw: Any) -> bool:
    """Whether a ``raw`` column value is a sealed envelope rather than the record itself."""
    return isinstance(raw, dict) and set(raw) == {"sealed", "digest"}


async def seal_record(
    keyring: Keyring,
    *,
    member: str | None,
    route: str,
    stream: str,
    position: str,
    reason: str,
    raw: Any,
) -> dict[str, str]:
    """The envelope stored in place of source record `raw` (JSON-safe already)."""
    place = _place(route, stream, position)
    return {
        "sealed": await keyring.seal(member, place, _encode(raw)),
        "digest": await record_digest(
            keyring,
            member=member,
            route=route,
            stream=stream,
            position=position,
            reason=reason,
            raw=raw,
        ),
    }


async def record_digest(
    keyring: Keyring,
    *,
    member: str | None,
    route: str,
    stream: str,
    position: str,
    reason: str,
    raw: Any,
) -> str:
    """The keyed hash of a dead letter's reason and record, to recognise the same failure
    again without opening sealed records (their ciphertexts differ every time)."""
    return await keyring.digest(member, _place(route, stream, position), _encode([reason, raw]))


async def open_raw(row: Any, keyring: Keyring | None) -> dict[str, Any]:
    """The source record of dead letter `row` (a mapping with route, stream, position, member
    and raw); KeyDestroyed if its member was purged, SealedUnreadable if it cannot be opened."""
    raw = row["raw"]
    if not is_sealed_record(raw):
        return raw
    if keyring is None or not keyring.available():
        raise SealedUnreadable(
            "the record is sealed and no master key is present (set COHUB_MASTER_KEY or "
            "restore the key file)"
        )
    plain = await keyring.open_sealed(
        row["member"], _place(row["route"], row["stream"], row["position"]), raw["sealed"]
    )
    return msgspec.json.decode(plain)


async def raw_record(row: Any, keyring: Keyring | None) -> dict[str, Any] | None:
    """The source record of dead letter `row`, or None if it cannot be read (its member was
    purged, or the key is missing): what every reader of dead letters uses."""
    try:
        return await open_raw(row, keyring)
    except VaultError:
        return None


def unreadable_note(error: Exception) -> str:
    """What to show in place of a record that cannot be read."""
    return f"record unreadable: {error}"


async def pii_columns(
    engine: AsyncEngine, host: PluginHost, route: str, stream: str
) -> frozenset[str]:
    """Field names to mask in a dead letter of `route`: those the source connector says hold
    PII (lower-cased for matching) and those any canonical record marks PII."""
    try:
        async with engine.connect() as conn:
            row = await load_route(conn, route)
        cls = host.connector(row.source.connector)
        connector = cls(
            cls.parse_options(row.source.options),
            {},
            ConnectionContext(
                connection=row.source.name, member=row.source.member, base_dir=row.source.base_dir
            ),
        )
        declared = frozenset(column.lower() for column in connector.pii_columns(stream))
    except Exception:
        # The route or its connector is gone: mask by field names alone.
        declared = frozenset()
    return declared | record_pii_names()


async def discard(engine: AsyncEngine, ids: list[int], actor: str) -> int:
    """Take open dead letters off the open list for good, saying who did; return how many."""
    async with writing(engine) as conn:
        done = await conn.execute(
            dead_letters.update()
            .where(dead_letters.c.id.in_(ids), dead_letters.c.status == "open")
            .values(
                status="discarded",
                resolution=f"discarded by {actor}",
                resolved_at=datetime.now(UTC),
            )
        )
        await record(
            conn,
            actor=actor,
            action="dead_letters.discard",
            target="dead letters",
            details={"ids": sorted(ids), "discarded": done.rowcount},
        )
    return done.rowcount
