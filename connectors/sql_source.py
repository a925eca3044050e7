"""SQL source: reporting views and tables of a district ERP, read by their last-change column.

Districts' finance and HR systems (often hosted by a Regional Information Center) publish
reporting views in their own database. A connection names the database by SQLAlchemy URL (plain
``postgresql://``, ``mysql://``, ``mariadb://`` and ``sqlite://`` URLs get their async drivers),
the password as the ``password`` secret, and, per stream, the view, the canonical record, a
column mapping profile (record field → view column, like `flat_file`'s), the updated column and
the key columns.

Reading is incremental and keyset-paged: rows come ordered by (updated, keys), a page at a time
(``WHERE (updated, keys) > (last row seen) ORDER BY updated, keys LIMIT n``, never OFFSET, so a
page costs the same at row ten million as at row ten). The state is the position of the last
row seen, so rows sharing one timestamp across a page boundary are neither lost nor read twice.
With a lookback window (the route's ``lookback_seconds``) the next run starts that far before
the position, to catch rows an ERP committed late with an older stamp; what was delivered within
the window is remembered by record key and version (as `sdk.IncrementalCursor` does), so the
re-read rows are not delivered, or billed, twice.

Naive timestamps (``timestamp without time zone``, MariaDB ``DATETIME``) are read in the stream's
``timezone``. Rows that cannot become records are rejected with the reason and the row's keys.

Identifiers (view, columns) are quoted by SQLAlchemy's dialect; values are always bound
parameters. The row mapping is this module's own, not `flat_file`'s: that one maps text cells,
while a database hands over typed values (Decimal, date, datetime), and a connector imports only
`hub.sdk`.
"""

from __future__ import annotations

import re
import typing
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from sqlalchemy import and_, column, or_, select, table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InvalidRequestError,
    NoSuchModuleError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from hub import sdk
from hub.sdk.sql import async_url, create_engine


class SqlStream(sdk.Options, kw_only=True):
    """One reporting view (or table) read as one stream of canonical records."""

    #: The view or table name, as the database spells it (quoted for you; no SQL here).
    table: str
    #: The schema (PostgreSQL) or database (MariaDB) holding it; None: the URL's default.
    schema_name: str | None = None
    record: str
    #: Record field → view column.
    columns: dict[str, str]
    #: The column holding each row's last change; it becomes the record's ``updated_at``.
    updated_column: str
    #: Columns that identify a row (NOT NULL, unique together with nothing else needed).
    key_columns: list[str]
    #: A column holding the whole account code, parsed with the connection's account layout.
    account_column: str | None = None
    #: The IANA zone of naive timestamps (``timestamp without time zone``, ``DATETIME``).
    timezone: str = "UTC"
    constants: dict[str, str] = msgspec.field(default_factory=dict)


class SqlSourceOptions(sdk.Options, kw_only=True):
    """A district database and the reporting views read from it."""

    #: SQLAlchemy URL without the password (give it as the ``password`` secret).
    url: str
    streams: dict[str, SqlStream]
    account_layout: str = "nys"
    #: Seconds a connection attempt or check may take.
    connect_timeout: int = 15


