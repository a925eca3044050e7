"""Canonical records as file lines: the stream profile read in reverse.

Each mapped field is written to its column (delimited, under a header line) or at its positions
(fixed width), formatted as the profile reads it back: dates in `date_format`, datetimes in
`datetime_format` (in the profile's zone) or ISO 8601, amounts as plain decimals or with
`implied_decimals`, the account code in the connection's layout. A record that cannot be written
(a value too wide for its positions, a character the encoding lacks, an account code the layout
cannot spell) is refused with the reason, never truncated or replaced.
"""

from __future__ import annotations

import codecs
import csv
import typing
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from connectors.flat_file.fixed_width import FixedWidthLayout
from connectors.flat_file.mapping import Mapping
from connectors.flat_file.options import StreamProfile
from hub import sdk

#: Line end of written files (RFC 4180's, which Windows tools expect too).
LINE_END = "\r\n"

Formatter = Callable[[Any], str]


class RecordWriter:
    """Encodes batches of one stream's records as the bytes of one file."""

    def __init__(
        self, profile: StreamProfile, mapping: Mapping, encoding: str, delimiter: str, stream: str
    ) -> None:
        self.profile = profile
        self.layout_of_accounts = mapping.layout
        self.encoding = encoding
        self.record = mapping.record
        hints = typing.get_type_hints(self.record)
        #: (cell name, field, formatter) in file order; the account code is the `account` field.
        self.cells: list[tuple[str, str, Formatter]] = [
            (
                mapping.columns[field],
                field,
                self._coded(field, self._formatter(field, hints[field])),
            )
            for field in profile.columns
        ]
        if mapping.account_column:
            self.cells = [c for c in self.cells if c[0] != mapping.account_column]
            self.cells.append((mapping.account_column, "account", self._account_text))
        self.fixed = FixedWidthLayout(profile, stream) if profile.format == "fixed_width" else None
        self.delimiter = delimiter
        #: Field → how its text fills its positions (fixed width).
        self.align = {field: self._alignment(field, hints[field]) for field in profile.columns}
        self.align["account"] = str.ljust

    def _formatter(self, field: str, hint: Any) -> Formatter:
        kinds = sdk.field_types(hint)
        profile = self.profile
        if datetime in kinds:
            fmt, zone = profile.datetime_format, ZoneInfo(profile.timezone)
            if fmt is None:
                return datetime.isoformat
            return lambda value: value.astimezone(zone).strftime(fmt)
        if date in kinds:
            return lambda value: value.strftime(profile.date_format)
        if Decimal in kinds:
            places = profile.implied_decimals.get(field)
            if places is None:
                return lambda value: format(value, "f")
            return _implied(field, places)
        if bool in kinds:
            return lambda value: "true" if value else "false"
        return str

    def _coded(self, field: str, formatter: Formatter) -> Formatter:
        """`formatter`, then the file's code for the text where the profile's value table has
        one (the table read the other way round)."""
        table = {value: code for code, value in self.profile.values.get(field, {}).items()}
        if not table:
            return formatter
        return lambda value: table.get(text := formatter(value), text)

    def _account_text(self, account: sdk.AccountCode) -> str:
        return account_text(self.layout_of_accounts, account)

    def encode(self, records: list[sdk.Record]) -> tuple[bytes, int, list[tuple[sdk.Record, str]]]:
        """(the file's bytes, records written, (record, reason) of those refused)."""
        encoder = codecs.getincrementalencoder(self.encoding)()
        out = [encoder.encode("")]  # a byte-order mark, once, if the encoding has one
        refused: list[tuple[sdk.Record, str]] = []
        line_of = self._fixed_line if self.fixed else self._delimited_line()
        if not self.fixed:
            out.append(encoder.encode(self._delimited_line()([name for name, *_ in self.cells])))
        written = 0
        for record in records:
            try:
                texts = [
                    "" if (value := getattr(record, field)) is None else format_value(value)
                    for _, field, format_value in self.cells
                ]
                out.append(encoder.encode(line_of(texts)))
            except UnicodeEncodeError as error:
                bad = error.object[error.start : error.end]
                refused.append((record, f"{bad!r} cannot be written in {self.encoding}"))
            except ValueError as error:
                refused.append((record, str(error)))
            else:
                written += 1
        return b"".join(out), written, refused

    def _delimited_line(self) -> Callable[[list[str]], str]:
        line = _Line()
        writer = csv.writer(line, delimiter=self.delimiter, lineterminator=LINE_END)

        def delimited(texts: list[str]) -> str:
            writer.writerow(texts)
            return line.text

        return delimited

    def _fixed_line(self, texts: list[str]) -> str:
        layout = self.fixed
        assert layout is not None
        chars = [" "] * layout.width
        if layout.record_type is not None:
            chars[layout.record_type] = sorted(layout.record_types)[0].ljust(
                layout.record_type.stop - layout.record_type.start
            )
        for (name, field, _), text in zip(self.cells, texts, strict=True):
            where = layout.slices[name]
            size = where.stop - where.start
            if len(text) > size or "\n" in text or "\r" in text:
                raise ValueError(
                    f"{field} {text!r} does not fit positions {where.start + 1}-{where.stop} "
                    f"({size} characters on one line)"
                )
            chars[where] = self.align[field](text, size)
        return "".join(chars) + LINE_END

    def _alignment(self, field: str, hint: Any) -> Callable[[str, int], str]:
        """Numbers right-aligned (zero-padded when their decimals are implied or they are whole
        numbers), everything else left-aligned, as fixed-width layouts print them."""
        kinds = sdk.field_types(hint)
        if field in self.profile.implied_decimals or (int in kinds and bool not in kinds):
            return _zero_padded
        if Decimal in kinds:
            return str.rjust
        return str.ljust


def _zero_padded(text: str, size: int) -> str:
    """``-1234`` in 8 positions as ``-0001234``; nothing as spaces."""
    if not text:
        return " " * size
    sign, digits = (text[0], text[1:]) if text[0] == "-" else ("", text)
    return sign + digits.rjust(size - len(sign), "0")


def _implied(field: str, places: int) -> Formatter:
    """An amount as digits without a point: 123.45 with 2 places is ``12345``."""

    def implied(value: Decimal) -> str:
        scaled = value.scaleb(places)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{field} {value} has more than {places} decimals")
        return str(int(scaled))

    return implied


def account_text(layout: sdk.AccountLayout, account: sdk.AccountCode) -> str:
    """The account code spelled in `layout` (NYS ``A2110.150-00-0000``, NCES
    ``10-1000-100-001-100``; a custom layout writes the code as read); ValueError if the
    layout cannot spell it."""
    parts = [account.fund, account.function, account.object]
    optional = [p for p in (account.location, account.program) if p]
    if layout.name == "nys":
        text = f"{account.fund}{account.function}.{account.object}" + "".join(
            f"-{p}" for p in optional
        )
    elif layout.name == "nces":
        text = "-".join(parts + optional)
    else:
        text = account.code
    try:
        parsed = layout.parse(text)
    except ValueError:
        parsed = None
    if parsed is None or msgspec.structs.replace(parsed, code=account.code) != account:
        raise ValueError(
            f"account code {account.code!r} cannot be written in the {layout.name} layout"
        )
    return text


class _Line:
    """The csv writer's target: keeps the one line just written."""

    text = ""

    def write(self, text: str) -> None:
        self.text = text
