"""``cohub usage [show|post]``: read the usage ledger, and post usage a shared service metered
itself (one event from options, or many from a CSV or JSON-lines file)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.table import Table
from sqlalchemy import select

from hub.cli.common import UsageError, data_text, ensure_schema, out
from hub.metering import EventProblems, UsageTotal, append_usage, checked_events, usage_totals
from hub.runtime import Runtime
from hub.store.database import writing
from hub.store.tables import members, services

FORMATS = ("table", "json", "csv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=["show", "post"], default="show")
    parser.add_argument("--member")
    parser.add_argument("--service")
    parser.add_argument("--meter")
    show = parser.add_argument_group("show")
    show.add_argument("--from", dest="first_day", type=date.fromisoformat, help="first day")
    show.add_argument("--to", dest="last_day", type=date.fromisoformat, help="last day")
    show.add_argument("--by", choices=["total", "month", "day", "period"], default="total")
    show.add_argument("--format", choices=FORMATS, default="table")
    post = parser.add_argument_group("post")
    post.add_argument("--quantity")
    post.add_argument("--key", help="idempotency key: posting the same key again adds nothing")
    post.add_argument("--at", help="when the usage happened (ISO 8601 with offset; default now)")
    post.add_argument("--subject", default="", help="what a unique-count meter counts")
    post.add_argument("--file", type=Path, help="events from a .csv or .jsonl file")


async def cmd_usage(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    if args.action == "post":
        return await _post(args, runtime)
    async with runtime.engine.connect() as conn:
        totals = await usage_totals(
            conn,
            runtime.plugins.meters(),
            member=args.member,
            service=args.service,
            meter=args.meter,
            first_day=args.first_day,
            last_day=args.last_day,
            by=args.by,
        )
    print_totals(totals, args.format, by=args.by)
    return 0


def print_totals(totals: list[UsageTotal], form: str = "table", *, by: str = "total") -> None:
    """Usage totals as a table, JSON (quantities as exact strings) or CSV."""
    rows = [
        {
            "member": t.member,
            "service": t.service,
            "meter": t.meter,
            **({by: t.bucket} if by != "total" else {}),
            "quantity": f"{t.quantity.normalize():f}",
            "unit": t.unit,
            "aggregation": t.aggregation,
        }
        for t in totals
    ]
    if form in ("json", "csv"):
        keys = ["member", "service", "meter", *([by] if by != "total" else [])]
        sys.stdout.write(data_text(rows, form, [*keys, "quantity", "unit", "aggregation"]))
        return
    table = Table(title="Usage")
    for column in rows[0] if rows else ("member", "service", "meter", "quantity"):
        table.add_column(column, justify="right" if column == "quantity" else "left")
    for row in rows:
        row["quantity"] = f"{Decimal(row['quantity']):,f}"
        table.add_row(*row.values())
    out.print(table)


async def _post(args: argparse.Namespace, runtime: Runtime) -> int:
    if args.file:
        raw = _read_events(args.file)
    else:
        missing = [
            f"--{n}"
            for n in ("member", "service", "meter", "quantity", "key")
            if not getattr(args, n)
        ]
        if missing:
            raise UsageError(f"usage post needs {', '.join(missing)} (or --file)")
        raw = [
            {
                "member": args.member,
                "service": args.service,
                "meter": args.meter,
                "quantity": args.quantity,
                "occurred_at": args.at or datetime.now(UTC).isoformat(),
                "idempotency_key": args.key,
                "subject": args.subject,
            }
        ]
    async with writing(runtime.engine) as conn:
        known_members = set((await conn.execute(select(members.c.code))).scalars())
        known_services = set((await conn.execute(select(services.c.code))).scalars())
        try:
            events = checked_events(
                raw,
                known_members,
                known_services,
                set(runtime.plugins.meters()),
                str(args.file) if args.file else "usage post",
            )
        except EventProblems as problems:
            raise UsageError("\n".join([*problems.problems, "nothing was posted"])) from None
        new = await append_usage(conn, events)
    out.print(f"posted {new} usage event(s); {len(events) - new} already in the ledger")
    return 0


def _read_events(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror}") from None
    if path.suffix == ".jsonl":
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}: line {error.lineno}: not JSON ({error.msg})") from None
    rows = list(csv.DictReader(io.StringIO(text)))
    return rows


# END
