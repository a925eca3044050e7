"""Claims (issue #6, item 2): a run row is the claim; a slot is claimed once; a live claim keeps
other runs of the route out; a lapsed one is taken over under the same run id, from the last
checkpoint; a worker that lost its claim commits nothing more. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from hub.apply import apply
from hub.config import load_config
from hub.engine.claims import (
    WORKER,
    RouteRefused,
    SlotTaken,
    claim,
    release,
    renew,
    take_over,
)
from hub.engine.run import run_claimed, run_route
from hub.plugins import PluginHost
from hub.runtime import Runtime
from hub.store import migrate
from hub.store.database import create_engine
from hub.store.tables import runs, stream_states, usage_events
from tests.test_partitioned_reads import use_part_faults

ROUTE = "eastview-payroll"
SLOT = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


@pytest.fixture
async def applied(runtime, config_dir):
    await apply(runtime.engine, load_config(config_dir))
    return runtime


def with_transform(runtime, config_dir: Path, orders: str, **route: object) -> None:
    """The `part_faults` test plugin on the Eastview route, with its orders and route keys."""
    use_part_faults(runtime, config_dir, orders)
    keys = "".join(f"{key} = {value}\n" for key, value in route.items())
    routes = config_dir / "routes.toml"
    routes.write_text(
        routes.read_text().replace(
            f"[routes.{ROUTE}]\n", f'[routes.{ROUTE}]\ntransforms = ["part_faults"]\n{keys}'
        )
    )


async def run_row(runtime, run_id: int) -> dict:
    async with runtime.engine.connect() as conn:
        return dict((await conn.execute(select(runs).where(runs.c.id == run_id))).mappings().one())


async def synced(runtime) -> Decimal:
    async with runtime.engine.connect() as conn:
        return await conn.scalar(
            select(func.coalesce(func.sum(usage_events.c.quantity), 0)).where(
                usage_events.c.meter == "records_synced", usage_events.c.member == "eastview"
            )
        )


async def held_elsewhere(runtime, *, lease_left: float, worker: str = "sync-b:4242") -> int:
    """A run of the route held by another host's worker, its lease ending in `lease_left` s."""
    moment = datetime.now(UTC)
    async with runtime.engine.begin() as conn:
        return (
            await conn.execute(
                runs.insert().values(
                    route=ROUTE,
                    member="eastview",
                    service="cbo-payroll",
                    trigger="schedule",
                    status="running",
                    worker=worker,
                    started_at=moment - timedelta(minutes=5),
                    scheduled_for=SLOT - timedelta(hours=1),
                    lease_expires_at=moment + timedelta(seconds=lease_left),
                    heartbeat_at=moment - timedelta(seconds=1),
                    records_read=7,
                    records_written=7,
                    batches=1,
                )
            )
        ).inserted_primary_key[0]


async def test_a_slot_is_claimed_once(applied):
    held = await claim(applied.engine, ROUTE, "schedule", scheduled_for=SLOT)
    summary = await run_claimed(applied.engine, applied.plugins, held)
    assert summary.status == "succeeded"

    with pytest.raises(SlotTaken, match="the slot 2026-11-30T14:00:00\\+00:00 is taken"):
        await claim(applied.engine, ROUTE, "schedule", scheduled_for=SLOT)
    row = await run_row(applied, held.run_id)
    assert (row["scheduled_for"], row["worker"], row["lease_expires_at"]) == (SLOT, WORKER, None)


async def test_a_live_claim_on_another_host_keeps_every_other_run_out(applied):
    other = await held_elsewhere(applied, lease_left=30)
    for scheduled_for in (None, SLOT):
        with pytest.raises(RouteRefused, match=f"already running \\(run {other}, worker sync-b"):
            await claim(applied.engine, ROUTE, "manual", scheduled_for=scheduled_for)
    assert await take_over(applied.engine, lease=LEASE, limit=5) == []


