"""Dialect-aware INSERT variants the hub and its SQL connector share."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, func
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.dml import Insert


def insert_ignoring_duplicates(table: Table, dialect: str) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` on PostgreSQL and SQLite, ``INSERT IGNORE`` elsewhere."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return table.insert().prefix_with("IGNORE")


def upsert(table: Table, dialect: str, key: Sequence[str], *, newer: str | None = None) -> Insert:
    """``INSERT … ON CONFLICT (key) DO UPDATE`` setting every non-key column from the new row.

    With `newer` (a timestamp column), PostgreSQL and SQLite replace a row only when the incoming
    one is not older, so a late re-delivery never overwrites a fresher copy.
    """
    if dialect in ("postgresql", "sqlite"):
        module = postgresql if dialect == "postgresql" else sqlite
        statement = module.insert(table)
        updates = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in key}
        where = table.c[newer] <= statement.excluded[newer] if newer else None
        return statement.on_conflict_do_update(index_elements=list(key), set_=updates, where=where)
    statement = mysql.insert(table)
    updates = {c.name: statement.inserted[c.name] for c in table.columns if c.name not in key}
    if newer:
        # MySQL/MariaDB have no WHERE on the update: keep each column unless the incoming row is
        # not older, and assign the timestamp last so the comparisons above still see the old one.
        fresh = statement.inserted[newer] >= table.c[newer]
        updates = {
            name: func.if_(fresh, value, table.c[name])
            for name, value in updates.items()
            if name != newer
        }
        updates[newer] = func.if_(fresh, statement.inserted[newer], table.c[newer])
    return statement.on_duplicate_key_update(list(updates.items()))
