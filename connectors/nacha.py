"""NACHA PPD direct-deposit files: one ACH file per pay run and member, from payroll pay lines.

The destination takes the ``payroll.pay_line`` records of a pay run and writes the file a
district's bank (the ODFI) takes for payroll direct deposit: a file header (record 1), one PPD
batch (5), one credit entry (6) per employee paid by direct deposit, an optional balancing
debit of the district's own account, the batch control (8), the file control (9), and records
of nines up to a multiple of ten (the blocking factor). Records are 94 characters.

Net pay per employee is computed from the lines, because the canonical pay line has no net pay:
the sum of the ``earning`` lines (signed as written) minus the absolute amounts of the
``deduction`` and ``tax`` lines; ``benefit`` lines (employer contributions) are not paid to the
employee and are left out. The canonical pay line has no routing number or account type
either: ``bank_account`` carries ``ROUTING:ACCOUNT`` or ``ROUTING:ACCOUNT:checking|savings``
(the separator is an option). See docs/connectors/nacha.md.

Batches of a pay run arrive one at a time, so lines are staged per (member, pay run) under
``<folder>/.staging`` (upsert by record key, the newer ``updated_at`` wins) and the pay run's
file is generated again from the staged lines after every batch. The file's creation date and
time come from the newest line's ``updated_at``, so the same lines always give the same bytes;
both files are replaced atomically (temporary file, then rename).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import structlog

from hub import sdk

log = structlog.get_logger(__name__)

STREAM = "pay_lines"
RECORD = "payroll.pay_line"
RECORD_LENGTH = 94
BLOCKING_FACTOR = 10
#: Transaction codes: (credit, debit, prenote credit) per account type.
TRANSACTION_CODES = {"checking": ("22", "27", "23"), "savings": ("32", "37", "33")}
ACCOUNT_TYPES = {"checking": "checking", "c": "checking", "savings": "savings", "s": "savings"}
#: Largest amount an entry's ten-digit amount field holds, in cents.
MAX_ENTRY_CENTS = 9_999_999_999
#: What NACHA's alphanumeric fields take: upper-case letters, digits, a few punctuation marks.
_NOT_ALLOWED = re.compile(r"[^A-Z0-9 .,&/'\-]")
#: Letters Unicode does not decompose into an ASCII letter and an accent.
_LETTERS = str.maketrans(
    {
        "ø": "o",
        "Ø": "O",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ß": "ss",
        "đ": "d",
        "Đ": "D",
        "ł": "l",
        "Ł": "L",
        "þ": "th",
        "Þ": "TH",
    }
)


def _described(description: str) -> Any:
    return msgspec.Meta(description=description)


class NachaOptions(sdk.Options, kw_only=True):
    """Where the ACH files go and what the bank told the district to put in them."""

    folder: Annotated[str, _described("folder the .ach files are written to")]
    immediate_destination: Annotated[
        str, _described("routing number (9 digits) of the bank that receives the file")
    ]
    immediate_destination_name: Annotated[str, _described("that bank's name (23 characters)")]
    immediate_origin: Annotated[
        str,
        _described("as the bank assigns it: a 9-digit routing number or a 10-character ID"),
    ]
    immediate_origin_name: Annotated[str, _described("the originator's name (23 characters)")]
    company_name: Annotated[str, _described("name on employees' statements (16 characters)")]
    company_identification: Annotated[
        str, _described("company ID, usually '1' followed by the district's EIN (10 characters)")
    ]
    odfi_routing: Annotated[
        str, _described("routing number (9 digits) of the originating bank (ODFI)")
    ]
    company_entry_description: Annotated[
        str, _described("entry description shown to employees (10 characters)")
    ] = "PAYROLL"
    effective_days_before: Annotated[
        int,
        _described(
            "business days before the pay date the entries settle (0: on the pay date); "
            "weekends roll back to the Friday"
        ),
    ] = 0
    file_id_modifier: Annotated[
        str, _described("file ID modifier, A-Z or 0-9: change it for a second file the same day")
    ] = "A"
    offset_entry: Annotated[
        bool, _described("add a debit of the district's account balancing the credits")
    ] = False
    offset_account: Annotated[
        str | None, _described("the district's account at the ODFI debited by the offset")
    ] = None
    offset_account_type: Literal["checking", "savings"] = "checking"
    bank_account_separator: Annotated[
        str, _described("separator of ROUTING, ACCOUNT and type in a pay line's bank_account")
    ] = ":"
    default_account_type: Literal["checking", "savings"] = "checking"
    line_ending: Literal["crlf", "lf"] = "crlf"
    timezone: Annotated[str, _described("time zone of the file creation date and time")] = (
        "America/New_York"
    )


def routing_check_digit(first_eight: str) -> int:
    """The ABA check digit of a routing number's first eight digits (weights 3, 7, 1)."""
    total = sum(int(d) * w for d, w in zip(first_eight, (3, 7, 1, 3, 7, 1, 3, 7), strict=True))
    return (10 - total % 10) % 10


