"""Encodings district exports come in: UTF-8 with or without a byte-order mark, Windows-1252
(accents, en dashes, curly quotes 0x91-0x94), and a clear error naming the file otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.flat_file import FlatFileConnector
from hub import sdk

HEADER = "Emp,Last,First,Changed"
#: Names as districts type them: an eñe, a diaeresis, a curly apostrophe and an en dash.
NAMES = [
    ("E1", "Muñoz", "José"),
    ("E2", "Zoë", "Brontë"),
    ("E3", "O\u2019Brien \u2013 Smith", "Ann"),
]
ROWS = [f'{emp},"{last}",{first},2026-10-15T18:30:00Z' for emp, last, first in NAMES]


def connector(folder: Path, encoding: str | None = None, **profile) -> FlatFileConnector:
    stream = {
        "record": "hr.employee",
        "columns": {"employee_id": "Emp", "last_name": "Last", "first_name": "First"},
        "pattern": "*.csv",
        **profile,
    }
    raw = {"folder": str(folder), "streams": {"employees": stream}}
    if encoding:
        raw["encoding"] = encoding
    context = sdk.ConnectionContext(connection="enc", member="eastview", base_dir=str(folder))
    return FlatFileConnector(FlatFileConnector.parse_options(raw), {}, context)


async def names(source: FlatFileConnector) -> list[tuple[str, str, str]]:
    batches = [batch async for batch in source.read("employees", None)]
    return [(r.employee_id, r.last_name, r.first_name) for b in batches for r in b.records]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8"])
async def test_utf8_with_and_without_a_byte_order_mark_is_read_by_the_default(tmp_path, encoding):
    data = "\n".join([HEADER, *ROWS]).encode(encoding)
    assert data.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
    (tmp_path / "staff.csv").write_bytes(data)

    assert await names(connector(tmp_path)) == NAMES


async def test_windows_1252_curly_quotes_and_dashes_are_read_as_written(tmp_path):
    data = "\r\n".join(
        [HEADER, *ROWS, "E4,\u201cDoc\u201d Smith,\u2018Al\u2019,2026-10-15"]
    ).encode("cp1252")
    assert {b"\x91", b"\x92", b"\x93", b"\x94", b"\x96", b"\xf1", b"\xeb"} <= {
        bytes([b]) for b in data
    }
    (tmp_path / "staff.csv").write_bytes(data)

    read = await names(connector(tmp_path, "cp1252"))

    assert read == [*NAMES, ("E4", "\u201cDoc\u201d Smith", "\u2018Al\u2019")]


async def test_a_windows_1252_file_read_as_utf8_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "staff.csv").write_bytes("\n".join([HEADER, *ROWS]).encode("cp1252"))

    with pytest.raises(sdk.ConnectorConfigError) as error:
        await names(connector(tmp_path))

    assert str(error.value) == "staff.csv is not utf-8-sig: byte 29 cannot be decoded"


async def test_a_fixed_width_file_in_the_wrong_encoding_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "staff.txt").write_bytes("E1   Muñoz     José\n".encode("cp1252"))
    source = connector(
        tmp_path,
        "utf-8",
        format="fixed_width",
        pattern="*.txt",
        columns={"employee_id": "1-5", "last_name": "6-15", "first_name": "16-20"},
    )

    with pytest.raises(sdk.ConnectorConfigError) as error:
        await names(source)

    assert str(error.value) == "staff.txt is not utf-8: byte 7 cannot be decoded"