async def test_a_lapsed_claim_is_taken_over_under_its_own_run_id(applied):
    other = await held_elsewhere(applied, lease_left=-1)
    # A scheduled claim leaves it to be taken over ...
    with pytest.raises(RouteRefused, match=f"run {other}"):
        await claim(applied.engine, ROUTE, "schedule", scheduled_for=SLOT)

    [held] = await take_over(applied.engine, lease=LEASE, limit=5)
    assert (held.run_id, held.trigger, held.counts.read) == (other, "schedule", 7)
    assert await take_over(applied.engine, lease=LEASE, limit=5) == []  # held now
    summary = await run_claimed(applied.engine, applied.plugins, held)

    row = await run_row(applied, other)
    assert (row["status"], row["worker"], row["takeovers"]) == ("succeeded", WORKER, 1)
    assert row["records_read"] == 7 + 51  # the counts carry on
    assert summary.counts.read == 58


async def test_an_admins_sync_ends_a_lapsed_run_as_abandoned(applied):
    other = await held_elsewhere(applied, lease_left=-1)
    summary = await run_route(applied.engine, applied.plugins, ROUTE)
    assert summary.status == "succeeded" and summary.id != other
    row = await run_row(applied, other)
    assert row["status"] == "abandoned"
    assert row["error"] == "its worker (sync-b:4242) stopped renewing its claim"


async def test_a_worker_that_lost_its_claim_commits_no_batch_and_no_ending(applied):
    held = await claim(applied.engine, ROUTE, "schedule", scheduled_for=SLOT)
    assert await renew(applied.engine, held.run_id, LEASE)
    # Another worker took the run over while this one was paused (its lease lapsed).
    async with applied.engine.begin() as conn:
        await conn.execute(
            update(runs).where(runs.c.id == held.run_id).values(worker="sync-b:4242")
        )
    assert not await renew(applied.engine, held.run_id, LEASE)

    summary = await run_claimed(applied.engine, applied.plugins, held)

    assert summary.status == "lost"
    assert await synced(applied) == 0
    async with applied.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(stream_states)) == 0
    row = await run_row(applied, held.run_id)
    assert (row["status"], row["worker"], row["records_read"]) == ("running", "sync-b:4242", 0)


async def test_a_released_claim_is_taken_over_at_once(applied):
    held = await claim(applied.engine, ROUTE, "schedule", scheduled_for=SLOT, lease=LEASE)
    await release(applied.engine, held.run_id)
    row = await run_row(applied, held.run_id)
    assert (row["status"], row["worker"]) == ("running", None)
    [again] = await take_over(applied.engine, lease=LEASE, limit=5)
    assert again.run_id == held.run_id


async def test_the_watchdog_fails_a_run_that_commits_nothing(applied, config_dir):
    with_transform(applied, config_dir, "hang", stall_seconds=0.5)
    await apply(applied.engine, load_config(config_dir))

    summary = await run_route(applied.engine, applied.plugins, ROUTE, heartbeat=0.1)

    assert summary.status == "failed"
    assert "no batch committed for" in summary.error
    assert "stall_seconds is 0.5" in summary.error
    row = await run_row(applied, summary.id)
    assert (row["status"], row["lease_expires_at"]) == ("failed", None)


async def test_concurrent_claims_of_one_slot_let_exactly_one_run(postgres_url, config_dir):
    # Workers share PostgreSQL (SQLite runs one worker): eight workers' claims of the same slot at
    # the same moment, each on its own connections.
    runtime = Runtime(create_engine(postgres_url), PluginHost([]), config_dir.parent / "home")
    await migrate.upgrade(runtime.engine)
    applied = runtime
    await apply(runtime.engine, load_config(config_dir))
    engines = [create_engine(postgres_url) for _ in range(8)]
    try:
        outcomes = await asyncio.gather(
            *(claim(e, ROUTE, "schedule", scheduled_for=SLOT) for e in engines),
            return_exceptions=True,
        )
    finally:
        for engine in engines:
            await engine.dispose()
    won = [o for o in outcomes if not isinstance(o, Exception)]
    lost = [o for o in outcomes if isinstance(o, Exception)]
    assert len(won) == 1
    assert all(isinstance(o, RouteRefused) for o in lost), lost
    async with applied.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(runs)) == 1
    await runtime.close()
