"""The sync daemon's commands: ``cohub run`` (a worker) and ``cohub workers`` (who is running)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table
from sqlalchemy import select

from hub.apply import apply
from hub.cli.common import UsageError, cli_actor, ensure_schema, escape, out
from hub.engine.checkpoint import WORKER
from hub.engine.claims import database_now
from hub.runtime import Runtime
from hub.store.tables import runs, workers
from hub.worker import Worker, WorkerRefused, is_live


async def cmd_run(args: argparse.Namespace, runtime: Runtime) -> int:
    directory = Path(args.config)
    config = runtime.load_checked(directory)
    await ensure_schema(runtime)
    await runtime.unlock_vault()
    if not args.no_apply:
        await apply(runtime.engine, config, actor=f"worker {WORKER} ({cli_actor()})")
    settings = config.worker
    worker = Worker(
        runtime,
        settings,
        reload=None if args.no_apply else (lambda: runtime.load_checked(directory)),
    )
    port = settings.health_port if args.health is None else args.health
    runner = None
    if args.serve:
        from hub.api.app import build_app  # the web server only where it is wanted
        from hub.cli.serve import start_site

        app = build_app(runtime, directory, worker=worker)
        runner = await start_site(app, args.serve_host, args.serve)
    elif port:
        from hub.api.health import start_health

        runner = await start_health(worker, settings.health_host, port)
    try:
        await worker.serve()
    except WorkerRefused as refused:
        raise UsageError(str(refused)) from None
    finally:
        if runner is not None:
            await runner.cleanup()
    return 0


async def cmd_workers(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    async with runtime.engine.connect() as conn:
        now = await database_now(conn)  # the clock the heartbeats were written by
        rows = (await conn.execute(select(workers).order_by(workers.c.id))).mappings().all()
        claims = (
            (
                await conn.execute(
                    select(
                        runs.c.id,
                        runs.c.route,
                        runs.c.worker,
                        runs.c.scheduled_for,
                        runs.c.heartbeat_at,
                        runs.c.lease_expires_at,
                        runs.c.takeovers,
                    )
                    .where(runs.c.status == "running")
                    .order_by(runs.c.id)
                )
            )
            .mappings()
            .all()
        )
    listed = []
    for row in rows:
        age = (now - row["heartbeat_at"]).total_seconds()
        live = is_live(row, now)
        if not live and not args.all:
            continue
        listed.append(
            {
                "worker": row["id"],
                "status": row["status"] if live else f"gone ({row['status']})",
                "started_at": row["started_at"].isoformat(),
                "heartbeat_age_seconds": round(age, 1),
                "running": row["running"],
                "max_runs": row["max_runs"],
                "claims": [
                    {
                        "run": c["id"],
                        "route": c["route"],
                        "scheduled_for": c["scheduled_for"] and c["scheduled_for"].isoformat(),
                        "heartbeat_age_seconds": c["heartbeat_at"]
                        and round((now - c["heartbeat_at"]).total_seconds(), 1),
                        "lease_left_seconds": c["lease_expires_at"]
                        and round((c["lease_expires_at"] - now).total_seconds(), 1),
                        "takeovers": c["takeovers"],
                    }
                    for c in claims
                    if c["worker"] == row["id"]
                ],
            }
        )
    if args.json_output:
        out.print(json.dumps(listed, indent=2), markup=False, highlight=False)
        return 0
    table = Table(title="Workers")
    for column in ("worker", "status", "heartbeat", "runs", "claims (run route, lease left)"):
        table.add_column(column, no_wrap=column != "claims (run route, lease left)")
    for w in listed:
        held = ", ".join(
            f"{c['run']} {c['route']} ({c['lease_left_seconds']}s)" for c in w["claims"]
        )
        table.add_row(
            escape(w["worker"]),
            w["status"],
            f"{w['heartbeat_age_seconds']}s ago",
            f"{w['running']}/{w['max_runs']}",
            escape(held) or "-",
        )
    out.print(table)
    if not listed:
        out.print("no live workers" + ("" if args.all else " (--all lists stopped ones too)"))
    return 0


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--health",
        type=int,
        metavar="PORT",
        help="serve /healthz and /readyz on this port (default: [worker] health_port)",
    )
    parser.add_argument(
        "--serve",
        type=int,
        metavar="PORT",
        help="also serve the admin API, console, /metrics and the health endpoints on this port",
    )
    parser.add_argument("--serve-host", default="127.0.0.1", help="address --serve listens on")
    parser.add_argument(
        "--no-apply",
        action="store_true",
        help="run the routes as stored; do not apply the configuration folder (on start or SIGHUP)",
    )


def add_workers_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", help="also workers that stopped or died")
    parser.add_argument("--json", dest="json_output", action="store_true")
