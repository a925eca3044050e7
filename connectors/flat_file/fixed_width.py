"""Fixed-width files: each field at character positions, as payroll and ledger exports of older
systems write them, with header and trailer lines around the data lines.

Positions are 1-based and inclusive, as file layouts are printed: ``"1-9"`` is the first nine
characters, ``"10"`` the tenth alone. Positions count characters after decoding (one per byte in
Windows-1252). A line is numbered as it stands in the file, from 1.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from operator import itemgetter

from connectors.flat_file.mapping import FIXED_ACCOUNT
from connectors.flat_file.options import StreamProfile
from hub import sdk

_POSITIONS = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


def positions(text: str) -> slice:
    """``"1-9"`` as ``slice(0, 9)``, ``"10"`` as ``slice(9, 10)``; ValueError otherwise."""
    match = _POSITIONS.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a position like '1-9' or '10'")
    first = int(match[1])
    last = int(match[2] or first)
    if first < 1 or last < first:
        raise ValueError(f"{text!r} is no range of positions (from 1, first <= last)")
    return slice(first - 1, last)


class FixedWidthLayout:
    """Where each mapped field (and the account code, and the record type) sits on a line."""

    def __init__(
        self, profile: StreamProfile, stream: str, required: frozenset[str] = frozenset()
    ) -> None:
        spans: dict[str, str] = dict(profile.columns)
        if profile.account_column:
            spans[FIXED_ACCOUNT] = profile.account_column
        try:
            #: Cell name (the field's, or `FIXED_ACCOUNT`) → its characters.
            self.slices = {name: positions(text) for name, text in spans.items()}
            self.record_type = (
                positions(profile.record_type_column) if profile.record_type_column else None
            )
        except ValueError as error:
            raise sdk.ConnectorConfigError(f"stream {stream!r}: {error}") from None
        if (self.record_type is None) != (not profile.record_types):
            raise sdk.ConnectorConfigError(
                f"stream {stream!r}: record_type_column and record_types go together"
            )
        if profile.skip_header_lines < 0 or profile.skip_trailer_lines < 0:
            raise sdk.ConnectorConfigError(f"stream {stream!r}: lines to skip cannot be negative")
        self.record_types = frozenset(t.strip() for t in profile.record_types)
        self.skip_header = profile.skip_header_lines
        self.skip_trailer = profile.skip_trailer_lines
        self.names = list(self.slices)
        self.width = max(s.stop for s in self.slices.values())
        #: A data line shorter than this misses a field the record needs; one only shorter than
        #: `width` had its trailing spaces trimmed, as many exports do, and is padded back.
        self.required_width = max(
            (s.stop for name, s in self.slices.items() if name in required), default=0
        )
        cut = itemgetter(*self.slices.values())
        self.split = cut if len(self.slices) > 1 else lambda line: (cut(line),)

    def data_lines(self, lines: Iterable[str]) -> Iterator[tuple[int, str]]:
        """(line number, text without its line end) of each data line: not a header or trailer
        line, not blank, of a data record type."""
        ahead: deque[tuple[int, str]] = deque()
        kind = self.record_type
        for number, line in enumerate(lines, 1):
            if number <= self.skip_header:
                continue
            ahead.append((number, line.rstrip("\r\n")))
            if len(ahead) <= self.skip_trailer:
                continue  # any of these may be a trailer line: known once more lines follow
            number, text = ahead.popleft()
            if text.strip() and (kind is None or text[kind].strip() in self.record_types):
                yield number, text

    def short(self, text: str) -> str:
        """The reason a line too short for the layout is refused."""
        return (
            f"line has {len(text)} characters, the required fields reach character "
            f"{self.required_width}"
        )
