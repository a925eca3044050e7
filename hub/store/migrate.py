"""Alembic migrations run on the hub's own async engine (``cohub db upgrade``).

Every command checks the schema revision first, so that check reads Alembic's version table with
plain SQL against `HEAD`; Alembic itself (a fifth of a second to import) loads only to migrate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")

#: The newest revision in ``migrations/versions``; a test holds it to Alembic's own answer.
HEAD = "0009"

VERSION_TABLE = "alembic_version"


def alembic_config(connection: Any = None) -> Any:
    """An Alembic config for the hub's migrations, using `connection` instead of opening one."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to `revision`."""
    from alembic import command

    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    """The schema revision the database is at (None before the first upgrade)."""

    def read(sync: Any) -> str | None:
        if not inspect(sync).has_table(VERSION_TABLE):
            return None
        return sync.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


def head_revision() -> str | None:
    """The newest revision the code ships, as Alembic computes it from the migration files."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
