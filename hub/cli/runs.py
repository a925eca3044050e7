"""Running routes and reading run history: ``cohub sync`` and ``cohub runs``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from rich.table import Table
from sqlalchemy import select

from hub.cli.common import UsageError, ensure_schema, err, escape, out, progress_bar
from hub.engine.connections import UnknownRoute, route_names
from hub.engine.run import RouteRefused, RunSummary, run_route
from hub.runtime import Runtime
from hub.sdk.lifecycle import RunCounts
from hub.store.tables import runs


async def sync_routes(runtime: Runtime, names: Sequence[str]) -> list[RunSummary]:
    """Run routes one after another with a progress line each."""
    summaries: list[RunSummary] = []
    with progress_bar() as progress:
        for name in names:
            task = progress.add_task(name, total=None, records=0)

            def update(_route: str, counts: RunCounts, task: Any = task) -> None:
                progress.update(task, records=counts.read)

            try:
                summary = await run_route(runtime.engine, runtime.plugins, name, progress=update)
            except (RouteRefused, UnknownRoute) as error:
                progress.update(task, total=1, completed=1, description=f"{name} [red]refused")
                err.print(f"[red]{error}")
                continue
            progress.update(task, total=1, completed=1, records=summary.counts.read)
            summaries.append(summary)
    return summaries


def print_runs(summaries: Sequence[RunSummary]) -> None:
    table = Table(title="Runs")
    for column in ("run", "route", "member", "status", "read", "written", "dead letters"):
        numeric = column in ("run", "read", "written", "dead letters")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for s in summaries:
        style = "green" if s.status == "succeeded" else "red"
        table.add_row(
            str(s.id),
            s.route,
            s.member or "-",
            f"[{style}]{s.status}",
            f"{s.counts.read:,}",
            f"{s.counts.written:,}",
            f"{s.counts.rejected:,}",
        )
    out.print(table)
    for s in summaries:
        if s.error:
            out.print(f"[red]run {s.id} ({s.route}) failed:[/] {escape(s.error)}")


async def cmd_sync(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    await runtime.unlock_vault()
    if args.all:
        async with runtime.engine.connect() as conn:
            names = await route_names(conn)
    elif args.routes:
        names = args.routes
    else:
        raise UsageError("name one or more routes, or --all")
    summaries = await sync_routes(runtime, names)
    print_runs(summaries)
    return (
        0 if len(summaries) == len(names) and all(s.status == "succeeded" for s in summaries) else 1
    )


async def cmd_runs(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    query = select(runs).order_by(runs.c.id.desc()).limit(args.limit)
    if args.route:
        query = query.where(runs.c.route == args.route)
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    print_runs(
        [
            RunSummary(
                id=r["id"],
                route=r["route"],
                member=r["member"],
                status=r["status"],
                counts=RunCounts(
                    read=r["records_read"],
                    written=r["records_written"],
                    rejected=r["records_rejected"],
                    batches=r["batches"],
                ),
                error=r["error"],
            )
            for r in rows
        ]
    )
    return 0
