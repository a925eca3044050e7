"""Statements: what each member owes for a period, service by service, computed from the usage
ledger and the year's plans, to the cent.

A period is billed month by month. Each month a plan charges its members for the month's own
usage (or its share of the cost pool). Usage that arrived after its month was closed is billed in
the month it arrived as an *adjustment* of the closed month: the closed month's charges are
computed again with the late usage and without it, and the difference is billed, so a re-split
pool still adds up to the pool. A plan with the year's actual cost carries the year-end true-up
in the fiscal year's last month. Every statement carries the fingerprint of its inputs (plans,
bases and the usage it priced): the same ledger and plans always give the same statement.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.billing import allocation
from hub.billing.periods import FiscalCalendar, previous_month
from hub.billing.plans import MEMBER_COUNTS, POOL_METHODS, BillingPlans, Plan, rate_card
from hub.metering import load_calendar, usage_totals
from hub.model.purchasing import Invoice, InvoiceLine
from hub.sdk.extensions import Meter
from hub.store.tables import members, services, usage_daily

ZERO = Decimal(0)
KINDS = ("charge", "adjustment", "true-up")


class StatementLine(msgspec.Struct, frozen=True, kw_only=True):
    """One charge: a service's plan applied to one month for one member."""

    service: str
    coser: str | None
    month: str
    kind: str  # "charge", "adjustment" (of the closed month `adjusts`) or "true-up"
    method: str
    meter: str | None
    quantity: Decimal | None
    unit: str
    #: The unit price, or for pool methods the member's share of the pool (0.25 is a quarter).
    rate: Decimal | None
    amount: Decimal
    adjusts: str = ""

    @property
    def label(self) -> str:
        """The kind of line as a statement prints it: ``adjusts 2026-08`` for an adjustment."""
        return f"adjusts {self.adjusts}" if self.kind == "adjustment" else self.kind


class Statement(msgspec.Struct, frozen=True, kw_only=True):
    """What one member owes for one period."""

    period: str
    member: str
    member_name: str
    lines: list[StatementLine]
    total: Decimal
    fingerprint: str


class Supplier(msgspec.Struct, frozen=True, kw_only=True):
    """A supplier's (and contract's) sales to one member in a period and the fee it owes."""

    service: str
    supplier: str
    member: str
    month: str
    volume: Decimal
    fee_rate: Decimal
    fee: Decimal


#: member → (quantity, unit price or share, amount) of one plan in one month.
Charges = dict[str, tuple[Decimal | None, Decimal | None, Decimal]]


class Biller:
    """Computes charges for the months of one run, remembering the usage it read (which is
    also what the fingerprint covers)."""

    def __init__(
        self,
        conn: AsyncConnection,
        calendar: FiscalCalendar,
        plans: BillingPlans,
        meters: Mapping[str, Meter],
        member_rows: Mapping[str, Any],
    ) -> None:
        self.conn = conn
        self.calendar = calendar
        self.plans = plans
        self.meters = meters
        self.members = member_rows
        self.inputs: dict[str, Any] = {}

    def plans_for(self, month: str) -> dict[str, Plan]:
        year = f"FY{self.calendar.fiscal_year(month)}"
        return self.plans.plans.get(year, {})

    async def usage(self, service: str, meter: str, month: str, through: str) -> dict[str, Decimal]:
        """Each member's usage of `meter` for `month`, late usage billed up to `through`
        included."""
        key = f"{service}|{meter}|{month}|{through}"
        if key not in self.inputs:
            totals = await usage_totals(
                self.conn,
                self.meters,
                service=service,
                meter=meter,
                usage_of=month,
                billed_through=through,
            )
            self.inputs[key] = {t.member: t.quantity for t in totals if t.quantity}
        return self.inputs[key]

    def participants(self, plan: Plan) -> list[str]:
        return sorted(plan.members or self.members)

    def basis(self, plan: Plan, month: str) -> dict[str, Decimal]:
        year = f"FY{self.calendar.fiscal_year(month)}"
        name = plan.basis or ""
        if name in MEMBER_COUNTS and name not in self.plans.basis.get(year, {}):
            values = {m: Decimal(self.members[m][name] or 0) for m in self.participants(plan)}
        else:
            given = self.plans.basis.get(year, {}).get(name, {})
            values = {m: given.get(m, ZERO) for m in self.participants(plan)}
        self.inputs[f"basis|{year}|{name}"] = values
        return values

    def pool(self, plan: Plan, month: str) -> Decimal:
        """The month's part of the year's budget: a twelfth, the odd cents in the first months,
        so the twelve months add up to the budget exactly."""
        months = self.calendar.year(self.calendar.fiscal_year(month)).months
        return allocation.equal_shares(plan.budget or ZERO, months)[month]

    async def charges(
        self, service: str, plan: Plan, month: str, through: str
    ) -> dict[str, tuple[Decimal | None, Decimal | None, Decimal]]:
        """member → (quantity, rate or share, amount) for `month`'s own usage and the late usage
        for it billed up to `through`."""
        usage: dict[str, Decimal] = {}
        if plan.meter is not None:
            usage = await self.usage(service, plan.meter, month, through)
        participants = self.participants(plan)
        method = plan.method
        if method in ("unit_price", "base_plus_usage"):
            card = rate_card(plan)
            base = plan.base_fee or ZERO if method == "base_plus_usage" else ZERO
            charged = participants if method == "base_plus_usage" else sorted(usage)
            return {
                m: (
                    usage.get(m, ZERO),
                    plan.rate if not plan.tiers else None,
                    allocation.round_half_up(base + card.charge(usage.get(m, ZERO))),
                )
                for m in charged
                if m in participants
            }
        if method not in POOL_METHODS:
            return {}  # percentage_fee is owed by suppliers, not members
        pool = self.pool(plan, month)
        if method == "weighted":
            weights = self.basis(plan, month)
        elif method == "equal":
            weights = dict.fromkeys(participants, Decimal(1))
        else:
            weights = {m: q for m, q in usage.items() if m in participants}
        total = sum(weights.values(), ZERO)
        if not total:
            return {}  # nobody to split by this month; the true-up settles the year
        shares = allocation.largest_remainder(pool, weights)
        sign = -1 if method == "patronage" else 1  # a patronage refund is a credit
        return {
            m: (usage.get(m) if plan.meter else None, weights[m] / total, sign * shares[m])
            for m in shares
            if weights[m]
        }


