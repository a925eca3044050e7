"""Accounting records: account codes, journal entries, budget lines.

Account codes follow the dimensions of the NCES handbook *Financial Accounting for Local and State
School Systems* (fund, function, object, location/operational unit, program). Districts write
them in their state's layout; an `AccountLayout` parses one layout into those dimensions, e.g.
New York's uniform system of accounts: ``A2110.150-00-0000`` is fund A (general), function 2110
(teaching, regular school), object 150 (instructional salaries), location 00, local digits 0000 (kept as the program dimension).
"""

from __future__ import annotations

import re
from datetime import date
from typing import ClassVar

import msgspec

from hub.model.base import Money, Record


class AccountCode(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """An account code as written (`code`) and split into NCES dimensions."""

    code: str
    fund: str
    function: str
    object: str
    location: str | None = None
    program: str | None = None


class AccountLayout(msgspec.Struct, frozen=True):
    """A regular expression with named groups ``fund``, ``function``, ``object`` and optionally
    ``location`` and ``program`` that splits one state's account code layout."""

    name: str
    pattern: str

    def parse(self, code: str) -> AccountCode:
        """Split `code`; a code that does not fit the layout raises ValueError naming both."""
        match = _compiled(self.pattern).fullmatch(code.strip())
        if match is None:
            raise ValueError(f"account code {code!r} does not fit the {self.name} layout")
        parts = match.groupdict()
        return AccountCode(
            code=code.strip(),
            fund=parts["fund"],
            function=parts["function"],
            object=parts["object"],
            location=parts.get("location"),
            program=parts.get("program"),
        )


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    if pattern not in _PATTERNS:
        _PATTERNS[pattern] = re.compile(pattern)
    return _PATTERNS[pattern]


#: Layouts known by name; a connection may also give its own pattern.
ACCOUNT_LAYOUTS: dict[str, AccountLayout] = {
    # New York uniform system: fund letter(s), 4-digit function, 3-digit object, then optional
    # 2-digit location and local digits (kept as program), e.g. A2110.150-00-0000.
    "nys": AccountLayout(
        "nys",
        r"(?P<fund>[A-Z]{1,2})(?P<function>\d{4})\.(?P<object>\d{3})"
        r"(?:-(?P<location>\d{2,3}))?(?:-(?P<program>\d{1,4}))?",
    ),
    # NCES dimensions written fund-function-object[-location[-program]], e.g. 10-1000-100-001-100.
    "nces": AccountLayout(
        "nces",
        r"(?P<fund>\d{1,3})-(?P<function>\d{4})-(?P<object>\d{3})"
        r"(?:-(?P<location>\d{1,3}))?(?:-(?P<program>\d{3}))?",
    ),
}


class JournalEntry(Record, frozen=True, kw_only=True):
    """One line of a general-ledger journal entry, debit or credit, NCES-coded."""

    record_name: ClassVar[str] = "accounting.journal_entry"
    key_fields: ClassVar[tuple[str, ...]] = ("entry_id", "line_number")

    entry_id: str
    line_number: int
    posted_on: date
    account: AccountCode
    debit: Money
    credit: Money
    description: str | None = None
    fiscal_year: int | None = None


class BudgetLine(Record, frozen=True, kw_only=True):
    """An adopted or amended budget amount for one account in one fiscal year."""

    record_name: ClassVar[str] = "accounting.budget_line"
    key_fields: ClassVar[tuple[str, ...]] = ("fiscal_year", "account_code", "budget_version")

    fiscal_year: int
    account_code: str
    account: AccountCode
    amount: Money
    budget_version: str = "adopted"


class Account(Record, frozen=True, kw_only=True):
    """A chart-of-accounts entry: an account code with its title."""

    record_name: ClassVar[str] = "accounting.account"
    key_fields: ClassVar[tuple[str, ...]] = ("code",)

    code: str
    account: AccountCode
    title: str
    active: bool = True
