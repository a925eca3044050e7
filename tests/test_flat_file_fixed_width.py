"""Fixed-width files: fields at character positions, implied decimals, header and trailer lines,
short lines and bad values as rejects at file:line, resuming mid-file."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.flat_file import FlatFileConnector
from hub import sdk

#: A payroll system's fixed-width export: record type in column 1 (H header, D detail, T trailer).
COLUMNS = {
    "pay_run_id": "2-11",
    "pay_date": "12-19",
    "employee_id": "20-27",
    "line_number": "28-33",
    "code": "34-37",
    "amount": "38-46",
    "employee_name": "64-83",
}
ACCOUNT = "47-63"


def detail(emp: str, line: int, amount: str, name: str, account: str = "A2110.150-00-0000") -> str:
    """A D line: run, date, employee, line, code, amount (9 digits, 2 implied), account, name."""
    return f"DEA-2026-2020261015{emp:<8}{line:06d}REG {amount:>9}{account:<17}{name:<20}"


#: A curly apostrophe and an en dash, Windows-1252 bytes 0x92 and 0x96.
OBRIEN = "O\u2019Brien \u2013 Jr"
HEADER = "H20261015 EASTVIEW CSD PAYROLL EXPORT"
TRAILER = "T000003 000158900"


def connector(folder: Path, **profile) -> FlatFileConnector:
    stream = {
        "record": "payroll.pay_line",
        "format": "fixed_width",
        "pattern": "*.txt",
        "columns": COLUMNS,
        "account_column": ACCOUNT,
        "date_format": "%Y%m%d",
        "implied_decimals": {"amount": 2},
        "record_type_column": "1",
        "record_types": ["D"],
        **profile,
    }
    options = {"folder": str(folder), "encoding": "cp1252", "streams": {"pay_lines": stream}}
    context = sdk.ConnectionContext(connection="fw", member="eastview", base_dir=str(folder))
    return FlatFileConnector(FlatFileConnector.parse_options(options), {}, context)


async def read_all(source: FlatFileConnector, state=None) -> list[sdk.Batch]:
    return [batch async for batch in source.read("pay_lines", state)]


def write(folder: Path, lines: list[str], name: str = "PAY20261015.txt") -> Path:
    path = folder / name
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    return path


async def test_detail_lines_map_to_pay_lines_and_header_and_trailer_are_skipped(tmp_path):
    write(
        tmp_path,
        [
            HEADER,
            "DEA-2026-2020261015E1001   000001REG 000012345A2110.150-00-0000Muñoz, Ana",
            detail("E1002", 2, "000100000", "Zoë Park"),
            detail("E1003", 3, "00004555-", OBRIEN),
            TRAILER,
        ],
    )

    batches = await read_all(connector(tmp_path))

    records = [r for b in batches for r in b.records]
    assert [b.rejects for b in batches] == [[], []]
    first = records[0]
    assert (first.pay_run_id, first.pay_date, first.employee_id) == (
        "EA-2026-20",
        date(2026, 10, 15),
        "E1001",
    )
    assert (first.line_number, first.code, first.amount) == (1, "REG", Decimal("123.45"))
    assert first.employee_name == "Muñoz, Ana"
    assert first.account.code == "A2110.150-00-0000"
    assert (first.account.fund, first.account.function, first.account.object) == (
        "A",
        "2110",
        "150",
    )
    assert [r.amount for r in records] == [Decimal("123.45"), Decimal("1000.00"), Decimal("-45.55")]
    assert [r.employee_name for r in records] == ["Muñoz, Ana", "Zoë Park", OBRIEN]
    assert batches[-1].state["files"]["PAY20261015.txt"]["complete"] is True


async def test_header_and_trailer_lines_can_be_skipped_by_count(tmp_path):
    write(tmp_path, [HEADER, "   (continued)", detail("E1", 1, "000000100", "A"), TRAILER])

    source = connector(
        tmp_path,
        record_type_column=None,
        record_types=[],
        skip_header_lines=2,
        skip_trailer_lines=1,
    )
    records = [r for b in await read_all(source) for r in b.records]

    assert [(r.employee_id, r.amount) for r in records] == [("E1", Decimal("1.00"))]


async def test_a_short_line_and_a_bad_value_are_rejects_at_file_and_line(tmp_path):
    write(
        tmp_path,
        [
            HEADER,
            detail("E1001", 1, "000012345", "Ana"),
            "DEA-2026-2020261015E1002   000002REG 0000",
            detail("E1003", 3, "00012X345", "Bo"),
            detail("E1004", 4, "000000100", "Cy", account="X2110"),
            detail("E1005", 5, "000000100", "Di").replace("20261015", "2026AB15"),
            detail("E1006", 6, "000000100", "Ed"),
            TRAILER,
        ],
    )

    batches = await read_all(connector(tmp_path))

    assert [r.employee_id for b in batches for r in b.records] == ["E1001", "E1006"]
    rejects = [r for b in batches for r in b.rejects]
    assert [(r.position, r.reason) for r in rejects] == [
        ("PAY20261015.txt:3", "line has 41 characters, the required fields reach character 63"),
        ("PAY20261015.txt:4", "'00012X345' is not an amount with 2 implied decimals"),
        ("PAY20261015.txt:5", "account code 'X2110' does not fit the nys layout"),
        ("PAY20261015.txt:6", "time data '2026AB15' does not match format '%Y%m%d'"),
    ]
    assert rejects[0].raw["employee_id"] == "E1002   "
    assert rejects[1].raw["amount"] == "00012X345"
    assert rejects[1].raw["employee_name"].strip() == "Bo"


async def test_a_run_resumes_after_the_last_line_it_delivered(tmp_path):
    lines = [HEADER, *(detail(f"E{n}", n, "000000100", f"N{n}") for n in range(1, 6)), TRAILER]
    write(tmp_path, lines)
    source = connector(tmp_path)
    source.batch_size = 2
    first = await read_all(source)
    assert [len(b.records) for b in first] == [2, 2, 1, 0]
    assert first[0].state["files"]["PAY20261015.txt"]["rows"] == 3  # through line 3

    resumed = await read_all(source, first[0].state)

    assert [r.employee_id for b in resumed for r in b.records] == ["E3", "E4", "E5"]
    assert await read_all(source, resumed[-1].state) == []


async def test_a_dead_letter_of_a_fixed_width_line_replays_by_field_name(tmp_path):
    write(tmp_path, [detail("E1003", 3, "00012X345", "Bo")])
    source = connector(tmp_path)
    [reject] = [r for b in await read_all(source) for r in b.rejects]

    record = source.map_raw("pay_lines", {**reject.raw, "amount": "000012345"})

    assert (record.key, record.amount) == ("EA-2026-20|E1003|3", Decimal("123.45"))
    assert record.updated_at <= datetime.now(UTC)


def test_pii_of_a_fixed_width_stream_is_named_by_field(tmp_path):
    columns = {**COLUMNS, "ssn": "84-92"}

    assert connector(tmp_path, columns=columns).pii_columns("pay_lines") == {"ssn"}


@pytest.mark.parametrize(
    ("positions", "reason"),
    [
        ("0-3", "'0-3' is no range of positions (from 1, first <= last)"),
        ("9-2", "'9-2' is no range of positions (from 1, first <= last)"),
        ("A-C", "'A-C' is not a position like '1-9' or '10'"),
    ],
)
async def test_positions_that_are_none_are_a_configuration_error(tmp_path, positions, reason):
    write(tmp_path, [detail("E1", 1, "000000100", "A")])
    source = connector(tmp_path, columns={**COLUMNS, "code": positions})

    with pytest.raises(sdk.ConnectorConfigError) as error:
        await read_all(source)

    assert str(error.value) == f"stream 'pay_lines': {reason}"


async def test_header_options_on_a_delimited_stream_are_a_configuration_error(tmp_path):
    source = connector(tmp_path, format="delimited", columns={"amount": "Amount"})

    with pytest.raises(sdk.ConnectorConfigError) as error:
        await read_all(source)

    assert str(error.value) == (
        "stream 'pay_lines': record_type_column, skip_header_lines and skip_trailer_lines are "
        'for format = "fixed_width"'
    )
