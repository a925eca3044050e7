"""The canonical records: names, keys, schemas, money as Decimal, PII marks, strict decoding."""

from __future__ import annotations

import typing
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec
import pytest

from hub.model import RECORD_TYPES, Money, Record
from hub.model.hr import Employee
from hub.model.purchasing import Invoice, PurchaseOrder
from hub.model.ticketing import Ticket

DOMAINS = {"payroll", "hr", "accounting", "ticketing", "purchasing"}

UPDATED_AT = "2024-09-03T14:05:00Z"
NCES_ACCOUNT = {"code": "10-1000-100-001", "fund": "10", "function": "1000", "object": "100"}
ORDER_LINE = {
    "line_number": 1,
    "description": "Chromebook, 11.6 in.",
    "supplier_part_id": "CB-116",
    "quantity": "30",
    "unit_of_measure": "EA",
    "unit_price": "249.99",
    "amount": "7499.70",
    "account_code": "10-1000-610-001",
    "contract_id": "COOP-2024-17",
}
INVOICE_LINE = {
    "line_number": 1,
    "po_line_number": 1,
    "quantity": "30",
    "unit_price": "249.99",
    "amount": "7499.70",
}

#: One valid record of every type, as a source would hand it to `msgspec.convert`.
SAMPLES: dict[str, dict[str, Any]] = {
    "accounting.account": {
        "updated_at": UPDATED_AT,
        "code": "10-1000-100-001",
        "account": NCES_ACCOUNT,
        "title": "Instruction, salaries",
    },
    "accounting.budget_line": {
        "updated_at": UPDATED_AT,
        "fiscal_year": 2025,
        "account_code": "10-1000-100-001",
        "account": NCES_ACCOUNT,
        "amount": "1234.56",
    },
    "accounting.journal_entry": {
        "updated_at": UPDATED_AT,
        "entry_id": "JE-1001",
        "line_number": 1,
        "posted_on": "2024-09-03",
        "account": NCES_ACCOUNT,
        "debit": "1234.56",
        "credit": "0.00",
    },
    "hr.assignment": {
        "updated_at": UPDATED_AT,
        "employee_id": "E100",
        "position_id": "P-2110-07",
        "job_class": "teacher",
        "fte": "0.5",
        "salary_step": "MA+30 step 7",
        "salary_amount": "1234.56",
        "start_date": "2024-09-01",
        "account": NCES_ACCOUNT,
    },
    "hr.employee": {
        "updated_at": UPDATED_AT,
        "employee_id": "E100",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "hire_date": "2019-08-26",
        "birth_date": "1980-12-10",
        "ssn": "123-45-6789",
    },
    "payroll.pay_line": {
        "updated_at": UPDATED_AT,
        "pay_run_id": "PR-2024-17",
        "employee_id": "E100",
        "line_number": 1,
        "pay_date": "2024-09-13",
        "code": "REG",
        "hours": "80",
        "rate": "15.432",
        "amount": "1234.56",
        "account": NCES_ACCOUNT,
    },
    "payroll.pay_run": {
        "updated_at": UPDATED_AT,
        "pay_run_id": "PR-2024-17",
        "pay_date": "2024-09-13",
        "period_start": "2024-08-26",
        "period_end": "2024-09-08",
        "gross_amount": "1234.56",
    },
    "purchasing.contract": {
        "updated_at": UPDATED_AT,
        "contract_id": "COOP-2024-17",
        "vendor_id": "V200",
        "title": "Student devices",
        "starts_on": "2024-07-01",
        "ends_on": "2027-06-30",
        "admin_fee_rate": "0.02",
        "category": "technology",
        "prices": [
            {"supplier_part_id": "CB-311", "description": "Chromebook 11", "unit_price": "249.99"}
        ],
    },
    "purchasing.order_acknowledgement": {
        "updated_at": UPDATED_AT,
        "acknowledgement_id": "ACK-5001",
        "po_id": "PO-5001",
        "vendor_id": "V200",
        "acknowledged_on": "2024-09-06",
        "status": "changed",
        "lines": [{"po_line_number": 1, "status": "backordered", "ships_on": "2024-09-30"}],
    },
    "purchasing.ship_notice": {
        "updated_at": UPDATED_AT,
        "shipment_id": "SH-77",
        "po_id": "PO-5001",
        "vendor_id": "V200",
        "shipped_on": "2024-09-12",
        "carrier": "UPSN",
        "tracking_number": "1Z999AA10123456784",
        "lines": [{"po_line_number": 1, "quantity": "30"}],
    },
    "purchasing.invoice": {
        "updated_at": UPDATED_AT,
        "invoice_id": "INV-88",
        "vendor_id": "V200",
        "po_id": "PO-5001",
        "invoice_date": "2024-09-20",
        "due_date": "2024-10-20",
        "lines": [INVOICE_LINE],
        "total_amount": "1234.56",
        "tax_amount": "0.00",
    },
    "purchasing.purchase_order": {
        "updated_at": UPDATED_AT,
        "po_id": "PO-5001",
        "vendor_id": "V200",
        "order_date": "2024-09-05",
        "lines": [ORDER_LINE],
        "total_amount": "1234.56",
    },
    "purchasing.requisition": {
        "updated_at": UPDATED_AT,
        "requisition_id": "RQ-3001",
        "requested_by": "E100",
        "requested_on": "2024-09-04",
        "lines": [ORDER_LINE],
        "total_amount": "1234.56",
    },
    "purchasing.vendor": {
        "updated_at": UPDATED_AT,
        "vendor_id": "V200",
        "name": "Acme Education Supply",
        "tax_id": "12-3456789",
    },
    "ticketing.comment": {
        "updated_at": UPDATED_AT,
        "ticket_id": "T-42",
        "comment_id": "C-1",
        "author": "helpdesk",
        "body": "Replaced the projector lamp.",
        "created_at": "2024-09-03T13:00:00Z",
    },
    "ticketing.ticket": {
        "updated_at": UPDATED_AT,
        "ticket_id": "T-42",
        "requester": "E100",
        "priority": 2,
        "status": "in_progress",
        "subject": "Projector in room 114 is dark",
        "opened_at": "2024-09-03T12:00:00Z",
        "external_ids": {"servicenow": "INC0012345"},
    },
}

