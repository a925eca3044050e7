"""The NACHA PPD destination: files read back by an independent reader (the `ach` package from
PyPI, which slices the records by the NACHA field positions), totals and hashes checked here
from the spec, not from the generator's code."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from ach.parser import Parser
from sqlalchemy import select

from connectors.nacha import NachaOptions, NachaPpd
from hub import sdk
from hub.apply import apply
from hub.config import check_against_plugins, load_config
from hub.engine.replay import replay
from hub.engine.run import run_route
from hub.model.accounting import AccountCode
from hub.model.payroll import PayLine
from hub.store.tables import dead_letters

UPDATED = datetime(2026, 10, 15, 18, 30, tzinfo=UTC)
ACCOUNT = AccountCode(code="A2110.150", fund="A", function="2110", object="150")
# Real check digits: 021000021 (JPMorgan), 011000015 (Federal Reserve Boston), 091000019.
GOOD_ROUTING = "021000021"
ODFI = "091000019"


def options(folder: Path, **changes) -> NachaOptions:
    values = {
        "folder": str(folder),
        "immediate_destination": ODFI,
        "immediate_destination_name": "First Lakes Bank",
        "immediate_origin": "1234567890",
        "immediate_origin_name": "Eastview Central SD",
        "company_name": "Eastview CSD",
        "company_identification": "1234567890",
        "odfi_routing": ODFI,
        "line_ending": "lf",
    } | changes
    return NachaOptions(**values)


def connector(folder: Path, **changes) -> NachaPpd:
    context = sdk.ConnectionContext(connection="eastview-ach", member="eastview")
    return NachaPpd(options(folder, **changes), {}, context)


def line(employee: str, number: int, amount: str, kind: str = "earning", **fields) -> PayLine:
    values = {
        "pay_run_id": "EA-2026-20",
        "employee_id": employee,
        "line_number": number,
        "pay_date": date(2026, 10, 16),
        "code": "SAL" if kind == "earning" else "DED",
        "kind": kind,
        "amount": Decimal(amount),
        "account": ACCOUNT,
        "employee_name": f"Employee {employee}",
        "bank_account": f"{GOOD_ROUTING}:{employee}77",
        "updated_at": UPDATED,
    } | fields
    return PayLine(**values)


async def write(nacha: NachaPpd, records: list[PayLine]) -> sdk.WriteResult:
    return await nacha.write("pay_lines", sdk.Batch(records=records, state={}), "eastview")


def read(path: Path) -> tuple[list[str], dict]:
    """The file's records and what the independent parser makes of them."""
    text = path.read_bytes().decode("ascii")
    records = text.replace("\r\n", "\n").split("\n")
    assert records[-1] == ""  # every record ends with a line end
    return records[:-1], Parser(text.replace("\r\n", "\n")).as_dict()


def aba_valid(routing: str) -> bool:
    d = [int(c) for c in routing]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0


def assert_well_formed(records: list[str], parsed: dict) -> None:
    """The spec's structural rules, checked on the parsed fields."""
    assert all(len(r) == 94 for r in records)
    assert len(records) % 10 == 0
    fc = parsed["file_control"]
    assert int(fc["block_count"]) == len(records) // 10
    padding = records[records.index(next(r for r in records if r.startswith("9"))) + 1 :]
    assert all(r == "9" * 94 for r in padding)
    header = parsed["file_header"]
    assert (header["record_size"], header["blk_factor"], header["format_code"]) == (
        "094",
        "10",
        "1",
    )
    entries = [e["entry_detail"] for b in parsed["batches"] for e in b["entries"]]
    for entry in entries:
        assert aba_valid(entry["recv_dfi_id"] + entry["check_digit"])
    expected_hash = sum(int(e["recv_dfi_id"]) for e in entries) % 10**10
    credits = sum(int(e["amount"]) for e in entries if e["transaction_code"] in ("22", "32"))
    debits = sum(int(e["amount"]) for e in entries if e["transaction_code"] in ("27", "37"))
    for control in (parsed["batches"][0]["batch_control"], fc):
        assert int(control["entry_hash"]) == expected_hash
        assert int(control["credit_amount"]) == credits
        assert int(control["debit_amount"]) == debits
        assert int(control["entadd_count"]) == len(entries)
    assert int(fc["batch_count"]) == len(parsed["batches"]) == 1
    traces = [e["trace_num"] for e in entries]
    assert traces == [ODFI[:8] + str(n).zfill(7) for n in range(1, len(entries) + 1)]


