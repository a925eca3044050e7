"""A stream profile made ready to run: file rows (delimited or fixed width) to canonical records.

Both row readers hand the same `Mapping` lists of cell texts with the file line of each, so the
conversions (dates, amounts, implied decimals, account codes) and the rejects are one code.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from connectors.flat_file.options import StreamProfile
from hub import sdk

#: Folded into one converter per field so the per-row loop does no type dispatch.
Converter = Callable[[str], Any]

#: Maps rows (each a list or tuple of cell texts) at the given file lines.
RowsBuilder = Callable[
    [Sequence[Sequence[str]], Sequence[int]], tuple[list[sdk.Record], list[sdk.Reject]]
]

ISO_DATE = "%Y-%m-%d"

#: Rows parsed and mapped at once (a batch is built of slices this size).
MAP_SLICE = 1000

#: The column name a fixed-width row gives the account code (its other cells are named after
#: the fields they fill, so a dead letter's raw record reads as field names).
FIXED_ACCOUNT = "account"


class Mapping:
    """A stream profile made ready to run: per-field converters, the account layout, the record."""

    def __init__(self, profile: StreamProfile, layout: str, stream: str) -> None:
        try:
            self.record = sdk.record_type(profile.record)
        except KeyError as error:
            raise sdk.ConnectorConfigError(f"stream {stream!r}: {error.args[0]}") from None
        self.profile = profile
        self.layout = sdk.account_layout(layout)
        try:
            ZoneInfo(profile.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise sdk.ConnectorConfigError(
                f"stream {stream!r}: unknown time zone {profile.timezone!r}"
            ) from None
        self.hints = typing.get_type_hints(self.record)
        fields = {f.name for f in msgspec.structs.fields(self.record)}
        unknown = sorted(set(profile.columns) - fields)
        if unknown:
            raise sdk.ConnectorConfigError(
                f"stream {stream!r}: {profile.record} has no field {unknown[0]!r}"
            )
        for field in profile.values:
            if field not in profile.columns:
                raise sdk.ConnectorConfigError(
                    f"stream {stream!r}: values names {field!r}, which is no mapped field"
                )
        for field, places in profile.implied_decimals.items():
            if field not in profile.columns or Decimal not in sdk.field_types(self.hints[field]):
                raise sdk.ConnectorConfigError(
                    f"stream {stream!r}: implied_decimals names {field!r}, which is no mapped "
                    "decimal field"
                )
            if not 0 <= places <= 9:
                raise sdk.ConnectorConfigError(
                    f"stream {stream!r}: implied_decimals.{field} is {places}, not 0 to 9"
                )
        fixed = profile.format == "fixed_width"
        if not fixed and (
            profile.record_type_column or profile.skip_header_lines or profile.skip_trailer_lines
        ):
            raise sdk.ConnectorConfigError(
                f"stream {stream!r}: record_type_column, skip_header_lines and "
                'skip_trailer_lines are for format = "fixed_width"'
            )
        #: Field → the name of its cell in a row: the file's header name, or (fixed width) the
        #: field's own name.
        self.columns = {f: f for f in profile.columns} if fixed else dict(profile.columns)
        self.account_column = (
            (FIXED_ACCOUNT if fixed else profile.account_column) if profile.account_column else None
        )
        #: Cells a record cannot do without: its required fields not given as constants.
        self.required = frozenset(
            f.name for f in msgspec.structs.fields(self.record) if f.required
        ) - set(profile.constants)
        self.converters = {
            name: _translated(
                profile.values.get(name), self._converter(name, self.hints[name], fixed)
            )
            for name in profile.columns
        }

    def _converter(self, field: str, hint: Any, fixed: bool) -> Converter | None:
        kinds = sdk.field_types(hint)
        if datetime in kinds:
            return _Memo(self._datetime_converter())
        if date in kinds:
            if self.profile.date_format == ISO_DATE:
                return _Memo(_iso_date)
            fmt = self.profile.date_format
            return _Memo(lambda text: datetime.strptime(text, fmt).date())
        if Decimal in kinds:
            places = self.profile.implied_decimals.get(field)
            return _decimal if places is None else _implied_decimal(places)
        if int in kinds and fixed:
            return _zero_padded_int  # fixed-width numbers are padded: 000042
        if (
            kinds & {str, typing.Literal}
            and field not in self.record.pii_fields()
            and field not in self.profile.values  # the value table's strings are shared already
        ):
            # Codes, run ids and names repeat down an export: the records of a batch share one
            # string per value instead of each holding the copy its row was parsed into.
            return _Memo(_same_text)
        return None

    def _datetime_converter(self) -> Converter:
        """Datetimes as the export writes them, made aware: naive ones are in the profile's zone."""
        zone = ZoneInfo(self.profile.timezone)
        fmt = self.profile.datetime_format

        def convert(text: str) -> datetime:
            value = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
            return value if value.tzinfo else value.replace(tzinfo=zone)

        return convert

    def compile(self, header: list[str], fallback_updated: datetime, file_name: str) -> RowsBuilder:
        """A function that maps rows of a file with `header` at the given lines to records and
        rejects."""
        index = {name: i for i, name in enumerate(header)}
        missing = [c for c in self.columns.values() if c not in index]
        if self.account_column and self.account_column not in index:
            missing.append(self.account_column)
        if missing:
            raise sdk.ConnectorConfigError(
                f"{file_name}: missing column {missing[0]!r} (has: {', '.join(header)})"
            )
        map_row = _row_mapper(
            [
                (field, index[column], self.converters[field])
                for field, column in self.columns.items()
            ],
            index.get(self.account_column or ""),
            # Districts charge a few hundred account codes over and over: parse each once.
            _Memo(self.layout.parse),
            dict(self.profile.constants),
            None if "updated_at" in self.columns else fallback_updated,
            len(header),
        )

        def reject(line: int, row: Sequence[str], reason: str) -> sdk.Reject:
            return sdk.Reject(
                position=f"{file_name}:{line}",
                reason=reason,
                raw=dict(zip(header, row, strict=False)),
            )

        def build(
            rows: Sequence[Sequence[str]], lines: Sequence[int]
        ) -> tuple[list[sdk.Record], list[sdk.Reject]]:
            early: list[sdk.Reject] = []
            try:
                mapped = [map_row(row) for row in rows]
                kept: Sequence[int] = range(len(rows))
            except (ValueError, InvalidOperation):
                # Some row does not map: go again row by row, setting the bad ones aside.
                mapped, kept = [], []
                for number, row in enumerate(rows):
                    try:
                        mapped.append(map_row(row))
                    except (ValueError, InvalidOperation) as error:
                        early.append(reject(lines[number], row, str(error)))
                    else:
                        kept.append(number)
            if not mapped:
                return [], early
            records, failures = sdk.convert_rows(self.record, mapped)
            for position, reason in failures:
                number = kept[position]
                early.append(reject(lines[number], rows[number], reason))
            return records, early

        return build


