"""``cohub billing close|periods``: freeze billing periods and list what is closed."""

from __future__ import annotations

import argparse

from rich.table import Table
from sqlalchemy import select

from hub.billing.periods import PeriodError
from hub.cli.common import UsageError, actor, ensure_schema, out
from hub.metering import PeriodClosed, close_period
from hub.runtime import Runtime
from hub.store.database import writing
from hub.store.tables import closed_months


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["close", "periods"])
    parser.add_argument("period", nargs="?", help="2026-10, FY2027-Q2 or FY2027 (close)")


async def cmd_billing(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    if args.action == "close":
        if not args.period:
            raise UsageError("billing close needs a PERIOD: 2026-10, FY2027-Q2 or FY2027")
        try:
            async with writing(runtime.engine) as conn:
                months = await close_period(conn, args.period, actor())
        except (PeriodError, PeriodClosed) as error:
            raise UsageError(str(error)) from None
        if months:
            out.print(f"closed {args.period}: {', '.join(months)}")
        else:
            out.print(f"{args.period} was already closed")
        return 0
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(select(closed_months).order_by(closed_months.c.month))).all()
    table = Table(title="Closed months")
    for column in ("month", "closed as", "closed at", "closed by"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.month, row.closed_as, f"{row.closed_at:%Y-%m-%d %H:%M} UTC", row.closed_by
        )
    out.print(table)
    return 0
