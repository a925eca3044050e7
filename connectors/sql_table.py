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
from datetime import UTC, date, datetime
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
    or_,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub import sdk
from hub.sdk.sql import UtcDateTime, create_engine, exact_decimal, upsert, upsert_values

KEY_COLUMNS = ("member", "record_key")
GENERATION = "sync_generation"
DELETED_AT = "deleted_at"


class SqlTableOptions(sdk.Options, kw_only=True):
    """Where the shared-service database is and how its tables are named."""

    url: str
    table_prefix: str = ""
    schema_name: str | None = None
    create_tables: bool = True


class Column_(msgspec.Struct, frozen=True):
    """One destination column: its name and SQL type."""

    name: str
    type: Any


Flatten = Callable[[Any], list[Any]]


class StreamTable:
    """A stream's destination table, and what writing a batch to it fast takes: records turned
    into positional rows with C-level struct access, values adapted by each column type's own
    bind processor, and one pre-compiled upsert run as a single executemany (or, on PostgreSQL,
    COPY into a staging table and one INSERT … SELECT)."""

    def __init__(self, name: str, record: type[sdk.Record], schema: str | None = None) -> None:
        self.columns = record_columns(record)
        self.table = Table(
            name,
            MetaData(schema=schema),
            Column("member", String(64), primary_key=True),
            Column("record_key", String(255), primary_key=True),
            *(Column(c.name, c.type) for c in self.columns),
            # The read cycle that last delivered the row, and when a complete full read did not.
            Column(GENERATION, BigInteger),
            Column(DELETED_AT, UtcDateTime()),
        )
        self.names = [c.name for c in self.table.columns]
        self._flatten = _flattener(record)
        self._compiled: dict[str, tuple[str, list[tuple[int, Callable[[Any], Any]]]]] = {}
        self._staging: tuple[str, str, str] | None = None

    def rows(
        self, records: list[sdk.Record], member: str, generation: int | None, dialect: Dialect
    ) -> list[tuple[Any, ...]]:
        """Positional rows in column order, values adapted for `dialect`."""
        _, processors = self.compiled(dialect)
        flatten = self._flatten
        rows = []
        for record in records:
            row = [member, record.key, *flatten(record), generation, None]
            for index, process in processors:
                row[index] = process(row[index])
            rows.append(tuple(row))
        return rows

    def staging(self, dialect: Dialect) -> tuple[str, str, str]:
        """PostgreSQL's staging table name, its CREATE and the INSERT … SELECT that upserts from
        it, built once per table. Within a batch the newest copy of a key wins, as it would
        row by row."""
        if self._staging is None:
            target = self.table
            prefix = f"{target.schema}_" if target.schema else ""
            stage = Table(
                f"cohub_stage_{prefix}{target.name}",
                MetaData(),
                *(Column(c.name, c.type) for c in target.columns),
            )
            create = (
                f'CREATE TEMP TABLE IF NOT EXISTS "{stage.name}" '
                f"(LIKE {_qualified(target)} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            newest = (
                select(stage)
                .ext(postgresql.distinct_on(stage.c.member, stage.c.record_key))
                .order_by(stage.c.member, stage.c.record_key, stage.c.updated_at.desc())
            )
            insert = postgresql.insert(target).from_select(self.names, newest)
            values = upsert_values(
                target, insert.excluded, KEY_COLUMNS, newer="updated_at", always=(GENERATION,)
            )
            merge = insert.on_conflict_do_update(
                index_elements=list(KEY_COLUMNS), set_=dict(values)
            )
            self._staging = (stage.name, create, str(merge.compile(dialect=dialect)))
        return self._staging

    def compiled(self, dialect: Dialect) -> tuple[str, list[tuple[int, Callable[[Any], Any]]]]:
        """The upsert as the driver's SQL, and the per-column bind processors, for `dialect`."""
        if dialect.name not in self._compiled:
            statement = upsert(
                self.table, dialect.name, KEY_COLUMNS, newer="updated_at", always=(GENERATION,)
            )
            compiled = statement.compile(dialect=dialect, column_keys=self.names)
            order = [self.names.index(name) for name in compiled.positiontup or []]
            if order != list(range(len(self.names))):
                raise RuntimeError(
                    f"{dialect.name}: unexpected parameter order {compiled.positiontup}"
                )
            processors = []
            for index, column in enumerate(self.table.columns):
                process = column.type.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    processors.append((index, process))
            self._compiled[dialect.name] = (str(compiled), processors)
        return self._compiled[dialect.name]


