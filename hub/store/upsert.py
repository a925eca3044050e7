"""Dialect-aware INSERT variants the hub and its SQL connector share."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, case
from sqlalchemy.sql.dml import Insert


def dialect_insert(table: Table, dialect: str) -> Any:
    """The dialect's own INSERT of `table` (``postgresql``, ``sqlite`` or ``mysql``), with its
    conflict clauses. The dialect's module is imported on first use: a hub on SQLite never needs
    the PostgreSQL and MySQL ones (70 ms and 3 MiB of every command's start-up)."""
    return importlib.import_module(f"sqlalchemy.dialects.{dialect}").insert(table)


def insert_ignoring_duplicates(table: Table, dialect: str) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` on PostgreSQL and SQLite, ``INSERT IGNORE`` elsewhere."""
    if dialect in ("postgresql", "sqlite"):
        return dialect_insert(table, dialect).on_conflict_do_nothing()
    return table.insert().prefix_with("IGNORE")


def upsert_values(
    table: Table,
    incoming: Any,
    key: Sequence[str],
    *,
    newer: str | None = None,
    always: Sequence[str] = (),
) -> list[tuple[str, Any]]:
    """The SET list of an upsert: every non-key column from the `incoming` row.

    With `newer` (a timestamp column) a column takes the incoming value only when the incoming row
    is not older, so a late re-delivery never overwrites a fresher copy; columns in `always` take
    it regardless. The timestamp comes last: MySQL assigns left to right, and the comparisons
    before it must still see the stored value.
    """
    names = [c.name for c in table.columns if c.name not in key]
    if newer in names:
        names = [n for n in names if n != newer] + [newer]

    def value(name: str) -> Any:
        if newer is None or name in always:
            return incoming[name]
        return case((incoming[newer] >= table.c[newer], incoming[name]), else_=table.c[name])

    return [(name, value(name)) for name in names]


def upsert(
    table: Table,
    dialect: str,
    key: Sequence[str],
    *,
    newer: str | None = None,
    always: Sequence[str] = (),
) -> Insert:
    """``INSERT … ON CONFLICT (key) DO UPDATE`` (``ON DUPLICATE KEY UPDATE`` on MySQL and
    MariaDB) with the SET list of `upsert_values`."""
    if dialect in ("postgresql", "sqlite"):
        statement = dialect_insert(table, dialect)
        values = upsert_values(table, statement.excluded, key, newer=newer, always=always)
        return statement.on_conflict_do_update(index_elements=list(key), set_=dict(values))
    statement = dialect_insert(table, "mysql")
    return statement.on_duplicate_key_update(
        upsert_values(table, statement.inserted, key, newer=newer, always=always)
    )
