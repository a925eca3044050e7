"""The flat-file connection's options: where the files are, how they are laid out, per stream."""

from __future__ import annotations

from typing import Literal

import msgspec

from hub import sdk

#: Names never read whatever the pattern says: files still being written under a temporary name
#: (ours are ``.NAME.part``) and hidden files.
ALWAYS_IGNORED = (".*", "*.part", "*.tmp")

#: The done-marker convention: ``payroll.csv`` is ready once ``payroll.csv.done`` exists.
DONE_SUFFIX = ".done"


class StreamProfile(sdk.Options, kw_only=True):
    """How one kind of file maps to one canonical record, read or written."""

    record: str
    #: ``delimited`` (CSV, pipe...) or ``fixed_width`` (fields at character positions).
    format: Literal["delimited", "fixed_width"] = "delimited"
    pattern: str = "*.csv"
    #: Record field → file column: a header name (delimited) or 1-based inclusive character
    #: positions ``"1-9"`` or ``"10"`` (fixed width).
    columns: dict[str, str]
    account_column: str | None = None
    date_format: str = "%Y-%m-%d"  # the ISO format is parsed fastest
    #: strptime format for datetime columns; None reads ISO 8601 (``2026-10-15T18:30:00Z``).
    datetime_format: str | None = None
    #: The zone of datetimes written without an offset (IANA name).
    timezone: str = "UTC"
    constants: dict[str, str] = msgspec.field(default_factory=dict)
    #: Field → {the file's value → the record's}: an export's own codes for a status, a
    #: priority... (``{ status = { A = "active", L = "on_leave" } }``); a value the table does
    #: not name is taken as it is. Written files use the table the other way round.
    values: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)
    #: Decimal field → digits after an implied point: ``{ amount = 2 }`` reads ``000012345`` as
    #: 123.45 (and writes it so).
    implied_decimals: dict[str, int] = msgspec.field(default_factory=dict)
    #: Fixed width: positions of the record type, and the types that are data lines (others,
    #: e.g. header ``H`` and trailer ``T`` lines, are skipped).
    record_type_column: str | None = None
    record_types: list[str] = msgspec.field(default_factory=list)
    #: Fixed width: lines skipped at the start and at the end of every file.
    skip_header_lines: int = 0
    skip_trailer_lines: int = 0
    #: Destination: the name of each file written, from ``{stream}``, ``{member}``,
    #: ``{generation}`` and ``{batch}`` (the content's hash, required: see the docs).
    file_name: str | None = None


class FlatFileOptions(sdk.Options, kw_only=True):
    """A folder of flat files, local or on an SFTP server."""

    #: The folder read and written: a local path, or the path on the SFTP server.
    folder: str
    transport: Literal["local", "sftp"] = "local"
    host: str | None = None
    port: int = 22
    username: str | None = None
    #: The server's host key: a fingerprint ``SHA256:...`` or a known_hosts file; unset, the
    #: hub user's ``~/.ssh/known_hosts``. Never skipped.
    known_hosts: str | None = None
    connect_timeout: float = 30.0
    delimiter: str = ","
    encoding: str = "utf-8-sig"
    account_layout: str = "nys"
    #: Files modified more recently than this are being written: leave them for the next run.
    settle_seconds: float = 0.0
    #: Name patterns never read, besides `ALWAYS_IGNORED`.
    ignore: list[str] = msgspec.field(default_factory=list)
    #: Read ``NAME`` only once ``NAME.done`` exists.
    require_done_file: bool = False
    #: Where a file goes once its last checkpoint is committed (same transport); None leaves it.
    archive_folder: str | None = None
    #: Days the checksums of files gone from the folder are remembered, so the same file
    #: dropped again is not read again.
    remember_days: int = 90
    streams: dict[str, StreamProfile]
