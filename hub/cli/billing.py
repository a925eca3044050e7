"""``cohub billing``: close periods, print statements, supplier fee reports and receivables."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import msgspec
from rich.table import Table
from sqlalchemy import select

from hub.audit import record
from hub.billing.documents import line_cells, statement_rows, statements_html
from hub.billing.periods import PeriodError
from hub.billing.statements import (
    Statement,
    as_invoice,
    compute_statements,
    supplier_fees,
)
from hub.cli.common import UsageError, actor, cli_actor, data_text, ensure_schema, err, out
from hub.config import load_config
from hub.engine.connections import open_connector, stored_connections
from hub.metering import PeriodClosed, close_period, load_calendar
from hub.runtime import Runtime
from hub.sdk.connector import Batch
from hub.store.database import writing
from hub.store.tables import closed_months, cooperative, statements

ACTIONS = ("close", "periods", "statement", "receivables", "suppliers", "send")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("period", nargs="?", help="2026-10, FY2027-Q2 or FY2027")
    parser.add_argument("--member", help="statement: one member's")
    parser.add_argument(
        "--format", choices=["table", "csv", "json", "html"], default="table", dest="form"
    )
    parser.add_argument("--output", type=Path, help="write to this file instead of the screen")
    parser.add_argument("--to", help="send: the connection that receives the invoices")
    parser.add_argument("--stream", default="invoices", help="send: its stream (default invoices)")


async def cmd_billing(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    if args.action == "periods":
        return await _periods(runtime)
    if not args.period:
        raise UsageError(f"billing {args.action} needs a PERIOD: 2026-10, FY2027-Q2 or FY2027")
    plans = load_config(Path(args.config)).billing
    meters = runtime.plugins.meters()
    try:
        if args.action == "close":
            return await _close(runtime, args.period, plans, meters)
        if args.action == "send":
            return await _send(runtime, args.period, args.to, args.stream)
        async with runtime.engine.connect() as conn:
            if args.action == "suppliers":
                fees = await supplier_fees(conn, plans, meters, args.period)
                rows = [{k: str(v) for k, v in msgspec.structs.asdict(f).items()} for f in fees]
                _emit(args, rows, f"Supplier administrative fees, {args.period}")
                return 0
            found = await compute_statements(conn, plans, meters, args.period, member=args.member)
            stored = await _stored(conn, args.period)
            title = await _cooperative_name(conn)
    except (PeriodError, PeriodClosed) as error:
        raise UsageError(str(error)) from None
    if args.action == "receivables":
        rows = [{"member": s.member, "name": s.member_name, "total": str(s.total)} for s in found]
        rows.append(
            {"member": "", "name": "total", "total": str(sum((s.total for s in found), Decimal(0)))}
        )
        _emit(args, rows, f"Receivables by member, {args.period}")
        return 0
    if args.form == "html":
        _write(args, statements_html(found, title))
    elif args.form in ("csv", "json"):
        _emit(args, [row for s in found for row in statement_rows(s)], "")
    else:
        for statement in found:
            print_statement(statement)
    for statement in found:
        if statement.member in stored:
            fingerprint, total = stored[statement.member]
            same = fingerprint == statement.fingerprint and total == statement.total
            note = (
                "recomputes to the statement stored at close, to the cent"
                if same
                else f"DIFFERS from the statement stored at close (total {total})"
            )
            # Notes never mix into machine-readable output.
            (out if args.form == "table" else err).print(f"{statement.member}: {note}")
    return 0


async def _close(runtime: Runtime, period: str, plans, meters) -> int:  # type: ignore[no-untyped-def]
    async with writing(runtime.engine) as conn:
        months = await close_period(conn, period, actor())
        if months:
            await record(
                conn,
                actor=cli_actor(),
                action="billing.close",
                target=f"period {period}",
                details={"months": months},
            )
        found = await compute_statements(conn, plans, meters, period)
        kept = await _stored(conn, period)
        now = datetime.now(UTC)
        fresh = [s for s in found if s.member not in kept]
        if fresh:
            await conn.execute(
                statements.insert(),
                [
                    {
                        "period": s.period,
                        "member": s.member,
                        "fingerprint": s.fingerprint,
                        "total": s.total,
                        "body": msgspec.to_builtins(s),
                        "created_at": now,
                    }
                    for s in fresh
                ],
            )
    if months:
        out.print(f"closed {period}: {', '.join(months)}")
    else:
        out.print(f"{period} was already closed")
    if fresh:
        out.print(f"stored {len(fresh)} statement(s) for {period}")
    return 0


async def _send(runtime: Runtime, period: str, to: str | None, stream: str) -> int:
    """The statements stored when `period` was closed, as invoice records into connection `to`
    (the agency's accounting system); sending again upserts the same invoices."""
    if not to:
        raise UsageError("billing send needs --to CONNECTION")
    async with runtime.engine.connect() as conn:
        [connection] = await stored_connections(conn, [to]) or [None]
        rows = (await conn.execute(select(statements).where(statements.c.period == period))).all()
        issuer = await conn.scalar(select(cooperative.c.code)) or "cooperative"
        calendar = await load_calendar(conn)
    if connection is None:
        raise UsageError(f"no connection {to!r}; `cohub apply` the configuration first")
    if not rows:
        raise UsageError(f"no statements stored for {period}: `cohub billing close {period}` first")
    issued_on = calendar.parse(period).last_day
    destination = open_connector(runtime.plugins, connection)
    try:
        for row in rows:
            statement = msgspec.convert(row.body, Statement)
            invoice = as_invoice(statement, issuer, issued_on, row.created_at)
            batch = Batch(records=[invoice], state={}, member=statement.member)
            await destination.write(stream, batch, statement.member)
    finally:
        await destination.close()
    out.print(f"sent {len(rows)} invoice(s) for {period} to {to} ({stream})")
    return 0


async def _periods(runtime: Runtime) -> int:
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


async def _stored(conn, period: str) -> dict[str, tuple[str, Decimal]]:  # type: ignore[no-untyped-def]
    rows = await conn.execute(
        select(statements.c.member, statements.c.fingerprint, statements.c.total).where(
            statements.c.period == period
        )
    )
    return {member: (fingerprint, total) for member, fingerprint, total in rows.all()}


async def _cooperative_name(conn) -> str:  # type: ignore[no-untyped-def]
    return await conn.scalar(select(cooperative.c.name)) or "Cohub"


def print_statement(statement: Statement) -> None:
    """One member's statement as a table, its total and inputs fingerprint underneath."""
    table = Table(
        title=f"{statement.member_name} ({statement.member}), {statement.period}",
        caption=f"total {statement.total:,.2f} · inputs {statement.fingerprint[:16]}",
    )
    for column in (
        "service",
        "CoSer",
        "month",
        "line",
        "meter",
        "quantity",
        "rate/share",
        "amount",
    ):
        table.add_column(
            column, justify="right" if column in ("quantity", "rate/share", "amount") else "left"
        )
    for line in statement.lines:
        table.add_row(*line_cells(line))
    out.print(table)


def _emit(args: argparse.Namespace, rows: list[dict[str, str]], title: str) -> None:
    if args.form in ("json", "csv", "html"):
        _write(args, data_text(rows, "json" if args.form == "json" else "csv"))
    else:
        table = Table(title=title)
        for column in rows[0] if rows else ():
            table.add_column(column)
        for row in rows:
            table.add_row(*row.values())
        out.print(table)


def _write(args: argparse.Namespace, text: str) -> None:
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        out.print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)  # as is: a console would wrap long CSV and JSON lines
