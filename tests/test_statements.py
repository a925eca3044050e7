"""Statements as the business office checks them: a generated fiscal year of usage billed line by
line exactly as an independent, straightforward computation says, closed months adjusted by late
usage, stored statements recomputing to the cent, supplier fees; on SQLite and PostgreSQL.

The oracle here is deliberately naive: Fractions, its own largest remainder (ties to the smaller
member code) and its own half-up rounding. It does not import ``hub.billing.allocation``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import shutil
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from sqlalchemy import select

from hub.apply import apply
from hub.billing.plans import BillingPlans
from hub.billing.statements import Statement, compute_statements, supplier_fees
from hub.config import load_config
from hub.metering import UsageEvent, append_usage, close_period
from hub.sdk.extensions import Meter
from hub.store import migrate
from hub.store.database import create_engine, writing
from hub.store.tables import cooperative, members, services, usage_events
from tests.test_cli import cohub

D = Decimal
ZERO = D(0)
NEW_YORK = ZoneInfo("America/New_York")
REPO = Path(__file__).resolve().parent.parent

FY2027 = tuple(f"2026-{m:02d}" for m in range(7, 13)) + tuple(f"2027-{m:02d}" for m in range(1, 7))
METERS = {
    "tickets": Meter(name="tickets", unit="ticket"),
    "paychecks": Meter(name="paychecks", unit="paycheck"),
    "gigabytes": Meter(name="gigabytes", unit="GB"),
    "purchases": Meter(name="purchases", unit="USD"),
}
MEMBERS = tuple(f"d{n:02d}" for n in range(1, 51))
#: A member that uses nothing and takes part in no plan: it must get no statement at all.
IDLE = "d50"


# The independent computation ---------------------------------------------------------------------


def half_up(amount: Fraction | Decimal) -> Decimal:
    """To the cent, halves away from zero."""
    exact = Fraction(amount) * 100
    cents = math.floor(abs(exact) + Fraction(1, 2))
    return D(cents if exact >= 0 else -cents).scaleb(-2)


def split(total: Decimal, weights: Mapping[str, Decimal | int]) -> dict[str, Decimal]:
    """Largest remainder to the cent: floor of each exact share, then one cent each to the largest
    remainders, ties to the smaller code; a negative total splits as the mirror image."""
    cents = int(total * 100)
    magnitude = abs(cents)
    whole = sum(Fraction(w) for w in weights.values())
    exact = {code: magnitude * Fraction(w) / whole for code, w in weights.items()}
    shares = {code: math.floor(value) for code, value in exact.items()}
    left = magnitude - sum(shares.values())
    for code in sorted(exact, key=lambda code: (-(exact[code] - shares[code]), code))[:left]:
        shares[code] += 1
    sign = -1 if cents < 0 else 1
    return {code: D(sign * share).scaleb(-2) for code, share in shares.items()}


def graduated(quantity: Decimal, tiers: list[dict[str, str]]) -> Fraction:
    """Each band's units at the band's price (like an income tax)."""
    total, floor = Fraction(0), Fraction(0)
    for tier in tiers:
        top = Fraction(quantity)
        if "up_to" in tier:
            top = min(top, Fraction(D(tier["up_to"])))
        if top > floor:
            total += (top - floor) * Fraction(D(tier["price"]))
            floor = top
    return total


def previous_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:])
    return f"{year - 1}-12" if number == 1 else f"{year}-{number - 1:02d}"


def local_month(moment: datetime) -> str:
    return moment.astimezone(NEW_YORK).strftime("%Y-%m")


#: (service, member, month of use, month billed in, quantity)
Entry = tuple[str, str, str, str, Decimal]
#: (month, service, kind, adjusts, quantity, amount): what a member is billed, in order.
Line = tuple[str, str, str, str, Decimal | None, Decimal]


class Oracle:
    """What FY2027 bills, from the plans as written in billing.toml and the raw events."""

    def __init__(
        self, plans: dict[str, dict[str, Any]], basis: dict[str, dict[str, str]], entries
    ) -> None:
        self.plans = plans
        self.basis = basis
        self.used: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
        for service, member, month, billed, quantity in entries:
            self.used[service, member, month, billed] += quantity

    def pool(self, plan: dict[str, Any], month: str) -> Decimal:
        return split(D(plan["budget"]), dict.fromkeys(FY2027, 1))[month]

    def participants(self, plan: dict[str, Any]) -> list[str]:
        return sorted(plan.get("members", MEMBERS))

    def usage(self, service: str, month: str, through: str) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for (s, member, used, billed), quantity in self.used.items():
            if s == service and used == month and billed <= through:
                totals[member] += quantity
        return {member: q for member, q in totals.items() if q}

    def weights(self, plan: dict[str, Any]) -> dict[str, Decimal]:
        given = self.basis.get(plan.get("basis", ""), {})
        return {m: D(given.get(m, "0")) for m in self.participants(plan)}

    def charges(
        self, service: str, month: str, through: str
    ) -> dict[str, tuple[Decimal | None, Decimal]]:
        """member → (quantity, amount) for the month's usage and its late usage up to `through`."""
        plan = self.plans[service]
        method = plan["method"]
        used = self.usage(service, month, through) if "meter" in plan else {}
        members = self.participants(plan)
        if method == "unit_price":
            return {
                m: (q, half_up(graduated(q, plan["tiers"])))
                for m, q in sorted(used.items())
                if m in members
            }
        if method == "base_plus_usage":
            return {
                m: (
                    used.get(m, ZERO),
                    half_up(
                        Fraction(D(plan["base_fee"]))
                        + Fraction(D(plan["rate"])) * Fraction(used.get(m, ZERO))
                    ),
                )
                for m in members
            }
        if method == "proportional":
            weights = {m: q for m, q in used.items() if m in members}
        elif method == "weighted":
            weights = self.weights(plan)
        elif method == "equal":
            weights = dict.fromkeys(members, D(1))
        else:
            return {}
        if not sum(weights.values()):
            return {}
        shares = split(self.pool(plan, month), weights)
        return {m: (used.get(m), shares[m]) for m in sorted(shares) if weights[m]}

    def true_up(self, service: str) -> dict[str, Decimal]:
        plan = self.plans[service]
        billed: dict[str, Decimal] = defaultdict(Decimal)
        participation: dict[str, Decimal] = defaultdict(Decimal)
        for month in FY2027:
            for member, (quantity, amount) in self.charges(service, month, FY2027[-1]).items():
                billed[member] += amount
                if quantity:
                    participation[member] += quantity
        if plan["method"] == "weighted":
            participation = defaultdict(Decimal, self.weights(plan))
        elif plan["method"] == "equal":
            participation = defaultdict(Decimal, dict.fromkeys(self.participants(plan), D(1)))
        difference = D(plan["actual_cost"]) - sum(billed.values())
        everyone = {m: participation[m] for m in {*billed, *participation}}
        return {m: a for m, a in split(difference, everyone).items() if a}

    def lines(self, months: Iterable[str]) -> dict[str, list[Line]]:
        lines: dict[str, list[Line]] = defaultdict(list)
        for month in months:
            for service, plan in sorted(self.plans.items()):
                for member, (quantity, amount) in self.charges(service, month, month).items():
                    lines[member].append((month, service, "charge", "", quantity, amount))
                late = sorted(
                    {
                        used
                        for (s, _, used, billed) in self.used
                        if s == service and billed == month and used != month
                    }
                )
                for closed in late if "meter" in plan else ():
                    now = self.charges(service, closed, month)
                    before = self.charges(service, closed, previous_month(month))
                    for member in sorted({*now, *before}):
                        q_now, a_now = now.get(member, (None, ZERO))
                        q_before, a_before = before.get(member, (None, ZERO))
                        extra = None if q_now is None else q_now - (q_before or ZERO)
                        if a_now - a_before:
                            lines[member].append(
                                (month, service, "adjustment", closed, extra, a_now - a_before)
                            )
                if "actual_cost" in plan and month == FY2027[-1]:
                    for member, amount in sorted(self.true_up(service).items()):
                        lines[member].append((month, service, "true-up", "", None, amount))
        return dict(lines)


