"""The usage ledger: measuring committed batches and appending usage events exactly once."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import msgspec
from sqlalchemy import String, and_, distinct, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.billing.periods import FiscalCalendar, month_of, next_month
from hub.model import Record
from hub.plugins import PluginHost
from hub.sdk.extensions import BatchContext, Meter
from hub.sdk.lifecycle import UsageQuantity
from hub.store.tables import QUANTITY_PLACES, closed_months, cooperative, usage_daily, usage_events
from hub.store.upsert import dialect_insert, insert_ignoring_duplicates

_encode = msgspec.json.Encoder(order="sorted").encode


def batch_fingerprint(
    route: str, stream: str, state_before: Any, state_after: Any, generation: int | None = None
) -> str:
    """A stable identity for one batch of a route: the same checkpoint range in the same read
    cycle gives the same value, so a batch re-read after a crash carries the same usage
    idempotency keys, while the next full refresh (a new cycle) is metered anew."""
    digest = hashlib.sha256()
    parts = (
        route.encode(),
        stream.encode(),
        _encode(state_before),
        _encode(state_after),
        _encode(generation),
    )
    for part in parts:
        digest.update(part)
        digest.update(b"\x00")
    return digest.hexdigest()[:40]


#: Meters every route measures, whatever its service lists.
HUB_METERS = frozenset({"records_synced", "api_calls", "run_minutes"})


def measure(
    host: PluginHost,
    context: BatchContext,
    records: Sequence[Record],
    only: Collection[str] | None = None,
) -> list[UsageQuantity]:
    """Every applicable meter's quantity for a batch, one per subject for a meter that answers
    ``{subject: quantity}``; a meter that raises or answers wrongly is reported and skipped.
    With `only` (the service's meters), other meters than those and the hub's own are not asked:
    per-subject meters append an event per employee or paycheck, which a service that does not
    bill by them should not pay for."""
    member = context.member
    if member is None:
        return []
    quantities: list[UsageQuantity] = []
    for meter in host.meters().values():
        if meter.measure is None:
            continue
        if only is not None and meter.name not in only and meter.name not in HUB_METERS:
            continue
        try:
            answer = meter.measure(context, records)
            if isinstance(answer, Mapping):
                measured = [
                    (str(subject), checked_quantity(value)) for subject, value in answer.items()
                ]
            else:
                measured = [("", checked_quantity(answer))]
        except Exception as error:
            host.report(host.owner("meter", meter.name), f"meter {meter.name}", error)
            continue
        quantities.extend(
            UsageQuantity(
                meter=meter.name,
                member=member,
                quantity=quantity,
                subject=subject,
                key=f"{meter.name}:{member}:{subject}" if meter.once_per_subject else "",
            )
            for subject, quantity in measured
            if quantity
        )
    return quantities


def checked_quantity(quantity: object) -> Decimal | None:
    """A measure's answer as the ledger stores it: None, or an int or Decimal with at most six
    decimal places (a float would carry binary rounding into bills)."""
    if quantity is None:
        return None
    if isinstance(quantity, bool) or not isinstance(quantity, int | Decimal):
        raise TypeError(f"a measure must return an int or Decimal, not {type(quantity).__name__}")
    value = Decimal(quantity)
    if value.as_tuple().exponent < -QUANTITY_PLACES:  # type: ignore[operator]
        raise ValueError(f"{value} has more than {QUANTITY_PLACES} decimal places")
    return value


class UsageEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the usage ledger, as a run, the CLI or the API posts it."""

    idempotency_key: str
    member: str
    service: str
    meter: str
    quantity: Decimal
    occurred_at: datetime
    subject: str = ""
    route: str | None = None
    run_id: int | None = None


async def record_usage(
    conn: AsyncConnection,
    quantities: Sequence[UsageQuantity],
    *,
    fingerprint: str,
    service: str,
    occurred_at: datetime,
    route: str | None = None,
    run_id: int | None = None,
    calendar: FiscalCalendar | None = None,
) -> int:
    """Append a batch's usage; keys derive from the batch fingerprint, so a batch read again
    after a crash adds nothing."""
    return await append_usage(
        conn,
        ledger_entries(
            quantities,
            fingerprint=fingerprint,
            service=service,
            occurred_at=occurred_at,
            route=route,
            run_id=run_id,
        ),
        calendar,
    )


def ledger_entries(
    quantities: Sequence[UsageQuantity],
    *,
    fingerprint: str,
    service: str,
    occurred_at: datetime,
    route: str | None = None,
    run_id: int | None = None,
) -> list[UsageEvent]:
    """A batch's usage as ledger entries, keyed by the batch's fingerprint (a quantity's own key
    where it has one)."""
    return [
        UsageEvent(
            idempotency_key=q.key
            or ":".join((fingerprint, q.meter, q.member, *((q.subject,) if q.subject else ()))),
            member=q.member,
            service=service,
            meter=q.meter,
            quantity=q.quantity,
            occurred_at=occurred_at,
            subject=q.subject,
            route=route,
            run_id=run_id,
        )
        for q in quantities
    ]


async def append_usage(
    conn: AsyncConnection, events: Sequence[UsageEvent], calendar: FiscalCalendar | None = None
) -> int:
    """Append `events` to the ledger and roll them up, in the caller's transaction; return how
    many were new. A key already in the ledger (or twice in `events`) is ignored, never counted
    twice: only the rows the database reports as inserted reach the rollups, which holds across
    concurrent workers too. An event whose month is closed is billed in the next open month as an
    adjustment of its own. `calendar` saves reading the cooperative's (a run reads it once)."""
    if not events:
        return 0
    calendar = calendar or await load_calendar(conn)
    closed = set((await conn.execute(select(closed_months.c.month))).scalars())
    rows: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.idempotency_key in rows:
            continue
        day = calendar.day(event.occurred_at)
        month = period = month_of(day)
        while period in closed:
            period = next_month(period)
        rows[event.idempotency_key] = {
            **msgspec.structs.asdict(event),
            "day": day,
            "period": period,
            "adjusts": month if period != month else "",
        }
    insert = insert_ignoring_duplicates(usage_events, conn.dialect.name)
    inserted = set(
        (
            await conn.execute(
                insert.returning(usage_events.c.idempotency_key), list(rows.values())
            )
        ).scalars()
    )
    await _roll_up(conn, [row for key, row in rows.items() if key in inserted])
    return len(inserted)


ROLLUP_KEY = ("member", "service", "meter", "day", "subject", "period", "adjusts")


async def _roll_up(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Add new events to their daily rollups (one upsert per member, service, meter, day…)."""
    totals: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[name] for name in ROLLUP_KEY)
        total = totals.get(key)
        if total is None:
            totals[key] = {
                **dict(zip(ROLLUP_KEY, key, strict=True)),
                "quantity": row["quantity"],
                "events": 1,
                "maximum": row["quantity"],
            }
        else:
            total["quantity"] += row["quantity"]
            total["events"] += 1
            total["maximum"] = max(total["maximum"], row["quantity"])
    if not totals:
        return
    dialect = conn.dialect.name
    insert = dialect_insert(usage_daily, "postgresql" if dialect == "postgresql" else "sqlite")
    stored, incoming = usage_daily.c, insert.excluded
    larger = func.greatest if dialect == "postgresql" else func.max
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=list(ROLLUP_KEY),
            set_={
                "quantity": stored.quantity + incoming.quantity,
                "events": stored.events + incoming.events,
                "maximum": larger(stored.maximum, incoming.maximum),
            },
        ),
        list(totals.values()),
    )


async def load_calendar(conn: AsyncConnection) -> FiscalCalendar:
    """The cooperative's time zone and fiscal year, as `cohub apply` stored them."""
    row = (
        await conn.execute(select(cooperative.c.timezone, cooperative.c.fiscal_year_start))
    ).first()
    return FiscalCalendar() if row is None else FiscalCalendar(row.timezone, row.fiscal_year_start)


class UsageTotal(msgspec.Struct, frozen=True, kw_only=True):
    """A meter's usage for one member and service over one bucket (a day, a month, a billing
    period, or the whole range when `bucket` is "")."""

    member: str
    service: str
    meter: str
    bucket: str
    quantity: Decimal
    unit: str
    aggregation: str


#: How usage is bucketed: by local day, by month of use, by billing period (the month it is billed
#: in, adjustments included), or one total over the range.
Buckets = Literal["day", "month", "period", "total"]


async def usage_totals(
    conn: AsyncConnection,
    meters: Mapping[str, Meter],
    *,
    member: str | None = None,
    service: str | None = None,
    meter: str | None = None,
    first_day: date | None = None,
    last_day: date | None = None,
    periods: Sequence[str] | None = None,
    usage_of: str | None = None,
    billed_through: str | None = None,
    by: Buckets = "total",
) -> list[UsageTotal]:
    """Usage from the daily rollups, each meter aggregated its own way: a sum, a count of
    events, the largest value, or the number of distinct subjects (counted over the whole
    bucket, not added up day by day).

    `usage_of` (a month) with `billed_through` (a later or the same month) is what billing asks:
    the month's own usage plus the late usage for it billed up to `billed_through`."""
    daily = usage_daily.c
    if by == "day":
        bucket: Any = func.cast(daily.day, String)
    elif by == "month":
        bucket = (
            func.to_char(daily.day, "YYYY-MM")
            if conn.dialect.name == "postgresql"
            else func.strftime("%Y-%m", daily.day)
        )
    elif by == "period":
        bucket = daily.period
    else:
        bucket = literal("")
    query = (
        select(
            daily.member,
            daily.service,
            daily.meter,
            bucket.label("bucket"),
            func.sum(daily.quantity).label("total"),
            func.sum(daily.events).label("events"),
            func.max(daily.maximum).label("maximum"),
            func.count(distinct(daily.subject)).label("subjects"),
        )
        .group_by(daily.member, daily.service, daily.meter, bucket)
        .order_by(daily.member, daily.service, daily.meter, bucket)
    )
    for column, value in (("member", member), ("service", service), ("meter", meter)):
        if value is not None:
            query = query.where(daily[column] == value)
    if first_day is not None:
        query = query.where(daily.day >= first_day)
    if last_day is not None:
        query = query.where(daily.day <= last_day)
    if periods is not None:
        query = query.where(daily.period.in_(list(periods)))
    if usage_of is not None:
        query = query.where(
            or_(
                and_(daily.period == usage_of, daily.adjusts == ""),
                and_(daily.adjusts == usage_of, daily.period <= (billed_through or usage_of)),
            )
        )
    totals = []
    for row in (await conn.execute(query)).all():
        declared = meters.get(row.meter)
        aggregation = declared.aggregation if declared else "sum"
        quantity = {
            "sum": row.total,
            "count": Decimal(row.events),
            "max": row.maximum,
            "unique_count": Decimal(row.subjects),
        }[aggregation]
        totals.append(
            UsageTotal(
                member=row.member,
                service=row.service,
                meter=row.meter,
                bucket=row.bucket,
                quantity=quantity,
                unit=declared.unit if declared else "",
                aggregation=aggregation,
            )
        )
    return totals


class PeriodClosed(ValueError):
    """A period cannot be closed (it has not ended yet)."""


async def close_period(
    conn: AsyncConnection, name: str, actor: str, *, now: datetime | None = None
) -> list[str]:
    """Freeze the months of period `name` (a month, quarter or fiscal year): usage that arrives
    for them later is billed in the next open month as an adjustment. Returns the months closed
    now (those closed before are left as they were); a period that has not ended is refused."""
    calendar = await load_calendar(conn)
    period = calendar.parse(name)
    moment = now or datetime.now(UTC)
    today = calendar.day(moment)
    if period.last_day >= today:
        raise PeriodClosed(f"{period.name} has not ended yet (it runs to {period.last_day})")
    already = set(
        (
            await conn.execute(
                select(closed_months.c.month).where(closed_months.c.month.in_(period.months))
            )
        ).scalars()
    )
    months = [m for m in period.months if m not in already]
    if months:
        await conn.execute(
            closed_months.insert(),
            [
                {"month": m, "closed_as": period.name, "closed_at": moment, "closed_by": actor}
                for m in months
            ],
        )
    return months


#: What a posted usage event must give.
EVENT_FIELDS = ("member", "service", "meter", "quantity", "occurred_at", "idempotency_key")


class EventProblems(ValueError):
    """Posted usage events that cannot go into the ledger, each with its reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def checked_events(
    raw: list[dict[str, Any]],
    known_members: set[str],
    known_services: set[str],
    known_meters: set[str],
    source: str | None,
) -> list[UsageEvent]:
    """Every event checked before any is posted (one bad event posts nothing): EventProblems
    lists each bad event and why."""
    events: list[UsageEvent] = []
    problems: list[str] = []
    for number, row in enumerate(raw, start=1):
        where = f"{source}: event {number}" if source else f"event {number}"
        try:
            if not isinstance(row, dict):
                raise ValueError("is not an object with the event's fields")
            missing = [name for name in EVENT_FIELDS if not row.get(name)]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            if row["member"] not in known_members:
                raise ValueError(f"unknown member {row['member']!r}")
            if row["service"] not in known_services:
                raise ValueError(f"unknown service {row['service']!r}")
            if row["meter"] not in known_meters:
                raise ValueError(
                    f"unknown meter {row['meter']!r}; meters are declared by plugins "
                    f"({', '.join(sorted(known_meters))})"
                )
            try:
                quantity = checked_quantity(Decimal(str(row["quantity"])))
            except InvalidOperation:
                raise ValueError(f"quantity {row['quantity']!r} is not a number") from None
            moment = datetime.fromisoformat(str(row["occurred_at"]))
            if moment.tzinfo is None:
                raise ValueError(f"occurred_at {row['occurred_at']!r} has no time zone offset")
            events.append(
                UsageEvent(
                    idempotency_key=str(row["idempotency_key"]),
                    member=row["member"],
                    service=row["service"],
                    meter=row["meter"],
                    quantity=quantity or Decimal(0),
                    occurred_at=moment,
                    subject=str(row.get("subject") or ""),
                )
            )
        except (ValueError, TypeError, msgspec.ValidationError) as error:
            problems.append(f"{where}: {error}")
    if problems:
        raise EventProblems(problems)
    return events
