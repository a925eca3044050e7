"""Delimited files (CSV, pipe...): rows read by the csv module, and byte ranges that start on
row boundaries for parallel reads (found without parsing, see `split_rows`)."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from hub import sdk

#: Encodings (as `codecs` names them) in which no character's bytes hold a newline or a quote
#: byte but those characters' own, so a file splits into rows at the byte level.
SPLITTABLE_ENCODINGS = ("utf-8", "ascii", "iso8859", "cp125", "mac-")


@contextmanager
def open_text(
    path: Path, encoding: str, begin: int = 0, end: int | None = None, newline: str | None = ""
) -> Iterator[IO[str]]:
    """`path` (or its bytes from `begin` to `end`) as text; a wrong encoding is an error naming
    the file and the encoding."""
    raw = path.open("rb", buffering=0)
    raw.seek(begin)
    ranged = io.BufferedReader(_ByteRange(raw, end if end is not None else path.stat().st_size))
    with io.TextIOWrapper(ranged, newline=newline, encoding=encoding) as handle:
        try:
            yield handle
        except UnicodeDecodeError as error:
            raise sdk.ConnectorConfigError(
                f"{path.name} is not {encoding}: byte {error.start} cannot be decoded"
            ) from None


@contextmanager
def open_table(
    path: Path, encoding: str, delimiter: str, begin: int = 0, end: int | None = None
) -> Iterator[Iterator[list[str]]]:
    """A CSV reader over `path`, or its bytes from `begin` to `end`."""
    with open_text(path, encoding, begin, end) as handle:
        try:
            yield csv.reader(handle, delimiter=delimiter)
        except csv.Error as error:  # a cell over the csv module's limit, a NUL byte...
            raise sdk.ConnectorError(f"{path.name} cannot be read as a table: {error}") from None


class _ByteRange(io.RawIOBase):
    """A file's bytes up to `end` (from wherever it was positioned), as a raw stream."""

    def __init__(self, raw: io.FileIO, end: int) -> None:
        super().__init__()
        self.raw = raw
        self.left = end - raw.tell()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            return 0
        with memoryview(buffer) as view:
            count = self.raw.readinto(view[: min(len(view), self.left)]) or 0
        self.left -= count
        return count

    def close(self) -> None:
        self.raw.close()
        super().close()


#: Every byte but the quote and the newline, deleted to look at a block's quoting at C speed.
_NOT_QUOTE_OR_NEWLINE = bytes(b for b in range(256) if b not in b'"\n')
_QUOTE_OR_LINE_END = re.compile(rb'"|\r\n?|\n')
#: A CR that does not start a CRLF: it ends a row on its own, which the fast path does not count.
_LONE_CR = re.compile(rb"\r(?!\n)")


def split_rows(
    path: Path, parts: int, min_rows: int, block_size: int = 1 << 22
) -> tuple[str, list[tuple[int, int, int]]]:
    """The file's SHA-256 and its data rows in about `parts` byte ranges of at least `min_rows`
    rows each: (begin, end, number of the first data row, counted from 1 after the header).

    A row ends at a line end outside quotes, as `csv` reads it: LF, CRLF or a lone CR (RFC 4180:
    a quote inside a quoted field is doubled, so the count of quotes before a line end is even
    exactly when it ends a row). Most blocks are settled at C speed: with every byte but quotes
    and LFs deleted and adjacent quote pairs removed, no quote is left when no field in the block
    spans lines; only a block with such a field, or with a lone CR, is walked mark by mark."""
    size = path.stat().st_size
    targets = [0] + [size * k // parts for k in range(1, parts)]  # the first finds the header
    starts: list[tuple[int, int]] = []  # (offset where a row starts, rows before it)
    digest = hashlib.sha256()
    rows, offset, quoted, last = 0, 0, False, b"\n"
    with path.open("rb") as handle:
        # Blocks end at a line end, so a block cut inside a quoted field does not look unsettled.
        while block := handle.read(block_size) + handle.readline():
            digest.update(block)
            reduced = block.translate(None, _NOT_QUOTE_OR_NEWLINE)
            settled = not quoted and b'"' not in reduced.replace(b'""', b"")
            if settled and (b"\r" not in block or not _LONE_CR.search(block)):
                while targets and (newline := block.find(b"\n", max(targets[0] - offset, 0))) >= 0:
                    starts.append((offset + newline + 1, rows + block.count(b"\n", 0, newline + 1)))
                    targets.pop(0)
                rows += reduced.count(b"\n")
            else:
                for found in _QUOTE_OR_LINE_END.finditer(block):
                    if found.group() == b'"':
                        quoted = not quoted
                    elif not quoted:
                        rows += 1
                        while targets and targets[0] <= offset + found.start():
                            starts.append((offset + found.end(), rows))
                            targets.pop(0)
            offset, last = offset + len(block), block[-1:]
    if last not in (b"\n", b"\r"):
        rows += 1  # the last row has no line end
    if not starts:
        return digest.hexdigest(), []  # not even the header ends
    ranges: list[list[int]] = []  # [begin, end, first data row, rows]
    for (begin, before), (end, after) in zip(starts, [*starts[1:], (size, rows)], strict=True):
        if ranges and ranges[-1][3] < min_rows:  # too small: grow it
            ranges[-1][1] = end
            ranges[-1][3] += after - before
        elif after > before:
            ranges.append([begin, end, before, after - before])
    if len(ranges) > 1 and ranges[-1][3] < min_rows:
        last = ranges.pop()
        ranges[-1][1] = last[1]
    return digest.hexdigest(), [(begin, end, first) for begin, end, first, _ in ranges]
