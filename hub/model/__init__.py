"""Canonical records of the five domains, and the registry that names them."""

from __future__ import annotations

from hub.model import accounting, hr, payroll, purchasing, ticketing
from hub.model.accounting import ACCOUNT_LAYOUTS, AccountCode, AccountLayout
from hub.model.base import Money, Pii, Record

RECORD_MODULES = (payroll, hr, accounting, ticketing, purchasing)


def _collect() -> dict[str, type[Record]]:
    found: dict[str, type[Record]] = {}
    for module in RECORD_MODULES:
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Record) and value.record_name:
                found[value.record_name] = value
    return dict(sorted(found.items()))


#: Every canonical record type by name (``payroll.pay_line``).
RECORD_TYPES: dict[str, type[Record]] = _collect()


def record_type(name: str) -> type[Record]:
    """The record type called `name`; an unknown name raises KeyError listing the known ones."""
    try:
        return RECORD_TYPES[name]
    except KeyError:
        raise KeyError(f"unknown record {name!r}; known: {', '.join(RECORD_TYPES)}") from None


__all__ = [
    "ACCOUNT_LAYOUTS",
    "RECORD_TYPES",
    "AccountCode",
    "AccountLayout",
    "Money",
    "Pii",
    "Record",
    "record_type",
]
