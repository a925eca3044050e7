"""Shared fixtures: a fresh hub database per test, on SQLite always and on PostgreSQL when
``COHUB_TEST_DATABASE_URL`` is set, plus a copy of the example cooperative to change freely."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.plugins import PluginHost
from hub.runtime import Runtime
from hub.store import migrate
from hub.store.database import create_engine
from tests.databases import BACKENDS, temporary_database

#: After every test, its captured output is searched for the canary secrets and PII planted
#: by tests/test_secret_canaries.py: none may appear anywhere.
pytest_plugins = ["tests.canaries"]

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "config"


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL to an empty hub database, once per backend."""
    async with temporary_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def postgres_url(tmp_path: Path) -> AsyncIterator[str]:
    """A URL to an empty PostgreSQL hub database, for what only PostgreSQL does (several
    workers at once); the test is skipped where PostgreSQL is absent."""
    if "postgresql" not in BACKENDS:
        pytest.skip("PostgreSQL absent: set COHUB_TEST_DATABASE_URL to run it")
    async with temporary_database("postgresql", tmp_path) as url:
        yield url


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


@pytest.fixture
async def hub(runtime: Runtime, config_dir: Path) -> AsyncIterator[object]:
    """The example cooperative synced and served over HTTP, with a token per role
    (`tests.apikit.ServedHub`)."""
    from tests.apikit import served_hub

    async with served_hub(runtime, config_dir) as served:
        yield served
