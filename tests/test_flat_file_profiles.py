"""Mapping profiles for each kind of export a district sends: pay runs, pay lines, employees,
assignments, journal lines and budget lines, with account codes in the NYS and NCES layouts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from connectors.flat_file import FlatFileConnector
from hub import sdk


async def read(folder: Path, text: str, profile: dict, **options) -> list[sdk.Record]:
    """`text` as the one export in `folder`, read with `profile` as stream `s`."""
    (folder / "export.csv").write_text(text, encoding="utf-8")
    raw = {"folder": str(folder), "streams": {"s": {"pattern": "*.csv", **profile}}, **options}
    context = sdk.ConnectionContext(connection="p", member="eastview", base_dir=str(folder))
    source = FlatFileConnector(FlatFileConnector.parse_options(raw), {}, context)
    batches = [batch async for batch in source.read("s", None)]
    assert [r for b in batches for r in b.rejects] == []
    return [r for b in batches for r in b.records]


async def test_pay_runs(tmp_path):
    [run] = await read(
        tmp_path,
        "Run,Check Date,From,To,Gross,Net,Checks\n"
        'EA-2026-20,10/15/2026,10/01/2026,10/14/2026,"412,118.50",301233.17,212\n',
        {
            "record": "payroll.pay_run",
            "date_format": "%m/%d/%Y",
            "columns": {
                "pay_run_id": "Run",
                "pay_date": "Check Date",
                "period_start": "From",
                "period_end": "To",
                "gross_amount": "Gross",
                "net_amount": "Net",
                "check_count": "Checks",
            },
        },
    )

    assert (run.key, run.pay_date, run.period_start, run.period_end) == (
        "EA-2026-20",
        date(2026, 10, 15),
        date(2026, 10, 1),
        date(2026, 10, 14),
    )
    assert (run.gross_amount, run.net_amount, run.check_count) == (
        Decimal("412118.50"),
        Decimal("301233.17"),
        212,
    )


async def test_pay_lines_with_an_nces_account_and_a_constant_kind(tmp_path):
    [deduction] = await read(
        tmp_path,
        "Run,Date,Emp,Seq,Code,Hours,Rate,Amount,Account\n"
        "EA-20,2026-10-15,E1001,3,TRS,,,(212.40),10-1000-100-001-100\n",
        {
            "record": "payroll.pay_line",
            "account_column": "Account",
            "constants": {"kind": "deduction"},
            "columns": {
                "pay_run_id": "Run",
                "pay_date": "Date",
                "employee_id": "Emp",
                "line_number": "Seq",
                "code": "Code",
                "hours": "Hours",
                "rate": "Rate",
                "amount": "Amount",
            },
        },
        account_layout="nces",
    )

    assert (deduction.key, deduction.kind, deduction.amount) == (
        "EA-20|E1001|3",
        "deduction",
        Decimal("-212.40"),
    )
    assert (deduction.hours, deduction.rate) == (None, None)
    assert deduction.account == sdk.AccountCode(
        code="10-1000-100-001-100",
        fund="10",
        function="1000",
        object="100",
        location="001",
        program="100",
    )


async def test_employees(tmp_path):
    [employee] = await read(
        tmp_path,
        "ID,Last,First,Status,Hired,Email,DOB,Changed\n"
        "HF-201,Muñoz,José,active,2015-08-31,jmunoz@hf.example.org,1984-02-29,"
        "2026-09-03T07:45:00-04:00\n",
        {
            "record": "hr.employee",
            "columns": {
                "employee_id": "ID",
                "last_name": "Last",
                "first_name": "First",
                "status": "Status",
                "hire_date": "Hired",
                "work_email": "Email",
                "birth_date": "DOB",
                "updated_at": "Changed",
            },
        },
    )

    assert (employee.key, employee.last_name, employee.first_name) == ("HF-201", "Muñoz", "José")
    assert (employee.hire_date, employee.birth_date) == (date(2015, 8, 31), date(1984, 2, 29))
    assert employee.updated_at == datetime(2026, 9, 3, 11, 45, tzinfo=UTC)


async def test_assignments_with_and_without_a_charge_account(tmp_path):
    records = await read(
        tmp_path,
        "Emp,Position,Start,Class,FTE,Salary,GL\n"
        'HF-201,T-1102,2015-08-31,Teacher,1.00,"78,994.00",A2110.150-00-0000\n'
        "HF-207,A-0301,2024-01-02,Aide,0.50,,\n",
        {
            "record": "hr.assignment",
            "account_column": "GL",
            "columns": {
                "employee_id": "Emp",
                "position_id": "Position",
                "start_date": "Start",
                "job_class": "Class",
                "fte": "FTE",
                "salary_amount": "Salary",
            },
        },
    )

    teacher, aide = records
    assert (teacher.key, teacher.fte, teacher.salary_amount) == (
        "HF-201|T-1102|2015-08-31",
        Decimal("1.00"),
        Decimal("78994.00"),
    )
    assert (teacher.account.fund, teacher.account.location, teacher.account.program) == (
        "A",
        "00",
        "0000",
    )
    assert (aide.fte, aide.salary_amount, aide.account) == (Decimal("0.50"), None, None)


async def test_journal_lines(tmp_path):
    debit, credit = await read(
        tmp_path,
        "Entry|Line|Posted|Account|DR|CR|Memo|FY\n"
        "MJ-1027|1|10/15/2026|A2110.150-01-0000|14210.00|0.00|Payroll 10/15|2027\n"
        "MJ-1027|2|10/15/2026|A9020.800|0.00|14210.00|TRS share|2027\n",
        {
            "record": "accounting.journal_entry",
            "account_column": "Account",
            "date_format": "%m/%d/%Y",
            "columns": {
                "entry_id": "Entry",
                "line_number": "Line",
                "posted_on": "Posted",
                "debit": "DR",
                "credit": "CR",
                "description": "Memo",
                "fiscal_year": "FY",
            },
        },
        delimiter="|",
    )

    assert (debit.key, debit.posted_on, debit.fiscal_year) == (
        "MJ-1027|1",
        date(2026, 10, 15),
        2027,
    )
    assert (debit.debit, debit.credit, credit.debit, credit.credit) == (
        Decimal("14210.00"),
        Decimal("0.00"),
        Decimal("0.00"),
        Decimal("14210.00"),
    )
    assert (debit.account.location, credit.account.function, credit.account.location) == (
        "01",
        "9020",
        None,
    )
    assert credit.description == "TRS share"


async def test_budget_lines_keep_the_account_code_as_written_and_split(tmp_path):
    [line] = await read(
        tmp_path,
        'FY,Account,Version,Amount\n2027,A2110.150-00-0000,adopted,"1,250,000.00"\n',
        {
            "record": "accounting.budget_line",
            "account_column": "Account",
            "columns": {
                "fiscal_year": "FY",
                "account_code": "Account",
                "budget_version": "Version",
                "amount": "Amount",
            },
        },
    )

    assert (line.key, line.amount) == ("2027|A2110.150-00-0000|adopted", Decimal("1250000.00"))
    assert (line.account.fund, line.account.function, line.account.object) == ("A", "2110", "150")


async def test_a_value_table_turns_an_exports_codes_into_record_values_and_back(tmp_path):
    profile = {
        "record": "hr.employee",
        "columns": {
            "employee_id": "Emp",
            "first_name": "First",
            "last_name": "Last",
            "status": "Status",
            "updated_at": "Changed",
        },
        "values": {"status": {"A": "active", "L": "on_leave", "R": "retired"}},
    }
    people = await read(
        tmp_path,
        "Emp,First,Last,Status,Changed\n"
        "E1,Ana,Ruiz,A,2026-10-01T08:00:00Z\n"
        "E2,Bo,Lind,L,2026-10-01T08:00:00Z\n"
        "E3,Cy,Oda,terminated,2026-10-01T08:00:00Z\n",  # not in the table: taken as it is
        profile,
    )
    assert [p.status for p in people] == ["active", "on_leave", "terminated"]

    out = tmp_path / "out"
    out.mkdir()
    context = sdk.ConnectionContext(connection="w", member="eastview", base_dir=str(out))
    options = {"folder": str(out), "streams": {"s": {**profile, "file_name": "{batch}.csv"}}}
    writer = FlatFileConnector(FlatFileConnector.parse_options(options), {}, context)
    await writer.write("s", sdk.Batch(records=people, state={}, generation=1), "eastview")
    [written] = out.glob("*.csv")
    assert [line.split(",")[3] for line in written.read_text().splitlines()] == [
        "Status",
        "A",
        "L",
        "terminated",
    ]