@pytest.mark.parametrize(
    ("employees", "total_records"), [(1, 10), (5, 10), (6, 10), (7, 20), (30, 40)]
)
async def test_file_is_blocked_to_multiples_of_ten(tmp_path, employees, total_records):
    nacha = connector(tmp_path)
    records = [line(f"E{n:03d}", 1, "100.00") for n in range(employees)]

    await write(nacha, records)

    lines, parsed = read(tmp_path / "eastview-EA-2026-20.ach")
    assert len(lines) == total_records
    assert_well_formed(lines, parsed)


async def test_net_pay_and_totals_in_cents(tmp_path):
    nacha = connector(tmp_path)
    records = [
        line("E1", 1, "2650.00"),
        line("E1", 2, "-88.40", "deduction"),
        line("E1", 3, "212.35", "tax"),  # taxes subtract whatever their sign
        line("E1", 4, "400.00", "benefit"),  # employer-paid: not the employee's pay
        line("E2", 1, "1000.10"),
        line("E2", 2, "0.20", "earning"),
    ]

    result = await write(nacha, records)

    lines, parsed = read(tmp_path / "eastview-EA-2026-20.ach")
    entries = [e["entry_detail"] for e in parsed["batches"][0]["entries"]]
    assert [(e["transaction_code"], e["amount"], e["ind_id"].strip()) for e in entries] == [
        ("22", "0000234925", "E1"),
        ("22", "0000100030", "E2"),
    ]
    assert parsed["batches"][0]["batch_control"]["credit_amount"] == "000000334955"
    assert parsed["batches"][0]["batch_header"]["serv_cls_code"] == "220"
    assert parsed["batches"][0]["batch_header"]["std_ent_cls_code"] == "PPD"
    assert parsed["batches"][0]["batch_header"]["entry_desc"] == "PAYROLL   "
    assert parsed["batches"][0]["batch_header"]["eff_ent_date"] == "261016"
    assert entries[0]["dfi_acnt_num"] == "E177".ljust(17)
    assert result.written == 6
    assert_well_formed(lines, parsed)


async def test_entry_hash_keeps_the_last_ten_digits(tmp_path):
    # 200 entries at RDFI 99999999 (plus its check digit) hash to 19,999,999,800: eleven
    # digits, of which the file keeps the last ten.
    routing = next(f"99999999{d}" for d in range(10) if aba_valid(f"99999999{d}"))
    nacha = connector(tmp_path)
    records = [line(f"E{n:03d}", 1, "1.00", bank_account=f"{routing}:{n}") for n in range(200)]

    await write(nacha, records)

    lines, parsed = read(tmp_path / "eastview-EA-2026-20.ach")
    assert 200 * 99999999 == 19_999_999_800
    assert parsed["file_control"]["entry_hash"] == "9999999800"
    assert_well_formed(lines, parsed)


async def test_offset_entry_balances_the_credits(tmp_path):
    nacha = connector(tmp_path, offset_entry=True, offset_account="5550001")
    await write(nacha, [line("E1", 1, "100.00"), line("E2", 1, "50.25")])

    lines, parsed = read(tmp_path / "eastview-EA-2026-20.ach")
    batch = parsed["batches"][0]
    entries = [e["entry_detail"] for e in batch["entries"]]
    assert [(e["transaction_code"], e["amount"]) for e in entries] == [
        ("22", "0000010000"),
        ("22", "0000005025"),
        ("27", "0000015025"),
    ]
    assert entries[-1]["recv_dfi_id"] + entries[-1]["check_digit"] == ODFI
    assert batch["batch_header"]["serv_cls_code"] == "200"
    assert batch["batch_control"]["debit_amount"] == batch["batch_control"]["credit_amount"]
    assert_well_formed(lines, parsed)