def routing_problem(routing: str) -> str | None:
    """Why `routing` is not a valid 9-digit ABA routing number, or None if it is."""
    if not re.fullmatch(r"\d{9}", routing):
        return f"routing number {routing!r} is not 9 digits"
    expected = routing_check_digit(routing[:8])
    if int(routing[8]) != expected:
        return f"routing number {routing} has check digit {routing[8]}, expected {expected}"
    return None


def ascii_upper(text: str) -> str:
    """`text` as NACHA takes it: accents removed, upper case, only the allowed characters."""
    plain = (
        unicodedata.normalize("NFKD", text.translate(_LETTERS))
        .encode("ascii", "ignore")
        .decode("ascii")
    )
    return _NOT_ALLOWED.sub(" ", plain.upper()).strip()


def alpha(text: str, width: int) -> str:
    """An alphanumeric field: left-justified, blank-filled, cut to `width`."""
    return ascii_upper(text)[:width].ljust(width)


def numeric(value: int, width: int) -> str:
    """A numeric field: right-justified, zero-filled; never silently cut."""
    text = str(value)
    if value < 0 or len(text) > width:
        raise ValueError(f"{value} does not fit a {width}-digit field")
    return text.zfill(width)


def option_problems(options: NachaOptions) -> list[str]:
    """Everything wrong with the options, each with the option's name."""
    problems = []
    for name in ("immediate_destination", "odfi_routing"):
        why = routing_problem(getattr(options, name))
        if why:
            problems.append(f"{name}: {why}")
    origin = options.immediate_origin
    if re.fullmatch(r"\d{9}", origin):
        why = routing_problem(origin)
        if why:
            problems.append(f"immediate_origin: {why}")
    elif not re.fullmatch(r"[0-9A-Za-z]{10}", origin):
        problems.append(
            f"immediate_origin: {origin!r} is neither a 9-digit routing number nor 10 characters"
        )
    if not re.fullmatch(r"[0-9A-Za-z]{1,10}", options.company_identification):
        problems.append("company_identification: must be 1 to 10 letters or digits")
    if not re.fullmatch(r"[A-Z0-9]", options.file_id_modifier):
        problems.append(f"file_id_modifier: {options.file_id_modifier!r} is not one of A-Z or 0-9")
    for name in ("company_name", "company_entry_description", "immediate_destination_name"):
        if not ascii_upper(getattr(options, name)):
            problems.append(f"{name}: empty once made upper-case ASCII")
    if not 0 <= options.effective_days_before <= 5:
        problems.append("effective_days_before: must be between 0 and 5")
    if options.offset_entry and not options.offset_account:
        problems.append("offset_account: required when offset_entry is true")
    if options.offset_account and not re.fullmatch(r"[0-9A-Za-z\-]{1,17}", options.offset_account):
        problems.append("offset_account: must be 1 to 17 letters, digits or hyphens")
    if not options.bank_account_separator:
        problems.append("bank_account_separator: must not be empty")
    try:
        ZoneInfo(options.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"timezone: unknown time zone {options.timezone!r}")
    return problems