def as_lines(statement: Statement) -> list[Line]:
    return [
        (line.month, line.service, line.kind, line.adjusts, line.quantity, line.amount)
        for line in statement.lines
    ]


# A generated fiscal year --------------------------------------------------------------------------

PLANS: dict[str, dict[str, Any]] = {
    "help-desk": {
        "method": "unit_price",
        "meter": "tickets",
        "tiers": [
            {"up_to": "40", "price": "4.75"},
            {"up_to": "120.5", "price": "3.105"},
            {"price": "2.3325"},
        ],
        "actual_cost": "98765.43",
    },
    "cbo-payroll": {
        "method": "base_plus_usage",
        "meter": "paychecks",
        "base_fee": "125.00",
        "rate": "0.4125",
        "members": list(MEMBERS[:40]),
    },
    "network": {
        "method": "proportional",
        "meter": "gigabytes",
        "budget": "84000.05",
        "members": list(MEMBERS[:49]),
    },
    "administration": {
        "method": "weighted",
        "basis": "rwada",
        "budget": "1250000.00",
        "actual_cost": "1261432.17",
        "members": list(MEMBERS[:49]),
    },
    "library": {"method": "equal", "budget": "36000.11", "members": list(MEMBERS[4:35])},
}
METER_OF = {s: p["meter"] for s, p in PLANS.items() if "meter" in p}
#: Months in which the network is not used at all: its pool is not billed.
NETWORK_IDLE = "2027-02"


