"""The database: URL handling, the async engine with SQLite's pragmas, and transactions.

SQLite (embedded default) runs in WAL mode with ``synchronous=NORMAL`` and a busy timeout;
transactions that read then write start with ``BEGIN IMMEDIATE`` so two writers never both read
a stale row and then deadlock on the upgrade. PostgreSQL runs on asyncpg.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

DATABASE_URL_ENV = "COHUB_DATABASE_URL"
DEFAULT_HOME = ".cohub"

_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "mysql": "mysql+aiomysql",
    "mariadb": "mariadb+aiomysql",
}


def async_url(url: str | URL) -> URL:
    """`url` with its async driver: a plain ``postgresql://``, ``mysql://`` or ``sqlite://`` URL
    works."""
    parsed = make_url(url) if isinstance(url, str) else url
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def default_url(home: str | Path = DEFAULT_HOME) -> str:
    """``COHUB_DATABASE_URL`` if set, else the embedded SQLite file under `home`."""
    configured = os.environ.get(DATABASE_URL_ENV)
    if configured:
        return configured
    return f"sqlite:///{Path(home) / 'cohub.db'}"


def is_sqlite(engine: AsyncEngine) -> bool:
    """Whether `engine` talks to SQLite."""
    return engine.dialect.name == "sqlite"


def create_engine(url: str | URL, **kwargs: object) -> AsyncEngine:
    """An async engine for `url`; SQLite files get their folder, WAL and immediate writes."""
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        if target.database and target.database != ":memory:":
            Path(target.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(target, hide_parameters=True, **kwargs)
        _sqlite_pragmas(engine)
        return engine
    # Parameters hold record values (PII among them): keep them out of error messages.
    return create_async_engine(target, pool_pre_ping=True, hide_parameters=True, **kwargs)


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event emit BEGIN itself, so writers can ask for IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection):  # type: ignore[no-untyped-def]
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-then-write transaction: ``BEGIN IMMEDIATE`` on SQLite, a plain one elsewhere."""
    async with engine.connect() as connection:
        if is_sqlite(engine):
            connection = await connection.execution_options(sqlite_immediate=True)
        async with connection.begin():
            yield connection
