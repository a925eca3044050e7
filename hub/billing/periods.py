"""Billing periods: months, fiscal quarters and fiscal years in the cooperative's calendar.

Usage is billed by month; a quarter or a fiscal year is a run of months. Fiscal years are named
by the calendar year they end in (July 2026 to June 2027 is ``FY2027``), as New York BOCES and
most states name them, and quarters count from the fiscal year's first month (``FY2027-Q1`` is
July to September 2026). Days and months are the cooperative's local ones: a ticket opened at 9 pm
on June 30 in New York belongs to June, and to the fiscal year that ends that day.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

_MONTH = re.compile(r"(\d{4})-(\d{2})")
_FISCAL = re.compile(r"FY(\d{4})(?:-Q([1-4]))?")


class PeriodError(ValueError):
    """A period name or calendar setting that cannot be read; the message says what is expected."""


class Period(msgspec.Struct, frozen=True):
    """A named billing period and the months (``YYYY-MM``) it covers, in order."""

    name: str
    kind: str  # "month", "quarter" or "year"
    months: tuple[str, ...]

    @property
    def first_day(self) -> date:
        return date.fromisoformat(f"{self.months[0]}-01")

    @property
    def last_day(self) -> date:
        """The last day of the period (the day before the month after its last month)."""
        following = date.fromisoformat(f"{next_month(self.months[-1])}-01")
        return date.fromordinal(following.toordinal() - 1)


class FiscalCalendar:
    """The cooperative's time zone and fiscal year start (``MM-01``, July 1 by default)."""

    def __init__(self, timezone: str = "America/New_York", fiscal_year_start: str = "07-01"):
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PeriodError(f"unknown time zone {timezone!r}") from None
        match = re.fullmatch(r"(\d{2})-01", fiscal_year_start)
        if match is None or not 1 <= int(match[1]) <= 12:
            raise PeriodError(
                f"fiscal_year_start {fiscal_year_start!r} must be the first of a month, "
                "as MM-01 (07-01 for July 1)"
            )
        self.start_month = int(match[1])

    def day(self, moment: datetime) -> date:
        """The cooperative's local day of an aware `moment`."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(self.zone).date()

    def fiscal_year(self, month: str) -> int:
        """The fiscal year (named by the year it ends in) that `month` belongs to."""
        year, number = _split(month)
        if self.start_month == 1:
            return year
        return year + 1 if number >= self.start_month else year

    def year(self, fiscal_year: int) -> Period:
        months = self._months(fiscal_year, 0, 12)
        return Period(f"FY{fiscal_year}", "year", months)

    def quarter(self, fiscal_year: int, quarter: int) -> Period:
        months = self._months(fiscal_year, 3 * (quarter - 1), 3)
        return Period(f"FY{fiscal_year}-Q{quarter}", "quarter", months)

    def quarter_of(self, month: str) -> Period:
        fiscal_year = self.fiscal_year(month)
        index = self.year(fiscal_year).months.index(month)
        return self.quarter(fiscal_year, index // 3 + 1)

    def parse(self, name: str) -> Period:
        """``2026-10`` (a month), ``FY2027-Q2`` (a fiscal quarter) or ``FY2027`` (a fiscal year)."""
        if _MONTH.fullmatch(name):
            _split(name)  # checks the month number
            return Period(name, "month", (name,))
        match = _FISCAL.fullmatch(name)
        if match is None:
            raise PeriodError(
                f"unknown period {name!r}: give a month (2026-10), a fiscal quarter (FY2027-Q2) "
                "or a fiscal year (FY2027)"
            )
        fiscal_year = int(match[1])
        if match[2]:
            return self.quarter(fiscal_year, int(match[2]))
        return self.year(fiscal_year)

    def _months(self, fiscal_year: int, skip: int, count: int) -> tuple[str, ...]:
        first_year = fiscal_year if self.start_month == 1 else fiscal_year - 1
        index = first_year * 12 + self.start_month - 1 + skip
        return tuple(_month(index + step) for step in range(count))


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def next_month(month: str) -> str:
    year, number = _split(month)
    return _month(year * 12 + number)


def previous_month(month: str) -> str:
    year, number = _split(month)
    return _month(year * 12 + number - 2)


def _month(index: int) -> str:
    """Month number `index` counted from January of year 0 (0-based) as ``YYYY-MM``."""
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _split(month: str) -> tuple[int, int]:
    match = _MONTH.fullmatch(month)
    if match is None or not 1 <= int(match[2]) <= 12:
        raise PeriodError(f"{month!r} is not a month (YYYY-MM)")
    return int(match[1]), int(match[2])