#: Every money field of every record, nested lines as ``field.child``.
MONEY_FIELDS: dict[str, set[str]] = {
    "accounting.account": set(),
    "accounting.budget_line": {"amount"},
    "accounting.journal_entry": {"debit", "credit"},
    "hr.assignment": {"salary_amount"},
    "hr.employee": set(),
    "payroll.pay_line": {"amount"},
    "payroll.pay_run": {"gross_amount", "net_amount"},
    "purchasing.contract": {"prices.unit_price"},
    "purchasing.order_acknowledgement": {"lines.unit_price"},
    "purchasing.ship_notice": set(),
    "purchasing.invoice": {
        "total_amount",
        "tax_amount",
        "lines.unit_price",
        "lines.amount",
    },
    "purchasing.purchase_order": {"total_amount", "lines.unit_price", "lines.amount"},
    "purchasing.requisition": {"total_amount", "lines.unit_price", "lines.amount"},
    "purchasing.vendor": set(),
    "ticketing.comment": set(),
    "ticketing.ticket": set(),
}

record_types = pytest.mark.parametrize(
    "record_type", list(RECORD_TYPES.values()), ids=list(RECORD_TYPES)
)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _unwrap(hint: Any) -> list[Any]:
    """The types a hint is made of: ``Annotated`` stripped, unions and containers opened."""
    if typing.get_origin(hint) is Annotated:
        return _unwrap(typing.get_args(hint)[0])
    args = typing.get_args(hint)
    if not args:
        return [hint]
    return [hint, *(inner for arg in args for inner in _unwrap(arg))]


def _is_money(hint: Any) -> bool:
    return hint is Money or Money in typing.get_args(hint)


def _money_fields(cls: type, prefix: str = "") -> set[str]:
    found: set[str] = set()
    hints = _hints(cls)
    for field in msgspec.structs.fields(cls):
        hint = hints[field.name]
        if _is_money(hint):
            found.add(prefix + field.name)
        for part in _unwrap(hint):
            if isinstance(part, type) and issubclass(part, msgspec.Struct):
                found |= _money_fields(part, f"{prefix}{field.name}.")
    return found


def _structs(cls: type) -> list[type]:
    """`cls` and every struct nested in its fields, each once."""
    found = [cls]
    for struct in found:
        hints = _hints(struct)
        for field in msgspec.structs.fields(struct):
            for part in _unwrap(hints[field.name]):
                is_struct = isinstance(part, type) and issubclass(part, msgspec.Struct)
                if is_struct and part not in found:
                    found.append(part)
    return found


def _field_types(cls: type) -> list[tuple[str, Any]]:
    """Every (``Struct.field``, type) of `cls` and of the structs nested in it."""
    found: list[tuple[str, Any]] = []
    for struct in _structs(cls):
        hints = _hints(struct)
        for field in msgspec.structs.fields(struct):
            name = f"{struct.__name__}.{field.name}"
            found.extend((name, part) for part in _unwrap(hints[field.name]))
    return found


def test_the_registry_holds_exactly_the_sixteen_canonical_records():
    assert list(RECORD_TYPES) == [
        "accounting.account",
        "accounting.budget_line",
        "accounting.journal_entry",
        "hr.assignment",
        "hr.employee",
        "payroll.pay_line",
        "payroll.pay_run",
        "purchasing.contract",
        "purchasing.invoice",
        "purchasing.order_acknowledgement",
        "purchasing.purchase_order",
        "purchasing.requisition",
        "purchasing.ship_notice",
        "purchasing.vendor",
        "ticketing.comment",
        "ticketing.ticket",
    ]