class SqlSource(sdk.Connector[SqlSourceOptions]):
    """Reporting views of a district ERP, read incrementally by their last-change column."""

    name = "sql_source"
    title = "SQL database views (district ERP reporting views)"
    options = SqlSourceOptions
    secrets = ("password",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._engine: AsyncEngine | None = None
        self._plans: dict[str, StreamPlan] = {}

    # -- connection ----------------------------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        """The async engine, created on first use."""
        if self._engine is None:
            try:
                url = async_url(self.config.url)
                if "password" in self.secret_values:
                    url = url.set(password=self.secret_values["password"])
                backend = url.get_backend_name()
                if backend == "sqlite" and url.database and url.database != ":memory:":
                    # The hub's engine factory creates missing SQLite files; a source must not.
                    path = self.context.resolve_path(url.database)
                    if not path.is_file():
                        raise sdk.ConnectorConfigError(f"no SQLite database file {path}")
                    url = url.set(database=str(path))
                args: dict[str, Any] = {}
                if backend == "postgresql":
                    args = {"timeout": self.config.connect_timeout}
                elif backend in ("mysql", "mariadb"):
                    args = {"connect_timeout": self.config.connect_timeout}
                self._engine = create_engine(url, connect_args=args)
            except (
                ArgumentError,
                NoSuchModuleError,
                InvalidRequestError,
                ImportError,
                ValueError,
            ) as error:
                raise sdk.ConnectorConfigError(_url_problem(self.config.url, error)) from None
        return self._engine

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    def _plan(self, stream: str) -> StreamPlan:
        if stream not in self._plans:
            profile = self.config.streams.get(stream)
            if profile is None:
                offered = ", ".join(sorted(self.config.streams)) or "none"
                raise sdk.ConnectorConfigError(
                    f"no stream {stream!r}; this connection offers: {offered}"
                )
            self._plans[stream] = StreamPlan(stream, profile, self.config.account_layout)
        return self._plans[stream]

    # -- check and streams ---------------------------------------------------------------------

    async def check(self) -> None:
        plans = [self._plan(name) for name in self.config.streams]
        engine = self.engine
        try:
            async with engine.connect() as conn:
                for plan in plans:
                    # Every mapped column once, no rows: proves table, columns and SELECT grant.
                    try:
                        await conn.execute(select(*plan.selected).select_from(plan.table).limit(0))
                    except DBAPIError as error:
                        raise sdk.ConnectorError(
                            f"stream {plan.stream!r}: {self._explain(error, plan)}"
                        ) from None
        except sdk.ConnectorError:
            raise
        except (DBAPIError, OSError, SQLAlchemyError) as error:
            raise _classify(self._explain(error, None), error) from None

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(
                name=name,
                record=profile.record,
                description=f"rows of {_qualified(profile)} by {profile.updated_column}",
                readable=True,
                writable=False,
            )
            for name, profile in self.config.streams.items()
        ]

    def _explain(self, error: BaseException, plan: StreamPlan | None) -> str:
        """What went wrong, in the administrator's terms, without the SQL or any value."""
        url = make_url(self.config.url)
        port = url.port or {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}.get(
            url.get_backend_name(), ""
        )
        where = f"{url.host or 'localhost'}:{port}" if url.host or port else url.database
        user = url.username or "(none)"
        code, text = _error_code(error)
        view = _qualified(plan.profile) if plan else "the view"
        lowered = text.lower()
        if code in ("28P01", 1045) or "password authentication failed" in lowered:
            return f"the database at {where} refused the password for user {user!r}"
        if code == "28000" or ("role" in lowered and "does not exist" in lowered):
            return f"the database at {where} has no user {user!r} (or refuses it from this host)"
        if code in ("3D000", 1049, 1044) or ("database" in lowered and "does not exist" in lowered):
            return f"the database {url.database!r} at {where} does not exist or {user!r} may not use it"
        if code in ("42501", 1142, 1143) or "permission denied" in lowered:
            return f"user {user!r} may not SELECT from {view}: grant it SELECT on the view"
        if code in ("42P01", 1146) or "no such table" in lowered:
            return f"no table or view {view} in the database (or user {user!r} cannot see it)"
        if code in ("42703", 1054) or "no such column" in lowered:
            found = re.search(r"""column:?\s+["'`]?([\w.]+)""", text)
            name = found.group(1) if found else "a mapped column"
            return f"{view} has no column {name!r} (check the stream's columns)"
        if (
            isinstance(_root(error), OSError)
            or code in (2002, 2003, 2005, 2013)
            or "connect" in lowered
        ):
            return f"cannot reach the database at {where}: {_first_line(text)}"
        return f"{type(_root(error)).__name__}: {_first_line(text)}"

    # -- read -----------------------------------------------------------------------------------

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        plan = self._plan(stream)
        state = state or {}
        position = _decode_position(state.get("position"))
        recent: dict[str, str] = dict(state.get("recent", {}))
        if position is not None and self.lookback > timedelta(0):
            # Late commits: start before the position and tell re-read rows by `recent`.
            start = plan.since_condition(_minus(position[0], self.lookback))
        elif position is not None:
            start = plan.after_condition(position)
        else:
            start = None
        after: tuple[Any, ...] | None = None
        size = max(1, self.batch_size)
        while True:
            query = plan.query(after_condition=plan.after_condition(after) if after else start)
            try:
                async with self.engine.connect() as conn:
                    rows = (await conn.execute(query.limit(size))).mappings().all()
            except (DBAPIError, OSError) as error:
                raise _classify(self._explain(error, plan), error) from None
            if not rows:
                return
            records, rejects = plan.map_rows([dict(r) for r in rows])
            fresh = []
            for record in records:
                stamp = record.updated_at.isoformat()
                if recent.get(record.key) == stamp:
                    continue  # delivered before, at this version, within the window
                fresh.append(record)
                recent[record.key] = stamp
            last = rows[-1]
            after = (last[plan.updated_label], *(last[k] for k in plan.key_labels))
            if position is None or _later(after, position):
                position = after
            if self.lookback > timedelta(0):
                horizon = plan.aware(_minus(position[0], self.lookback))
                recent = {k: v for k, v in recent.items() if datetime.fromisoformat(v) >= horizon}
            else:
                recent = {}
            yield sdk.Batch(
                records=fresh,
                rejects=rejects,
                state={"position": _encode_position(position), "recent": dict(recent)},
            )
            if len(rows) < size:
                return

    def map_raw(self, stream: str, raw: dict[str, Any]) -> sdk.Record:
        records, rejects = self._plan(stream).map_rows([raw])
        if rejects:
            raise sdk.BadRecord(rejects[0].reason, position=rejects[0].position)
        return records[0]

    def pii_columns(self, stream: str) -> frozenset[str]:
        profile = self.config.streams.get(stream)
        if profile is None:
            return frozenset()
        marked = sdk.record_type(profile.record).pii_fields()
        return frozenset(col for field, col in profile.columns.items() if field in marked)


