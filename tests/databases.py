"""Databases for tests: SQLite always, PostgreSQL when ``COHUB_TEST_DATABASE_URL`` is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get("COHUB_TEST_DATABASE_URL")

BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


@asynccontextmanager
async def temporary_database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of `kind` for one test: an SQLite file, or a PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    assert POSTGRES_URL is not None
    server = make_url(POSTGRES_URL)
    name = f"cohub_test_{uuid.uuid4().hex[:12]}"
    dsn = server.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
