"""Payroll records: pay runs and pay lines as a district payroll system exports them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, ClassVar

import msgspec

from hub.model.accounting import AccountCode
from hub.model.base import Money, Pii, Record

EarningKind = Annotated[str, msgspec.Meta(pattern="^(earning|deduction|benefit|tax)$")]


class PayRun(Record, frozen=True, kw_only=True):
    """One payroll run: a pay date and the period it covers."""

    record_name: ClassVar[str] = "payroll.pay_run"
    key_fields: ClassVar[tuple[str, ...]] = ("pay_run_id",)

    pay_run_id: str
    pay_date: date
    period_start: date
    period_end: date
    gross_amount: Money | None = None
    net_amount: Money | None = None
    check_count: int | None = None


class PayLine(Record, frozen=True, kw_only=True):
    """One earning or deduction line of one employee's pay in one pay run.

    `amount` is signed as the payroll system writes it; `hours` and `rate` are absent for flat
    amounts. The account code is the charge account, split into NCES dimensions.
    """

    record_name: ClassVar[str] = "payroll.pay_line"
    key_fields: ClassVar[tuple[str, ...]] = ("pay_run_id", "employee_id", "line_number")

    pay_run_id: str
    employee_id: str
    line_number: int
    pay_date: date
    period_start: date | None = None
    period_end: date | None = None
    code: str
    kind: EarningKind = "earning"
    hours: Decimal | None = None
    rate: Decimal | None = None
    amount: Money
    account: AccountCode
    employee_name: str | None = None
    ssn: Annotated[str, Pii] | None = None
    bank_account: Annotated[str, Pii] | None = None