async def test_bad_routing_number_leaves_the_employee_out_with_the_reason(tmp_path):
    nacha = connector(tmp_path)
    records = [line("E1", 1, "100.00"), line("E2", 1, "100.00", bank_account="021000022:99")]

    result = await write(nacha, records)

    lines, parsed = read(tmp_path / "eastview-EA-2026-20.ach")
    assert [e["entry_detail"]["ind_id"].strip() for e in parsed["batches"][0]["entries"]] == ["E1"]
    assert result == sdk.WriteResult(
        written=1,
        rejects=[
            sdk.Reject(
                position="pay run EA-2026-20 employee E2 line 1",
                reason="routing number 021000022 has check digit 2, expected 1",
                raw=msgspec.to_builtins(records[1]),
            )
        ],
    )
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["eastview-EA-2026-20.ach"]
    assert_well_formed(lines, parsed)


async def test_every_line_of_a_refused_employee_in_the_batch_is_refused(tmp_path):
    nacha = connector(tmp_path)
    bad = {"bank_account": "021000022:99"}
    records = [line("E2", 1, "100.00", **bad), line("E2", 2, "-10.00", "deduction", **bad)]

    result = await write(nacha, records)

    assert result.written == 0
    assert [r.position for r in result.rejects] == [
        "pay run EA-2026-20 employee E2 line 1",
        "pay run EA-2026-20 employee E2 line 2",
    ]
    assert not (tmp_path / "eastview-EA-2026-20.ach").exists()


async def test_account_numbers_never_reach_the_log(tmp_path, capsys, caplog):
    nacha = connector(tmp_path)
    await write(nacha, [line("E1", 1, "100.00", bank_account="021000022:SECRET4242")])
    await write(nacha, [line("E2", 1, "100.00", bank_account=f"{GOOD_ROUTING}:SECRET4343")])

    captured = capsys.readouterr()
    assert "SECRET" not in captured.out + captured.err + caplog.text


async def test_same_pay_run_rewrites_the_same_bytes(tmp_path):
    records = [line("E1", 1, "100.00"), line("E2", 1, "200.00")]
    await write(connector(tmp_path), records[:1])
    await write(connector(tmp_path), records[1:])
    first = (tmp_path / "eastview-EA-2026-20.ach").read_bytes()

    await write(connector(tmp_path), records)  # delivered again after a crash
    again = (tmp_path / "eastview-EA-2026-20.ach").read_bytes()

    assert again == first
    assert sorted(p.name for p in tmp_path.iterdir()) == [".staging", "eastview-EA-2026-20.ach"]
    assert not list((tmp_path / ".staging").glob("*.tmp"))


async def test_older_redelivery_does_not_overwrite_a_newer_line(tmp_path):
    newer = line("E1", 1, "150.00", updated_at=datetime(2026, 10, 16, tzinfo=UTC))
    await write(connector(tmp_path), [newer])
    await write(connector(tmp_path), [line("E1", 1, "100.00")])

    _, parsed = read(tmp_path / "eastview-EA-2026-20.ach")
    assert parsed["batches"][0]["entries"][0]["entry_detail"]["amount"] == "0000015000"


async def test_names_with_accents_become_upper_case_ascii(tmp_path):
    records = [
        line("E1", 1, "1.00", employee_name="José Ñúñez-Ōtsuka"),
        line("E2", 1, "1.00", employee_name="Zoë Bjørnstad-Müllerová Longname"),
    ]
    await write(connector(tmp_path, line_ending="crlf"), records)

    raw = (tmp_path / "eastview-EA-2026-20.ach").read_bytes()
    assert raw.count(b"\r\n") == 10
    _, parsed = read(tmp_path / "eastview-EA-2026-20.ach")
    names = [e["entry_detail"]["ind_name"] for e in parsed["batches"][0]["entries"]]
    assert names == ["JOSE NUNEZ-OTSUKA     ", "ZOE BJORNSTAD-MULLEROV"]


