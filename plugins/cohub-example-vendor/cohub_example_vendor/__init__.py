"""Example Vendor plugin for Cohub: roster exports, a name-casing transform and a usage meter.

Example Vendor HR (a fictional district HR system) exports the staff roster as JSON lines: one
UTF-8 file per export, one staff member per line, dropped into a folder the hub can read. This
package is the plugin such a vendor would publish, and the worked example of the plugin author
guide. It imports nothing of the hub but ``hub.sdk`` and registers through the ``cohub``
entry-point group (see pyproject.toml), exactly as the hub's built-in connectors do.

It provides:

- connector ``roster_jsonl``: a source reading the export folder into ``hr.employee`` records;
- transform ``title_case_names``: ``MARIA LOPEZ`` arrives as ``Maria Lopez``;
- meter ``roster_employees``: the distinct employees a batch of ``hr.employee`` records carried.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec

from hub import sdk

# -- The export format, as the vendor documents it ------------------------------------------------
#
# Each line of a roster export is one JSON object:
#
#     {"staffId": "E1001", "givenName": "MARIA", "familyName": "LOPEZ", "hireDate": "2019-08-26",
#      "status": "A", "email": "mlopez@eastview.example.org", "modified": "2024-05-01T12:00:00Z"}
#
# staffId, givenName, familyName, status and modified are always present; middleName, hireDate,
# terminationDate and email may be missing or null. Dates are YYYY-MM-DD, modified is an ISO 8601
# timestamp. Fields a later export version adds are ignored. Blank lines carry nothing.

#: Vendor field → canonical ``hr.employee`` field (``status`` goes through `STATUSES`). Reject
#: reasons are translated back through it: the admin reading a dead letter has the vendor's file
#: open, not the hub's schema.
FIELDS = {
    "staffId": "employee_id",
    "givenName": "first_name",
    "middleName": "middle_name",
    "familyName": "last_name",
    "hireDate": "hire_date",
    "terminationDate": "termination_date",
    "email": "work_email",
    "modified": "updated_at",
}

#: The vendor's one-letter employment status → the canonical status.
STATUSES = {"A": "active", "L": "on_leave", "T": "terminated"}

#: The one stream a roster export offers.
STREAM = "employees"

#: A dead letter of a line that was not JSON keeps the line's text under this key, so an admin can
#: correct the text and replay it (`RosterJsonlSource.map_raw` decodes it again).
UNPARSED = "unparsed_line"

EMPLOYEE = sdk.record_type("hr.employee")

#: Decoding straight to ``dict`` makes msgspec reject a line that is valid JSON but not an object.
_decode_object = msgspec.json.Decoder(dict[str, Any]).decode

_BOM = b"\xef\xbb\xbf"


# -- Options -------------------------------------------------------------------------------------


class RosterOptions(sdk.Options, kw_only=True):
    """Where the vendor drops its exports, and which files there are roster exports."""

    #: The export folder; a relative path is resolved against the connection's config folder.
    folder: str
    pattern: str = "*.jsonl"


# -- The connector -------------------------------------------------------------------------------


class RosterJsonlSource(sdk.Connector[RosterOptions]):
    """Example Vendor roster exports: a folder of JSON-lines files, one staff member a line.

    Each file is read once. The state remembers, per file name, the file's SHA-256, how many lines
    were delivered and whether the file is complete: a run resumes mid-file after a crash and skips
    finished files, and a file whose content changed is read again from its first line
    (destinations upsert by employee ID, so re-reading duplicates nothing).
    """

    name = "roster_jsonl"
    title = "Example Vendor roster export"
    options = RosterOptions

    async def check(self) -> None:
        self._folder()

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(
                name=STREAM,
                record="hr.employee",
                description=f"staff members in files matching {self.config.pattern}",
            )
        ]

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        self._check_stream(stream)
        folder = self._folder()
        files: dict[str, dict[str, Any]] = dict((state or {}).get("files", {}))
        for path in sorted(folder.glob(self.config.pattern)):
            if not path.is_file():
                continue
            checksum = _sha256(path)
            seen = files.get(path.name)
            unchanged = seen is not None and seen["sha256"] == checksum
            if unchanged and seen["complete"]:
                continue
            delivered = seen["rows"] if unchanged else 0
            for records, rejects, lines, last in self._chunks(path, delivered):
                delivered += lines
                files[path.name] = {"sha256": checksum, "rows": delivered, "complete": last}
                yield sdk.Batch(records=records, rejects=rejects, state={"files": dict(files)})

    def map_raw(self, stream: str, raw: dict[str, Any]) -> sdk.Record:
        """Map one dead letter again: a staff object, or a corrected ``unparsed_line``."""
        self._check_stream(stream)
        try:
            if set(raw) == {UNPARSED}:
                raw = decode_line(str(raw[UNPARSED]).encode())
            fields = employee_fields(raw)
        except ValueError as error:
            raise sdk.BadRecord(str(error)) from None
        records, failures = sdk.convert_rows(EMPLOYEE, [fields])
        if failures:
            raise sdk.BadRecord(vendor_reason(failures[0][1]))
        return records[0]

    def _folder(self) -> Path:
        folder = self.context.resolve_path(self.config.folder)
        if not folder.is_dir():
            raise sdk.ConnectorConfigError(f"export folder {folder} does not exist")
        return folder

    def _check_stream(self, stream: str) -> None:
        if stream != STREAM:
            raise sdk.ConnectorConfigError(f"no stream {stream!r}; {self.name} offers {STREAM!r}")

    def _chunks(
        self, path: Path, skip: int
    ) -> Iterator[tuple[list[sdk.Record], list[sdk.Reject], int, bool]]:
        """Records, rejects, lines consumed and whether the file ends there, per `batch_size` lines.

        One chunk is read ahead so the last batch of a file already says the file is complete;
        otherwise every file would cost an extra, empty batch (and checkpoint) to say so. A file
        with nothing left still yields one empty batch, since its completion must be recorded.
        """
        with path.open("rb") as handle:
            lines = enumerate(handle, start=1)
            for _ in islice(lines, skip):
                pass
            chunk = list(islice(lines, self.batch_size))
            while True:
                following = list(islice(lines, self.batch_size))
                records, rejects = map_lines(path.name, chunk)
                yield records, rejects, len(chunk), not following
                if not following:
                    return
                chunk = following


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# -- The mapping ---------------------------------------------------------------------------------


def map_lines(
    file_name: str, lines: Sequence[tuple[int, bytes]]
) -> tuple[list[sdk.Record], list[sdk.Reject]]:
    """Numbered lines of one file as ``hr.employee`` records, and rejects positioned ``file:line``.

    Lines are decoded and mapped one by one (a bad line must not hide its neighbours), then
    validated together with one `sdk.convert_rows` call, which is several times faster than
    validating row by row.
    """
    mapped: list[dict[str, Any]] = []
    sources: list[tuple[int, dict[str, Any]]] = []
    rejected: list[tuple[int, sdk.Reject]] = []
    for number, line in lines:
        text = line.strip().removeprefix(_BOM) if number == 1 else line.strip()
        if not text:
            continue
        try:
            raw = decode_line(text)
        except ValueError as error:
            unparsed = {UNPARSED: text.decode("utf-8", "replace")}
            rejected.append((number, _reject(file_name, number, str(error), unparsed)))
            continue
        try:
            mapped.append(employee_fields(raw))
        except ValueError as error:
            rejected.append((number, _reject(file_name, number, str(error), raw)))
            continue
        sources.append((number, raw))
    records, failures = sdk.convert_rows(EMPLOYEE, mapped) if mapped else ([], [])
    for index, reason in failures:
        number, raw = sources[index]
        rejected.append((number, _reject(file_name, number, vendor_reason(reason), raw)))
    rejected.sort(key=lambda pair: pair[0])
    return records, [reject for _, reject in rejected]


def decode_line(text: bytes) -> dict[str, Any]:
    """One line as a JSON object; ValueError saying why it is not one."""
    try:
        return _decode_object(text)
    except msgspec.DecodeError as error:  # ValidationError (not an object) is a DecodeError too
        raise ValueError(f"line is not a JSON object: {error}") from None


def employee_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """The canonical ``hr.employee`` fields of one vendor staff object, not yet validated.

    Only the status is checked here, because its mapping is this vendor's knowledge; types, dates
    and required fields are left to the record schema, which checks them for the whole batch.
    """
    status = raw.get("status")
    canonical_status = STATUSES.get(status) if isinstance(status, str) else None
    if canonical_status is None:
        known = ", ".join(f"{code} ({name})" for code, name in STATUSES.items())
        raise ValueError(f"status {status!r} is not one of {known}")
    fields = {canonical: raw[vendor] for vendor, canonical in FIELDS.items() if vendor in raw}
    fields["status"] = canonical_status
    return fields


def vendor_reason(reason: str) -> str:
    """A schema error with the canonical field named as the vendor's: `$.hire_date` → `hireDate`."""
    for vendor, canonical in FIELDS.items():
        reason = reason.replace(f"`$.{canonical}`", f"`{vendor}`")
        reason = reason.replace(f"`{canonical}`", f"`{vendor}`")
    return reason


