"""What every command shares: the consoles, usage errors, the schema check, progress bars."""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from hub.runtime import Runtime
from hub.store import migrate
from hub.store.database import is_sqlite

# Piped output (files, CI logs, tests) gets wide tables instead of 80 columns of ellipses.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def actor() -> str:
    """Who is acting, for audit records: ``COHUB_ACTOR``, else the login name."""
    return os.environ.get("COHUB_ACTOR") or getpass.getuser()


def cli_actor() -> str:
    """The audit log's actor for a command typed at a shell."""
    return f"{actor()} (cli)"


class UsageError(Exception):
    """A command used wrongly; exit 2 with the message."""


async def ensure_schema(runtime: Runtime) -> None:
    """Upgrade the embedded SQLite store on first use; PostgreSQL is upgraded deliberately."""
    current = await migrate.current_revision(runtime.engine)
    head = migrate.HEAD
    if current == head:
        return
    if is_sqlite(runtime.engine):
        await migrate.upgrade(runtime.engine)
        return
    raise UsageError(
        f"the database is at revision {current or 'none'}, not {head}: run `cohub db upgrade`"
    )


def data_text(rows: list[dict[str, str]], form: str, columns: list[str] | None = None) -> str:
    """Rows as JSON or CSV text, for standard output or a file (never through the console,
    which wraps long lines). CSV has a header when there are rows or `columns` are given."""
    if form == "json":
        return json.dumps(rows, indent=2) + "\n"
    buffer = io.StringIO()
    header = columns or (list(rows[0]) if rows else None)
    if header:
        writer = csv.DictWriter(buffer, header)
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def progress_bar() -> Progress:
    """Progress for long work: drawn in a terminal, silent in the daemon and in pipes."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[records]:>10,} records"),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=False,
    )


__all__ = [
    "UsageError",
    "actor",
    "cli_actor",
    "data_text",
    "ensure_schema",
    "err",
    "escape",
    "out",
    "progress_bar",
]