def generate_year(seed: int = 2027) -> tuple[dict[str, dict[str, str]], list[UsageEvent]]:
    """RWADA for d01-d45 (two of them 0) and about 3,000 events over FY2027: local times, a tenth
    in the last hour of a month (the next month already, in UTC), heavy users crossing tiers."""
    rng = random.Random(seed)
    rwada = {m: str(D(rng.randint(100_000, 5_000_000)).scaleb(-3)) for m in MEMBERS[:45]}
    rwada["d07"] = rwada["d23"] = "0"
    users = {
        "help-desk": MEMBERS[:49],
        "cbo-payroll": MEMBERS[:45],  # d41-d45 are metered but not in the plan
        "network": MEMBERS[:48],
    }
    events: list[UsageEvent] = []
    for n in range(3000):
        service = rng.choice(("help-desk", "help-desk", "cbo-payroll", "network"))
        pool = users[service]
        member = rng.choices(pool, weights=[6 if m < "d04" else 1 for m in pool])[0]
        month = rng.choice(FY2027)
        if service == "network" and month == NETWORK_IDLE:
            month = "2027-03"
        year, number = int(month[:4]), int(month[5:])
        first = datetime(year, number, 1, tzinfo=NEW_YORK)
        following = (first + timedelta(days=32)).replace(day=1)
        if rng.random() < 0.1:
            local = following - timedelta(minutes=rng.randint(1, 59))
        else:
            local = first + timedelta(minutes=rng.randint(0, 27 * 24 * 60))
        if service == "help-desk":
            quantity = D(rng.randint(1, 40)) + (D("0.5") if rng.random() < 0.2 else ZERO)
        elif service == "cbo-payroll":
            quantity = D(rng.randint(1, 400))
        else:
            quantity = D(rng.randint(1, 250_000_000)).scaleb(-6)
        events.append(
            UsageEvent(
                idempotency_key=f"e{n}",
                member=member,
                service=service,
                meter=METER_OF[service],
                quantity=quantity,
                occurred_at=local.astimezone(UTC),
            )
        )
    # 02:00 UTC on July 1 is still June 30 in New York: FY2026, which has no plans here; the same
    # on July 1 2027 is the last day of FY2027.
    for key, at in (
        ("fy2026", datetime(2026, 7, 1, 2, tzinfo=UTC)),
        ("june", datetime(2027, 7, 1, 2, tzinfo=UTC)),
    ):
        events.append(
            UsageEvent(
                idempotency_key=key,
                member="d02",
                service="help-desk",
                meter="tickets",
                quantity=D("17"),
                occurred_at=at,
            )
        )
    return {"rwada": rwada}, events


BASIS, YEAR = generate_year()
BILLING = msgspec.convert({"plans": {"FY2027": PLANS}, "basis": {"FY2027": BASIS}}, BillingPlans)


def on_time(events: Iterable[UsageEvent]) -> list[Entry]:
    return [
        (e.service, e.member, local_month(e.occurred_at), local_month(e.occurred_at), e.quantity)
        for e in events
    ]


# Fixtures and helpers -------------------------------------------------------------------------------


@pytest.fixture
async def engine(database_url):
    """A migrated hub database with the cooperative, members d01-d50 and the services."""
    engine = create_engine(database_url)
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
        await conn.execute(
            members.insert(),
            [
                {"code": m, "name": f"District {m}", "enrollment": 100 * n, "employees": n}
                for n, m in enumerate(MEMBERS, start=1)
            ],
        )
        await conn.execute(
            services.insert(),
            [
                {"code": s, "name": s.title(), "coser": f"CoSer {600 + n}"}
                for n, s in enumerate([*PLANS, "purchasing"])
            ],
        )
    yield engine
    await engine.dispose()


async def post(engine, events: list[UsageEvent]) -> None:
    for start in range(0, len(events), 1000):
        async with writing(engine) as conn:
            await append_usage(conn, events[start : start + 1000])


async def statements(engine, period: str, plans: BillingPlans = BILLING) -> list[Statement]:
    async with engine.connect() as conn:
        return await compute_statements(conn, plans, METERS, period)


def by_member(found: list[Statement]) -> dict[str, Statement]:
    return {s.member: s for s in found}


# 1. A generated fiscal year ------------------------------------------------------------------------


