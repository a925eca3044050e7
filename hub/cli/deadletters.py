"""``cohub deadletters list|show|replay|discard``: the records that could not be delivered."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table
from sqlalchemy import Select, select

from hub.audit import note
from hub.cli.common import UsageError, cli_actor, ensure_schema, escape, out
from hub.cli.runs import print_runs
from hub.engine.claims import RouteRefused
from hub.engine.deadletters import discard, open_raw, pii_columns, unreadable_note
from hub.engine.replay import replay
from hub.redaction import mask, redact_text
from hub.runtime import Runtime
from hub.store.tables import dead_letters
from hub.vault import VaultError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "show", "replay", "discard"])
    parser.add_argument(
        "ids", nargs="*", type=int, help="dead letter ids (replay/discard: or --all)"
    )
    parser.add_argument("--route")
    parser.add_argument("--member")
    parser.add_argument("--reason", help="text the reason contains")
    parser.add_argument(
        "--status", default="open", choices=["open", "replayed", "discarded", "any"]
    )
    parser.add_argument(
        "--all", action="store_true", help="replay/discard every dead letter the filters match"
    )
    parser.add_argument("--limit", type=int, default=100)


def _matching(args: argparse.Namespace) -> Select:
    query = select(dead_letters).order_by(dead_letters.c.id)
    if args.ids:
        query = query.where(dead_letters.c.id.in_(args.ids))
    if args.route:
        query = query.where(dead_letters.c.route == args.route)
    if args.member:
        query = query.where(dead_letters.c.member == args.member)
    if args.reason:
        query = query.where(dead_letters.c.reason.contains(args.reason))
    if args.status != "any":
        query = query.where(dead_letters.c.status == args.status)
    return query


async def cmd_deadletters(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    if args.action in ("replay", "discard") and not (args.ids or args.all):
        raise UsageError(f"name the dead letters to {args.action}, or use --all with filters")
    if args.action == "show" and not args.ids:
        raise UsageError("name the dead letters to show")
    query = _matching(args)
    if args.action == "list":
        query = query.limit(args.limit)
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    if args.action == "list":
        _print_list(rows)
    elif args.action == "show":
        for row in rows:
            await _print_one(runtime, row)
    elif args.action == "discard":
        open_ids = [row["id"] for row in rows if row["status"] == "open"]
        await discard(runtime.engine, open_ids, cli_actor())
        out.print(f"discarded {len(open_ids)} dead letter(s)")
    else:
        _check_all_found(args, rows)
        await runtime.unlock_vault()
        await note(
            runtime.engine,
            actor=cli_actor(),
            action="dead_letters.replay",
            target="dead letters",
            details={"ids": [row["id"] for row in rows]},
        )
        try:
            outcomes = await replay(runtime.engine, runtime.plugins, [row["id"] for row in rows])
        except RouteRefused as refused:
            raise UsageError(f"cannot replay now: {refused}") from None
        print_runs([o.run for o in outcomes])
        for outcome in outcomes:
            out.print(
                f"run {outcome.run.id}: {len(outcome.replayed)} replayed, {len(outcome.still_failing)} still failing"
            )
            for letter, reason in outcome.still_failing.items():
                out.print(f"  dead letter {letter}: {escape(reason)}")
        if any(o.run.status != "succeeded" or o.still_failing for o in outcomes):
            return 1
    _check_all_found(args, rows)
    return 0


def _check_all_found(args: argparse.Namespace, rows: Any) -> None:
    if args.ids and len(rows) < len(set(args.ids)):
        missing = sorted(set(args.ids) - {row["id"] for row in rows})
        raise UsageError(f"no {args.status} dead letter {', '.join(map(str, missing))}")


def _print_list(rows: Any) -> None:
    table = Table(title="Dead letters")
    for column in ("id", "run", "route", "member", "position", "status", "reason"):
        table.add_column(column, no_wrap=column != "reason")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["run_id"]),
            row["route"],
            row["member"] or "-",
            row["position"],
            row["status"],
            escape(redact_text(row["reason"])),
        )
    out.print(table)


async def _print_one(runtime: Runtime, row: Any) -> None:
    """One dead letter with its source record; PII and secrets masked."""
    table = Table(title=f"Dead letter {row['id']}", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value")
    extra = await pii_columns(runtime.engine, runtime.plugins, row["route"], row["stream"])
    try:
        record = json.dumps(
            mask(await open_raw(row, runtime.keyring), extra), indent=1, ensure_ascii=False
        )
    except VaultError as unreadable:
        record = unreadable_note(unreadable)
    for field, value in (
        ("route", row["route"]),
        ("member", row["member"] or "-"),
        ("stream", row["stream"]),
        ("run", row["run_id"]),
        ("position", row["position"]),
        ("status", row["status"]),
        ("resolution", row["resolution"] or "-"),
        ("created", row["created_at"].isoformat()),
        ("reason", redact_text(row["reason"])),
        ("record", record),
    ):
        table.add_row(field, escape(str(value)))
    out.print(table)


__all__ = ["add_arguments", "cmd_deadletters"]
