"""The usage ledger: append-only events, daily rollups kept current, local days, closed periods
and adjustments; on SQLite and PostgreSQL, concurrent writers included."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from hub.billing.periods import FiscalCalendar, PeriodError
from hub.metering import (
    PeriodClosed,
    UsageEvent,
    append_usage,
    close_period,
    usage_totals,
)
from hub.sdk.extensions import Meter
from hub.store import migrate
from hub.store.database import create_engine, writing
from hub.store.tables import cooperative, usage_daily, usage_events

METERS = {
    "paychecks": Meter(name="paychecks", unit="paycheck", aggregation="sum"),
    "employees": Meter(name="employees", unit="employee", aggregation="unique_count"),
    "calls": Meter(name="calls", unit="call", aggregation="count"),
    "peak_seats": Meter(name="peak_seats", unit="seat", aggregation="max"),
}


def event(key: str, quantity: str = "1", at: str = "2026-10-15T12:00:00Z", **fields) -> UsageEvent:
    values = {"member": "eastview", "service": "cbo-payroll", "meter": "paychecks", **fields}
    return UsageEvent(
        idempotency_key=key,
        quantity=Decimal(quantity),
        occurred_at=datetime.fromisoformat(at),
        **values,
    )


@pytest.fixture
async def engine(database_url):
    engine = await ledger(database_url)
    yield engine
    await engine.dispose()


async def ledger(url: str):
    """An engine on a migrated hub database with the cooperative's calendar."""
    engine = create_engine(url)
    await migrate.upgrade(engine)
    async with writing(engine) as conn:
        await conn.execute(
            cooperative.insert().values(
                code="northern-rivers",
                name="Northern Rivers BOCES",
                timezone="America/New_York",
                fiscal_year_start="07-01",
            )
        )
    return engine


async def append(engine, *events: UsageEvent) -> int:
    async with writing(engine) as conn:
        return await append_usage(conn, events)


async def totals(engine, **options):
    async with engine.connect() as conn:
        return {
            (t.member, t.meter, t.bucket): t.quantity
            for t in await usage_totals(conn, METERS, **options)
        }


async def test_a_duplicate_key_is_ignored_within_a_call_and_across_calls(engine):
    assert await append(engine, event("a", "2.5"), event("a", "2.5"), event("b", "1")) == 2
    assert await append(engine, event("a", "2.5"), event("c", "0.125")) == 1

    assert await totals(engine) == {("eastview", "paychecks", ""): Decimal("3.625")}
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(usage_events)) == 3


async def test_the_rollups_hold_exactly_what_the_events_add_up_to(engine):
    events = [
        event(
            f"k{n}",
            f"{n % 7}.{n % 1000:03d}",
            at=f"2026-{9 + n % 3:02d}-{1 + n % 28:02d}T{n % 24:02d}:30:00Z",
            member=("eastview", "millbrook", "harbor-falls")[n % 3],
            meter=("paychecks", "calls")[n % 2],
        )
        for n in range(600)
    ]
    for start in range(0, 600, 150):
        await append(engine, *events[start : start + 150])

    group = (usage_events.c.member, usage_events.c.meter, usage_events.c.day)
    async with engine.connect() as conn:
        from_events = {
            (m, meter, d): (q, n)
            for m, meter, d, q, n in (
                await conn.execute(
                    select(*group, func.sum(usage_events.c.quantity), func.count()).group_by(*group)
                )
            ).all()
        }
        daily = usage_daily.c
        from_rollups = {
            (m, meter, d): (q, n)
            for m, meter, d, q, n in (
                await conn.execute(
                    select(daily.member, daily.meter, daily.day, daily.quantity, daily.events)
                )
            ).all()
        }
    assert from_rollups == from_events
    assert sum(q for q, _ in from_rollups.values()) == sum(e.quantity for e in events)


async def test_days_and_months_are_the_cooperatives_local_ones(engine):
    # 02:00 UTC on July 1 is 22:00 on June 30 in New York: the old fiscal year.
    await append(engine, event("late-june", at="2026-07-01T02:00:00Z"))
    await append(engine, event("july", at="2026-07-01T05:00:00Z"))

    assert await totals(engine, by="day") == {
        ("eastview", "paychecks", "2026-06-30"): Decimal(1),
        ("eastview", "paychecks", "2026-07-01"): Decimal(1),
    }
    assert await totals(engine, by="month") == {
        ("eastview", "paychecks", "2026-06"): Decimal(1),
        ("eastview", "paychecks", "2026-07"): Decimal(1),
    }


