"""The flat-file row mapper's fast paths (amounts tried as plain Decimal, memos looked up in
place) map and reject exactly as the converters they stand in for."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import msgspec
import pytest

from connectors.flat_file.mapping import Mapping
from connectors.flat_file.options import StreamProfile
from tests.test_flat_file import PAY_LINES

HEADER = ["Run", "Date", "Emp", "Line", "Code", "Hours", "Amount", "Account", "Modified"]
FALLBACK = datetime(2026, 1, 1, tzinfo=UTC)


def build():
    columns = {**PAY_LINES["columns"], "hours": "Hours"}
    profile = msgspec.convert({**PAY_LINES, "columns": columns}, StreamProfile)
    return Mapping(profile, "nys", "pay_lines").compile(HEADER, FALLBACK, "pay.csv")


def row(amount: str = "100.00", hours: str = "", account: str = "A2110.150-00-0000") -> list[str]:
    return ["R1", "2026-10-15", "E1", "1", "REG", hours, amount, account, "2026-10-15T18:30:00Z"]


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("1321.64", Decimal("1321.64")),
        (" -26.50 ", Decimal("-26.50")),
        ("1,234.50", Decimal("1234.50")),
        ("$12.00", Decimal("12.00")),
        ("(8.40)", Decimal("-8.40")),
        ("0", Decimal("0")),
        ("1e15", Decimal("1E+15")),
        ("9999999999999999", Decimal("9999999999999999")),
        ("0.000000000000001", Decimal("1E-15")),
    ],
)
def test_an_amount_maps_to_the_decimal_written(text, amount):
    records, rejects = build()([row(amount=text)], [1])

    assert rejects == []
    assert records[0].amount == amount
    assert str(records[0].amount) == str(amount)


@pytest.mark.parametrize(
    "text", ["NaN", "sNaN", "-Infinity", "1e16", "10000000000000000", "1e-16", "0E-16", "12 00"]
)
def test_what_no_amount_is_is_a_reject_naming_the_cell(text):
    records, rejects = build()([row(), row(amount=text)], [1, 2])

    assert len(records) == 1
    assert [(r.position, r.reason) for r in rejects] == [
        ("pay.csv:2", f"{text!r} is not an amount")
    ]


def test_hours_go_the_same_way_and_an_empty_cell_is_left_out():
    records, rejects = build()([row(hours="80"), row(hours=" 7.5"), row(hours="  ")], [1, 2, 3])

    assert rejects == []
    assert [r.hours for r in records] == [Decimal(80), Decimal("7.5"), None]


def test_repeated_accounts_and_timestamps_map_as_the_first_did():
    records, rejects = build()([row(), row(), row(account=" A2110.150-00-0000 ")], [1, 2, 3])

    assert rejects == []
    assert {r.account.code for r in records} == {"A2110.150-00-0000"}
    assert {r.updated_at for r in records} == {datetime(2026, 10, 15, 18, 30, tzinfo=UTC)}
    assert {r.pay_date for r in records} == {date(2026, 10, 15)}


def test_an_account_off_the_layout_is_a_reject_every_time_it_comes():
    records, rejects = build()([row(account="ZZZ"), row(), row(account="ZZZ")], [1, 2, 3])

    assert len(records) == 1
    assert [(r.position, r.reason) for r in rejects] == [
        ("pay.csv:1", "account code 'ZZZ' does not fit the nys layout"),
        ("pay.csv:3", "account code 'ZZZ' does not fit the nys layout"),
    ]


def test_records_share_one_object_per_repeated_value():
    # Each row parsed from a file holds its own copy of every cell's text.
    rows = [[cell[:1] + cell[1:] for cell in row()] for _ in range(3)]
    assert rows[0][0] is not rows[1][0]

    records, rejects = build()(rows, [1, 2, 3])

    assert rejects == []
    for field in ("pay_run_id", "code", "pay_date", "updated_at", "account"):
        assert len({id(getattr(r, field)) for r in records}) == 1, field
    assert records[0].pay_run_id == "R1" and records[0].pay_date == date(2026, 10, 15)


def test_a_date_that_is_no_date_is_rejected_with_its_field_every_time_it_comes():
    bad = ["R1", "2026-02-30", *row()[2:]]
    records, rejects = build()([bad, row(), bad], [1, 2, 3])

    assert len(records) == 1
    assert [(r.position, r.reason) for r in rejects] == [
        ("pay.csv:1", "Invalid RFC3339 encoded date - at `$.pay_date`"),
        ("pay.csv:3", "Invalid RFC3339 encoded date - at `$.pay_date`"),
    ]