async def test_employee_without_bank_account_is_paid_by_check(tmp_path):
    await write(connector(tmp_path), [line("E1", 1, "9.00"), line("E2", 1, "9", bank_account=None)])

    _, parsed = read(tmp_path / "eastview-EA-2026-20.ach")
    assert len(parsed["batches"][0]["entries"]) == 1


async def test_check_names_each_bad_option(tmp_path):
    nacha = connector(
        tmp_path / "missing",
        odfi_routing="091000018",
        file_id_modifier="a",
        offset_entry=True,
    )
    with pytest.raises(sdk.ConnectorConfigError) as error:
        await nacha.check()
    assert str(error.value) == (
        "odfi_routing: routing number 091000018 has check digit 8, expected 9; "
        "file_id_modifier: 'a' is not one of A-Z or 0-9; "
        "offset_account: required when offset_entry is true; "
        f"folder: {tmp_path / 'missing'} does not exist"
    )
    await connector(tmp_path).check()


PAYROLL_CSV = """\
PayRunID,PayDate,EmpID,EmpName,LineNo,EarnCode,Type,Amount,Account,Bank,LastModified
EA-2026-21,2026-10-30,E1001,"Anderson, María",1,SAL,earning,2650.00,A2110.150-00-0000,021000021:11112222,2026-10-30T18:30:00Z
EA-2026-21,2026-10-30,E1001,"Anderson, María",2,HLTH,deduction,-88.40,A2110.150-00-0000,021000021:11112222,2026-10-30T18:30:00Z
EA-2026-21,2026-10-30,E1002,"Brooks, Sam",1,SAL,earning,1800.00,A2110.150-00-0000,011000015:3334444:savings,2026-10-30T18:30:00Z
EA-2026-21,2026-10-30,E1003,"Chen, Li",1,SAL,earning,1200.00,A2110.150-00-0000,011000016:5556666,2026-10-30T18:30:00Z
"""

SOURCE = """\
connector = "flat_file"
member = "eastview"
[options]
folder = "direct-deposit/eastview"
account_layout = "nys"
[options.streams.pay_lines]
record = "payroll.pay_line"
pattern = "payroll_*.csv"
account_column = "Account"
[options.streams.pay_lines.columns]
pay_run_id = "PayRunID"
pay_date = "PayDate"
employee_id = "EmpID"
employee_name = "EmpName"
line_number = "LineNo"
code = "EarnCode"
kind = "Type"
amount = "Amount"
bank_account = "Bank"
updated_at = "LastModified"
"""

DESTINATION = """\
connector = "nacha_ppd"
member = "eastview"
[options]
folder = "ach-out"
immediate_destination = "091000019"
immediate_destination_name = "First Lakes Bank"
immediate_origin = "1234567890"
immediate_origin_name = "Eastview Central SD"
company_name = "Eastview CSD"
company_identification = "1234567890"
odfi_routing = "091000019"
"""

ROUTE = """
[routes.eastview-direct-deposit]
source = "eastview-dd-export"
source_stream = "pay_lines"
destination = "eastview-ach"
destination_stream = "pay_lines"
service = "cbo-payroll"
"""


async def configure_route(runtime, config_dir: Path) -> Path:
    """The Eastview direct-deposit route from a payroll export to ACH files; the export folder."""
    export = config_dir / "direct-deposit" / "eastview"
    export.mkdir(parents=True)
    (export / "payroll_2026-10-30.csv").write_text(PAYROLL_CSV, encoding="utf-8")
    (config_dir / "ach-out").mkdir()
    (config_dir / "connections" / "eastview-dd-export.toml").write_text(SOURCE)
    (config_dir / "connections" / "eastview-ach.toml").write_text(DESTINATION)
    with (config_dir / "routes.toml").open("a") as routes:
        routes.write(ROUTE)
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)
    return export


