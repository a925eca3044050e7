"""The SQL source: a district ERP's reporting view read incrementally, on every database it serves.

SQLite always; PostgreSQL when COHUB_TEST_DATABASE_URL is set and MariaDB when
COHUB_TEST_MARIADB_URL is set (CI sets both). Each test gets a fresh database holding one
reporting table, ``hr_staff_v``, whose ``last_change`` is a naive timestamp in New York time.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Column, Date, DateTime, MetaData, String, Table, select, text, update
from sqlalchemy.engine import make_url

from connectors.sql_source import SqlSource
from connectors.sql_table import SqlTableDestination, StreamTable
from hub import sdk
from hub.apply import apply
from hub.config import check_against_plugins, load_config
from hub.engine.run import run_route
from hub.model.hr import Employee
from hub.plugins import PluginHost
from hub.store.database import create_engine
from hub.store.tables import dead_letters
from tests.databases import BACKENDS, POSTGRES_URL, temporary_database

MARIADB_URL = os.environ.get("COHUB_TEST_MARIADB_URL")

STAFF = Table(
    "hr_staff_v",
    MetaData(),
    Column("emp_no", String(20), primary_key=True),
    Column("first_nm", String(40)),
    Column("last_nm", String(40)),
    Column("hired", Date),
    Column("ssn", String(11)),
    Column("last_change", DateTime, nullable=False),
)

#: The ERP writes New York wall-clock time without an offset.
T1 = datetime(2026, 10, 15, 14, 30)
T2 = datetime(2026, 10, 16, 9, 0)
T3 = datetime(2026, 10, 17, 8, 0)


@pytest.fixture(params=BACKENDS + (["mariadb"] if MARIADB_URL else []))
async def erp_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    """A fresh database holding an empty ``hr_staff_v``: an SQLite file, a PostgreSQL database,
    or a MariaDB database, dropped afterwards."""
    if request.param == "mariadb":
        assert MARIADB_URL is not None
        name = f"cohub_src_{uuid.uuid4().hex[:10]}"
        root = create_engine(MARIADB_URL)
        async with root.begin() as conn:
            await conn.execute(text(f"CREATE DATABASE `{name}`"))
        url = make_url(MARIADB_URL).set(database=name).render_as_string(hide_password=False)
        try:
            await _create_staff(url)
            yield url
        finally:
            async with root.begin() as conn:
                await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            await root.dispose()
        return
    async with temporary_database(request.param, tmp_path) as url:
        await _create_staff(url)
        yield url


async def _create_staff(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(STAFF.metadata.create_all)
    await engine.dispose()


async def insert(url: str, *rows: dict[str, Any]) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(STAFF.insert(), list(rows))
    await engine.dispose()


async def touch(url: str, emp_no: str, when: datetime, **values: Any) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            update(STAFF).where(STAFF.c.emp_no == emp_no).values(last_change=when, **values)
        )
    await engine.dispose()


def _row(emp_no: str, when: datetime, last: str | None = "Anderson", **more: Any) -> dict:
    return {
        "emp_no": emp_no,
        "first_nm": "Maria",
        "last_nm": last,
        "hired": date(2019, 8, 26),
        "ssn": "123-45-6789",
        "last_change": when,
        **more,
    }


STREAM = {
    "table": "hr_staff_v",
    "record": "hr.employee",
    "columns": {
        "employee_id": "emp_no",
        "first_name": "first_nm",
        "last_name": "last_nm",
        "hire_date": "hired",
        "ssn": "ssn",
    },
    "updated_column": "last_change",
    "key_columns": ["emp_no"],
    "timezone": "America/New_York",
}


def source(
    url: str,
    batch_size: int = 100,
    lookback: timedelta = timedelta(0),
    secrets: dict[str, str] | None = None,
    **stream: Any,
) -> SqlSource:
    options = SqlSource.parse_options({"url": url, "streams": {"staff": {**STREAM, **stream}}})
    connector = SqlSource(
        options, secrets or {}, sdk.ConnectionContext(connection="eastview-erp", member="eastview")
    )
    connector.batch_size = batch_size
    connector.lookback = lookback
    return connector


async def read_all(connector: SqlSource, state: sdk.State | None = None) -> list[sdk.Batch]:
    try:
        return [batch async for batch in connector.read("staff", state)]
    finally:
        await connector.close()


def stamp_at(url: str, when: datetime, key: str) -> dict[str, Any]:
    """A position as the state keeps it: SQLite keeps timestamps as text, the others as
    timestamps, naive as the view holds them."""
    if url.startswith("sqlite"):
        return {"updated": f"{when:%Y-%m-%d %H:%M:%S}.000000", "text": True, "keys": [key]}
    return {"updated": when.isoformat(), "text": False, "keys": [key]}


def ids(batches: list[sdk.Batch]) -> list[str]:
    return [r.employee_id for b in batches for r in b.records]


# -- reading ---------------------------------------------------------------------------------------


async def test_a_full_read_delivers_every_row_oldest_change_first_in_batches(erp_url):
    # given three staff rows changed at three times
    await insert(erp_url, _row("E3", T1), _row("E1", T2), _row("E2", T3))

    # when the view is read in batches of two
    batches = await read_all(source(erp_url, batch_size=2))

    # then every row arrives once, by last change, the naive times read as New York time
    assert [len(b.records) for b in batches] == [2, 1]
    assert ids(batches) == ["E3", "E1", "E2"]
    first = batches[0].records[0]
    assert first.updated_at == datetime(2026, 10, 15, 18, 30, tzinfo=UTC)
    assert first.hire_date == date(2019, 8, 26)
    assert first.ssn == "123-45-6789"
    # and the state is the last row's position, the timestamp as the database keeps it
    assert batches[-1].state == {"position": stamp_at(erp_url, T3, "E2"), "recent": {}}


async def test_a_second_read_delivers_only_the_updated_and_inserted_rows(erp_url):
    # given a first read of two rows
    await insert(erp_url, _row("E1", T1), _row("E2", T1))
    first = await read_all(source(erp_url))
    # when E1 changes and E3 is added
    await touch(erp_url, "E1", T2, last_nm="Anderson-Lee")
    await insert(erp_url, _row("E3", T3))

    second = await read_all(source(erp_url), first[-1].state)

    # then only those two come, in order of change
    assert ids(second) == ["E1", "E3"]
    assert second[0].records[0].last_name == "Anderson-Lee"
    # and a third read finds nothing new
    assert ids(await read_all(source(erp_url), second[-1].state)) == []


async def test_rows_sharing_one_timestamp_across_a_batch_boundary_are_neither_lost_nor_doubled(
    erp_url,
):
    # given five rows stamped with the same instant
    await insert(erp_url, *(_row(f"E{n}", T1) for n in range(1, 6)))

    # when a run stops after its first batch of two and the next run resumes from its state
    connector = source(erp_url, batch_size=2)
    reader = connector.read("staff", None)
    first = await anext(reader)
    await reader.aclose()
    await connector.close()
    rest = await read_all(source(erp_url, batch_size=2), first.state)

    # then the remaining three arrive, each once
    assert ids([first]) == ["E1", "E2"]
    assert ids(rest) == ["E3", "E4", "E5"]


async def test_a_lookback_reread_delivers_late_rows_and_nothing_twice_downstream(erp_url, tmp_path):
    # given a read of two rows with a one-hour lookback, delivered to a SQL destination
    await insert(erp_url, _row("E1", T2), _row("E2", T2 + timedelta(minutes=5)))
    hour = timedelta(hours=1)
    first = await read_all(source(erp_url, lookback=hour))
    # when a row stamped before the last one is committed late, and the view is read again
    await insert(erp_url, _row("E3", T2 + timedelta(minutes=4)))
    second = await read_all(source(erp_url, lookback=hour), first[-1].state)
    third = await read_all(source(erp_url, lookback=hour), second[-1].state)

    # then only the late row is delivered again, and the destination holds each row once
    assert ids(first) == ["E1", "E2"]
    assert ids(second) == ["E3"]
    assert ids(third) == []
    destination = SqlTableDestination(
        SqlTableDestination.parse_options({"url": f"sqlite:///{tmp_path / 'cbo.db'}"}),
        {},
        sdk.ConnectionContext(connection="cbo", member=None),
    )
    try:
        written = 0
        for batch in first + second + third:
            if batch.records:
                written += (await destination.write("staff", batch, "eastview")).written
        async with destination.engine.connect() as conn:
            stored = (await conn.execute(text("SELECT record_key FROM staff"))).scalars().all()
    finally:
        await destination.close()
    assert written == 3
    assert sorted(stored) == ["E1", "E2", "E3"]


async def test_a_row_that_does_not_map_becomes_a_dead_letter_with_its_reason(erp_url):
    # given a row without a last name, between two good ones
    await insert(erp_url, _row("E1", T1), _row("E2", T2, last=None), _row("E3", T3))

    batches = await read_all(source(erp_url))

    # then the good rows are delivered and the bad one is rejected with its key and the reason
    assert ids(batches) == ["E1", "E3"]
    [reject] = [r for b in batches for r in b.rejects]
    assert reject.position == "hr_staff_v emp_no=E2"
    assert reject.reason == "Object missing required field `last_name`"
    assert reject.raw["last_change"] == stamp_at(erp_url, T2, "E2")["updated"]
    # and the state moved past it: the next read does not reject it again
    assert await read_all(source(erp_url), batches[-1].state) == []


async def test_map_raw_maps_a_dead_letter_again_as_read_did(erp_url):
    connector = source(erp_url)
    raw = {
        "emp_no": "E2",
        "first_nm": "Maria",
        "last_nm": None,
        "hired": "2019-08-26",
        "ssn": "123-45-6789",
        "last_change": "2026-10-16T09:00:00",
    }

    with pytest.raises(sdk.BadRecord, match="last_name"):
        connector.map_raw("staff", raw)
    record = connector.map_raw("staff", {**raw, "last_nm": "Anderson"})

    assert record.updated_at == datetime(2026, 10, 16, 13, 0, tzinfo=UTC)
    assert connector.pii_columns("staff") == frozenset({"ssn"})


# -- check ----------------------------------------------------------------------------------------


async def test_check_passes_and_streams_lists_the_configured_view(erp_url):
    connector = source(erp_url)
    try:
        await connector.check()
        [spec] = await connector.streams()
    finally:
        await connector.close()
    assert (spec.name, spec.record, spec.readable, spec.writable) == (
        "staff",
        "hr.employee",
        True,
        False,
    )


async def test_check_names_a_missing_view(erp_url):
    connector = source(erp_url, table="no_such_view")
    with pytest.raises(sdk.ConnectorError, match="no table or view no_such_view"):
        try:
            await connector.check()
        finally:
            await connector.close()


async def test_check_names_a_missing_column(erp_url):
    connector = source(erp_url, columns={**STREAM["columns"], "work_email": "email_addr"})
    with pytest.raises(sdk.ConnectorError, match=r"has no column '(hr_staff_v\.)?email_addr'"):
        try:
            await connector.check()
        finally:
            await connector.close()


async def test_check_names_an_unreachable_host_and_an_unknown_driver():
    unreachable = source("postgresql://reader@127.0.0.1:1/erp")
    with pytest.raises(sdk.TransientError, match=r"cannot reach the database at 127\.0\.0\.1:1"):
        try:
            await unreachable.check()
        finally:
            await unreachable.close()
    with pytest.raises(sdk.ConnectorConfigError, match="no database driver for 'oracle13'"):
        await source("oracle13://reader@erp.ric.example/erp").check()


@pytest.mark.skipif(not MARIADB_URL, reason="COHUB_TEST_MARIADB_URL is not set")
async def test_mariadb_check_names_a_wrong_password_and_a_missing_select_grant(tmp_path):
    assert MARIADB_URL is not None
    user = f"ro_{uuid.uuid4().hex[:8]}"
    root = create_engine(MARIADB_URL)
    name = f"cohub_src_{uuid.uuid4().hex[:10]}"
    url = make_url(MARIADB_URL).set(database=name, username=user)
    try:
        async with root.begin() as conn:
            await conn.execute(text(f"CREATE DATABASE `{name}`"))
            await conn.execute(text(f"CREATE TABLE `{name}`.other_v (x INT)"))
            await conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'right-one'"))
            # A grant on another view only: the user may use the database, not hr_staff_v.
            await conn.execute(text(f"GRANT SELECT ON `{name}`.other_v TO '{user}'@'%'"))
        await _create_staff(make_url(MARIADB_URL).set(database=name))
        plain = url.render_as_string(hide_password=False)

        wrong = source(plain, secrets={"password": "wrong-one"})
        with pytest.raises(sdk.AuthError, match=f"refused the password for user '{user}'"):
            try:
                await wrong.check()
            finally:
                await wrong.close()
        denied = source(plain, secrets={"password": "right-one"})
        with pytest.raises(
            sdk.ConnectorError, match=f"user '{user}' may not SELECT from hr_staff_v"
        ):
            try:
                await denied.check()
            finally:
                await denied.close()
    finally:
        async with root.begin() as conn:
            await conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        await root.dispose()


@pytest.mark.skipif(not POSTGRES_URL, reason="COHUB_TEST_DATABASE_URL is not set")
async def test_postgresql_check_names_an_unknown_role_and_a_missing_select_grant(tmp_path):
    async with temporary_database("postgresql", tmp_path) as url:
        await _create_staff(url)
        role = f"ro_{uuid.uuid4().hex[:8]}"
        # trust authentication here: an unknown role stands for refused credentials
        unknown = source(make_url(url).set(username=role).render_as_string(hide_password=False))
        with pytest.raises(sdk.AuthError, match=f"has no user '{role}'"):
            try:
                await unknown.check()
            finally:
                await unknown.close()
        admin = create_engine(url)
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        try:
            denied = source(make_url(url).set(username=role).render_as_string(hide_password=False))
            with pytest.raises(
                sdk.ConnectorError, match=f"user '{role}' may not SELECT from hr_staff_v"
            ):
                try:
                    await denied.check()
                finally:
                    await denied.close()
        finally:
            async with admin.begin() as conn:
                await conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
            await admin.dispose()


# -- through the engine ---------------------------------------------------------------------------


async def test_a_sync_through_the_engine_delivers_rows_dead_letters_and_then_only_changes(
    runtime, config_dir, database_url
):
    # given the ERP's view in the test database (three good rows, one without a last name)
    await _create_staff(database_url)
    await insert(
        database_url,
        _row("E1", T1),
        _row("E2", T1),
        _row("E3", T2, last=None),
        _row("E4", T3),
    )
    columns = "\n".join(f'{field} = "{col}"' for field, col in STREAM["columns"].items())
    (config_dir / "connections" / "eastview-erp.toml").write_text(
        f'connector = "sql_source"\nmember = "eastview"\n\n[options]\nurl = "{database_url}"\n\n'
        '[options.streams.staff]\ntable = "hr_staff_v"\nrecord = "hr.employee"\n'
        'updated_column = "last_change"\nkey_columns = ["emp_no"]\n'
        'timezone = "America/New_York"\n\n'
        f"[options.streams.staff.columns]\n{columns}\n"
    )
    with (config_dir / "cooperative.toml").open("a") as cooperative:
        cooperative.write('\n[services.cbo-hr]\nname = "Central Business Office: HR records"\n')
    with (config_dir / "routes.toml").open("a") as routes:
        routes.write(
            '\n[routes.eastview-staff]\nsource = "eastview-erp"\nsource_stream = "staff"\n'
            'destination = "cbo-payroll-db"\ndestination_stream = "employees"\n'
            'service = "cbo-hr"\nbatch_size = 2\n'
        )
    runtime.plugins = PluginHost([config_dir.parent / "plugins"])
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)

    # when the route runs
    summary = await run_route(runtime.engine, runtime.plugins, "eastview-staff")

    # then three employees arrive and E3 is a dead letter with its reason
    assert summary.status == "succeeded", summary.error
    assert (summary.counts.read, summary.counts.written, summary.counts.rejected) == (4, 3, 1)
    assert await stored_names(database_url) == [
        ("E1", "Anderson"),
        ("E2", "Anderson"),
        ("E4", "Anderson"),
    ]
    async with runtime.engine.connect() as conn:
        letters = (await conn.execute(select(dead_letters.c.position, dead_letters.c.reason))).all()
    assert [tuple(letter) for letter in letters] == [
        ("hr_staff_v emp_no=E3", "Object missing required field `last_name`")
    ]

    # when E2 changes, the next run reads only E2; the one after reads nothing
    await touch(database_url, "E2", T3 + timedelta(hours=1), last_nm="Baker")
    again = await run_route(runtime.engine, runtime.plugins, "eastview-staff")
    idle = await run_route(runtime.engine, runtime.plugins, "eastview-staff")
    assert (again.status, again.counts.read, again.counts.written) == ("succeeded", 1, 1)
    assert (idle.status, idle.counts.read) == ("succeeded", 0)
    assert ("E2", "Baker") in await stored_names(database_url)


async def stored_names(database_url: str) -> list[tuple[str, str]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            table = StreamTable("employees", Employee).table
            rows = await conn.execute(
                select(table.c.record_key, table.c.last_name).order_by(table.c.record_key)
            )
            return [tuple(row) for row in rows]
    finally:
        await engine.dispose()


async def test_a_composite_key_with_a_date_pages_through_ties_on_every_database(erp_url):
    # given four rows at one instant, keyed by (hire date, employee)
    await insert(
        erp_url,
        *(_row(f"E{n}", T1, hired=date(2019, 8, 20 + n % 2)) for n in range(1, 5)),
    )

    # when a run stops after its first batch of two and the next resumes from its state
    connector = source(erp_url, batch_size=2, key_columns=["hired", "emp_no"])
    reader = connector.read("staff", None)
    first = await anext(reader)
    await reader.aclose()
    await connector.close()
    rest = await read_all(
        source(erp_url, batch_size=2, key_columns=["hired", "emp_no"]), first.state
    )

    # then the rows come in (hire date, employee) order, each once
    assert ids([first]) == ["E2", "E4"]
    assert ids(rest) == ["E1", "E3"]


@pytest.mark.skipif(not POSTGRES_URL, reason="COHUB_TEST_DATABASE_URL is not set")
async def test_postgresql_view_in_a_schema_with_a_timestamptz_column_is_read_as_is(tmp_path):
    async with temporary_database("postgresql", tmp_path) as url:
        # given a reporting view in its own schema whose last change is a timestamptz
        await _create_staff(url)
        await insert(url, _row("E1", T1), _row("E2", T2), _row("E3", T2))
        admin = create_engine(url)
        async with admin.begin() as conn:
            await conn.execute(text("CREATE SCHEMA reporting"))
            await conn.execute(
                text(
                    "CREATE VIEW reporting.staff_v AS SELECT emp_no, first_nm, last_nm, hired, ssn,"
                    " last_change AT TIME ZONE 'America/New_York' AS changed_at FROM hr_staff_v"
                )
            )
        await admin.dispose()
        options = {"table": "staff_v", "schema_name": "reporting", "updated_column": "changed_at"}

        # when it is read in batches of two (the zone option does not apply to aware stamps)
        first = await read_all(source(url, batch_size=2, timezone="UTC", **options))
        again = await read_all(source(url, batch_size=2, **options), first[0].state)

        # then the instants are the view's own, and resuming after E1, E2 leaves E3
        assert ids(first) == ["E1", "E2", "E3"]
        assert first[0].records[0].updated_at == datetime(2026, 10, 15, 18, 30, tzinfo=UTC)
        assert ids(again) == ["E3"]


async def test_with_a_lookback_a_resumed_read_skips_the_tied_rows_already_delivered(erp_url):
    # given five rows at one instant, read with a one-hour lookback in batches of two
    await insert(erp_url, *(_row(f"E{n}", T1) for n in range(1, 6)))
    hour = timedelta(hours=1)
    connector = source(erp_url, batch_size=2, lookback=hour)
    reader = connector.read("staff", None)
    first = await anext(reader)
    await reader.aclose()
    await connector.close()

    # when the next run resumes from the first batch's state, then another runs after it
    rest = await read_all(source(erp_url, batch_size=2, lookback=hour), first.state)
    idle = await read_all(source(erp_url, batch_size=2, lookback=hour), rest[-1].state)

    # then the window is read again but only the three not yet delivered come, once
    assert ids([first]) == ["E1", "E2"]
    assert ids(rest) == ["E3", "E4", "E5"]
    assert ids(idle) == []
    assert sorted(rest[-1].state["recent"]) == ["E1", "E2", "E3", "E4", "E5"]


# -- lines aggregated as JSON ----------------------------------------------------------------------

#: How each database aggregates an order's lines into one JSON column of its reporting view.
ORDER_VIEWS = {
    "sqlite": "json_group_array(json_object('line_number', l.line_no, 'description', l.descr, "
    "'quantity', l.qty, 'unit_price', l.price, 'amount', l.amount))",
    "postgresql": "json_agg(json_build_object('line_number', l.line_no, 'description', l.descr, "
    "'quantity', l.qty, 'unit_price', l.price, 'amount', l.amount) ORDER BY l.line_no)",
    "mysql": "JSON_ARRAYAGG(JSON_OBJECT('line_number', l.line_no, 'description', l.descr, "
    "'quantity', l.qty, 'unit_price', l.price, 'amount', l.amount))",
}


async def test_order_lines_aggregated_as_json_become_exact_nested_lines(erp_url):
    backend = make_url(erp_url).get_backend_name()
    engine = create_engine(erp_url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE po_hdr (po_no VARCHAR(20) PRIMARY KEY, "
                                "vendor VARCHAR(20), ordered DATE, total NUMERIC(12,2), "
                                "changed TIMESTAMP)"))  # fmt: skip
        await conn.execute(text("CREATE TABLE po_ln (po_no VARCHAR(20), line_no INTEGER, "
                                "descr VARCHAR(80), qty NUMERIC(12,3), price NUMERIC(12,2), "
                                "amount NUMERIC(12,2))"))  # fmt: skip
        await conn.execute(
            text("INSERT INTO po_hdr VALUES ('PO-1', 'V200', '2026-10-01', 1169.96, "
                 "'2026-10-01 09:00:00'), ('PO-2', 'V200', '2026-10-02', 0.10, "
                 "'2026-10-02 09:00:00')")
        )  # fmt: skip
        await conn.execute(
            text("INSERT INTO po_ln VALUES ('PO-1', 1, 'Chromebook', 4, 289.99, 1159.96), "
                 "('PO-1', 2, 'Stylus', 1, 10.00, 10.00), ('PO-2', 1, 'Clip', 1, 0.10, 0.10)")
        )  # fmt: skip
        await conn.execute(
            text(f"CREATE VIEW po_v AS SELECT h.po_no, h.vendor, h.ordered, h.total, h.changed, "
                 f"{ORDER_VIEWS[backend]} AS order_lines FROM po_hdr h JOIN po_ln l ON l.po_no = h.po_no "
                 "GROUP BY h.po_no, h.vendor, h.ordered, h.total, h.changed")
        )  # fmt: skip
    await engine.dispose()
    connector = source(
        erp_url,
        table="po_v",
        record="purchasing.purchase_order",
        columns={
            "po_id": "po_no",
            "vendor_id": "vendor",
            "order_date": "ordered",
            "total_amount": "total",
            "lines": "order_lines",
        },
        updated_column="changed",
        key_columns=["po_no"],
    )

    batches = await read_all(connector)

    orders = {r.po_id: r for b in batches for r in b.records}
    assert [b.rejects for b in batches if b.rejects] == []
    first = sorted(orders["PO-1"].lines, key=lambda line: line.line_number)
    assert [(x.quantity, x.unit_price, x.amount) for x in first] == [
        (Decimal(4), Decimal("289.99"), Decimal("1159.96")),
        (Decimal(1), Decimal("10.00"), Decimal("10.00")),
    ]
    assert orders["PO-2"].lines[0].unit_price == Decimal("0.10")