async def compute_statements(
    conn: AsyncConnection,
    plans: BillingPlans,
    meters: Mapping[str, Meter],
    period: str,
    *,
    member: str | None = None,
) -> list[Statement]:
    """Every member's statement for `period` (a month, quarter or fiscal year), or one member's."""
    calendar = await load_calendar(conn)
    span = calendar.parse(period)
    biller = Biller(conn, calendar, plans, meters, await _members(conn))
    coser = dict((await conn.execute(select(services.c.code, services.c.coser))).all())
    lines: dict[str, list[StatementLine]] = {m: [] for m in biller.members}
    for month in span.months:
        billed: list[tuple[StatementLine, Charges]] = []
        for service, plan in sorted(biller.plans_for(month).items()):
            line = _template(service, plan, month, coser, meters)
            billed.append((line, await biller.charges(service, plan, month, month)))
            last = calendar.year(calendar.fiscal_year(month)).months[-1]
            if plan.actual_cost is not None and month == last:
                true_up = msgspec.structs.replace(line, kind="true-up")
                billed.append((true_up, await _true_up(biller, service, plan, month)))
        # Late usage is priced by the plan of the month it belongs to, even one of an earlier
        # fiscal year, or a service no longer billed this year.
        for service, meter, closed in await _late_usage(conn, month):
            plan = biller.plans_for(closed).get(service)
            if plan is None or plan.meter != meter:
                continue
            now = await biller.charges(service, plan, closed, month)
            before = await biller.charges(service, plan, closed, previous_month(month))
            adjustment = msgspec.structs.replace(
                _template(service, plan, month, coser, meters), kind="adjustment", adjusts=closed
            )
            billed.append((adjustment, _difference(now, before)))
        # Each service's lines together: its charge, its adjustments, its true-up.
        billed.sort(key=lambda entry: (entry[0].service, KINDS.index(entry[0].kind)))
        for template, charges in billed:
            for code, (quantity, rate, amount) in charges.items():
                if code in lines and (amount or template.kind == "charge"):
                    lines[code].append(
                        msgspec.structs.replace(
                            template, quantity=quantity, rate=rate, amount=amount
                        )
                    )
    fingerprint = _fingerprint(period, plans, biller.inputs)
    names = {code: row["name"] for code, row in biller.members.items()}
    return [
        Statement(
            period=span.name,
            member=code,
            member_name=names[code],
            lines=member_lines,
            total=sum((line.amount for line in member_lines), ZERO),
            fingerprint=fingerprint,
        )
        for code, member_lines in sorted(lines.items())
        if member in (None, code) and member_lines
    ]


async def supplier_fees(
    conn: AsyncConnection, plans: BillingPlans, meters: Mapping[str, Meter], period: str
) -> list[Supplier]:
    """The administrative fee each supplier owes on its sales to members, for services billed
    by percentage_fee; the ledger's subjects name the supplier and contract."""
    calendar = await load_calendar(conn)
    fees: list[Supplier] = []
    for month in calendar.parse(period).months:
        year = f"FY{calendar.fiscal_year(month)}"
        for service, plan in sorted(plans.plans.get(year, {}).items()):
            if plan.method != "percentage_fee" or plan.meter is None:
                continue
            daily = await _subject_usage(conn, service, plan.meter, month)
            for (supplier, code), volume in sorted(daily.items()):
                fee = allocation.percentage_fee({supplier: volume}, plan.fee_rate or ZERO)
                fees.append(
                    Supplier(
                        service=service,
                        supplier=supplier,
                        member=code,
                        month=month,
                        volume=volume,
                        fee_rate=plan.fee_rate or ZERO,
                        fee=fee[supplier],
                    )
                )
    return fees