def entries(path: Path) -> list[tuple[str, str, str]]:
    lines, parsed = read(path)
    assert_well_formed([r.rstrip("\r") for r in lines], parsed)
    found = [e["entry_detail"] for e in parsed["batches"][0]["entries"]]
    return [(e["transaction_code"], e["amount"], e["ind_name"].strip()) for e in found]


async def open_dead_letters(runtime) -> list[tuple]:
    async with runtime.engine.connect() as conn:
        query = select(
            dead_letters.c.id, dead_letters.c.side, dead_letters.c.position, dead_letters.c.reason
        ).where(dead_letters.c.status == "open")
        return [tuple(row) for row in await conn.execute(query.order_by(dead_letters.c.id))]


BAD_ROUTING = (
    "refused by destination 'eastview-ach': routing number 011000016 has check digit 6, expected 5"
)


async def test_route_from_payroll_export_to_ach_file(runtime, config_dir):
    await configure_route(runtime, config_dir)

    summary = await run_route(runtime.engine, runtime.plugins, "eastview-direct-deposit")
    again = await run_route(runtime.engine, runtime.plugins, "eastview-direct-deposit")

    counts = summary.counts
    assert (summary.status, counts.read, counts.written, counts.rejected) == (
        "succeeded",
        4,
        3,
        1,
    )
    assert again.status == "succeeded"
    path = config_dir / "ach-out" / "eastview-EA-2026-21.ach"
    assert entries(path) == [
        ("22", "0000256160", "ANDERSON, MARIA"),
        ("32", "0000180000", "BROOKS, SAM"),
    ]
    assert read(path)[1]["file_header"]["file_crt_date"] == "261030"
    assert [letter[1:] for letter in await open_dead_letters(runtime)] == [
        ("destination", "pay run EA-2026-21 employee E1003 line 1", BAD_ROUTING)
    ]
    assert not list((config_dir / "ach-out").glob("*.rejects.json"))


async def test_a_refused_pay_line_replays_once_the_source_corrects_it(runtime, config_dir):
    # given Chen's line refused for a bad routing number
    export = await configure_route(runtime, config_dir)
    await run_route(runtime.engine, runtime.plugins, "eastview-direct-deposit")
    [(letter, *_)] = await open_dead_letters(runtime)

    # when it is replayed as it is, the bank is still refused, with the same reason
    [outcome] = await replay(runtime.engine, runtime.plugins, [letter])
    assert (outcome.replayed, outcome.still_failing) == ([], {letter: BAD_ROUTING})

    # when payroll exports Chen's corrected line and the route runs, Chen is paid
    header = PAYROLL_CSV.splitlines()[0]
    corrected = (
        'EA-2026-21,2026-10-30,E1003,"Chen, Li",1,SAL,earning,1200.00,A2110.150-00-0000,'
        "011000015:5556666,2026-10-31T09:00:00Z"
    )
    (export / "payroll_2026-10-31.csv").write_text(f"{header}\n{corrected}\n", encoding="utf-8")
    fixed = await run_route(runtime.engine, runtime.plugins, "eastview-direct-deposit")
    assert (fixed.status, fixed.counts.written, fixed.counts.rejected) == ("succeeded", 1, 0)
    path = config_dir / "ach-out" / "eastview-EA-2026-21.ach"
    assert [name for _, _, name in entries(path)] == ["ANDERSON, MARIA", "BROOKS, SAM", "CHEN, LI"]

    # then the replay is delivered: the newer, corrected line wins over the refused one
    [outcome] = await replay(runtime.engine, runtime.plugins, [letter])
    assert (outcome.run.status, outcome.replayed, outcome.still_failing) == (
        "succeeded",
        [letter],
        {},
    )
    assert await open_dead_letters(runtime) == []
    assert [name for _, _, name in entries(path)] == ["ANDERSON, MARIA", "BROOKS, SAM", "CHEN, LI"]