@dataclass(frozen=True)
class Entry:
    """One entry detail record's values."""

    transaction_code: str
    routing: str
    account: str
    cents: int
    individual_id: str
    name: str


@dataclass(frozen=True)
class Payment:
    """What the staged lines of one employee come to: an entry, a reason not to pay, or None
    for an employee paid by paper check (no bank account)."""

    employee_id: str
    entry: Entry | None
    reason: str | None


def net_pay(lines: list[dict[str, Any]]) -> Decimal:
    """Earnings (signed as written) minus the absolute deductions and taxes; benefits excluded."""
    total = Decimal(0)
    for line in lines:
        amount = Decimal(line["amount"])
        if line["kind"] == "earning":
            total += amount
        elif line["kind"] in ("deduction", "tax"):
            total -= abs(amount)
    return total


def employee_payment(
    employee_id: str, lines: list[dict[str, Any]], options: NachaOptions
) -> Payment | None:
    """The entry paying one employee's net pay, or the reason it cannot be paid."""
    lines = sorted(lines, key=lambda line: line["line_number"])
    names = [line["employee_name"] for line in lines if line.get("employee_name")]
    accounts = {line["bank_account"] for line in lines if line.get("bank_account")}

    def refuse(reason: str) -> Payment:
        return Payment(employee_id, None, reason)

    if not accounts:
        return None
    if len(accounts) > 1:
        return refuse(f"the employee's pay lines name {len(accounts)} different bank accounts")
    parts = next(iter(accounts)).strip().split(options.bank_account_separator)
    if len(parts) not in (2, 3):
        return refuse(
            "bank_account is not ROUTING"
            f"{options.bank_account_separator}ACCOUNT[{options.bank_account_separator}TYPE]"
        )
    routing, account = parts[0].strip(), parts[1].strip().replace(" ", "")
    kind = ACCOUNT_TYPES.get(
        (parts[2] if len(parts) == 3 else options.default_account_type).strip().lower()
    )
    why = routing_problem(routing)
    if why:
        return refuse(why)
    if not re.fullmatch(r"[0-9A-Za-z\-]{1,17}", account):
        # The account number itself never goes into a reason: it is personal data.
        return refuse("account number is not 1 to 17 letters, digits or hyphens")
    if kind is None:
        return refuse("account type is not checking or savings")
    net = net_pay(lines)
    cents = net * 100
    if cents != cents.to_integral_value():
        return refuse(f"net pay {net} has fractions of a cent")
    if net <= 0:
        return refuse(f"net pay is {net}: nothing to deposit")
    if cents > MAX_ENTRY_CENTS:
        return refuse(f"net pay {net} exceeds the largest amount an entry holds")
    name = ascii_upper(names[-1]) if names else ""
    entry = Entry(
        transaction_code=TRANSACTION_CODES[kind][0],
        routing=routing,
        account=account.upper(),
        cents=int(cents),
        individual_id=employee_id,
        name=name or ascii_upper(employee_id),
    )
    return Payment(employee_id, entry, None)


def effective_date(pay_date: date, business_days_before: int) -> date:
    """The effective entry date: the pay date, or that many business days before it, and never
    a Saturday or Sunday (rolled back to the Friday). Bank holidays are not known here."""
    day = pay_date
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    for _ in range(business_days_before):
        day -= timedelta(days=1)
        while day.weekday() >= 5:
            day -= timedelta(days=1)
    return day


