"""``cohub audit``: list, verify and export the hash-chained audit log."""

from __future__ import annotations

import argparse
import json
import sys

from rich.table import Table
from sqlalchemy import select

from hub.audit import GENESIS, entries, verify
from hub.cli.common import UsageError, ensure_schema, err, escape, out
from hub.runtime import Runtime
from hub.store.tables import audit_log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "verify", "export"], nargs="?", default="list")
    parser.add_argument("--limit", type=int, default=50, help="list: the newest N entries")
    parser.add_argument(
        "--head",
        help="verify: the last hash an auditor kept from an earlier export or verify; the log "
        "must still contain it (entries removed from the end are found this way)",
    )
    parser.add_argument("--output", help="export: write JSON lines to this file")


async def cmd_audit(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    async with runtime.engine.connect() as conn:
        if args.action == "verify":
            count, head, breaks = await verify(conn)
            kept = True
            if args.head and args.head != GENESIS:
                kept = (
                    await conn.scalar(select(audit_log.c.id).where(audit_log.c.hash == args.head))
                ) is not None
        elif args.action == "export":
            lines = [
                json.dumps(_plain(e), ensure_ascii=False) for e in [e async for e in entries(conn)]
            ]
        else:
            rows = (
                (
                    await conn.execute(
                        select(audit_log).order_by(audit_log.c.id.desc()).limit(args.limit)
                    )
                )
                .mappings()
                .all()
            )
    if args.action == "verify":
        for found in breaks:
            err.print(f"[red]entry {found.id}:[/] {found.problem}")
        if not kept:
            err.print(f"[red]the log no longer holds the head {args.head}: entries were removed")
        if breaks or not kept:
            err.print(f"the audit log does NOT verify ({len(breaks)} break(s))")
            return 1
        out.print(f"the audit log verifies: {count} entries, head {head}")
        return 0
    if args.action == "export":
        text = "".join(line + "\n" for line in lines)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(text)
            out.print(f"wrote {len(lines)} entries to {args.output}")
        else:
            sys.stdout.write(text)
        return 0
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    table = Table(title="Audit log (newest first)")
    for column in ("id", "at", "actor", "action", "target", "details"):
        table.add_column(column, no_wrap=column not in ("details", "target"))
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["at"].strftime("%Y-%m-%d %H:%M:%S"),
            escape(row["actor"]),
            row["action"],
            escape(row["target"]),
            escape(json.dumps(row["details"], ensure_ascii=False)),
        )
    out.print(table)
    return 0


def _plain(entry) -> dict:  # type: ignore[no-untyped-def]
    """An entry as exported: every field the hash covers, with the hash."""
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }
