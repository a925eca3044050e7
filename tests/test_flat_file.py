"""The flat-file source: encodings, mapping profiles, account layouts, once-per-file reading."""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.flat_file import FlatFileSource, _decimal
from hub import sdk

HEADER = "Run,Date,Emp,Line,Code,Amount,Account,Modified"


#: The stream profile of these tests' pay lines (columns named as in `HEADER`).
PAY_LINES = {
    "record": "payroll.pay_line",
    "pattern": "*.csv",
    "account_column": "Account",
    "columns": {
        "pay_run_id": "Run",
        "pay_date": "Date",
        "employee_id": "Emp",
        "line_number": "Line",
        "code": "Code",
        "amount": "Amount",
        "updated_at": "Modified",
    },
}


def source(folder: Path, **options) -> FlatFileSource:
    raw = {"folder": str(folder), "streams": {"pay_lines": PAY_LINES}, **options}
    context = sdk.ConnectionContext(connection="test", member="eastview", base_dir=str(folder))
    return FlatFileSource(FlatFileSource.parse_options(raw), {}, context)


async def read_all(connector: FlatFileSource, state=None) -> list[sdk.Batch]:
    return [batch async for batch in connector.read("pay_lines", state)]


def line(n: int, amount: str = "100.00", account: str = "A2110.150-00-0000") -> str:
    return f"R1,2026-10-15,E{n},{n},REG,{amount},{account},2026-10-15T18:30:00Z"


async def test_a_utf8_file_with_a_byte_order_mark_maps_to_pay_lines(tmp_path):
    (tmp_path / "a.csv").write_text(
        "\n".join([HEADER, line(1), line(2, "(12.50)")]) + "\n", encoding="utf-8-sig"
    )

    batches = await read_all(source(tmp_path))

    records = [r for b in batches for r in b.records]
    assert records[0].pay_run_id == "R1"
    assert records[0].pay_date == date(2026, 10, 15)
    assert records[0].amount == Decimal("100.00")
    assert records[0].account == sdk.AccountCode(
        code="A2110.150-00-0000",
        fund="A",
        function="2110",
        object="150",
        location="00",
        program="0000",
    )
    assert records[0].updated_at == datetime(2026, 10, 15, 18, 30, tzinfo=UTC)
    assert records[1].amount == Decimal("-12.50")
    assert records[1].key == "R1|E2|2"


async def test_a_windows_1252_pipe_delimited_file_keeps_its_accents(tmp_path):
    rows = [
        HEADER.replace(",", "|"),
        "R1|2026-10-15|Peña|1|REG|1,234.56|A2110.150|2026-10-15T18:30:00Z",
    ]
    (tmp_path / "a.csv").write_bytes(("\n".join(rows) + "\n").encode("cp1252"))

    batches = await read_all(source(tmp_path, delimiter="|", encoding="cp1252"))

    [record] = [r for b in batches for r in b.records]
    assert record.employee_id == "Peña"
    assert record.amount == Decimal("1234.56")
    assert record.account.location is None


async def test_the_nces_layout_splits_fund_function_object_location_program(tmp_path):
    (tmp_path / "a.csv").write_text(HEADER + "\n" + line(1, account="10-1000-100-001-100") + "\n")

    batches = await read_all(source(tmp_path, account_layout="nces"))

    [record] = [r for b in batches for r in b.records]
    assert (record.account.fund, record.account.function, record.account.object) == (
        "10",
        "1000",
        "100",
    )
    assert (record.account.location, record.account.program) == ("001", "100")


async def test_a_custom_account_layout_is_a_regular_expression(tmp_path):
    (tmp_path / "a.csv").write_text(HEADER + "\n" + line(1, account="GF/1100/511") + "\n")

    layout = r"(?P<fund>[A-Z]+)/(?P<function>\d{4})/(?P<object>\d{3})"
    batches = await read_all(source(tmp_path, account_layout=layout))

    [record] = [r for b in batches for r in b.records]
    assert (record.account.fund, record.account.function, record.account.object) == (
        "GF",
        "1100",
        "511",
    )


async def test_bad_rows_become_rejects_with_position_reason_and_the_source_row(tmp_path):
    rows = [
        HEADER,
        line(1),
        line(2, amount="abc"),
        "R1,2026-10-15,E3",
        line(4, account="X"),
        line(5).replace("2026-10-15,", "15/10/2026,", 1),
    ]
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")

    batches = await read_all(source(tmp_path))

    assert [r.employee_id for b in batches for r in b.records] == ["E1"]
    rejects = [r for b in batches for r in b.rejects]
    assert [(r.position, r.reason) for r in rejects] == [
        ("a.csv:2", "'abc' is not an amount"),
        ("a.csv:3", "has 3 columns, the header has 8"),
        ("a.csv:4", "account code 'X' does not fit the nys layout"),
        ("a.csv:5", "Invalid RFC3339 encoded date - at `$.pay_date`"),
    ]
    assert rejects[0].raw["Amount"] == "abc"
    assert rejects[0].raw["Emp"] == "E2"


async def test_a_validation_failure_keeps_the_source_row(tmp_path):
    (tmp_path / "a.csv").write_text(HEADER + "\n" + line(1).replace(",1,REG", ",one,REG") + "\n")

    batches = await read_all(source(tmp_path))

    [reject] = [r for b in batches for r in b.rejects]
    assert reject.position == "a.csv:1"
    assert reject.reason == "Expected `int`, got `str` - at `$.line_number`"
    assert reject.raw["Line"] == "one"


async def test_a_finished_file_is_not_read_again_and_a_changed_one_is(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("\n".join([HEADER, line(1), line(2)]) + "\n")
    connector = source(tmp_path)
    state = (await read_all(connector))[-1].state

    assert await read_all(connector, state) == []

    path.write_text("\n".join([HEADER, line(1), line(2), line(3)]) + "\n")
    again = await read_all(connector, state)
    assert [r.employee_id for b in again for r in b.records] == ["E1", "E2", "E3"]


async def test_a_run_resumes_in_the_middle_of_a_file(tmp_path):
    (tmp_path / "a.csv").write_text("\n".join([HEADER, *(line(n) for n in range(1, 8))]) + "\n")
    connector = source(tmp_path)
    connector.batch_size = 3
    first = await read_all(connector)
    assert [len(b.records) for b in first] == [3, 3, 1, 0]

    resumed = await read_all(connector, first[0].state)

    assert [r.employee_id for b in resumed for r in b.records] == ["E4", "E5", "E6", "E7"]
    assert resumed[-1].state["files"]["a.csv"]["complete"] is True


async def test_a_file_still_being_written_is_left_for_the_next_run(tmp_path):
    (tmp_path / "old.csv").write_text(HEADER + "\n" + line(1) + "\n")
    old = time.time() - 600
    os.utime(tmp_path / "old.csv", (old, old))
    (tmp_path / "new.csv").write_text(HEADER + "\n" + line(2) + "\n")

    batches = await read_all(source(tmp_path, settle_seconds=60))

    assert [r.employee_id for b in batches for r in b.records] == ["E1"]
    assert "new.csv" not in batches[-1].state["files"]


async def test_a_missing_column_is_a_configuration_error_naming_it(tmp_path):
    (tmp_path / "a.csv").write_text("Run,Date\nR1,2026-10-15\n")

    with pytest.raises(sdk.ConnectorConfigError, match=r"a\.csv: missing column 'Emp'"):
        await read_all(source(tmp_path))


async def test_replay_maps_a_raw_source_row_again(tmp_path):
    raw = dict(zip(HEADER.split(","), line(9).split(","), strict=True))

    record = source(tmp_path).map_raw("pay_lines", raw)

    assert record.key == "R1|E9|9"


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("1,234.50", Decimal("1234.50")),
        ("$12.00", Decimal("12.00")),
        ("(8.40)", Decimal("-8.40")),
        ("-3", Decimal(-3)),
    ],
)
def test_amounts_are_read_the_way_exports_write_them(text, amount):
    assert _decimal(text) == amount


@pytest.mark.parametrize("text", ["NaN", "-Infinity", "1e999999999", "sNaN", "1e-40"])
def test_what_no_amount_is_is_refused(text):
    """Found by the fuzz suite: Decimal reads these, and a record carried them to the ledger."""
    with pytest.raises(ValueError, match="is not an amount"):
        _decimal(text)


async def test_datetimes_without_an_offset_are_read_in_the_profiles_time_zone(tmp_path):
    (tmp_path / "a.csv").write_text(
        HEADER + "\n" + line(1).replace("2026-10-15T18:30:00Z", "10/15/2026 14:30") + "\n"
    )
    connector = source(tmp_path)
    profile = connector.config.streams["pay_lines"]
    options = FlatFileSource.parse_options(
        {
            "folder": str(tmp_path),
            "streams": {
                "pay_lines": {
                    "record": profile.record,
                    "account_column": "Account",
                    "columns": dict(profile.columns),
                    "datetime_format": "%m/%d/%Y %H:%M",
                    "timezone": "America/New_York",
                }
            },
        }
    )
    connector = FlatFileSource(options, {}, connector.context)

    [record] = [r for b in await read_all(connector) for r in b.records]

    assert record.updated_at == datetime(2026, 10, 15, 18, 30, tzinfo=UTC)


async def test_a_misspelled_account_layout_is_a_configuration_error(tmp_path):
    (tmp_path / "a.csv").write_text(HEADER + "\n" + line(1) + "\n")

    with pytest.raises(
        sdk.ConnectorConfigError, match="unknown account layout 'nsy': use nys, nces or a"
    ):
        await read_all(source(tmp_path, account_layout="nsy"))


async def test_a_file_in_the_wrong_encoding_is_an_error_naming_file_and_encoding(tmp_path):
    (tmp_path / "a.csv").write_bytes(
        (HEADER + "\n" + line(1).replace("E1", "Peña") + "\n").encode("cp1252")
    )

    with pytest.raises(
        sdk.ConnectorConfigError, match=r"a\.csv is not utf-8-sig: byte 63 cannot be decoded"
    ):
        await read_all(source(tmp_path))


async def test_check_finds_a_mapped_column_missing_from_the_newest_export(tmp_path):
    (tmp_path / "a.csv").write_text(HEADER.replace("Amount", "Amt") + "\n")

    with pytest.raises(sdk.ConnectorConfigError, match=r"a\.csv: missing column 'Amount'"):
        await source(tmp_path).check()
