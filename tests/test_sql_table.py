"""The SQL destination: upsert by (member, record key), newer wins, on every database it serves."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from connectors.sql_table import SqlTableDestination, StreamTable
from hub import sdk
from hub.model.payroll import PayLine
from hub.store.database import create_engine
from tests.databases import BACKENDS, temporary_database

MARIADB_URL = os.environ.get("COHUB_TEST_MARIADB_URL")


@pytest.fixture(params=BACKENDS + (["mariadb"] if MARIADB_URL else []))
async def destination_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    """Every database the tests reach: SQLite, PostgreSQL when COHUB_TEST_DATABASE_URL is set,
    MariaDB when COHUB_TEST_MARIADB_URL is set (CI sets both)."""
    if request.param == "mariadb":
        yield MARIADB_URL
        return
    async with temporary_database(request.param, tmp_path) as url:
        yield url


def pay_line(n: int, amount: str, updated: datetime, name: str = "Anderson, Maria") -> PayLine:
    return PayLine(
        pay_run_id="EA-2026-20",
        employee_id=f"E{n}",
        line_number=1,
        pay_date=date(2026, 10, 15),
        code="SAL",
        amount=Decimal(amount),
        hours=Decimal("7.5"),
        account=sdk.ACCOUNT_LAYOUTS["nys"].parse("A2110.150-00-0000"),
        employee_name=name,
        updated_at=updated,
    )


@pytest.fixture
async def destination(destination_url: str) -> AsyncIterator[SqlTableDestination]:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    options = SqlTableDestination.parse_options({"url": destination_url, "table_prefix": prefix})
    connector = SqlTableDestination(
        options, {}, sdk.ConnectionContext(connection="cbo", member=None)
    )
    yield connector
    async with connector.engine.begin() as conn:
        for table in connector._tables.values():
            await conn.run_sync(table.table.drop, checkfirst=True)
    await connector.close()


async def stored(connector: SqlTableDestination) -> list[dict]:
    table = connector._tables["pay_lines"].table
    async with connector.engine.connect() as conn:
        rows = await conn.execute(select(table).order_by(table.c.member, table.c.record_key))
        return [dict(row) for row in rows.mappings()]


OCT_15 = datetime(2026, 10, 15, 18, 30, tzinfo=UTC)
OCT_16 = datetime(2026, 10, 16, 9, 0, tzinfo=UTC)


async def test_records_are_stored_with_flattened_columns_and_exact_values(destination):
    batch = sdk.Batch(records=[pay_line(1, "2650.00", OCT_15)], state={})

    result = await destination.write("pay_lines", batch, "eastview")

    assert result.written == 1
    [row] = await stored(destination)
    assert row["member"] == "eastview"
    assert row["record_key"] == "EA-2026-20|E1|1"
    assert row["amount"] == Decimal("2650.00")
    assert row["hours"] == Decimal("7.5")
    assert row["pay_date"] == date(2026, 10, 15)
    assert row["updated_at"] == OCT_15
    assert (
        row["account_code"],
        row["account_fund"],
        row["account_function"],
        row["account_object"],
    ) == (
        "A2110.150-00-0000",
        "A",
        "2110",
        "150",
    )
    assert row["ssn"] is None


async def test_writing_the_same_batch_twice_changes_nothing(destination):
    batch = sdk.Batch(
        records=[pay_line(1, "2650.00", OCT_15), pay_line(2, "10.00", OCT_15)], state={}
    )
    await destination.write("pay_lines", batch, "eastview")
    first = await stored(destination)

    await destination.write("pay_lines", batch, "eastview")

    assert await stored(destination) == first
    assert len(first) == 2


async def test_the_same_key_from_two_members_is_two_rows(destination):
    batch = sdk.Batch(records=[pay_line(1, "2650.00", OCT_15)], state={})

    await destination.write("pay_lines", batch, "eastview")
    await destination.write("pay_lines", batch, "millbrook")

    assert [r["member"] for r in await stored(destination)] == ["eastview", "millbrook"]


async def test_a_newer_record_replaces_the_row_and_an_older_one_does_not(destination):
    await destination.write(
        "pay_lines", sdk.Batch(records=[pay_line(1, "2650.00", OCT_15)], state={}), "eastview"
    )

    await destination.write(
        "pay_lines",
        sdk.Batch(records=[pay_line(1, "2700.00", OCT_16, "Anderson-Lee, Maria")], state={}),
        "eastview",
    )
    await destination.write(
        "pay_lines", sdk.Batch(records=[pay_line(1, "1.00", OCT_15, "Stale")], state={}), "eastview"
    )

    [row] = await stored(destination)
    assert (row["amount"], row["employee_name"], row["updated_at"]) == (
        Decimal("2700.00"),
        "Anderson-Lee, Maria",
        OCT_16,
    )


async def test_check_reaches_the_database_and_streams_lists_its_tables(destination):
    await destination.check()
    await destination.write(
        "pay_lines", sdk.Batch(records=[pay_line(1, "1.00", OCT_15)], state={}), "eastview"
    )

    streams = await destination.streams()

    assert "pay_lines" in [s.name for s in streams]


async def test_an_unreachable_database_is_a_config_error_without_the_password():
    options = SqlTableDestination.parse_options({"url": "postgresql://cbo@127.0.0.1:1/payroll"})
    connector = SqlTableDestination(
        options,
        {"password": "Canary-pw-5531"},
        sdk.ConnectionContext(connection="cbo", member=None),
    )

    with pytest.raises(sdk.ConnectorConfigError) as raised:
        await connector.check()
    await connector.close()

    assert "Canary-pw-5531" not in str(raised.value)
    assert str(raised.value).startswith("cannot reach the database: ")


def test_a_stream_table_is_keyed_by_member_and_record_key():
    table = StreamTable("pay_lines", PayLine)

    assert [c.name for c in table.table.primary_key.columns] == ["member", "record_key"]
    assert table.names[:5] == ["member", "record_key", "updated_at", "pay_run_id", "employee_id"]


async def test_a_plain_database_url_is_given_its_async_driver(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert engine.url.drivername == "sqlite+aiosqlite"
    await engine.dispose()


async def test_a_mapping_field_is_stored_as_json(destination):
    from hub.model.ticketing import Ticket

    ticket = Ticket(
        ticket_id="INC0012345",
        requester="jdoe",
        subject="Projector in room 114",
        opened_at=OCT_15,
        external_ids={"servicenow": "INC0012345", "district": "T-88"},
        updated_at=OCT_15,
    )

    await destination.write("tickets", sdk.Batch(records=[ticket], state={}), "eastview")

    table = destination._tables["tickets"].table
    async with destination.engine.connect() as conn:
        row = (await conn.execute(select(table))).mappings().one()
    assert row["external_ids"] == {"servicenow": "INC0012345", "district": "T-88"}
    assert row["priority"] == 3


async def test_delete_marks_the_members_rows_deleted_once_and_counts_the_keys_found(destination):
    lines = [pay_line(1, "2650.00", OCT_15), pay_line(2, "10.00", OCT_15)]
    batch = sdk.Batch(records=lines, state={})
    await destination.write("pay_lines", batch, "eastview")
    await destination.write("pay_lines", batch, "millbrook")

    found = await destination.delete(
        "pay_lines", ["EA-2026-20|E1|1", "EA-2026-20|E9|1"], "eastview"
    )
    first = await stored(destination)
    again = await destination.delete("pay_lines", ["EA-2026-20|E1|1"], "eastview")

    assert (found, again) == (1, 1)
    assert await stored(destination) == first  # the first mark keeps its time
    marked = [(r["member"], r["record_key"]) for r in first if r["deleted_at"] is not None]
    assert marked == [("eastview", "EA-2026-20|E1|1")]


async def test_a_deleted_record_written_again_is_no_longer_marked_deleted(destination):
    batch = sdk.Batch(records=[pay_line(1, "2650.00", OCT_15)], state={})
    await destination.write("pay_lines", batch, "eastview")
    await destination.delete("pay_lines", ["EA-2026-20|E1|1"], "eastview")

    await destination.write(
        "pay_lines", sdk.Batch(records=[pay_line(1, "2700.00", OCT_16)], state={}), "eastview"
    )

    assert [r["deleted_at"] for r in await stored(destination)] == [None]


async def test_deleting_from_a_stream_never_written_finds_nothing(destination):
    assert await destination.delete("pay_lines", ["EA-2026-20|E1|1"], "eastview") == 0
