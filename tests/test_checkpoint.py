"""A checkpoint covering several delivered batches (the parts of a partitioned read deliver them
faster than one transaction each keeps up with): one transaction keeps each batch's usage, under
its own fingerprint, and its dead letters; committing it again adds nothing. On SQLite and
PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from hub.apply import apply
from hub.config import load_config
from hub.engine.checkpoint import BatchEffects, commit_checkpoint
from hub.engine.claims import claim
from hub.sdk.connector import Reject
from hub.sdk.lifecycle import RunCounts, UsageQuantity
from hub.store.tables import dead_letters, runs, stream_states, usage_daily, usage_events

ROUTE = "eastview-payroll"


@pytest.fixture
async def held(runtime, config_dir):
    await apply(runtime.engine, load_config(config_dir))
    return await claim(runtime.engine, ROUTE, "manual")


def batch(fingerprint: str, quantity: int, position: str) -> BatchEffects:
    return BatchEffects(
        member="eastview",
        fingerprint=fingerprint,
        usage=[
            UsageQuantity(meter="records_synced", member="eastview", quantity=Decimal(quantity))
        ],
        rejects=[Reject(position=position, reason="bad pay date", raw={"PayDate": "31/02"})],
    )


async def commit(runtime, held, batches: list[BatchEffects]) -> bool:
    return await commit_checkpoint(
        runtime.engine,
        run_id=held.run_id,
        route=ROUTE,
        stream=held.route.source_stream,
        service=held.route.service,
        state={"cursor": "after both"},
        generation=held.start.generation,
        counts=RunCounts(read=9, written=7, rejected=2, batches=2),
        batches=batches,
    )


async def test_one_checkpoint_keeps_every_batchs_usage_and_dead_letters(runtime, held):
    batches = [batch("first", 4, "file.csv:3"), batch("second", 3, "file.csv:8")]

    assert await commit(runtime, held, batches) is False
    assert await commit(runtime, held, batches) is False  # a batch delivered again

    async with runtime.engine.connect() as conn:
        keys = (
            await conn.execute(
                select(usage_events.c.idempotency_key, usage_events.c.quantity).order_by(
                    usage_events.c.idempotency_key
                )
            )
        ).all()
        assert [(key.split(":")[0], quantity) for key, quantity in keys] == [
            ("first", Decimal(4)),
            ("second", Decimal(3)),
        ]
        assert await conn.scalar(select(func.sum(usage_daily.c.quantity))) == Decimal(7)
        letters = await conn.execute(
            select(dead_letters.c.position, dead_letters.c.member).order_by(dead_letters.c.id)
        )
        assert letters.all() == [("file.csv:3", "eastview"), ("file.csv:8", "eastview")]
        state = await conn.scalar(
            select(stream_states.c.state).where(stream_states.c.route == ROUTE)
        )
        assert state == {"cursor": "after both"}
        row = (await conn.execute(select(runs).where(runs.c.id == held.run_id))).mappings().one()
        assert (row["records_read"], row["batches"]) == (9, 2)


async def test_a_checkpoint_of_no_batch_stores_the_state_alone(runtime, held):
    assert await commit(runtime, held, []) is False
    async with runtime.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(usage_events)) == 0
        assert await conn.scalar(select(func.count()).select_from(dead_letters)) == 0
        state = await conn.scalar(
            select(stream_states.c.state).where(stream_states.c.route == ROUTE)
        )
    assert state == {"cursor": "after both"}
