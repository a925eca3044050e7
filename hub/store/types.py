"""Column types that keep money exact and time zones honest on every database.

SQLite has neither a decimal nor a time-zone-aware type: SQLAlchemy's Numeric goes through float
there, and an aware datetime is stored without its offset. These types fix both, so a value reads
back exactly as it was written on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Numeric, String
from sqlalchemy.types import TypeDecorator, TypeEngine


class ScaledDecimal(TypeDecorator[Decimal]):
    """A Decimal stored as an integer count of 10**-scale units: exact, and SUM() stays exact
    in SQL on every database (the usage ledger sums millions of quantities)."""

    impl = BigInteger
    cache_ok = True

    def __init__(self, scale: int = 6) -> None:
        super().__init__()
        self.scale = scale

    def process_bind_param(self, value: Any, dialect: Any) -> int | None:
        if value is None:
            return None
        scaled = Decimal(value).scaleb(self.scale)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than {self.scale} decimal places")
        return int(scaled)

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(int(value)).scaleb(-self.scale)


class DecimalText(TypeDecorator[Decimal]):
    """A Decimal stored as its exact text (SQLite's stand-in for NUMERIC)."""

    impl = String(64)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else str(Decimal(value))

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(value)


def exact_decimal(precision: int = 19, scale: int = 4) -> TypeEngine[Decimal]:
    """NUMERIC(precision, scale) where the database has it, exact text on SQLite."""
    return Numeric(precision, scale, asdecimal=True).with_variant(DecimalText(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC and read back aware; a naive one is refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} has no time zone")
        value = value.astimezone(UTC)
        # Only PostgreSQL stores the offset; elsewhere the column holds naive UTC.
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