def build_file(
    options: NachaOptions,
    pay_run_id: str,
    pay_date: date,
    created: datetime,
    entries: list[Entry],
) -> str:
    """The ACH file's text: records of 94 characters, blocked to a multiple of ten."""
    odfi = options.odfi_routing[:8]
    origin = options.immediate_origin
    origin = f" {origin}" if len(origin) == 9 else origin.upper()
    records = [
        "1"
        + "01"
        + f" {options.immediate_destination}"
        + origin
        + created.strftime("%y%m%d")
        + created.strftime("%H%M")
        + options.file_id_modifier
        + "094"
        + f"{BLOCKING_FACTOR:02d}"
        + "1"
        + alpha(options.immediate_destination_name, 23)
        + alpha(options.immediate_origin_name, 23)
        + alpha(pay_run_id, 8)
    ]
    batch_entries = list(entries)
    credit_cents = sum(e.cents for e in entries)
    if options.offset_entry and credit_cents:
        batch_entries.append(
            Entry(
                transaction_code=TRANSACTION_CODES[options.offset_account_type][1],
                routing=options.odfi_routing,
                account=(options.offset_account or "").upper(),
                cents=credit_cents,
                individual_id=options.company_identification,
                name=ascii_upper(options.company_name),
            )
        )
    debit_cents = sum(e.cents for e in batch_entries if e.transaction_code in ("27", "37"))
    service_class = "200" if debit_cents else "220"
    batch_number = numeric(1, 7)
    records.append(
        "5"
        + service_class
        + alpha(options.company_name, 16)
        + alpha("", 20)
        + alpha(options.company_identification, 10)
        + "PPD"
        + alpha(options.company_entry_description, 10)
        + pay_date.strftime("%y%m%d")
        + effective_date(pay_date, options.effective_days_before).strftime("%y%m%d")
        + "   "  # settlement date: the ACH operator fills it in
        + "1"
        + odfi
        + batch_number
    )
    entry_hash = 0
    for sequence, entry in enumerate(batch_entries, start=1):
        entry_hash += int(entry.routing[:8])
        records.append(
            "6"
            + entry.transaction_code
            + entry.routing
            + entry.account.ljust(17)
            + numeric(entry.cents, 10)
            + alpha(entry.individual_id, 15)
            + alpha(entry.name, 22)
            + "  "
            + "0"
            + odfi
            + numeric(sequence, 7)
        )
    entry_hash %= 10**10  # the hash keeps its last ten digits
    records.append(
        "8"
        + service_class
        + numeric(len(batch_entries), 6)
        + numeric(entry_hash, 10)
        + numeric(debit_cents, 12)
        + numeric(credit_cents, 12)
        + alpha(options.company_identification, 10)
        + " " * 19
        + " " * 6
        + odfi
        + batch_number
    )
    filled = len(records) + 1
    blocks = -(-filled // BLOCKING_FACTOR)
    records.append(
        "9"
        + numeric(1, 6)
        + numeric(blocks, 6)
        + numeric(len(batch_entries), 8)
        + numeric(entry_hash, 10)
        + numeric(debit_cents, 12)
        + numeric(credit_cents, 12)
        + " " * 39
    )
    records.extend("9" * RECORD_LENGTH for _ in range(blocks * BLOCKING_FACTOR - filled))
    for record in records:
        if len(record) != RECORD_LENGTH:  # a field too wide would shift every later field
            raise AssertionError(f"record type {record[0]} is {len(record)} characters")
    newline = "\r\n" if options.line_ending == "crlf" else "\n"
    return newline.join(records) + newline


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one step: a temporary file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


class NachaPpd(sdk.Connector[NachaOptions]):
    """Payroll direct deposit: one NACHA PPD file per pay run and member, from pay lines."""

    name = "nacha_ppd"
    title = "NACHA PPD direct-deposit file (ACH)"
    options = NachaOptions

    async def check(self) -> None:
        problems = option_problems(self.config)
        folder = self.context.resolve_path(self.config.folder)
        if not folder.is_dir():
            problems.append(f"folder: {folder} does not exist")
        elif not os.access(folder, os.W_OK | os.X_OK):
            problems.append(f"folder: {folder} is not writable")
        if problems:
            raise sdk.ConnectorConfigError("; ".join(problems))

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(
                name=STREAM,
                record=RECORD,
                description="pay lines of pay runs, one ACH file per pay run",
                readable=False,
                writable=True,
            )
        ]

    def file_path(self, member: str | None, pay_run_id: str) -> Path:
        """Where the ACH file of `member`'s pay run goes."""
        folder = self.context.resolve_path(self.config.folder)
        return folder / f"{_safe_name(member or 'cooperative')}-{_safe_name(pay_run_id)}.ach"

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        if stream != STREAM:
            raise sdk.ConnectorConfigError(f"no stream {stream!r}; nacha_ppd takes {STREAM!r}")
        problems = option_problems(self.config)
        if problems:
            raise sdk.ConnectorConfigError("; ".join(problems))
        kind = sdk.record_type(RECORD)
        runs: dict[str, list[sdk.Record]] = defaultdict(list)
        for record in batch.records:
            if not isinstance(record, kind):
                raise sdk.ConnectorConfigError(
                    f"nacha_ppd takes {RECORD} records, got {record.record_name}"
                )
            runs[record.pay_run_id].append(record)
        written = 0
        rejects: list[sdk.Reject] = []
        for pay_run_id, records in sorted(runs.items()):
            refused = self._write_pay_run(member, pay_run_id, records)
            for record in records:
                if record.employee_id in refused:
                    rejects.append(refused_line(record, refused[record.employee_id]))
                else:
                    written += 1
        return sdk.WriteResult(written=written, rejects=rejects)

    def _write_pay_run(
        self, member: str | None, pay_run_id: str, records: list[sdk.Record]
    ) -> dict[str, str]:
        """Stage the records, write the pay run's file again; the employees left out of it,
        with why."""
        path = self.file_path(member, pay_run_id)
        staging = path.parent / ".staging" / f"{path.stem}.json"
        staging.parent.mkdir(parents=True, exist_ok=True)
        # Parts of a parallel read write from several processes: one pay run at a time.
        with open(staging.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._stage_and_generate(path, staging, pay_run_id, records)

    def _stage_and_generate(
        self, path: Path, staging: Path, pay_run_id: str, records: list[sdk.Record]
    ) -> dict[str, str]:
        lines: dict[str, dict[str, Any]] = (
            json.loads(staging.read_text()) if staging.exists() else {}
        )
        for record in records:
            stored = lines.get(record.key)
            if stored and stored["updated_at"] > record.updated_at.isoformat():
                continue  # a late re-delivery never overwrites a newer line
            lines[record.key] = json.loads(msgspec.json.encode(record))
            lines[record.key]["updated_at"] = record.updated_at.isoformat()
        write_atomically(staging, json.dumps(lines, sort_keys=True).encode())

        by_employee: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in lines.values():
            by_employee[line["employee_id"]].append(line)
        entries: list[Entry] = []
        refused: dict[str, str] = {}
        by_check = 0
        for employee_id in sorted(by_employee):
            payment = employee_payment(employee_id, by_employee[employee_id], self.config)
            if payment is None:
                by_check += 1
            elif payment.entry is not None:
                entries.append(payment.entry)
            else:
                refused[employee_id] = payment.reason or ""
                log.warning(
                    "nacha.entry_refused",
                    pay_run=pay_run_id,
                    employee=employee_id,
                    reason=payment.reason,
                )
        if not entries:
            path.unlink(missing_ok=True)  # nothing to deposit: no file, not an empty one
            log.info("nacha.no_entries", pay_run=pay_run_id, refused=len(refused))
            return refused
        zone = ZoneInfo(self.config.timezone)
        newest = max(datetime.fromisoformat(line["updated_at"]) for line in lines.values())
        pay_date = max(date.fromisoformat(line["pay_date"]) for line in lines.values())
        text = build_file(self.config, pay_run_id, pay_date, newest.astimezone(zone), entries)
        write_atomically(path, text.encode("ascii"))
        log.info(
            "nacha.file_written",
            file=path.name,
            pay_run=pay_run_id,
            entries=len(entries),
            credit_total=str(Decimal(sum(e.cents for e in entries)) / 100),
            refused=len(refused),
            paper_checks=by_check,
        )
        return refused


def refused_line(record: Any, reason: str) -> sdk.Reject:
    """A pay line of an employee left out of the file, for the hub's dead letters: the whole
    line, so a replay writes it again (the hub seals it and masks its bank account)."""
    return sdk.Reject(
        position=(
            f"pay run {record.pay_run_id} employee {record.employee_id} line {record.line_number}"
        ),
        reason=reason,
        raw=msgspec.to_builtins(record),
    )