async def _subject_usage(
    conn: AsyncConnection, service: str, meter: str, month: str
) -> dict[tuple[str, str], Decimal]:
    daily = usage_daily.c
    rows = await conn.execute(
        select(daily.subject, daily.member, func.sum(daily.quantity))
        .where(daily.service == service, daily.meter == meter, daily.period == month)
        .group_by(daily.subject, daily.member)
    )
    volumes: dict[tuple[str, str], Decimal] = {}
    for subject, code, total in rows.all():
        # Subjects may name the order too (vendor/contract/order): the fee is per contract.
        supplier = "/".join(subject.split("/")[:2]) or "(none)"
        volumes[supplier, code] = volumes.get((supplier, code), ZERO) + total
    return volumes


async def _true_up(
    biller: Biller, service: str, plan: Plan, last_month: str
) -> dict[str, tuple[Decimal | None, Decimal | None, Decimal]]:
    """The year-end adjustment: actual cost minus what the year's months billed, shared by
    participation (usage of the plan's meter over the year, or its basis, or equally)."""
    months = biller.calendar.year(biller.calendar.fiscal_year(last_month)).months
    billed: dict[str, Decimal] = {}
    participation: dict[str, Decimal] = {}
    for month in months:
        for code, (quantity, _, amount) in (
            await biller.charges(service, plan, month, last_month)
        ).items():
            billed[code] = billed.get(code, ZERO) + amount
            if plan.meter is not None and quantity:
                participation[code] = participation.get(code, ZERO) + quantity
    if plan.method == "weighted":
        participation = biller.basis(plan, last_month)
    elif plan.method == "equal" or plan.meter is None:
        participation = dict.fromkeys(biller.participants(plan), Decimal(1))
    if not any(participation.values()):
        return {}
    adjustment = allocation.true_up(plan.actual_cost or ZERO, billed, participation)
    return {code: (None, None, amount) for code, amount in adjustment.items() if amount}


async def _late_usage(conn: AsyncConnection, month: str) -> list[tuple[str, str, str]]:
    """(service, meter, closed month) of the late usage billed in `month`."""
    daily = usage_daily.c
    rows = await conn.execute(
        select(daily.service, daily.meter, daily.adjusts)
        .distinct()
        .where(daily.period == month, daily.adjusts != "")
        .order_by(daily.service, daily.meter, daily.adjusts)
    )
    return [tuple(row) for row in rows.all()]


def _template(
    service: str,
    plan: Plan,
    month: str,
    coser: Mapping[str, str | None],
    meters: Mapping[str, Meter],
) -> StatementLine:
    """A line of `service` billed in `month` under `plan`, before its member's figures."""
    return StatementLine(
        service=service,
        coser=coser.get(service),
        month=month,
        kind="charge",
        method=plan.method,
        meter=plan.meter,
        quantity=None,
        unit=meters[plan.meter].unit if plan.meter in meters else "",
        rate=None,
        amount=ZERO,
    )


def _difference(
    now: Mapping[str, tuple[Decimal | None, Decimal | None, Decimal]],
    before: Mapping[str, tuple[Decimal | None, Decimal | None, Decimal]],
) -> dict[str, tuple[Decimal | None, Decimal | None, Decimal]]:
    result = {}
    for code in sorted({*now, *before}):
        quantity, rate, amount = now.get(code, (None, None, ZERO))
        old_quantity, _, old_amount = before.get(code, (None, None, ZERO))
        late = None if quantity is None else quantity - (old_quantity or ZERO)
        result[code] = (late, rate, amount - old_amount)
    return result


async def _members(conn: AsyncConnection) -> dict[str, Any]:
    rows = (await conn.execute(select(members).order_by(members.c.code))).mappings().all()
    return {row["code"]: row for row in rows}


_encode = msgspec.json.Encoder(order="sorted").encode


def _fingerprint(period: str, plans: BillingPlans, inputs: Mapping[str, Any]) -> str:
    """SHA-256 of everything a statement was computed from."""
    return hashlib.sha256(_encode([period, plans, inputs])).hexdigest()


def as_invoice(statement: Statement, issuer: str, issued_on: date, issued_at: datetime) -> Invoice:
    """A statement as the canonical invoice the agency's accounting system books: the
    cooperative is the vendor, one invoice line per statement line."""
    return Invoice(
        invoice_id=f"{statement.period}-{statement.member}",
        vendor_id=issuer,
        invoice_date=issued_on,
        due_date=issued_on + timedelta(days=30),
        status="approved",
        lines=[
            InvoiceLine(
                line_number=number,
                description=" ".join(
                    part
                    for part in (
                        line.service,
                        line.coser or "",
                        line.month,
                        line.label,
                    )
                    if part
                ),
                supplier_part_id=line.service,
                quantity=Decimal(1),
                unit_price=line.amount,
                amount=line.amount,
            )
            for number, line in enumerate(statement.lines, start=1)
        ],
        total_amount=statement.total,
        updated_at=issued_at,
    )