def test_all_five_domains_have_records():
    assert {name.split(".")[0] for name in RECORD_TYPES} == DOMAINS


@record_types
def test_every_record_name_is_domain_dot_kind_in_a_known_domain(record_type: type[Record]):
    domain, _, kind = record_type.record_name.partition(".")
    assert domain in DOMAINS
    assert kind
    assert kind == kind.lower()
    assert "." not in kind


@record_types
def test_every_record_type_has_a_key_of_real_fields_and_updated_at(record_type: type[Record]):
    names = {f.name for f in msgspec.structs.fields(record_type)}
    assert record_type.key_fields
    assert set(record_type.key_fields) <= names
    assert "updated_at" in names
    assert _hints(record_type)["updated_at"] is datetime


@record_types
def test_every_record_and_nested_struct_is_frozen_and_forbids_unknown_fields(
    record_type: type[Record],
):
    for struct in _structs(record_type):
        config = struct.__struct_config__
        assert config.frozen, struct.__name__
        assert config.forbid_unknown_fields, struct.__name__


@record_types
def test_every_record_docstring_opens_with_a_full_sentence(record_type: type[Record]):
    doc = record_type.__doc__ or ""
    first = doc.strip().split("\n\n")[0]
    assert first[0].isupper()
    assert first.rstrip().endswith(".")


@record_types
def test_every_json_schema_carries_record_name_and_key(record_type: type[Record]):
    schema = record_type.json_schema()
    body = schema["$defs"][record_type.__name__]
    assert body["x-record"] == record_type.record_name
    assert body["x-key"] == list(record_type.key_fields)
    assert body["x-version"] == record_type.version
    assert "updated_at" in body["required"]


@record_types
def test_no_field_anywhere_is_typed_float(record_type: type[Record]):
    floats = [name for name, part in _field_types(record_type) if part is float]
    assert floats == []


def test_money_fields_are_exactly_the_expected_ones():
    assert {name: _money_fields(cls) for name, cls in RECORD_TYPES.items()} == MONEY_FIELDS


@record_types
def test_fields_named_amount_or_price_are_money(record_type: type[Record]):
    for struct in _structs(record_type):
        hints = _hints(struct)
        for field in msgspec.structs.fields(struct):
            if field.name in ("amount", "unit_price") or field.name.endswith("_amount"):
                assert _is_money(hints[field.name]), f"{struct.__name__}.{field.name}"


def test_samples_cover_every_record_type():
    assert set(SAMPLES) == set(RECORD_TYPES)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_money_field_decodes_a_json_string_to_the_exact_decimal(name: str):
    record = msgspec.convert(SAMPLES[name], RECORD_TYPES[name])
    for path in MONEY_FIELDS[name]:
        if "." in path:
            parent, child = path.split(".")
            values = [getattr(item, child) for item in getattr(record, parent)]
        else:
            values = [getattr(record, path)]
        for value in values:
            if value is None:
                continue
            assert type(value) is Decimal
            assert value in {
                Decimal("1234.56"),
                Decimal("0.00"),
                Decimal("249.99"),
                Decimal("7499.70"),
            }


def test_money_keeps_every_digit_of_the_source():
    assert msgspec.convert("1234.56", Money) == Decimal("1234.56")
    assert str(msgspec.convert("0.10", Money)) == "0.10"
    line = msgspec.convert(SAMPLES["payroll.pay_line"], RECORD_TYPES["payroll.pay_line"])
    assert line.amount == Decimal("1234.56")
    assert line.hours == Decimal("80")
    assert line.rate == Decimal("15.432")


def test_a_json_number_decodes_to_the_exact_decimal_not_a_float():
    raw = (
        b'{"updated_at": "2024-09-03T14:05:00Z", "po_id": "PO-5001", "vendor_id": "V200",'
        b' "order_date": "2024-09-05", "total_amount": 1234.56, "lines": [{"line_number": 1,'
        b' "description": "Toner", "quantity": 3, "unit_price": 0.1, "amount": 0.30}]}'
    )
    order = msgspec.json.decode(raw, type=PurchaseOrder)
    assert order.total_amount == Decimal("1234.56")
    assert order.lines[0].unit_price == Decimal("0.1")
    assert str(order.lines[0].amount) == "0.30"
    assert order.lines[0].quantity == Decimal("3")


def test_a_record_round_trips_through_json_unchanged():
    invoice = msgspec.convert(SAMPLES["purchasing.invoice"], Invoice)
    assert msgspec.json.decode(msgspec.json.encode(invoice), type=Invoice) == invoice
    assert msgspec.json.encode(invoice).count(b'"1234.56"') == 1


