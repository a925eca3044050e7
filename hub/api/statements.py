"""Billing statements through the API: a period's statements, and one member's to download
as JSON, CSV or a printable HTML page. Computed from the ledger with the billing plans of the
configuration folder the server was started with."""

from __future__ import annotations

from typing import Literal

import msgspec
from aiohttp import web
from sqlalchemy import select

from hub.api.auth import BILLING
from hub.api.endpoints import CONFIG_DIR, Call, api
from hub.api.errors import ApiError
from hub.api.usage import scoped_member
from hub.billing.documents import statement_rows, statements_html
from hub.billing.periods import PeriodError
from hub.billing.statements import Statement, compute_statements
from hub.cli.common import data_text
from hub.config import load_config
from hub.metering import PeriodClosed
from hub.store.tables import closed_months, cooperative

TAG = "billing"


class StatementQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: A month (2026-10), a fiscal quarter (FY2027-Q2) or a fiscal year (FY2027).
    period: str
    member: str | None = None


class StatementsOut(msgspec.Struct, kw_only=True):
    period: str
    #: Whether every month of the period is closed (its statements can no longer change).
    closed: bool
    items: list[Statement]


async def statements_for(call: Call, period: str, member: str | None) -> StatementsOut:
    member = scoped_member(call.caller, member)
    plans = load_config(call.request.app[CONFIG_DIR]).billing
    async with call.runtime.engine.connect() as conn:
        try:
            found = await compute_statements(
                conn, plans, call.runtime.plugins.meters(), period, member=member
            )
        except (PeriodError, PeriodClosed) as error:
            raise ApiError("bad_request", str(error), field="period") from None
        months = {s.lines[0].month for s in found if s.lines}
        closed = set((await conn.execute(select(closed_months.c.month))).scalars())
    return StatementsOut(period=period, closed=bool(months) and months <= closed, items=found)


@api.endpoint(
    "GET",
    "/statements",
    summary="List statements",
    tag=TAG,
    allow=BILLING,
    query=StatementQuery,
    response=StatementsOut,
)
async def list_statements(call: Call) -> StatementsOut:
    return await statements_for(call, call.query.period, call.query.member)


class DocumentQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    format: Literal["json", "csv", "html"] = "json"


@api.endpoint(
    "GET",
    "/statements/{period}/{member}",
    summary="Download a statement",
    tag=TAG,
    allow=BILLING,
    query=DocumentQuery,
    response=Statement,
    media=("text/csv", "text/html"),
    errors=(404,),
)
async def download_statement(call: Call) -> Statement | web.Response:
    period, member = call.path["period"], call.path["member"]
    found = (await statements_for(call, period, member)).items
    if not found:
        raise ApiError("not_found", f"no statement for member {member!r} in {period}")
    statement = found[0]
    name = f"statement-{period}-{member}"
    if call.query.format == "csv":
        return web.Response(
            text=data_text(statement_rows(statement), "csv"),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if call.query.format == "html":
        async with call.runtime.engine.connect() as conn:
            title = await conn.scalar(select(cooperative.c.name)) or "Cohub"
        return web.Response(text=statements_html([statement], title), content_type="text/html")
    return statement