class StreamPlan:
    """A stream profile made ready to run: the quoted table, the selected columns, the keyset
    conditions and the row mapping."""

    def __init__(self, stream: str, profile: SqlStream, layout: str) -> None:
        self.stream = stream
        self.profile = profile
        try:
            self.record = sdk.record_type(profile.record)
        except KeyError as error:
            raise sdk.ConnectorConfigError(f"stream {stream!r}: {error.args[0]}") from None
        try:
            self.zone = ZoneInfo(profile.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise sdk.ConnectorConfigError(
                f"stream {stream!r}: unknown time zone {profile.timezone!r}"
            ) from None
        fields = {f.name for f in msgspec.structs.fields(self.record)}
        unknown = sorted(set(profile.columns) - fields)
        if unknown:
            raise sdk.ConnectorConfigError(
                f"stream {stream!r}: {profile.record} has no field {unknown[0]!r}"
            )
        if "updated_at" in profile.columns:
            raise sdk.ConnectorConfigError(
                f"stream {stream!r}: updated_at comes from updated_column, do not map it"
            )
        if not profile.key_columns:
            raise sdk.ConnectorConfigError(f"stream {stream!r}: key_columns is empty")
        self.layout = sdk.account_layout(layout) if profile.account_column else None
        hints = typing.get_type_hints(self.record, include_extras=True)
        self.converters = {f: _converter(hints[f], self.aware) for f in profile.columns}
        names = [
            profile.updated_column,
            *profile.key_columns,
            *profile.columns.values(),
            *([profile.account_column] if profile.account_column else []),
        ]
        self.names = list(dict.fromkeys(names))  # each column once, in a stable order
        self.table = table(profile.table, *(column(n) for n in self.names))
        if profile.schema_name:
            self.table.schema = profile.schema_name
        self.selected = [self.table.c[n] for n in self.names]
        self.updated = self.table.c[profile.updated_column]
        self.keys = [self.table.c[k] for k in profile.key_columns]
        self.updated_label = profile.updated_column
        self.key_labels = list(profile.key_columns)

    def query(self, after_condition: Any) -> Any:
        """The next page: rows after the condition, in (updated, keys) order."""
        conditions = [self.updated.is_not(None)]
        if after_condition is not None:
            conditions.append(after_condition)
        return (
            select(*self.selected)
            .select_from(self.table)
            .where(and_(*conditions))
            .order_by(self.updated, *self.keys)
        )

    def since_condition(self, since: Any) -> Any:
        return self.updated >= since

    def after_condition(self, position: tuple[Any, ...]) -> Any:
        """``(updated, k1, k2, …) > position``, spelled out so every database can use an index on
        (updated, keys): ``updated >= u AND (updated > u OR (updated = u AND (k1 > a OR …)))``."""
        columns = [self.updated, *self.keys]
        condition = columns[-1] > position[-1]
        for col, value in zip(reversed(columns[:-1]), reversed(position[:-1]), strict=True):
            condition = or_(col > value, and_(col == value, condition))
        return and_(self.updated >= position[0], condition)

    def aware(self, value: Any) -> datetime:
        """A timestamp from the view (or its ISO text from a dead letter) as an aware datetime."""
        if isinstance(value, str):
            value = datetime.fromisoformat(value.strip())
        if not isinstance(value, datetime):
            raise ValueError(f"{value!r} is not a timestamp")
        return value if value.tzinfo else value.replace(tzinfo=self.zone)

    def position_of(self, row: dict[str, Any]) -> str:
        keys = ", ".join(f"{k}={row.get(k)}" for k in self.key_labels)
        return f"{_qualified(self.profile)} {keys}"

    def map_rows(self, rows: list[dict[str, Any]]) -> tuple[list[sdk.Record], list[sdk.Reject]]:
        """View rows as records, and the rows that cannot be, with the reason."""
        mapped: list[dict[str, Any]] = []
        kept: list[int] = []
        rejects: list[sdk.Reject] = []
        for index, row in enumerate(rows):
            try:
                mapped.append(self._map_row(row))
            except (ValueError, TypeError, ArithmeticError) as error:
                rejects.append(self._reject(row, str(error)))
            else:
                kept.append(index)
        records, failures = sdk.convert_rows(self.record, mapped)
        rejects.extend(self._reject(rows[kept[i]], reason) for i, reason in failures)
        return records, rejects

    def _map_row(self, row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.profile.constants)
        for field, name in self.profile.columns.items():
            if name not in row:
                raise ValueError(f"no column {name!r}")
            value = row[name]
            if isinstance(value, str):
                value = value.strip()  # CHAR(n) columns come padded
                if not value:
                    continue
            if value is None:
                continue
            out[field] = self.converters[field](value)
        if self.layout is not None:
            code = row.get(self.profile.account_column or "")
            if code not in (None, ""):
                out["account"] = self.layout.parse(str(code).strip())
        stamp = row.get(self.updated_label)
        if stamp in (None, ""):
            raise ValueError(f"updated column {self.updated_label!r} is empty")
        out["updated_at"] = self.aware(stamp)
        return out

    def _reject(self, row: dict[str, Any], reason: str) -> sdk.Reject:
        raw = {k: _json_value(v) for k, v in row.items()}
        return sdk.Reject(position=self.position_of(row), reason=reason, raw=raw)


Converter = Callable[[Any], Any]


#: JSON text of a list or table column, fractions as exact decimals.
_JSON = msgspec.json.Decoder(float_hook=Decimal)


def _converter(hint: Any, aware: Converter) -> Converter:
    """How a view value becomes a field value: numbers of a text field as text, floats of a
    decimal field through their shortest text (never binary noise), naive datetimes in the
    stream's zone (`aware`), JSON text of a list or table field decoded."""
    kinds = sdk.field_types(hint)
    if kinds & {list, dict}:
        # Order lines and the like come aggregated as JSON (json_agg, JSON_ARRAYAGG, FOR JSON),
        # as text where the driver does not decode it; fractions stay exact.
        return lambda v: _JSON.decode(v) if isinstance(v, str | bytes) else v
    if datetime in kinds:
        return aware
    if Decimal in kinds:
        return lambda v: Decimal(str(v)) if isinstance(v, float | int | str) else v
    if str in kinds and not kinds & {int, Decimal, date, datetime}:
        return lambda v: v if isinstance(v, str) else str(v)
    if date in kinds and datetime not in kinds:
        return lambda v: v.date() if isinstance(v, datetime) else v
    return lambda v: v


def _json_value(value: Any) -> Any:
    """A view value as dead letters store it: timestamps and dates as ISO text (naive stays
    naive, so a replay reads it in the same zone), decimals as text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


def _encode_position(position: tuple[Any, ...]) -> dict[str, Any]:
    """The position as JSON; a text timestamp (SQLite) stays text, to compare text to text, and
    keys keep their kind (a date key is bound as a date again, not as text)."""
    stamp, *keys = position
    return {
        "updated": _json_value(stamp),
        "text": isinstance(stamp, str),
        "keys": [_tag(k) for k in keys],
    }


def _decode_position(raw: Any) -> tuple[Any, ...] | None:
    if not raw:
        return None
    stamp = raw["updated"] if raw["text"] else datetime.fromisoformat(raw["updated"])
    return (stamp, *(_untag(k) for k in raw["keys"]))


def _tag(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    return value


def _untag(value: Any) -> Any:
    if isinstance(value, dict):
        [(kind, text)] = value.items()
        parse = {"datetime": datetime.fromisoformat, "date": date.fromisoformat}
        return parse.get(kind, Decimal)(text)
    return value


def _minus(stamp: Any, delta: timedelta) -> Any:
    if isinstance(stamp, datetime):
        return stamp - delta
    moved = datetime.fromisoformat(str(stamp)) - delta
    return moved.isoformat(sep=" " if " " in str(stamp) else "T")


def _later(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    try:
        return a > b
    except TypeError:
        return str(a) > str(b)


def _qualified(profile: SqlStream) -> str:
    return f"{profile.schema_name}.{profile.table}" if profile.schema_name else profile.table


def _root(error: BaseException) -> BaseException:
    """The driver's own exception under SQLAlchemy's wrapper and the async adapter."""
    seen = error
    if isinstance(seen, DBAPIError) and seen.orig is not None:
        seen = seen.orig
    while seen.__cause__ is not None and seen.__cause__ is not seen:
        seen = seen.__cause__
    return seen


def _error_code(error: BaseException) -> tuple[Any, str]:
    """(SQLSTATE or MySQL error number or None, the driver's message)."""
    root = _root(error)
    args = getattr(root, "args", ())
    if args and isinstance(args[0], int):  # MySQL/MariaDB: (error number, message)
        return args[0], str(args[1]) if len(args) > 1 else str(root)
    code = getattr(root, "sqlstate", None) or getattr(root, "pgcode", None)
    if code is None and isinstance(error, DBAPIError):
        code = getattr(error.orig, "pgcode", None) or getattr(error.orig, "sqlstate", None)
    return code, str(root) or str(error)


def _classify(message: str, error: BaseException) -> sdk.ConnectorError:
    """The SDK error that says what to do about it: fix credentials, fix config, or retry."""
    code, _ = _error_code(error)
    if code in ("28P01", "28000", 1045):
        return sdk.AuthError(message)
    if isinstance(_root(error), OSError) or code in (2002, 2003, 2005, 2013):
        return sdk.TransientError(message)
    return sdk.ConnectorError(message)


def _url_problem(url: str, error: BaseException) -> str:
    try:
        scheme = make_url(url).drivername
    except ArgumentError:
        return "url is not a database URL (expected e.g. postgresql://user@host/db)"
    if isinstance(error, ImportError):
        return (
            f"the driver for {scheme!r} is not installed ({_first_line(str(error))}): use "
            "postgresql://, mysql://, mariadb:// or sqlite://, which get asyncpg, aiomysql or "
            "aiosqlite"
        )
    if isinstance(error, InvalidRequestError):
        return (
            f"{scheme!r} is not an async driver: use postgresql://, mysql://, mariadb:// or "
            "sqlite://, which get asyncpg, aiomysql or aiosqlite"
        )
    if isinstance(error, NoSuchModuleError):
        return (
            f"no database driver for {scheme!r}: use postgresql://, mysql://, mariadb:// or "
            "sqlite:// (or name an installed async driver, e.g. postgresql+asyncpg://)"
        )
    return f"cannot use url with {scheme!r}: {_first_line(str(error))}"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
