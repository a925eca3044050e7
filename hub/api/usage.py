"""Usage through the API: totals per member, service and meter, and posting usage events for
shared services that meter their own work (a helpdesk's tickets, a courier's deliveries)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from sqlalchemy import select

from hub.api.auth import METER, Principal
from hub.api.endpoints import Call, api
from hub.api.errors import ApiError
from hub.audit import record
from hub.metering import (
    Buckets,
    EventProblems,
    UsageTotal,
    append_usage,
    checked_events,
    usage_totals,
)
from hub.store.database import writing
from hub.store.tables import members, services

TAG = "usage"
MAX_EVENTS = 1000
Month = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]


class UsageQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    member: str | None = None
    service: str | None = None
    meter: str | None = None
    #: First and last local day of use, inclusive.
    since: date | None = None
    until: date | None = None
    #: Only usage billed in this month (YYYY-MM).
    period: Month | None = None
    by: Buckets = "total"


class UsageOut(msgspec.Struct, kw_only=True):
    items: list[UsageTotal]


def scoped_member(principal: Principal, asked: str | None) -> str | None:
    """The member a read is about: a viewer's own (asking for another is a 403)."""
    scope = principal.member_scope
    if scope is not None and asked not in (None, scope):
        raise ApiError("forbidden", f"this token sees member {scope!r} only", field="member")
    return scope or asked


@api.endpoint(
    "GET", "/usage", summary="Read usage totals", tag=TAG, query=UsageQuery, response=UsageOut
)
async def read_usage(call: Call) -> UsageOut:
    q: UsageQuery = call.query
    if q.since and q.until and q.since > q.until:
        raise ApiError("bad_request", "must not be after `until`", field="since")
    async with call.runtime.engine.connect() as conn:
        totals = await usage_totals(
            conn,
            call.runtime.plugins.meters(),
            member=scoped_member(call.caller, q.member),
            service=q.service,
            meter=q.meter,
            first_day=q.since,
            last_day=q.until,
            periods=[q.period] if q.period else None,
            by=q.by,
        )
    return UsageOut(items=totals)


class UsageEventIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One unit of metered work; the same `idempotency_key` posted again is ignored."""

    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    member: str
    service: str
    meter: str
    quantity: Decimal
    occurred_at: datetime
    subject: Annotated[str, msgspec.Meta(max_length=200)] = ""


class UsageEventsIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    events: Annotated[list[UsageEventIn], msgspec.Meta(min_length=1, max_length=MAX_EVENTS)]


class PostedUsage(msgspec.Struct, kw_only=True):
    accepted: int
    duplicates: int


@api.endpoint(
    "POST",
    "/usage/events",
    summary="Post usage events",
    tag=TAG,
    allow=METER,
    body=UsageEventsIn,
    response=PostedUsage,
    errors=(422,),
)
async def post_usage(call: Call) -> PostedUsage:
    """Checked all together: one bad event posts none (422 naming it)."""
    raw: list[dict[str, Any]] = [msgspec.to_builtins(e) for e in call.body.events]
    async with writing(call.runtime.engine) as conn:
        known_members = set((await conn.execute(select(members.c.code))).scalars())
        known_services = set((await conn.execute(select(services.c.code))).scalars())
        try:
            events = checked_events(
                raw, known_members, known_services, set(call.runtime.plugins.meters()), None
            )
        except EventProblems as problems:
            first = problems.problems[0]
            number = int(first.split()[1].rstrip(":")) - 1
            raise ApiError("invalid", first, field=f"events.{number}") from None
        new = await append_usage(conn, events)
        await record(
            conn,
            actor=call.caller.actor,
            action="usage.post",
            target="usage ledger",
            details={"events": len(events), "new": new},
        )
    return PostedUsage(accepted=new, duplicates=len(events) - new)
