"""Running routes and reading run history: ``cohub sync`` and ``cohub runs``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.table import Table
from sqlalchemy import select, update

from hub.audit import record
from hub.cli.common import UsageError, cli_actor, ensure_schema, err, escape, out, progress_bar
from hub.engine.checkpoint import stored_counts
from hub.engine.claims import RouteRefused
from hub.engine.connections import UnknownRoute, route_names
from hub.engine.run import RunSummary, run_route
from hub.redaction import mask
from hub.runtime import Runtime
from hub.sdk.lifecycle import RunCounts
from hub.store.database import writing
from hub.store.tables import runs


async def sync_routes(runtime: Runtime, names: Sequence[str]) -> list[RunSummary]:
    """Run routes one after another with a progress line each. SIGINT or SIGTERM stops the run
    in progress after the batch in hand (its checkpoint committed) and starts no other; a second
    signal interrupts at once."""
    summaries: list[RunSummary] = []
    started: list[tuple[str, int]] = []
    stop = asyncio.Event()
    with progress_bar() as progress, _stopping_on_signals(stop):
        for name in names:
            if stop.is_set():
                err.print(f"[yellow]{name}: not started (stopping)")
                continue
            task = progress.add_task(name, total=None, records=0)

            def update(_route: str, counts: RunCounts, task: Any = task) -> None:
                progress.update(task, records=counts.read)

            try:
                summary = await run_route(
                    runtime.engine,
                    runtime.plugins,
                    name,
                    progress=update,
                    stop=stop,
                    claimed=lambda run_id, name=name: started.append((name, run_id)),
                )
            except (RouteRefused, UnknownRoute) as error:
                progress.update(task, total=1, completed=1, description=f"{name} [red]refused")
                err.print(f"[red]{error}")
                continue
            progress.update(task, total=1, completed=1, records=summary.counts.read)
            summaries.append(summary)
    async with writing(runtime.engine) as conn:
        for name, run_id in started:
            await record(
                conn,
                actor=cli_actor(),
                action="run.start",
                target=f"route {name}",
                details={"run": run_id},
            )
    return summaries


@contextmanager
def _stopping_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def first_signal(number: int) -> None:
        err.print(f"[yellow]{signal.Signals(number).name}: stopping after the batch in hand")
        stop.set()
        for again in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(again)

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, first_signal, number)
    try:
        yield
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)


def print_runs(summaries: Sequence[RunSummary]) -> None:
    table = Table(title="Runs")
    for column in (
        "run",
        "route",
        "member",
        "status",
        "read",
        "written",
        "dead letters",
        "retried",
    ):
        numeric = column not in ("route", "member", "status")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for s in summaries:
        style = {"succeeded": "green", "cancelled": "yellow"}.get(s.status, "red")
        table.add_row(
            str(s.id),
            s.route,
            s.member or "-",
            f"[{style}]{s.status}",
            f"{s.counts.read:,}",
            f"{s.counts.written:,}",
            f"{s.counts.rejected:,}",
            f"{s.counts.retried:,}",
        )
    out.print(table)
    for s in summaries:
        if s.error:
            out.print(f"[red]run {s.id} ({s.route}) {s.status}:[/] {escape(s.error)}")


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
    succeeded = [s for s in summaries if s.status == "succeeded"]
    return 0 if len(succeeded) == len(names) else 1


def _summary(row: Any) -> RunSummary:
    return RunSummary(
        id=row["id"],
        route=row["route"],
        member=row["member"],
        status=row["status"],
        counts=stored_counts(row),
        error=row["error"],
    )


async def cmd_runs(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    if args.action == "list":
        query = select(runs).order_by(runs.c.id.desc()).limit(args.limit)
        if args.route:
            query = query.where(runs.c.route == args.route)
        async with runtime.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        print_runs([_summary(r) for r in rows])
        return 0
    if args.id is None:
        raise UsageError(f"`cohub runs {args.action}` takes a run id")
    if args.action == "cancel":
        async with writing(runtime.engine) as conn:
            asked = await conn.execute(
                update(runs)
                .where(runs.c.id == args.id, runs.c.status == "running")
                .values(cancel_requested=True)
            )
            if asked.rowcount:
                await record(
                    conn,
                    actor=cli_actor(),
                    action="run.cancel",
                    target=f"run {args.id}",
                    details={"run": args.id},
                )
        if asked.rowcount == 0:
            raise UsageError(f"run {args.id} is not running")
        out.print(f"run {args.id} will stop after the batch in hand")
        return 0
    async with runtime.engine.connect() as conn:
        row = (await conn.execute(select(runs).where(runs.c.id == args.id))).mappings().first()
    if row is None:
        raise UsageError(f"no run {args.id}")
    print_run(row)
    return 0


def print_run(row: Any) -> None:
    """One run in full: counts, timing, the state before and after, the error."""
    counts = _summary(row).counts
    finished = row["finished_at"]
    duration = (
        f"{(finished - row['started_at']).total_seconds():.1f} s" if finished else "still running"
    )
    table = Table(title=f"Run {row['id']}", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value")
    for field, value in (
        ("route", row["route"]),
        ("member", row["member"] or "-"),
        ("service", row["service"]),
        ("trigger", row["trigger"]),
        ("status", row["status"]),
        ("worker", row["worker"] or "-"),
        ("slot", row["scheduled_for"].isoformat() if row["scheduled_for"] else "-"),
        ("taken over", f"{row['takeovers']} time(s)" if row["takeovers"] else "-"),
        ("started", row["started_at"].isoformat()),
        ("finished", finished.isoformat() if finished else "-"),
        ("duration", duration),
        ("read", f"{counts.read:,}"),
        ("written", f"{counts.written:,}"),
        ("dead-lettered", f"{counts.rejected:,}"),
        ("retried", f"{counts.retried:,}"),
        ("deleted", f"{counts.deleted:,}"),
        ("batches", f"{counts.batches:,}"),
        ("state before", json.dumps(mask(row["state_before"]), indent=1)),
        ("state after", json.dumps(mask(row["state_after"]), indent=1)),
        ("error", row["error"] or "-"),
    ):
        table.add_row(field, escape(str(value)))
    out.print(table)
