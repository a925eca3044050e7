"""Dead letters beyond replay: what to mask when one is shown, and discarding them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from hub.engine.connections import load_route
from hub.model import RECORD_TYPES
from hub.plugins import PluginHost
from hub.sdk.connector import ConnectionContext
from hub.store.database import writing
from hub.store.tables import dead_letters

#: Every field name any canonical record marks PII: a raw record using the same names is masked.
RECORD_PII_NAMES = frozenset(
    name.rsplit(".", 1)[-1] for record in RECORD_TYPES.values() for name in record.pii_fields()
)


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
    return declared | RECORD_PII_NAMES


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
    return done.rowcount
