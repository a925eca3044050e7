"""``cohub data inventory|purge``: which personal data flows where, and destroying old copies."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import msgspec
from rich.table import Table

from hub.cli.common import cli_actor, data_text, ensure_schema, escape, out
from hub.config import ConfigError, Retention, load_config
from hub.inventory import Flow, flow_rows, inventory
from hub.retention import PurgeReport, purge, report_rows
from hub.runtime import Runtime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["inventory", "purge"])
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", dest="json_output", action="store_true", help="print JSON")
    form.add_argument("--csv", dest="csv_output", action="store_true", help="print CSV")
    parser.add_argument(
        "--dry-run", action="store_true", help="purge: count what would go, destroy nothing"
    )


def _retention(args: argparse.Namespace, *, required: bool) -> Retention | None:
    """``[retention]`` of the configuration folder; a purge needs it valid, an inventory only
    shows the periods when it can read them."""
    directory = Path(getattr(args, "dir", None) or args.config)
    try:
        return load_config(directory).retention
    except ConfigError:
        if required:
            raise
        return None


async def cmd_data(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    if args.action == "inventory":
        flows = await inventory(runtime.engine, runtime.plugins, _retention(args, required=False))
        if args.json_output:
            sys.stdout.write(json.dumps(msgspec.to_builtins(flows), indent=2) + "\n")
        elif args.csv_output:
            sys.stdout.write(data_text(flow_rows(flows), "csv", _FLOW_COLUMNS))
        else:
            _print_inventory(flows)
        return 0
    retention = _retention(args, required=True)
    assert retention is not None
    report = await purge(runtime.engine, retention, actor=cli_actor(), dry_run=args.dry_run)
    if args.json_output:
        sys.stdout.write(json.dumps(msgspec.to_builtins(report), indent=2) + "\n")
    elif args.csv_output:
        sys.stdout.write(data_text(report_rows(report), "csv", _PURGE_COLUMNS))
    else:
        _print_purge(report)
    return 0


_FLOW_COLUMNS = [f.name for f in msgspec.structs.fields(Flow)]
_PURGE_COLUMNS = [
    "member",
    "stream",
    "dead_letters_open",
    "dead_letters_resolved",
    "run_snapshots",
    "state_changes",
    "inbox_rows",
    "total",
]


def _days(value: int | None) -> str:
    return "kept" if value is None else f"{value} d"


def _print_inventory(flows: list[Flow]) -> None:
    table = Table(title="Personal data inventory: what each route carries and where copies stay")
    for column in (
        "member",
        "service",
        "route",
        "from (stream, record)",
        "to",
        "PII fields",
        "PII source columns",
        "dead letters (open/resolved)",
        "kept",
    ):
        table.add_column(column, no_wrap=column in ("member", "route"))
    for flow in flows:
        sealed = f"{flow.dead_letters_sealed} sealed, {flow.dead_letters_unsealed} in the clear"
        table.add_row(
            flow.member,
            flow.service,
            flow.route,
            f"{flow.source} ({flow.source_connector}): {flow.source_stream}, "
            f"{flow.record or 'record unknown'}",
            f"{flow.destination} ({flow.destination_owner}): {flow.destination_stream}",
            ", ".join(flow.pii_fields) or "-",
            ", ".join(flow.pii_columns) or "-",
            f"{flow.dead_letters_open}/{flow.dead_letters_resolved} ({sealed})",
            f"open {_days(flow.dead_letters_days)}, "
            f"resolved {_days(flow.resolved_dead_letters_days)}",
        )
    out.print(table)
    if not flows:
        out.print("no routes: `cohub apply` the configuration first")


def _print_purge(report: PurgeReport) -> None:
    verb = "would destroy" if report.dry_run else "destroyed"
    table = Table(title=f"Retention purge ({verb}, periods counted back from {report.at:%Y-%m-%d})")
    for column in _PURGE_COLUMNS:
        table.add_column(
            column.replace("_", " "), justify="left" if column in ("member", "stream") else "right"
        )
    for row in report_rows(report):
        table.add_row(*(escape(str(row[c])) for c in _PURGE_COLUMNS))
    out.print(table)
    totals = report.totals()
    out.print(
        f"{verb}: {totals['dead_letters_open']} open and {totals['dead_letters_resolved']} "
        f"resolved dead letter(s), {totals['run_snapshots']} run state snapshot(s), "
        f"{totals['state_changes']} state change(s), {totals['inbox_rows']} inbox row(s)"
    )


__all__ = ["add_arguments", "cmd_data"]