async def test_a_generated_fiscal_year_bills_every_line_as_the_independent_computation(engine):
    # given a year of usage of five services by 50 districts
    await post(engine, YEAR)
    oracle = Oracle(PLANS, BASIS, on_time(YEAR))

    # when the year's statements are computed
    found = by_member(await statements(engine, "FY2027"))

    # then every line, in order, and every total are what the independent computation says
    expected = oracle.lines(FY2027)
    assert sorted(found) == sorted(expected)
    assert IDLE not in found and len(found) == 49
    for member, statement in found.items():
        assert as_lines(statement) == expected[member], member
        assert statement.total == sum(line[-1] for line in expected[member]), member
        assert statement.period == "FY2027" and statement.member_name == f"District {member}"
    assert len({s.fingerprint for s in found.values()}) == 1

    # the example really exercises what it claims: both tier boundaries crossed, exact half
    # cents rounded, metered members outside a plan, an idle month, a true-up each way
    amounts = defaultdict(Decimal)  # (service, month, kind) -> sum over members
    for statement in found.values():
        for line in statement.lines:
            amounts[line.service, line.month, line.kind] += line.amount
    monthly = [oracle.usage(s, m, m) for s in METER_OF for m in FY2027]
    assert any(q > D("120.5") for usage in monthly for q in usage.values())
    assert any(
        (D("125.00") + D("0.4125") * q) * 100 % 1 == D("0.5")
        for q in oracle.usage("cbo-payroll", "2026-11", "2026-11").values()
    )
    assert oracle.usage("cbo-payroll", "2026-07", "2027-06").keys() - set(MEMBERS[:40])
    assert not [
        line for m in MEMBERS[40:49] for line in found[m].lines if line.service == "cbo-payroll"
    ]
    assert ("network", NETWORK_IDLE, "charge") not in amounts
    true_ups = {k[0]: v for k, v in amounts.items() if k[2] == "true-up"}
    assert true_ups.keys() == {"help-desk", "administration"}
    assert true_ups["administration"] == D("11432.17")

    # each pool's months bill exactly the year's budget in twelfths, odd cents first
    for month in FY2027:
        assert amounts["administration", month, "charge"] == (
            D("104166.67") if month < "2027-03" else D("104166.66")
        )
        assert amounts["library", month, "charge"] == (
            D("3000.01") if month < "2027-06" else D("3000.00")
        )
        if month != NETWORK_IDLE:
            assert amounts["network", month, "charge"] == (
                D("7000.01") if month < "2026-12" else D("7000.00")
            )
    # equal shares: 300,001 cents among 31 districts, the 14 odd cents to d05-d18
    july = {
        m: line.amount
        for m, statement in found.items()
        for line in statement.lines
        if line.service == "library" and line.month == "2026-07"
    }
    assert july == {m: D("96.78") if m <= "d18" else D("96.77") for m in MEMBERS[4:35]}

    # the true-up brings each trued-up service's year to its actual cost, exactly
    for service in ("help-desk", "administration"):
        year = sum(v for (s, _, _), v in amounts.items() if s == service)
        assert year == D(PLANS[service]["actual_cost"])

    # and one member's statement is that member's part of the run
    async with engine.connect() as conn:
        [one] = await compute_statements(conn, BILLING, METERS, "FY2027", member="d03")
        assert await compute_statements(conn, BILLING, METERS, "FY2027", member=IDLE) == []
    assert as_lines(one) == expected["d03"]


# 2. Closing a quarter and late usage --------------------------------------------------------------


async def test_late_usage_for_a_closed_month_is_billed_next_open_month_as_its_adjustment(engine):
    # given the year's usage and the first quarter's statements as closed
    await post(engine, YEAR)
    q1 = await statements(engine, "FY2027-Q1")
    async with writing(engine) as conn:
        closed = await close_period(
            conn, "FY2027-Q1", "business office", now=datetime(2026, 10, 5, 12, tzinfo=UTC)
        )
    assert closed == ["2026-07", "2026-08", "2026-09"]
    entries = on_time(YEAR)
    august = Oracle(PLANS, BASIS, entries)
    tickets = august.usage("help-desk", "2026-08", "2026-08")
    crossing = next(m for m, q in sorted(tickets.items()) if q < 40)  # will cross 40 and 120.5
    newcomer = next(m for m in MEMBERS[:49] if m not in tickets)  # no August tickets before
    gigabytes = august.usage("network", "2026-08", "2026-08")
    light = min(gigabytes, key=lambda m: (gigabytes[m], m))

    # when usage dated in August arrives in October (one at 23:30 on August 31 in New York)
    def late(key: str, member: str, service: str, quantity: str, at: datetime) -> UsageEvent:
        return UsageEvent(
            idempotency_key=key,
            member=member,
            service=service,
            meter=METER_OF[service],
            quantity=D(quantity),
            occurred_at=at,
        )

    aug_31_late_evening = datetime(2026, 9, 1, 3, 30, tzinfo=UTC)
    first_batch = [
        late(
            "late-1", crossing, "help-desk", str(D("130") - tickets[crossing]), aug_31_late_evening
        ),
        late("late-2", newcomer, "help-desk", "3.5", datetime(2026, 8, 14, 15, tzinfo=UTC)),
        late("late-3", light, "network", "180000.25", datetime(2026, 8, 20, 15, tzinfo=UTC)),
        late("late-4", "d49", "network", "999.999999", datetime(2026, 8, 21, 15, tzinfo=UTC)),
    ]
    await post(engine, first_batch)

    # then each is billed in October, the next open month, as an adjustment of August
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(usage_events.c.period, usage_events.c.adjusts).where(
                    usage_events.c.idempotency_key.like("late-%")
                )
            )
        ).all()
    assert {tuple(r) for r in rows} == {("2026-10", "2026-08")}
    entries += [(e.service, e.member, "2026-08", "2026-10", e.quantity) for e in first_batch]
    oracle = Oracle(PLANS, BASIS, entries)
    october = by_member(await statements(engine, "2026-10"))
    expected = oracle.lines(["2026-10"])
    assert {m: as_lines(s) for m, s in october.items()} == expected
    adjustments = {
        (m, line.service): line
        for m, s in october.items()
        for line in s.lines
        if line.kind == "adjustment"
    }
    # unit price: the tier-aware difference, priced on August's whole quantity, not on the late part
    before, after = tickets[crossing], D(130)
    tiers = PLANS["help-desk"]["tiers"]
    assert adjustments[crossing, "help-desk"].adjusts == "2026-08"
    assert adjustments[crossing, "help-desk"].quantity == after - before
    assert adjustments[crossing, "help-desk"].amount == half_up(graduated(after, tiers)) - half_up(
        graduated(before, tiers)
    )
    assert adjustments[newcomer, "help-desk"].amount == D("16.63")  # 3.5 * 4.75 = 16.625
    # a pool: August's pool split again; the adjustments move money between members, adding to 0
    network = [line for (m, s), line in adjustments.items() if s == "network"]
    assert len(network) > 2 and any(line.amount < 0 for line in network)
    assert sum(line.amount for line in network) == ZERO
    assert adjustments["d49", "network"].quantity == D("999.999999")

    # and the closed quarter recomputes exactly as it was closed, fingerprint and all
    assert await statements(engine, "FY2027-Q1") == q1

    # when October is closed too and more August usage arrives in November
    async with writing(engine) as conn:
        await close_period(
            conn, "2026-10", "business office", now=datetime(2026, 11, 3, tzinfo=UTC)
        )
    second_batch = [
        late("later-1", crossing, "help-desk", "12", datetime(2026, 8, 3, 15, tzinfo=UTC)),
        late("later-2", "d01", "network", "5000", datetime(2026, 8, 4, 15, tzinfo=UTC)),
    ]
    await post(engine, second_batch)

    # then November bills only what changed since October's adjustment, and October stands
    entries += [(e.service, e.member, "2026-08", "2026-11", e.quantity) for e in second_batch]
    oracle = Oracle(PLANS, BASIS, entries)
    november = by_member(await statements(engine, "2026-11"))
    assert {m: as_lines(s) for m, s in november.items()} == oracle.lines(["2026-11"])
    assert [
        line.amount
        for line in november[crossing].lines
        if line.kind == "adjustment" and line.service == "help-desk"
    ] == [D("27.99")]  # all 12 in the top tier: 12 * 2.3325 = 27.99
    assert await statements(engine, "2026-10") == list(october.values())
    assert await statements(engine, "FY2027-Q1") == q1

    # and the whole year, adjustments included, still trues up to the actual cost
    year = by_member(await statements(engine, "FY2027"))
    assert {m: as_lines(s) for m, s in year.items()} == oracle.lines(FY2027)
    assert sum(
        line.amount for s in year.values() for line in s.lines if line.service == "help-desk"
    ) == D(PLANS["help-desk"]["actual_cost"])


# 3 and 5. The CLI: close, stored statements, formats, receivables ----------------------------------