def _row_mapper(
    plan: list[tuple[str, int, Converter | None]],
    account: int | None,
    parse_account: _Memo,
    constants: dict[str, str],
    fallback_updated: datetime | None,
    width: int,
) -> Callable[[Sequence[str]], dict[str, Any]]:
    """``map_row(row)``: a file row as the dict of record fields msgspec validates, generated
    as straight-line code (one block per mapped column, each converter called directly), which
    is about a third faster than looping over the plan for every row. An empty cell is left
    out, so the field takes its default or is reported missing. Memoized converters are looked
    up in their dict right there, and an amount tries plain ``Decimal(text)`` first: a Python
    call per cell is a good part of the cost of a row."""
    namespace: dict[str, Any] = {
        "constants": constants,
        "parse_account": parse_account,
        "seen_account": parse_account.seen,
        "fallback_updated": fallback_updated,
        "Decimal": Decimal,
        "InvalidOperation": InvalidOperation,
    }
    lines = [
        "def map_row(row):",
        f"    if len(row) != {width}:",
        f"        raise ValueError(f'has {{len(row)}} columns, the header has {width}')",
        "    out = dict(constants)" if constants else "    out = {}",
    ]
    for number, (field, column, convert) in enumerate(plan):
        lines.append(f"    text = row[{column}].strip()")
        call = f"convert{number}(text)"
        namespace[f"convert{number}"] = convert
        if convert is None:
            lines.append(f"    if text: out[{field!r}] = text")
        elif convert is _decimal:
            # _decimal itself only for the texts Decimal() refuses or the check rejects.
            lines += [
                "    if text:",
                "        try:",
                "            value = Decimal(text)",
                "        except InvalidOperation:",
                f"            value = {call}",
                "        if not (value.is_finite() and -16 < value.adjusted() < 16):",
                f"            value = {call}",
                f"        out[{field!r}] = value",
            ]
        elif isinstance(convert, _Memo):
            # `or`: a falsy answer only goes the long way round, through the memo.
            namespace[f"seen{number}"] = convert.seen
            lines.append(f"    if text: out[{field!r}] = seen{number}.get(text) or {call}")
        else:
            lines.append(f"    if text: out[{field!r}] = {call}")
    if account is not None:
        # An empty account cell leaves the account out: optional on some records (assignments).
        lines.append(f"    text = row[{account}].strip()")
        lines.append("    if text: out['account'] = seen_account.get(text) or parse_account(text)")
    if fallback_updated is not None:
        lines.append("    out['updated_at'] = fallback_updated")
    lines.append("    return out")
    exec("\n".join(lines), namespace)
    return namespace["map_row"]