def _flattener(record: type[msgspec.Struct]) -> Flatten:
    """A function giving a record's column values in order, nested structs spliced in."""
    hints = typing.get_type_hints(record)
    special: list[tuple[int, Callable[[Any], Any]]] = []
    for index, field in enumerate(msgspec.structs.fields(record)):
        hint = hints[field.name]
        nested = sdk.nested_struct(hint)
        if nested is not None:
            special.append((index, _nested(_flattener(nested), len(record_columns(nested)))))
        elif _sql_type(hint) is JSON_TYPE:
            special.append((index, lambda value: (msgspec.to_builtins(value),)))
    astuple = msgspec.structs.astuple
    if not special:
        return lambda value: list(astuple(value))

    def flatten(value: Any) -> list[Any]:
        values = astuple(value)
        out: list[Any] = []
        start = 0
        for index, expand in special:
            out.extend(values[start:index])
            out.extend(expand(values[index]))
            start = index + 1
        out.extend(values[start:])
        return out

    return flatten


def _nested(flatten: Flatten, width: int) -> Callable[[Any], Any]:
    empty = (None,) * width
    return lambda value: empty if value is None else flatten(value)


class SqlTableDestination(sdk.Connector[SqlTableOptions]):
    """Upserts canonical records into tables of any SQLAlchemy database."""

    name = "sql_table"
    title = "SQL database tables (upsert by member and record key)"
    options = SqlTableOptions
    secrets = ("password",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._engine: AsyncEngine | None = None
        self._tables: dict[str, StreamTable] = {}

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

    async def _table(self, stream: str, record: type[sdk.Record]) -> StreamTable:
        if stream not in self._tables:
            table = StreamTable(
                f"{self.config.table_prefix}{stream}", record, self.config.schema_name
            )
            if self.config.create_tables:
                async with self.engine.begin() as conn:
                    await conn.run_sync(table.table.create, checkfirst=True)
                    await conn.run_sync(_add_missing_columns, table.table)
            self._tables[stream] = table
        return self._tables[stream]

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        if not batch.records:
            return sdk.WriteResult(written=0)
        table = await self._table(stream, type(batch.records[0]))
        dialect = self.engine.dialect
        rows = table.rows(batch.records, member or "", batch.generation, dialect)
        async with self.engine.begin() as conn:
            if dialect.name == "postgresql":
                await _copy_upsert(conn, table, rows)
            else:
                await conn.exec_driver_sql(table.compiled(dialect)[0], rows)
        return sdk.WriteResult(written=len(rows))

    async def delete_missing(self, stream: str, member: str | None, generation: int) -> int:
        table = self._tables.get(stream)
        if table is None:
            # Nothing was written this cycle: every row of the member is missing from the read.
            async with self.engine.connect() as conn:
                exists = await conn.run_sync(
                    lambda sync: inspect(sync).has_table(
                        f"{self.config.table_prefix}{stream}", self.config.schema_name
                    )
                )
            if not exists:
                return 0
            table = StreamTable(
                f"{self.config.table_prefix}{stream}", sdk.Record, self.config.schema_name
            )
        target = table.table
        missing = (
            target.update()
            .where(
                target.c.member == (member or ""),
                target.c[DELETED_AT].is_(None),
                or_(target.c[GENERATION].is_(None), target.c[GENERATION] != generation),
            )
            .values({DELETED_AT: datetime.now(UTC)})
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(missing)).rowcount

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()


async def _copy_upsert(
    conn: AsyncConnection, table: StreamTable, rows: list[tuple[Any, ...]]
) -> None:
    """PostgreSQL: COPY the batch into a session staging table, then upsert from it in one
    statement (an order of magnitude faster than executemany)."""
    stage, create, merge = table.staging(conn.dialect)
    await conn.exec_driver_sql(create)
    driver = (await conn.get_raw_connection()).driver_connection
    try:
        await driver.copy_records_to_table(stage, records=rows, columns=table.names)
    except Exception as error:
        # asyncpg's messages can quote a record's value; keep only what identifies the failure.
        state = getattr(error, "sqlstate", None)
        raise sdk.ConnectorError(
            f"PostgreSQL refused the batch: {type(error).__name__}"
            + (f" (SQLSTATE {state})" if state else "")
        ) from None
    await conn.exec_driver_sql(merge)


def _add_missing_columns(sync: Any, table: Table) -> None:
    """Additive schema changes: a field new in the record becomes a new, empty column; nothing
    else about an existing table changes."""
    present = {c["name"] for c in inspect(sync).get_columns(table.name, schema=table.schema)}
    quote = sync.dialect.identifier_preparer
    for column in table.columns:
        if column.name not in present:
            kind = column.type.compile(dialect=sync.dialect)
            sync.exec_driver_sql(
                f"ALTER TABLE {quote.format_table(table)} ADD COLUMN {quote.quote(column.name)} {kind}"
            )


def _qualified(table: Table) -> str:
    return f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'


def record_columns(record: type[msgspec.Struct], prefix: str = "") -> list[Column_]:
    """Destination columns for `record`, nested structs flattened with their field name."""
    hints = typing.get_type_hints(record)
    columns: list[Column_] = []
    for field in msgspec.structs.fields(record):
        hint = hints[field.name]
        nested = sdk.nested_struct(hint)
        if nested is not None:
            columns.extend(record_columns(nested, f"{prefix}{field.name}_"))
        else:
            columns.append(Column_(f"{prefix}{field.name}", _sql_type(hint)))
    return columns


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
