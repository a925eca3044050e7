"""The flat-file destination: records written as CSV, pipe-delimited or fixed-width files in the
profile's formats and encoding, each batch one file published atomically and named by its
content, so a retried batch replaces its copy instead of duplicating lines."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.flat_file import FlatFileConnector
from hub import sdk
from hub.apply import apply
from hub.config import load_config
from hub.engine.run import run_route
from hub.model.payroll import PayLine

NYS = sdk.account_layout("nys")
NCES = sdk.account_layout("nces")


def pay_line(n: int, name: str = "Muñoz, José", amount: str = "1234.50", **more) -> PayLine:
    return PayLine(
        pay_run_id="EA-20",
        employee_id=f"E{n:04d}",
        line_number=n,
        pay_date=date(2026, 10, 15),
        code="REG",
        amount=Decimal(amount),
        account=more.pop("account", NYS.parse("A2110.150-00-0000")),
        employee_name=name,
        updated_at=datetime(2026, 10, 15, 22, 30, tzinfo=UTC),
        **more,
    )


def connector(folder: Path, profile: dict, **options) -> FlatFileConnector:
    raw = {"folder": str(folder), "streams": {"pay_lines": profile}, **options}
    context = sdk.ConnectionContext(connection="out", member="eastview", base_dir=str(folder))
    return FlatFileConnector(FlatFileConnector.parse_options(raw), {}, context)


CSV_PROFILE = {
    "record": "payroll.pay_line",
    "account_column": "Account",
    "columns": {
        "pay_run_id": "Run",
        "pay_date": "Date",
        "employee_id": "Emp",
        "employee_name": "Name",
        "line_number": "Line",
        "code": "Code",
        "amount": "Amount",
        "updated_at": "Modified",
    },
}
FIXED_PROFILE = {
    "record": "payroll.pay_line",
    "format": "fixed_width",
    "pattern": "*.txt",
    "record_type_column": "1",
    "record_types": ["D"],
    "date_format": "%Y%m%d",
    "datetime_format": "%Y%m%d%H%M",
    "timezone": "America/New_York",
    "implied_decimals": {"amount": 2},
    "account_column": "35-51",
    "columns": {
        "pay_run_id": "2-7",
        "pay_date": "8-15",
        "employee_id": "16-20",
        "line_number": "21-24",
        "code": "25-27",
        "amount": "28-34",
        "employee_name": "52-66",
        "updated_at": "67-78",
    },
}


def batch(*records: PayLine, generation: int = 3) -> sdk.Batch:
    return sdk.Batch(records=list(records), state={}, member="eastview", generation=generation)


async def test_a_batch_becomes_one_csv_file_named_by_its_content(tmp_path):
    destination = connector(tmp_path, CSV_PROFILE)

    result = await destination.write("pay_lines", batch(pay_line(1), pay_line(2)), "eastview")

    assert (result.written, result.rejects) == (2, [])
    [written] = list(tmp_path.iterdir())
    assert re.fullmatch(r"pay_lines_eastview_3_[0-9a-f]{16}\.csv", written.name)
    data = written.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # utf-8-sig, the default encoding, writes the mark
    assert data.decode("utf-8-sig").split("\r\n") == [
        "Run,Date,Emp,Name,Line,Code,Amount,Modified,Account",
        'EA-20,2026-10-15,E0001,"Muñoz, José",1,REG,1234.50,2026-10-15T22:30:00+00:00,'
        "A2110.150-00-0000",
        'EA-20,2026-10-15,E0002,"Muñoz, José",2,REG,1234.50,2026-10-15T22:30:00+00:00,'
        "A2110.150-00-0000",
        "",
    ]


async def test_writing_the_same_batch_again_replaces_its_file_and_another_batch_adds_one(tmp_path):
    destination = connector(tmp_path, CSV_PROFILE)
    first = batch(pay_line(1), pay_line(2))

    await destination.write("pay_lines", first, "eastview")
    await destination.write("pay_lines", first, "eastview")
    once = sorted(p.name for p in tmp_path.iterdir())
    await destination.write("pay_lines", batch(pay_line(3)), "eastview")

    assert len(once) == 1
    files = sorted(tmp_path.iterdir())
    assert len(files) == 2
    lines = [line for f in files for line in f.read_text("utf-8-sig").splitlines()[1:]]
    assert sorted(line.split(",")[2] for line in lines) == ["E0001", "E0002", "E0003"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


async def test_pipe_delimited_windows_1252_with_us_dates_and_local_times(tmp_path):
    profile = {
        **CSV_PROFILE,
        "date_format": "%m/%d/%Y",
        "datetime_format": "%m/%d/%Y %H:%M",
        "timezone": "America/New_York",
    }
    destination = connector(tmp_path, profile, delimiter="|", encoding="cp1252")

    await destination.write("pay_lines", batch(pay_line(1, "O\u2019Brien \u2013 Zoë")), "x")

    [written] = list(tmp_path.iterdir())
    assert written.read_bytes().split(b"\r\n")[1] == (
        b"EA-20|10/15/2026|E0001|O\x92Brien \x96 Zo\xeb|1|REG|1234.50|10/15/2026 18:30|"
        b"A2110.150-00-0000"
    )


async def test_fixed_width_lines_with_implied_decimals_read_back_as_the_same_records(tmp_path):
    destination = connector(tmp_path, FIXED_PROFILE, encoding="cp1252")
    records = [pay_line(1, "Zoë Park"), pay_line(12, "Ann Lee", amount="-45.5")]

    await destination.write("pay_lines", batch(*records), "eastview")

    [written] = list(tmp_path.iterdir())
    assert written.name.endswith(".txt")
    assert written.read_bytes().decode("cp1252").split("\r\n") == [
        "DEA-20 20261015E00010001REG0123450A2110.150-00-0000Zoë Park       202610151830",
        "DEA-20 20261015E00120012REG-004550A2110.150-00-0000Ann Lee        202610151830",
        "",
    ]
    read = [r async for b in destination.read("pay_lines", None) for r in b.records]
    assert read == [
        PayLine(**{**_fields(r), "amount": r.amount.quantize(Decimal("0.01"))}) for r in records
    ]


def _fields(record: PayLine) -> dict:
    return {f: getattr(record, f) for f in record.__struct_fields__}


async def test_an_nces_account_is_written_in_the_nces_layout(tmp_path):
    destination = connector(tmp_path, CSV_PROFILE, account_layout="nces")
    account = NCES.parse("10-1000-100-001-100")

    await destination.write("pay_lines", batch(pay_line(1, account=account)), "eastview")

    [written] = list(tmp_path.iterdir())
    assert written.read_text("utf-8-sig").splitlines()[1].endswith(",10-1000-100-001-100")


async def test_records_that_cannot_be_written_are_refused_with_the_reason(tmp_path):
    destination = connector(tmp_path, FIXED_PROFILE, encoding="cp1252")
    records = [
        pay_line(1),
        pay_line(2, "Łukasz Nowak"),
        pay_line(3, "Bartholomew Featherstonehaugh"),
        pay_line(4, amount="0.125"),
        pay_line(5, account=NCES.parse("10-1000-100")),
    ]

    result = await destination.write("pay_lines", batch(*records), "eastview")

    assert result.written == 1
    assert [(r.position, r.reason) for r in result.rejects] == [
        ("pay_lines:EA-20|E0002|2", "'Ł' cannot be written in cp1252"),
        (
            "pay_lines:EA-20|E0003|3",
            "employee_name 'Bartholomew Featherstonehaugh' does not fit positions 52-66 "
            "(15 characters on one line)",
        ),
        ("pay_lines:EA-20|E0004|4", "amount 0.125 has more than 2 decimals"),
        (
            "pay_lines:EA-20|E0005|5",
            "account code '10-1000-100' cannot be written in the nys layout",
        ),
    ]
    assert result.rejects[0].raw["employee_name"] == "Łukasz Nowak"
    [written] = list(tmp_path.iterdir())
    assert len(written.read_bytes().split(b"\r\n")) == 2


@pytest.mark.parametrize(
    ("file_name", "reason"),
    [
        ("{stream}.csv", "file_name must hold {batch}"),
        ("{stream}_{date}_{batch}.csv", "file_name has no placeholder {date}"),
        (".{batch}.csv", "must be a plain name that no reader ignores"),
    ],
)
async def test_a_file_name_that_could_duplicate_or_hide_files_is_refused(
    tmp_path, file_name, reason
):
    destination = connector(tmp_path, {**CSV_PROFILE, "file_name": file_name})

    with pytest.raises(sdk.ConnectorConfigError, match=reason.replace("{", r"\{")):
        await destination.check()


async def test_a_route_writes_a_districts_pay_lines_to_an_outbox_once(runtime, config_dir):
    outbox = config_dir / "outbox"
    outbox.mkdir()
    (config_dir / "connections" / "eastview-outbox.toml").write_text(
        """