async def test_each_meter_aggregates_its_own_way_over_the_whole_bucket(engine):
    await append(
        engine,
        event("e1", meter="employees", subject="E1", at="2026-10-01T15:00:00Z"),
        event("e2", meter="employees", subject="E2", at="2026-10-01T15:00:00Z"),
        event("e3", meter="employees", subject="E1", at="2026-10-20T15:00:00Z"),
        event("c1", "5", meter="calls"),
        event("c2", "7", meter="calls"),
        event("s1", "40", meter="peak_seats", at="2026-10-02T15:00:00Z"),
        event("s2", "55", meter="peak_seats", at="2026-10-03T15:00:00Z"),
        event("s3", "31", meter="peak_seats", at="2026-10-04T15:00:00Z"),
    )

    assert await totals(engine, by="month") == {
        ("eastview", "employees", "2026-10"): Decimal(2),  # E1 on two days counts once
        ("eastview", "calls", "2026-10"): Decimal(2),
        ("eastview", "peak_seats", "2026-10"): Decimal(55),
    }
    assert (await totals(engine, by="day", meter="employees"))[
        ("eastview", "employees", "2026-10-01")
    ] == Decimal(2)


async def test_usage_for_a_closed_month_is_billed_next_month_as_its_adjustment(engine):
    await append(engine, event("on-time", "10", at="2026-09-10T12:00:00Z"))
    async with writing(engine) as conn:
        closed = await close_period(
            conn, "FY2027-Q1", "business office", now=datetime(2026, 10, 5, tzinfo=UTC)
        )
    async with writing(engine) as conn:
        again = await close_period(conn, "2026-09", "someone else")

    await append(engine, event("late", "3", at="2026-09-28T12:00:00Z"))

    assert closed == ["2026-07", "2026-08", "2026-09"]
    assert again == []
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    usage_events.c.idempotency_key, usage_events.c.period, usage_events.c.adjusts
                ).order_by(usage_events.c.idempotency_key)
            )
        ).all()
    assert [tuple(r) for r in rows] == [("late", "2026-10", "2026-09"), ("on-time", "2026-09", "")]
    assert await totals(engine, by="period") == {
        ("eastview", "paychecks", "2026-09"): Decimal(10),
        ("eastview", "paychecks", "2026-10"): Decimal(3),
    }
    assert await totals(engine, periods=["2026-09"]) == {("eastview", "paychecks", ""): Decimal(10)}


async def test_a_period_that_has_not_ended_cannot_be_closed(engine):
    async with writing(engine) as conn:
        with pytest.raises(PeriodClosed, match="FY2027 has not ended yet"):
            await close_period(conn, "FY2027", "x", now=datetime(2027, 6, 30, 20, tzinfo=UTC))
        with pytest.raises(PeriodError, match="unknown period 'Q3'"):
            await close_period(conn, "Q3", "x")


async def test_concurrent_writers_posting_the_same_events_count_them_once(postgres_url):
    # Concurrent writers are a PostgreSQL matter (SQLite has one writer).
    engine = await ledger(postgres_url)
    engines = [create_engine(postgres_url) for _ in range(3)]
    batch = [event(f"shared-{n}", "1.5", member=f"m{n % 5}") for n in range(200)]
    try:
        new = await asyncio.gather(*(append(e, *batch) for e in engines))
        assert sum(new) == 200
        assert sum((await totals(engine)).values()) == Decimal(300)
    finally:
        for other in (*engines, engine):
            await other.dispose()


def test_fiscal_periods_are_named_by_the_year_they_end_in():
    calendar = FiscalCalendar("America/New_York", "07-01")

    assert calendar.parse("FY2027").months[0] == "2026-07"
    assert calendar.parse("FY2027").months[-1] == "2027-06"
    assert calendar.parse("FY2027-Q2").months == ("2026-10", "2026-11", "2026-12")
    assert calendar.parse("FY2027-Q2").last_day == date(2026, 12, 31)
    assert calendar.quarter_of("2027-02").name == "FY2027-Q3"
    assert calendar.fiscal_year("2026-06") == 2026
    assert calendar.parse("2028-02").last_day == date(2028, 2, 29)
    assert FiscalCalendar("UTC", "01-01").parse("FY2026-Q1").months == (
        "2026-01",
        "2026-02",
        "2026-03",
    )
    assert calendar.day(datetime(2026, 11, 1, 3, tzinfo=UTC)) == date(2026, 10, 31)
    assert calendar.day(datetime(2026, 11, 1, 3, tzinfo=UTC) + timedelta(hours=2)) == date(
        2026, 11, 1
    )


@pytest.mark.parametrize(
    ("timezone", "start", "message"),
    [
        ("Mars/Olympus", "07-01", "unknown time zone 'Mars/Olympus'"),
        ("UTC", "07-15", "fiscal_year_start '07-15' must be the first of a month"),
        ("UTC", "13-01", "fiscal_year_start '13-01' must be the first of a month"),
    ],
)
def test_a_calendar_it_cannot_bill_in_is_refused(timezone, start, message):
    with pytest.raises(PeriodError, match=message):
        FiscalCalendar(timezone, start)


@pytest.mark.parametrize("name", ["2026-13", "FY27", "FY2027-Q5", "2026-1", ""])
def test_an_unknown_period_name_says_what_is_expected(name):
    with pytest.raises(PeriodError, match=r"2026-10|YYYY-MM"):
        FiscalCalendar().parse(name)