def test_employee_ssn_and_birth_date_are_pii_in_fields_and_schema():
    assert Employee.pii_fields() == {
        "birth_date",
        "ssn",
        "home_address",
        "personal_email",
        "personal_phone",
    }
    properties = Employee.json_schema()["$defs"]["Employee"]["properties"]
    assert properties["ssn"]["x-pii"] is True
    assert properties["birth_date"]["x-pii"] is True
    assert "x-pii" not in properties["work_email"]
    assert "x-pii" not in properties["employee_id"]


def test_employee_birth_date_decodes_to_a_date():
    employee = msgspec.convert(SAMPLES["hr.employee"], Employee)
    assert employee.birth_date == date(1980, 12, 10)
    assert employee.updated_at == datetime(2024, 9, 3, 14, 5, tzinfo=UTC)
    assert employee.key == "E100"


def test_pii_marks_of_payroll_and_vendor_records():
    assert RECORD_TYPES["payroll.pay_line"].pii_fields() == {"ssn", "bank_account"}
    assert RECORD_TYPES["purchasing.vendor"].pii_fields() == {"tax_id", "bank_account"}
    assert RECORD_TYPES["ticketing.ticket"].pii_fields() == set()


@pytest.mark.parametrize("name", list(SAMPLES))
def test_converting_a_dict_with_an_unknown_field_raises(name: str):
    msgspec.convert(SAMPLES[name], RECORD_TYPES[name])
    with pytest.raises(msgspec.ValidationError, match="unknown field `surprise`"):
        msgspec.convert({**SAMPLES[name], "surprise": 1}, RECORD_TYPES[name])


def test_an_unknown_field_on_an_order_line_raises():
    sample = {**SAMPLES["purchasing.purchase_order"], "lines": [{**ORDER_LINE, "colour": "red"}]}
    with pytest.raises(msgspec.ValidationError, match="unknown field `colour`"):
        msgspec.convert(sample, PurchaseOrder)


def test_keys_join_the_key_fields_in_order():
    keys = {name: msgspec.convert(SAMPLES[name], RECORD_TYPES[name]).key for name in SAMPLES}
    assert keys == {
        "accounting.account": "10-1000-100-001",
        "accounting.budget_line": "2025|10-1000-100-001|adopted",
        "accounting.journal_entry": "JE-1001|1",
        "hr.assignment": "E100|P-2110-07|2024-09-01",
        "hr.employee": "E100",
        "payroll.pay_line": "PR-2024-17|E100|1",
        "payroll.pay_run": "PR-2024-17",
        "purchasing.contract": "COOP-2024-17",
        "purchasing.invoice": "V200|INV-88",
        "purchasing.order_acknowledgement": "V200|ACK-5001",
        "purchasing.purchase_order": "PO-5001",
        "purchasing.requisition": "RQ-3001",
        "purchasing.ship_notice": "V200|SH-77",
        "purchasing.vendor": "V200",
        "ticketing.comment": "T-42|C-1",
        "ticketing.ticket": "T-42",
    }


def test_fte_and_admin_fee_rate_are_exact_decimals():
    assignment = msgspec.convert(SAMPLES["hr.assignment"], RECORD_TYPES["hr.assignment"])
    contract = msgspec.convert(SAMPLES["purchasing.contract"], RECORD_TYPES["purchasing.contract"])
    assert assignment.fte == Decimal("0.5")
    assert contract.admin_fee_rate == Decimal("0.02")


@pytest.mark.parametrize("priority", [0, 6])
def test_ticket_priority_outside_one_to_five_is_rejected(priority: int):
    with pytest.raises(msgspec.ValidationError, match="priority"):
        msgspec.convert({**SAMPLES["ticketing.ticket"], "priority": priority}, Ticket)


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("ticketing.ticket", "status", "pending"),
        ("hr.employee", "status", "fired"),
        ("purchasing.purchase_order", "status", "lost"),
        ("payroll.pay_line", "kind", "bonus"),
    ],
)
def test_enumerated_strings_reject_values_outside_their_list(name: str, field: str, value: str):
    with pytest.raises(msgspec.ValidationError, match=field):
        msgspec.convert({**SAMPLES[name], field: value}, RECORD_TYPES[name])


def test_ticket_defaults_are_a_new_moderate_ticket_within_sla():
    ticket = msgspec.convert(
        {
            "updated_at": UPDATED_AT,
            "ticket_id": "T-43",
            "requester": "E101",
            "subject": "Password reset",
            "opened_at": "2024-09-03T12:00:00Z",
        },
        Ticket,
    )
    assert ticket.status == "new"
    assert ticket.priority == 3
    assert ticket.sla_breached is False
    assert ticket.external_ids == {}
