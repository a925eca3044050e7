"""The ``cohub`` command."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from rich.table import Table

from hub import logs
from hub.apply import apply
from hub.billing.periods import month_of
from hub.billing.statements import compute_statements
from hub.cli import audit, billing, daemon, data, deadletters, keys, serve, state, usage
from hub.cli.common import UsageError, cli_actor, ensure_schema, err, escape, out
from hub.cli.deadletters import cmd_deadletters
from hub.cli.runs import cmd_runs, cmd_sync, print_runs, sync_routes
from hub.cli.state import cmd_state
from hub.config import ConfigError
from hub.engine.connections import check_connection, route_names, stored_connections
from hub.metering import load_calendar, usage_totals
from hub.model import RECORD_TYPES, record_type
from hub.runtime import CONFIG_ENV, Runtime, home_dir, key_file
from hub.sdk.lifecycle import RunCounts
from hub.store import migrate
from hub.vault import VaultError, create_key_file, master_key_present

BUNDLED_CONFIG = Path(__file__).resolve().parents[2] / "config"


# -- shared steps --------------------------------------------------------------------------


def config_dir(args: argparse.Namespace) -> Path:
    """The configuration folder a command works on; its ``[plugins]`` settings apply too."""
    if getattr(args, "dir", None):
        return Path(args.dir)
    return BUNDLED_CONFIG if args.command == "demo" else Path(args.config)


# -- commands ------------------------------------------------------------------------------


async def cmd_init(args: argparse.Namespace, runtime: Runtime) -> int:
    target = Path(args.dir or "config")
    (target / "connections").mkdir(parents=True, exist_ok=True)
    for name, text in SKELETON.items():
        path = target / name
        if path.exists():
            out.print(f"kept    {path}")
            continue
        path.write_text(text)
        out.print(f"created {path}")
    key = key_file(runtime.home)
    if key.exists():
        out.print(f"kept    {key}")
    else:
        create_key_file(key)
        out.print(
            f"created {key} (master key, mode 0600: back it up, keep it out of version control)"
        )
    await ensure_schema(runtime)
    return 0


async def cmd_db(args: argparse.Namespace, runtime: Runtime) -> int:
    if args.action == "upgrade":
        await migrate.upgrade(runtime.engine)
    out.print(f"database revision: {await migrate.current_revision(runtime.engine) or 'none'}")
    return 0


async def cmd_validate(args: argparse.Namespace, runtime: Runtime) -> int:
    config = runtime.load_checked(config_dir(args))
    out.print(
        f"[green]valid[/]: {len(config.members)} members, {len(config.services)} services, "
        f"{len(config.connections)} connections, {len(config.routes)} routes"
    )
    return 0


async def cmd_apply(args: argparse.Namespace, runtime: Runtime) -> int:
    config = runtime.load_checked(config_dir(args))
    await ensure_schema(runtime)
    changes = await apply(runtime.engine, config, dry_run=args.dry_run, actor=cli_actor())
    for change in changes:
        out.print(str(change), markup=False)
    verb = "would apply" if args.dry_run else "applied"
    out.print(f"{verb} {len(changes)} change(s)" if changes else "no changes")
    return 0


async def cmd_check(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    await runtime.unlock_vault()
    async with runtime.engine.connect() as conn:
        rows = await stored_connections(conn, args.connections or None)
    missing = sorted(set(args.connections) - {row.name for row in rows})
    if missing:
        raise UsageError(f"no connection {missing[0]!r}; `cohub apply` the configuration first")
    table = Table(title="Connections")
    for column in ("connection", "connector", "member", "result"):
        table.add_column(column, no_wrap=True)
    table.add_column("streams", overflow="fold")  # a narrow terminal folds these, not the names
    failures: list[tuple[str, str]] = []
    for row in rows:
        result, found = await check_connection(runtime.plugins, row)
        streams = "\n".join(f"{s.name} ({s.record})" if s.record else s.name for s in found)
        if result != "ok":
            failures.append((row.name, result))
        status = "[green]ok" if result == "ok" else "[red]failed"
        table.add_row(row.name, row.connector, row.member or "-", status, streams)
    out.print(table)
    for name, reason in failures:
        out.print(f"[red]{name}:[/] {escape(reason)}")
    return 1 if failures else 0


async def cmd_plugins(args: argparse.Namespace, runtime: Runtime) -> int:
    plugins = runtime.plugins.plugins()
    if args.json_output:
        out.print_json(json.dumps(msgspec.to_builtins(plugins)))
        return 0
    table = Table(title="Plugins")
    for column in ("name", "version", "status", "source", "provides"):
        table.add_column(column)
    for info in plugins:
        status = {"loaded": "[green]loaded", "disabled": "[yellow]disabled"}.get(
            info.status, f"[red]{info.status}"
        )
        provides = ", ".join(info.provides) or (info.error or "-")
        table.add_row(info.name, info.version, status, info.source, provides)
    out.print(table)
    return 1 if runtime.plugins.failures else 0


async def cmd_schema(args: argparse.Namespace, runtime: Runtime) -> int:
    if args.connector:
        try:
            schema = runtime.plugins.connector(args.connector).options_schema()
        except KeyError as error:
            raise UsageError(error.args[0]) from None
    elif args.name:
        try:
            schema = record_type(args.name).json_schema()
        except KeyError as error:
            raise UsageError(error.args[0]) from None
    else:
        for name, cls in RECORD_TYPES.items():
            out.print(f"{name:32} v{cls.version}  {(cls.__doc__ or '').strip().splitlines()[0]}")
        return 0
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")
    return 0


async def cmd_secrets(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    value = sys.stdin.readline().rstrip("\n")
    if not value:
        raise UsageError("give the secret's value on standard input")
    if args.member and not await keys.member_exists(runtime, args.member):
        raise UsageError(f"no member {args.member!r}")
    await runtime.vault().set(args.name, value, member=args.member, actor=cli_actor())
    sealed = f" (sealed under member {args.member}'s data key)" if args.member else ""
    out.print(f"stored vault:{args.name}{sealed}")
    return 0


async def cmd_demo(args: argparse.Namespace, runtime: Runtime) -> int:
    directory = config_dir(args)
    out.rule("[bold]Cohub demo")
    out.print(
        f"configuration: {directory}\ndatabase:      {runtime.engine.url.render_as_string(hide_password=True)}"
    )
    await ensure_schema(runtime)
    config = runtime.load_checked(directory)
    if not master_key_present(key_file(runtime.home)):  # as `cohub init`: dead letters sealed
        create_key_file(key_file(runtime.home))
        out.print(f"created {key_file(runtime.home)} (master key, mode 0600)")
    await runtime.unlock_vault()
    changes = await apply(runtime.engine, config, actor=cli_actor())
    out.print(
        f"applied {len(changes)} configuration change(s)"
        if changes
        else "configuration already applied"
    )
    async with runtime.engine.connect() as conn:
        names = await route_names(conn)
    summaries = await sync_routes(runtime, names)
    print_runs(summaries)
    table = Table(title="Records synced this run, per member")
    for column in ("member", "district", "records read", "delivered", "dead letters"):
        table.add_column(column, justify="left" if column in ("member", "district") else "right")
    per_member: dict[str, RunCounts] = {}
    for summary in summaries:
        totals = per_member.setdefault(summary.member or "-", RunCounts())
        totals.read += summary.counts.read
        totals.written += summary.counts.written
        totals.rejected += summary.counts.rejected
    for code, totals in sorted(per_member.items()):
        name = config.members[code].name if code in config.members else "-"
        table.add_row(code, name, f"{totals.read:,}", f"{totals.written:,}", f"{totals.rejected:,}")
    out.print(table)
    async with runtime.engine.connect() as conn:
        usage.print_totals(await usage_totals(conn, runtime.plugins.meters()))
        # This month's statements so far, from the example's billing.toml.
        month = month_of((await load_calendar(conn)).day(datetime.now(UTC)))
        for statement in await compute_statements(
            conn, config.billing, runtime.plugins.meters(), month
        ):
            billing.print_statement(statement)
    return 0 if all(s.status == "succeeded" for s in summaries) else 1


SKELETON = {
    "cooperative.toml": """\
