"""SQL destination: canonical records upserted into a shared-service database.

Each stream becomes one table (``<prefix><stream>``) with a column per record field, nested
structs flattened (``account`` → ``account_code``, ``account_fund``, …), plus ``member`` and
``record_key``. Rows are upserted by (member, record_key), and an update only replaces a row whose
``updated_at`` is not newer, so re-delivering a batch, or an older one, changes nothing.
Any SQLAlchemy URL works; the password comes from the connection's ``password`` secret.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from hub import sdk
from hub.sdk.sql import UtcDateTime, create_engine, exact_decimal, upsert

KEY_COLUMNS = ("member", "record_key")


class SqlTableOptions(sdk.Options, kw_only=True):
    """Where the shared-service database is and how its tables are named."""

    url: str
    table_prefix: str = ""
    schema_name: str | None = None
    create_tables: bool = True


class Column_(msgspec.Struct, frozen=True):
    """One destination column and how to read its value off a record."""

    name: str
    type: Any
    get: Callable[[Any], Any]


class SqlTableDestination(sdk.Connector[SqlTableOptions]):
    """Upserts canonical records into tables of any SQLAlchemy database."""

    name = "sql_table"
    title = "SQL database tables (upsert by member and record key)"
    options = SqlTableOptions
    secrets = ("password",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._engine: AsyncEngine | None = None
        self._tables: dict[str, tuple[Table, list[Column_]]] = {}

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            url = make_url(self.config.url)
            if "password" in self.secret_values:
                url = url.set(password=self.secret_values["password"])
            self._engine = create_engine(url)
        return self._engine

    async def check(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except Exception as error:
            raise sdk.ConnectorConfigError(
                f"cannot reach the database: {type(error).__name__}"
            ) from None

    async def streams(self) -> list[sdk.StreamSpec]:
        async with self.engine.connect() as conn:
            names = await conn.run_sync(
                lambda sync: inspect(sync).get_table_names(schema=self.config.schema_name)
            )
        prefix = self.config.table_prefix
        return [
            sdk.StreamSpec(name=n[len(prefix) :], record="", readable=False, writable=True)
            for n in names
            if n.startswith(prefix)
        ]

    async def _table(self, stream: str, record: type[sdk.Record]) -> tuple[Table, list[Column_]]:
        if stream not in self._tables:
            name = f"{self.config.table_prefix}{stream}"
            table, columns = stream_table(name, record, self.config.schema_name)
            if self.config.create_tables:
                async with self.engine.begin() as conn:
                    await conn.run_sync(table.create, checkfirst=True)
            self._tables[stream] = (table, columns)
        return self._tables[stream]

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        if not batch.records:
            return sdk.WriteResult(written=0)
        table, columns = await self._table(stream, type(batch.records[0]))
        owner = member or ""
        rows = [
            {"member": owner, "record_key": record.key, **{c.name: c.get(record) for c in columns}}
            for record in batch.records
        ]
        statement = upsert(table, self.engine.dialect.name, KEY_COLUMNS, newer="updated_at")
        async with self.engine.begin() as conn:
            await conn.execute(statement, rows)
        return sdk.WriteResult(written=len(rows))

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()


def stream_table(
    name: str, record: type[sdk.Record], schema: str | None = None
) -> tuple[Table, list[Column_]]:
    """The destination table for records of type `record`, keyed by member and record key."""
    columns = record_columns(record)
    table = Table(
        name,
        MetaData(schema=schema),
        Column("member", String(64), primary_key=True),
        Column("record_key", String(255), primary_key=True),
        *(Column(c.name, c.type) for c in columns),
    )
    return table, columns


def record_columns(record: type[msgspec.Struct], prefix: str = "") -> list[Column_]:
    """Destination columns for `record`, nested structs flattened with their field name."""
    hints = typing.get_type_hints(record)
    columns: list[Column_] = []
    for field in msgspec.structs.fields(record):
        name = field.name
        hint = hints[name]
        nested = sdk.nested_struct(hint)
        if nested is not None:
            for inner in record_columns(nested, f"{prefix}{name}_"):
                columns.append(Column_(inner.name, inner.type, _nested_getter(name, inner.get)))
            continue
        columns.append(Column_(f"{prefix}{name}", _sql_type(hint), _getter(name, hint)))
    return columns


def _nested_getter(name: str, inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def get(record: Any) -> Any:
        value = getattr(record, name)
        return None if value is None else inner(value)

    return get


def _getter(name: str, hint: Any) -> Callable[[Any], Any]:
    if _sql_type(hint) is JSON_TYPE:
        return lambda record: msgspec.to_builtins(getattr(record, name))
    return lambda record: getattr(record, name)


JSON_TYPE = JSON()


def _sql_type(hint: Any) -> Any:
    kinds = sdk.field_types(hint)
    if kinds & {list, dict, tuple, set}:
        return JSON_TYPE
    if bool in kinds:
        return Boolean()
    if int in kinds:
        return BigInteger()
    if Decimal in kinds:
        return exact_decimal(19, 4)
    if datetime in kinds:
        return UtcDateTime()
    if date in kinds:
        return Date()
    if str in kinds:
        return Text()
    return JSON_TYPE


@sdk.hookimpl
def cohub_register_connectors(register):
    register(SqlTableDestination)