connector = "flat_file"
member = "eastview"

[options]
folder = "outbox"
delimiter = "|"
encoding = "cp1252"

[options.streams.pay_lines]
record = "payroll.pay_line"
file_name = "EV_{generation}_{batch}.txt"
account_column = "ACCOUNT"
implied_decimals = { amount = 2 }
columns = { pay_run_id = "RUN", employee_id = "EMP", line_number = "SEQ", pay_date = "DATE", \
code = "CODE", amount = "CENTS" }
"""
    )
    routes = config_dir / "routes.toml"
    routes.write_text(
        routes.read_text()
        + """
[routes.eastview-outbox]
source = "eastview-payroll"
source_stream = "pay_lines"
destination = "eastview-outbox"
destination_stream = "pay_lines"
service = "cbo-payroll"
batch_size = 20
"""
    )
    await apply(runtime.engine, load_config(config_dir))

    first = await run_route(runtime.engine, runtime.plugins, "eastview-outbox")
    second = await run_route(runtime.engine, runtime.plugins, "eastview-outbox")

    assert (first.status, first.counts.written, second.counts.written) == ("succeeded", 51, 0)
    files = sorted(outbox.iterdir())
    assert [f.name[:5] for f in files] == ["EV_1_"] * 3  # batches of 20, 20 and 11
    lines = [line for f in files for line in f.read_text("cp1252").splitlines()[1:]]
    assert len(lines) == len(set(lines)) == 51
    assert "EA-2026-20|E1001|1|2026-10-15|SAL|265000|A2110.150-00-0000" in lines