def _reject(file_name: str, number: int, reason: str, raw: dict[str, Any]) -> sdk.Reject:
    return sdk.Reject(position=f"{file_name}:{number}", reason=reason, raw=raw)


# -- The transform -------------------------------------------------------------------------------


def title_case_names(context: sdk.BatchContext, records: list[sdk.Record]) -> list[sdk.Record]:
    """Employee names written all in capitals or all in lower case, in title case.

    HR exports often shout (``MARIA LOPEZ``) or whisper (``maria lopez``); statements and the
    console read better as ``Maria Lopez``. A name already in mixed case is kept as written,
    because whoever typed ``McDonald`` or ``DeShawn`` knew better than `str.title`. Records are
    frozen, so a changed one is replaced; unchanged ones are passed on as they are. Batches of
    other records pass through untouched.
    """
    if context.record != "hr.employee":
        return records
    delivered: list[sdk.Record] = []
    for record in records:
        names = {
            field: _title_case(getattr(record, field))
            for field in ("first_name", "middle_name", "last_name")
        }
        if any(value != getattr(record, field) for field, value in names.items()):
            record = msgspec.structs.replace(record, **names)
        delivered.append(record)
    return delivered


def _title_case(name: str | None) -> str | None:
    if name is not None and (name.isupper() or name.islower()):
        return name.title()
    return name


TITLE_CASE_NAMES = sdk.Transform(
    name="title_case_names",
    function=title_case_names,
    description="employee names in ALL CAPS or all lower case, title-cased",
)


# -- The meter -----------------------------------------------------------------------------------


def roster_employees(context: sdk.BatchContext, records: Sequence[sdk.Record]) -> int | None:
    """The distinct employees in a batch of ``hr.employee`` records; None for any other batch.

    An employee listed twice in one export is one employee served, hence distinct IDs rather than
    the record count (which the hub's own ``records_synced`` meter already gives).
    """
    if context.record != "hr.employee":
        return None
    return len({record.employee_id for record in records})


ROSTER_EMPLOYEES = sdk.Meter(
    name="roster_employees",
    unit="employee",
    aggregation="unique_count",
    description="distinct employees whose records a route delivered",
    measure=roster_employees,
)


# -- Registration --------------------------------------------------------------------------------


@sdk.hookimpl
def cohub_register_connectors(register):
    register(RosterJsonlSource)


@sdk.hookimpl
def cohub_register_transforms(register):
    register(TITLE_CASE_NAMES)


@sdk.hookimpl
def cohub_register_meters(register):
    register(ROSTER_EMPLOYEES)