CLI_BILLING = """\
[plans.FY2027.cbo-payroll]
method = "unit_price"
meter = "records_synced"
tiers = [{ up_to = "1000", price = "0.35" }, { price = "0.28" }]

[plans.FY2027.administration]
method = "weighted"
basis = "rwada"
budget = "1250000.00"
members = ["eastview", "millbrook", "harbor-falls"]

[plans.FY2027.purchasing]
method = "percentage_fee"
meter = "purchases"
fee_rate = "0.02"

[basis.FY2027.rwada]
eastview = "2046.35"
millbrook = "1120.80"
harbor-falls = "3297.15"
"""

#: A district that joined but uses nothing and is in no plan; a purchasing service whose
#: suppliers owe a fee (its members owe nothing).
MORE_COOPERATIVE = """
[members.lakeside]
name = "Lakeside Common School District"
enrollment = 80
employees = 14

[services.purchasing]
name = "Cooperative purchasing"
coser = "CoSer 501"
"""
#: A supplier and contract as a purchasing export names them.
CONTRACT = (
    "Northeast Office & Classroom Supply Cooperative, Inc./NYS OGS Contract PC-68472: "
    "Office Supplies, Paper and Classroom Materials"
)

NAMES = {
    "eastview": "Eastview Central School District",
    "millbrook": "Millbrook Union Free School District",
    "harbor-falls": "Harbor Falls City School District",
}


