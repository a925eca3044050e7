"""Shared fixtures: a fresh hub database per test, on SQLite always and on PostgreSQL when
``COHUB_TEST_DATABASE_URL`` is set, plus a copy of the example cooperative to change freely."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from hub.plugins import PluginHost
from hub.runtime import Runtime
from hub.store import migrate
from hub.store.database import create_engine

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "config"
POSTGRES_URL = os.environ.get("COHUB_TEST_DATABASE_URL")

BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL to an empty database: an SQLite file, or a PostgreSQL database made for this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    assert POSTGRES_URL is not None
    server = make_url(POSTGRES_URL)
    name = f"cohub_test_{uuid.uuid4().hex[:12]}"
    admin = server.set(drivername="postgresql", database="postgres")
    dsn = admin.render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield server.set(database=name).render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def config_dir(tmp_path: Path, database_url: str) -> Path:
    """A copy of the example cooperative whose CBO database is the test database."""
    target = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG, target)
    destination = target / "connections" / "cbo-payroll-db.toml"
    text = destination.read_text().replace("sqlite:///.cohub/cbo_payroll.db", database_url)
    destination.write_text(text)
    return target


@pytest.fixture
async def runtime(database_url: str, config_dir: Path, tmp_path: Path) -> AsyncIterator[Runtime]:
    """A hub on the test database with the schema migrated and plugins loaded as configured."""
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    host = PluginHost([config_dir.parent / "plugins"])
    hub = Runtime(engine, host, tmp_path / "home")
    yield hub
    await hub.close()