def _translated(table: dict[str, str] | None, convert: Converter | None) -> Converter | None:
    """`convert` after the profile's value table: the file's code becomes the record's value."""
    if not table:
        return convert
    if convert is None:
        return lambda text: table.get(text, text)
    return lambda text: convert(table.get(text, text))


class _Memo:
    """A converter remembering its answers: an export repeats the same few pay dates,
    timestamps, codes and names on thousands of rows; parsing them is the costliest step per
    row, and one object per value takes a fraction of the memory of one per row. The row mapper
    looks in `seen` itself and calls the memo only on a miss."""

    __slots__ = ("convert", "limit", "seen")

    def __init__(self, convert: Converter, limit: int = 4096) -> None:
        self.convert = convert
        self.limit = limit
        self.seen: dict[str, Any] = {}

    def __call__(self, text: str) -> Any:
        value = self.seen.get(text)
        if value is None:
            if len(self.seen) >= self.limit:
                self.seen.clear()
            value = self.seen[text] = self.convert(text)
        return value


def _same_text(text: str) -> str:
    return text


def _iso_date(text: str) -> date | str:
    """A ``YYYY-MM-DD`` date parsed as msgspec parses it; any other text is left for msgspec's
    validation to reject with the field's name."""
    try:
        return msgspec.convert(text, date)
    except msgspec.ValidationError:
        return text


def _decimal(text: str) -> Decimal:
    """Money as exports write it: ``1,234.50``, ``$12.00``, ``(12.00)`` for a negative; never
    NaN, infinity or an exponent no amount has."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        cleaned = text.replace(",", "").replace("$", "")
        if cleaned.startswith("(") and cleaned.endswith(")"):
            cleaned = "-" + cleaned[1:-1]
        try:
            value = Decimal(cleaned)
        except InvalidOperation:
            raise ValueError(f"{text!r} is not an amount") from None
    if not (value.is_finite() and -16 < value.adjusted() < 16):
        raise ValueError(f"{text!r} is not an amount")
    return value


def _implied_decimal(places: int) -> Converter:
    """Amounts written without a point, as payroll exports pad them: with 2 places,
    ``000012345`` is 123.45; a sign may lead or trail (``00012345-``)."""

    def convert(text: str) -> Decimal:
        digits, sign = text, ""
        if text[0] in "+-":
            sign, digits = text[0], text[1:]
        elif text[-1] in "+-":
            sign, digits = text[-1], text[:-1]
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
            raise ValueError(f"{text!r} is not an amount with {places} implied decimals")
        return Decimal(sign + digits).scaleb(-places)

    return convert


def _zero_padded_int(text: str) -> int:
    """A whole number as a fixed-width file pads it (``000042``); ASCII digits only."""
    digits = text[1:] if text[0] in "+-" else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)
