"""The store on SQLite and PostgreSQL: migrations, exact types, the append-only ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, func, select

from hub.metering import batch_fingerprint, record_usage
from hub.sdk.lifecycle import UsageQuantity
from hub.store import migrate
from hub.store.database import async_url, create_engine, default_url, writing
from hub.store.tables import metadata, usage_events
from hub.store.types import ScaledDecimal, UtcDateTime, exact_decimal


def test_a_plain_postgresql_url_gets_the_async_driver():
    assert (
        str(async_url("postgresql://cbo@db.example.org/payroll"))
        == "postgresql+asyncpg://cbo@db.example.org/payroll"
    )
    assert str(async_url("postgres://db/x")) == "postgresql+asyncpg://db/x"
    assert str(async_url("sqlite:///hub.db")) == "sqlite+aiosqlite:///hub.db"
    assert str(async_url("sqlite+aiosqlite:///hub.db")) == "sqlite+aiosqlite:///hub.db"


def test_the_embedded_default_lives_under_the_home_folder(monkeypatch):
    monkeypatch.delenv("COHUB_DATABASE_URL", raising=False)
    assert default_url(".cohub") == "sqlite:///.cohub/cohub.db"
    monkeypatch.setenv("COHUB_DATABASE_URL", "postgresql://db/hub")
    assert default_url(".cohub") == "postgresql://db/hub"


async def test_migrations_create_exactly_the_tables_the_code_declares(database_url):
    engine = create_engine(database_url)
    assert await migrate.current_revision(engine) is None

    await migrate.upgrade(engine)

    assert await migrate.current_revision(engine) == migrate.head_revision()
    async with engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    await engine.dispose()
    assert differences == []


async def test_upgrading_twice_changes_nothing(database_url):
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    await migrate.upgrade(engine)
    assert await migrate.current_revision(engine) == migrate.HEAD
    await engine.dispose()


def test_the_head_the_hub_checks_against_is_alembics_head():
    assert migrate.HEAD == migrate.head_revision() == "0009"


async def test_money_and_time_read_back_exactly_as_written(database_url):
    engine = create_engine(database_url)
    table = Table(
        "exact",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("amount", exact_decimal(19, 4)),
        Column("quantity", ScaledDecimal(6)),
        Column("at", UtcDateTime()),
    )
    eastern = timezone(timedelta(hours=-4))
    async with engine.begin() as conn:
        await conn.run_sync(table.create)
        await conn.execute(
            table.insert(),
            [
                {
                    "id": 1,
                    "amount": Decimal("12345678901234.1234"),
                    "quantity": Decimal("0.000001"),
                    "at": datetime(2026, 10, 15, 12, tzinfo=eastern),
                },
                {
                    "id": 2,
                    "amount": Decimal("-0.1"),
                    "quantity": Decimal("3"),
                    "at": datetime(2026, 1, 1, tzinfo=UTC),
                },
            ],
        )
    async with engine.connect() as conn:
        rows = (await conn.execute(select(table).order_by(table.c.id))).all()
        total = await conn.scalar(select(func.sum(table.c.quantity)))
    await engine.dispose()

    assert rows[0].amount == Decimal("12345678901234.1234")
    assert rows[0].quantity == Decimal("0.000001")
    assert rows[0].at == datetime(2026, 10, 15, 16, tzinfo=UTC)
    assert rows[1].amount == Decimal("-0.1")
    assert total == Decimal("3.000001")


async def test_a_naive_datetime_is_refused(database_url):
    engine = create_engine(database_url)
    table = Table(
        "naive", MetaData(), Column("id", Integer, primary_key=True), Column("at", UtcDateTime())
    )
    async with engine.begin() as conn:
        await conn.run_sync(table.create)
    with pytest.raises(Exception, match="has no time zone"):
        async with engine.begin() as conn:
            await conn.execute(table.insert().values(id=1, at=datetime(2026, 1, 1)))
    await engine.dispose()


async def test_a_usage_event_with_a_known_idempotency_key_is_ignored(database_url):
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    fingerprint = batch_fingerprint("eastview-payroll", "pay_lines", None, {"files": {"a.csv": 10}})
    usage = [UsageQuantity(meter="records_synced", member="eastview", quantity=Decimal(10))]
    now = datetime(2026, 10, 15, tzinfo=UTC)

    for _ in range(3):
        async with writing(engine) as conn:
            await record_usage(
                conn, usage, fingerprint=fingerprint, service="cbo-payroll", occurred_at=now
            )

    async with engine.connect() as conn:
        rows = (await conn.execute(select(usage_events.c.member, usage_events.c.quantity))).all()
    await engine.dispose()
    assert [(m, q) for m, q in rows] == [("eastview", Decimal(10))]


def test_the_same_checkpoint_range_gives_the_same_fingerprint():
    a = batch_fingerprint("r", "s", {"files": {"x": 1}}, {"files": {"x": 2}})

    assert a == batch_fingerprint("r", "s", {"files": {"x": 1}}, {"files": {"x": 2}})
    assert a != batch_fingerprint("r", "s", {"files": {"x": 2}}, {"files": {"x": 3}})
    assert a != batch_fingerprint("other", "s", {"files": {"x": 1}}, {"files": {"x": 2}})