# The cooperative (the agency running the hub), its members and services.
[cooperative]
code = "my-boces"
name = "My BOCES"
timezone = "America/New_York"

[plugins]
paths = ["plugins"]
disabled = []

[members.my-district]
name = "My Central School District"
nces_id = "3600000"

[services.cbo-payroll]
name = "Central Business Office: payroll"
""",
    "routes.toml": """\
# Routes: (source connection, stream) -> (destination connection, stream), metered to a service.
# [routes.my-district-payroll]
# source = "my-district-payroll"
# source_stream = "pay_lines"
# destination = "cbo-payroll-db"
# destination_stream = "pay_lines"
# service = "cbo-payroll"
""",
}


# -- argument parsing ----------------------------------------------------------------------


Handler = Callable[[argparse.Namespace, Runtime], Awaitable[int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cohub", description=__doc__)
    parser.add_argument(
        "--config", default=os.environ.get(CONFIG_ENV, "config"), help="configuration folder"
    )
    parser.add_argument(
        "--database", help="database URL (default: COHUB_DATABASE_URL or .cohub/cohub.db)"
    )
    parser.add_argument("--json", action="store_true", help="log JSON lines (as the daemon does)")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error", "critical"],
        help="default: info for `serve` (one line per request), warning for the rest",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    command("init", cmd_init, "create a configuration skeleton and a master key").add_argument(
        "dir", nargs="?"
    )
    command("demo", cmd_demo, "apply the example cooperative and sync every route").add_argument(
        "dir", nargs="?"
    )
    db = command("db", cmd_db, "database schema migrations")
    db.add_argument("action", choices=["upgrade", "current"])
    command("validate", cmd_validate, "check a configuration folder").add_argument("dir", nargs="?")
    apply_cmd = command("apply", cmd_apply, "apply a configuration folder to the database")
    apply_cmd.add_argument("dir", nargs="?")
    apply_cmd.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    sync = command("sync", cmd_sync, "run routes now")
    sync.add_argument("routes", nargs="*")
    sync.add_argument("--all", action="store_true", help="every enabled route")
    run = command("run", daemon.cmd_run, "the sync daemon: run routes on their schedules")
    daemon.add_run_arguments(run)
    daemon.add_workers_arguments(
        command("workers", daemon.cmd_workers, "live workers, their claims and heartbeats")
    )
    serve.add_serve_arguments(
        command("serve", serve.cmd_serve, "serve the admin API, the web console and /metrics")
    )
    serve.add_tokens_arguments(
        command("tokens", serve.cmd_tokens, "API tokens: list, create, revoke ID")
    )
    check = command("check", cmd_check, "test connections: reach each system and list its streams")
    check.add_argument("connections", nargs="*", help="connection names (default: all)")
    runs_cmd = command("runs", cmd_runs, "run history: list, show ID, cancel ID")
    runs_cmd.add_argument("action", nargs="?", choices=["list", "show", "cancel"], default="list")
    runs_cmd.add_argument("id", nargs="?", type=int)
    runs_cmd.add_argument("--route")
    runs_cmd.add_argument("--limit", type=int, default=20)
    command("plugins", cmd_plugins, "loaded plugins and what they provide").add_argument(
        "--json", dest="json_output", action="store_true"
    )
    schema = command("schema", cmd_schema, "print a record's JSON Schema (no name: list records)")
    schema.add_argument("name", nargs="?")
    schema.add_argument("--connector", help="print a connector's options schema instead")
    state.add_arguments(command("state", cmd_state, "where a route resumes: show, set, reset"))
    deadletters.add_arguments(
        command("deadletters", cmd_deadletters, "records that failed: list, show, replay, discard")
    )
    usage.add_arguments(
        command("usage", usage.cmd_usage, "the usage ledger: show totals, post metered usage")
    )
    billing.add_arguments(
        command(
            "billing",
            billing.cmd_billing,
            "billing: close PERIOD, periods, statement, receivables, suppliers",
        )
    )
    audit.add_arguments(command("audit", audit.cmd_audit, "the audit log: list, verify, export"))
    data.add_arguments(
        command("data", data.cmd_data, "personal data: inventory of what flows where, purge")
    )
    secrets = command("secrets", cmd_secrets, "store a vault secret read from standard input")
    secrets.add_argument("action", choices=["set"])
    secrets.add_argument("name")
    secrets.add_argument(
        "--member", help="seal it under this member's data key (purged with the member)"
    )
    keys.add_keys_arguments(command("keys", keys.cmd_keys, "the master key: rotate [--drop-old]"))
    keys.add_member_arguments(
        command("member", keys.cmd_member, "a member's data: purge CODE (cannot be undone)")
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(
        json=args.json,
        level=args.log_level or ("info" if args.command == "serve" else "warning"),
    )
    # What start-up built (modules, classes, the parser) lives as long as the process: move it
    # out of the cycle collector's sight, so its full passes during a sync stay short.
    gc.freeze()

    async def run() -> int:
        runtime = Runtime.open(config_dir(args), args.database, home_dir())
        try:
            return await args.handler(args, runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(run())
    except ConfigError as error:
        for issue in error.issues:
            err.print(f"[red]error[/]: {escape(str(issue))}")
        err.print(f"{len(error.issues)} configuration error(s); nothing was applied")
        return 2
    except (UsageError, VaultError) as error:
        err.print(f"[red]error[/]: {escape(str(error))}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
