"""``cohub serve`` (the admin API and console) and ``cohub tokens`` (who may use them)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table
from sqlalchemy import select

from hub.api.auth import Role, TokenError, create_token, revoke_token
from hub.cli.common import UsageError, cli_actor, ensure_schema, escape, out
from hub.runtime import Runtime
from hub.store.tables import api_tokens

if TYPE_CHECKING:  # aiohttp's server loads only for the commands that serve (8 MiB)
    from aiohttp import web


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve `app` (access log off: the request log middleware writes one JSON line each)."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def cmd_serve(args: argparse.Namespace, runtime: Runtime) -> int:
    from hub.api.app import build_app

    config_dir = Path(args.config)
    await ensure_schema(runtime)
    await runtime.unlock_vault()
    runner = await start_site(build_app(runtime, config_dir), args.host, args.port)
    out.print(f"serving the API and console on http://{args.host}:{args.port}/ (Ctrl-C stops)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


async def cmd_tokens(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    if args.action == "create":
        if not args.name or not args.role:
            raise UsageError("tokens create needs --name and --role")
        try:
            principal, token = await create_token(
                runtime.engine,
                name=args.name,
                role=args.role,
                member=args.member,
                created_by=cli_actor(),
                expires_in=timedelta(days=args.expires_days) if args.expires_days else None,
            )
        except TokenError as error:
            raise UsageError(str(error)) from None
        if args.json_output:
            out.print(json.dumps({"id": principal.token, "token": token}), markup=False)
        else:
            out.print(f"created token {principal.token} ({principal.role}); it is shown once:")
            out.print(token, markup=False, highlight=False)
        return 0
    if args.action == "revoke":
        if not args.id:
            raise UsageError("tokens revoke needs the token id")
        if not await revoke_token(runtime.engine, args.id, cli_actor()):
            raise UsageError(f"no live token {args.id!r}")
        out.print(f"revoked token {args.id}")
        return 0
    async with runtime.engine.connect() as conn:
        rows = (
            (await conn.execute(select(api_tokens).order_by(api_tokens.c.created_at)))
            .mappings()
            .all()
        )
    table = Table(title="API tokens")
    for column in ("id", "name", "role", "member", "created", "last used", "state"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        state = "revoked" if row["revoked_at"] else "live"
        table.add_row(
            row["id"],
            escape(row["name"]),
            row["role"],
            row["member"] or "-",
            row["created_at"].strftime("%Y-%m-%d"),
            row["last_used_at"].strftime("%Y-%m-%d %H:%M") if row["last_used_at"] else "-",
            state,
        )
    out.print(table)
    return 0


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080)


def add_tokens_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["create", "list", "revoke"], nargs="?", default="list")
    parser.add_argument("id", nargs="?", help="revoke: the token id")
    parser.add_argument("--name", help="create: who or what uses it")
    parser.add_argument("--role", choices=[r.value for r in Role])
    parser.add_argument("--member", help="create: the member a viewer token may see")
    parser.add_argument("--expires-days", type=int)
    parser.add_argument("--json", dest="json_output", action="store_true")