@pytest.fixture
async def closed_july(database_url, tmp_path):
    """The example cooperative with a billing.toml, July's usage posted, and `billing close
    2026-07` run by the CLI; returns a function running ``cohub --config … --database …``."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    (config / "billing.toml").write_text(CLI_BILLING)
    with (config / "cooperative.toml").open("a") as toml:
        toml.write(MORE_COOPERATIVE)
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    await apply(engine, load_config(config))
    await post(
        engine,
        [
            UsageEvent(
                idempotency_key=f"july-{n}",
                member=member,
                service="cbo-payroll",
                meter="records_synced",
                quantity=D(quantity),
                occurred_at=at,
            )
            for n, (member, quantity, at) in enumerate(
                [
                    ("eastview", "1000", datetime(2026, 7, 10, 15, tzinfo=UTC)),
                    ("eastview", "203", datetime(2026, 8, 1, 3, 59, tzinfo=UTC)),  # July 31, 23:59
                    ("millbrook", "877", datetime(2026, 7, 2, 15, tzinfo=UTC)),
                    ("harbor-falls", "1500.5", datetime(2026, 7, 20, 15, tzinfo=UTC)),
                    ("harbor-falls", "9", datetime(2026, 7, 1, 3, tzinfo=UTC)),  # June 30: FY2026
                ]
            )
        ],
    )
    await post(
        engine,
        [
            UsageEvent(
                idempotency_key="purchase",
                member="millbrook",
                service="purchasing",
                meter="purchases",
                quantity=D("1234.25"),
                occurred_at=datetime(2026, 7, 15, 15, tzinfo=UTC),
                subject=CONTRACT,
            )
        ],
    )
    await engine.dispose()

    def run(*args: str):
        result = cohub(
            "--config",
            str(config),
            "--database",
            database_url,
            *args,
            cwd=tmp_path,
            env={"COHUB_ACTOR": "business office"},
        )
        assert result.returncode == 0, result.stderr
        return result

    closing = run("billing", "close", "2026-07")
    assert "closed 2026-07: 2026-07" in closing.stdout
    assert "stored 3 statement(s) for 2026-07" in closing.stdout
    return run


#: July, by hand: 1,203 lines for eastview are 1,000 * 0.35 + 203 * 0.28; the July twelfth of the
#: administration budget (104,166.67) split 2046.35 : 1120.80 : 3297.15.
JULY = {
    "eastview": {"cbo-payroll": D("406.84"), "administration": D("32975.18")},
    "millbrook": {"cbo-payroll": D("306.95"), "administration": D("18060.73")},
    "harbor-falls": {"cbo-payroll": D("490.14"), "administration": D("53130.76")},
}


async def test_statements_stored_at_close_recompute_to_the_cent_in_every_format(
    closed_july, tmp_path
):
    # when the July statements are printed again
    table = closed_july("billing", "statement", "2026-07").stdout

    # then each member's statement recomputes to the one stored when July was closed
    for member in JULY:
        assert f"{member}: recomputes to the statement stored at close, to the cent" in table
    assert "DIFFERS" not in table and "lakeside" not in table

    # and written as JSON, CSV and HTML each parses and carries the same figures
    files = {form: tmp_path / f"july.{form}" for form in ("json", "csv", "html")}
    for form, path in files.items():
        closed_july("billing", "statement", "2026-07", "--format", form, "--output", str(path))
    rows = json.loads(files["json"].read_text())
    assert rows == list(csv.DictReader(io.StringIO(files["csv"].read_text())))
    assert {(r["member"], r["service"]): D(r["amount"]) for r in rows} == {
        (member, service): amount
        for member, amounts in JULY.items()
        for service, amount in amounts.items()
    }
    assert {r["kind"] for r in rows} == {"charge"} and {r["period"] for r in rows} == {"2026-07"}
    page = files["html"].read_text()
    for member, amounts in JULY.items():
        assert f"Statement for {NAMES[member]} ({member})" in page
        assert f"<td class=num>{sum(amounts.values()):,.2f}</td>" in page
    assert "Lakeside" not in page


async def test_machine_readable_statements_on_standard_output_are_only_the_data(closed_july):
    # when the July statements are asked for as JSON and CSV on standard output (to pipe to jq…)
    as_json = closed_july("billing", "statement", "2026-07", "--format", "json").stdout
    as_csv = closed_july("billing", "statement", "2026-07", "--format", "csv").stdout

    # then the output parses as a whole: no status note mixed into the data
    assert len(json.loads(as_json)) == 6
    rows = list(csv.reader(io.StringIO(as_csv)))
    assert [len(row) for row in rows] == [13] * 7


async def test_a_long_supplier_fee_row_on_standard_output_stays_one_csv_row(closed_july):
    # when July's supplier fees are printed as CSV (the contract name makes the row 181 long)
    printed = closed_july("billing", "suppliers", "2026-07", "--format", "csv").stdout

    # then the CSV is the header and one row, as written: nothing wrapped to the screen's width
    assert list(csv.DictReader(io.StringIO(printed))) == [
        {
            "service": "purchasing",
            "supplier": CONTRACT,
            "member": "millbrook",
            "month": "2026-07",
            "volume": "1234.250000",
            "fee_rate": "0.02",
            "fee": "24.69",  # 1234.25 * 2 % = 24.685, half up
        }
    ]


async def test_receivables_are_the_statement_totals_and_an_idle_member_owes_nothing(
    closed_july, tmp_path
):
    # when the year's receivables and statements are reported
    receivables = list(
        csv.DictReader(
            io.StringIO(closed_july("billing", "receivables", "FY2027", "--format", "csv").stdout)
        )
    )
    statements_file = tmp_path / "fy2027.json"
    closed_july(
        "billing", "statement", "FY2027", "--format", "json", "--output", str(statements_file)
    )
    year = json.loads(statements_file.read_text())

    # then each member's receivable is its statement's total and the total row their sum
    per_member: dict[str, Decimal] = defaultdict(Decimal)
    for row in year:
        per_member[row["member"]] += D(row["amount"])
    assert {r["member"]: D(r["total"]) for r in receivables[:-1]} == per_member
    assert receivables[-1]["name"] == "total"
    assert D(receivables[-1]["total"]) == sum(per_member.values())
    # the administration budget billed in full over the year, plus July's payroll lines
    assert D(receivables[-1]["total"]) == D("1250000.00") + D("406.84") + D("306.95") + D("490.14")
    # a member with no usage and in no plan has no statement and no receivable
    assert sorted(per_member) == ["eastview", "harbor-falls", "millbrook"]
    assert [r["name"] for r in receivables[:-1]] == [NAMES[m] for m in sorted(NAMES)]


# 4. Supplier fees --------------------------------------------------------------------------------


async def test_supplier_fees_are_volume_times_rate_half_up_per_supplier_member_and_month(engine):
    # given purchases by members on suppliers' contracts, billed by a 2 % administrative fee
    plans = msgspec.convert(
        {
            "plans": {
                "FY2027": {
                    "purchasing": {
                        "method": "percentage_fee",
                        "meter": "purchases",
                        "fee_rate": "0.02",
                    }
                }
            }
        },
        BillingPlans,
    )
    rng = random.Random(4)
    subjects = ("ACME/C-101", "ACME/C-102", "BOLT/C-201")
    events = [
        UsageEvent(
            idempotency_key=f"p{n}",
            member=rng.choice(MEMBERS[:6]),
            service="purchasing",
            meter="purchases",
            quantity=D(rng.randint(1, 2_000_000)).scaleb(-2),
            occurred_at=datetime(2026, rng.choice((7, 8, 9)), rng.randint(1, 28), 15, tzinfo=UTC),
            subject=rng.choice(subjects),
        )
        for n in range(300)
    ]
    events += [
        # exactly half a cent of fee: 12.25 * 2 % = 0.245; a credit, -0.245, rounds away from 0
        UsageEvent(
            idempotency_key="half",
            member="d09",
            service="purchasing",
            meter="purchases",
            quantity=D("12.25"),
            occurred_at=datetime(2026, 7, 9, 15, tzinfo=UTC),
            subject="BOLT/C-201",
        ),
        UsageEvent(
            idempotency_key="credit",
            member="d09",
            service="purchasing",
            meter="purchases",
            quantity=D("-12.25"),
            occurred_at=datetime(2026, 9, 1, 2, tzinfo=UTC),  # August 31 in New York
            subject="ACME/C-101",
        ),
    ]
    await post(engine, events)

    # when the quarter's supplier fees are reported
    async with engine.connect() as conn:
        fees = await supplier_fees(conn, plans, METERS, "FY2027-Q1")
        no_member_lines = await compute_statements(conn, plans, METERS, "FY2027-Q1")

    # then each supplier's contract owes, per member and month, its volume * 2 % rounded half-up
    volume: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for e in events:
        volume[e.subject, e.member, local_month(e.occurred_at)] += e.quantity
    got = {(f.supplier, f.member, f.month): (f.volume, f.fee) for f in fees}
    assert got == {
        key: (total, half_up(Fraction(total) * Fraction(2, 100))) for key, total in volume.items()
    }
    assert got["BOLT/C-201", "d09", "2026-07"] == (D("12.25"), D("0.25"))
    assert got["ACME/C-101", "d09", "2026-08"] == (D("-12.25"), D("-0.25"))
    assert {(f.service, f.fee_rate) for f in fees} == {("purchasing", D("0.02"))}
    # suppliers owe the fee, members do not
    assert no_member_lines == []


# Closed months of the previous fiscal year, and plan fields of other methods -------------------


def one_event(key: str, member: str, service: str, quantity: str, at: datetime) -> UsageEvent:
    return UsageEvent(
        idempotency_key=key,
        member=member,
        service=service,
        meter="tickets",
        quantity=D(quantity),
        occurred_at=at,
    )


def unit_price_plans(**years: dict[str, dict[str, str]]) -> BillingPlans:
    return msgspec.convert(
        {
            "plans": {
                year: {
                    s: {"method": "unit_price", "meter": "tickets", **p} for s, p in plans.items()
                }
                for year, plans in years.items()
            }
        },
        BillingPlans,
    )


async def close_june_2026_then_post_late_june_usage(engine, service: str) -> None:
    await post(
        engine, [one_event("on-time", "d01", service, "10", datetime(2026, 6, 10, 15, tzinfo=UTC))]
    )
    async with writing(engine) as conn:
        await close_period(conn, "FY2026", "business office", now=datetime(2026, 7, 2, tzinfo=UTC))
    await post(
        engine, [one_event("late", "d01", service, "5", datetime(2026, 6, 20, 15, tzinfo=UTC))]
    )


async def test_late_usage_of_last_fiscal_years_month_is_priced_by_last_years_plan(engine):
    # given help desk tickets at 1.00 in FY2026 and 2.00 from FY2027 on, and June 2026 closed
    plans = unit_price_plans(
        FY2026={"help-desk": {"rate": "1.00"}}, FY2027={"help-desk": {"rate": "2.00"}}
    )
    await close_june_2026_then_post_late_june_usage(engine, "help-desk")

    # when July 2026 (FY2027) bills the 5 late June tickets as June's adjustment
    [july] = await statements(engine, "2026-07", plans)

    # then they cost what June's tickets cost: 5 * 1.00, June's own price
    assert as_lines(july) == [("2026-07", "help-desk", "adjustment", "2026-06", D(5), D("5.00"))]


async def test_late_usage_of_a_service_whose_plan_ended_last_fiscal_year_is_still_billed(engine):
    # given the library billed per ticket in FY2026 only, and June 2026 closed
    plans = unit_price_plans(FY2026={"library": {"rate": "1.00"}})
    await close_june_2026_then_post_late_june_usage(engine, "library")

    # when July 2026 bills June's late usage
    found = await statements(engine, "2026-07", plans)

    # then the 5 late tickets are billed, not dropped because FY2027 has no library plan
    assert [as_lines(s) for s in found] == [
        [("2026-07", "library", "adjustment", "2026-06", D(5), D("5.00"))]
    ]


async def test_a_unit_price_plan_charges_no_base_fee(engine):
    # given a per-ticket plan that still carries the base fee of an earlier base_plus_usage plan
    plans = unit_price_plans(FY2027={"help-desk": {"rate": "1.00", "base_fee": "100.00"}})
    await post(
        engine, [one_event("t", "d01", "help-desk", "10", datetime(2026, 7, 10, 15, tzinfo=UTC))]
    )

    # when July is billed
    [july] = await statements(engine, "2026-07", plans)

    # then the member pays for its 10 tickets only: a base fee is base_plus_usage's
    assert july.total == D("10.00")
