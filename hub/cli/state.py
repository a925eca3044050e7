"""``cohub state show|set|reset ROUTE [STREAM]``: inspect, rewind or clear where a route resumes.

Every change is recorded in ``state_changes`` with the state before and after and who made it,
and is refused while the route is running.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from rich.table import Table
from sqlalchemy import select

from hub.audit import record
from hub.cli.common import UsageError, actor, cli_actor, ensure_schema, escape, out
from hub.engine.checkpoint import load_state, save_state
from hub.engine.claims import FULL_MODES, live_run
from hub.engine.connections import UnknownRoute, load_route
from hub.redaction import mask
from hub.runtime import Runtime
from hub.store.database import writing
from hub.store.tables import state_changes, stream_states


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["show", "set", "reset"])
    parser.add_argument("route")
    parser.add_argument("stream", nargs="?", help="the route's source stream (checked when given)")
    parser.add_argument(
        "--state", help="set: the new state as JSON (default: read from standard input)"
    )


async def cmd_state(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    async with writing(runtime.engine) as conn:
        try:
            route = await load_route(conn, args.route)
        except UnknownRoute as error:
            raise UsageError(str(error)) from None
        if args.stream and args.stream != route.source_stream:
            raise UsageError(
                f"route {route.name!r} reads stream {route.source_stream!r}, not {args.stream!r}"
            )
        stored = await load_state(conn, route.name)
        if args.action == "show":
            row = (
                (
                    await conn.execute(
                        select(stream_states).where(stream_states.c.route == route.name)
                    )
                )
                .mappings()
                .first()
            )
            _print(route.name, route.source_stream, row, full_refresh=route.mode in FULL_MODES)
            return 0
        live = await live_run(conn, route.name)
        if live is not None:
            raise UsageError(f"route {route.name!r} is running (run {live[0]}); cancel it or wait")
        if args.action == "reset":
            new_state = None
            await conn.execute(stream_states.delete().where(stream_states.c.route == route.name))
        else:
            new_state = _parse(args.state if args.state is not None else sys.stdin.read())
            await save_state(
                conn,
                route=route.name,
                stream=route.source_stream,
                state=new_state,
                run_id=None,
                generation=stored.generation,
                cycle_complete=False,
            )
        await conn.execute(
            state_changes.insert().values(
                route=route.name,
                action=args.action,
                state_before=stored.state,
                state_after=new_state,
                actor=actor(),
                changed_at=datetime.now(UTC),
            )
        )
        await record(
            conn,
            actor=cli_actor(),
            action=f"state.{args.action}",
            target=f"route {route.name}",
            details={"before": stored.state, "after": new_state},
        )
    verb = "cleared: the next run starts from the beginning" if new_state is None else "set"
    out.print(f"state of {route.name} {verb} (the change is recorded with the state before)")
    return 0


def _parse(text: str) -> dict:
    try:
        state = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"the state is not JSON: {error}") from None
    if not isinstance(state, dict):
        raise UsageError("the state must be a JSON object")
    return state


def _print(route: str, stream: str, row: object, *, full_refresh: bool) -> None:
    table = Table(title=f"State of {route}", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value")
    table.add_row("stream", stream)
    if row is None:
        table.add_row("state", "none: the next run starts from the beginning")
    else:
        table.add_row("state", escape(json.dumps(mask(row["state"]), indent=1)))
        table.add_row("updated", row["updated_at"].isoformat())
        table.add_row(
            "by run", str(row["run_id"]) if row["run_id"] is not None else "a manual change"
        )
        table.add_row(
            "read cycle",
            f"{row['generation']} ({'complete' if row['cycle_complete'] else 'in progress'})",
        )
    out.print(table)


__all__ = ["add_arguments", "cmd_state"]
