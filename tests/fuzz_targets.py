"""Every parser the hub runs on bytes from outside, as one registry the fuzz suite walks.

A fuzz target is a function taking the raw bytes a district or vendor could send and feeding
them through the real read path (a file in a folder a connection reads, a segment a parser
splits). It may finish, or raise one of the exceptions it declares as a *refusal* (an error the
engine turns into a failed run or a dead letter with its reason); anything else escaping it, or
taking longer than the suite's time limit, is a bug that `tests/test_fuzz.py` reports with the
shrunk input.

A new parser joins in one step: in this module (or in the parser's own test module, imported
here), decorate a function taking ``bytes``::

    @fuzz_target("x12.850", refusals=(sdk.ConnectorError,), seeds=[b"ISA*00*...~"])
    def x12_850(data: bytes) -> None:
        write the bytes where the X12 connector reads them, read every batch

`refusals` are the exceptions that are a legitimate "no" (keep them narrow: ``Exception`` would
hide every crash); `seeds` are real-looking inputs the fuzzer mutates, and `inputs` an optional
Hypothesis strategy of structured inputs (rows, segments) drawn besides random bytes. Every
registered target then runs under `test_parsers_refuse_or_accept_any_bytes` with no other change.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import strategies as st

from connectors import incident_iq, jira_sm, servicenow, zendesk
from connectors.flat_file import FlatFileSource, Mapping, StreamProfile, _decimal
from hub import sdk
from hub.model.accounting import ACCOUNT_LAYOUTS

Parser = Callable[[bytes], Any]


@dataclass(frozen=True)
class FuzzTarget:
    name: str
    parse: Parser
    refusals: tuple[type[BaseException], ...]
    seeds: Sequence[bytes] = ()
    inputs: st.SearchStrategy[bytes] | None = None
    #: Extra knobs a target may need (unused by the suite itself).
    notes: dict[str, Any] = field(default_factory=dict)


FUZZ_TARGETS: dict[str, FuzzTarget] = {}


def fuzz_target(
    name: str,
    *,
    refusals: tuple[type[BaseException], ...],
    seeds: Sequence[bytes] = (),
    inputs: st.SearchStrategy[bytes] | None = None,
) -> Callable[[Parser], Parser]:
    """Register `parse` under `name` (see the module docstring)."""

    def register(parse: Parser) -> Parser:
        if name in FUZZ_TARGETS:
            raise ValueError(f"fuzz target {name!r} registered twice")
        FUZZ_TARGETS[name] = FuzzTarget(name, parse, refusals, tuple(seeds), inputs)
        return parse

    return register


# --- flat files: the connector's real read path over a folder holding one file ---------------

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "config" / "sample-data"

EASTVIEW_COLUMNS = {
    "pay_run_id": "PayRunID",
    "pay_date": "PayDate",
    "period_start": "PeriodStart",
    "period_end": "PeriodEnd",
    "employee_id": "EmpID",
    "employee_name": "EmpName",
    "line_number": "LineNo",
    "code": "EarnCode",
    "kind": "Type",
    "hours": "Hours",
    "rate": "Rate",
    "amount": "Amount",
    "updated_at": "LastModified",
}
MILLBROOK_COLUMNS = {
    "pay_run_id": "RUN_NO",
    "pay_date": "CHECK_DATE",
    "employee_id": "EMPLOYEE",
    "employee_name": "NAME",
    "line_number": "SEQ",
    "code": "CODE",
    "kind": "CATEGORY",
    "hours": "HRS",
    "rate": "RATE",
    "amount": "AMT",
}
EASTVIEW = {
    "encoding": "utf-8-sig",
    "account_layout": "nys",
    "streams": {
        "pay_lines": {
            "record": "payroll.pay_line",
            "pattern": "*.csv",
            "account_column": "Account",
            "columns": EASTVIEW_COLUMNS,
        }
    },
}
MILLBROOK = {
    "delimiter": "|",
    "encoding": "cp1252",
    "streams": {
        "pay_lines": {
            "record": "payroll.pay_line",
            "pattern": "*.csv",
            "account_column": "GL_ACCOUNT",
            "date_format": "%m/%d/%Y",
            "columns": MILLBROOK_COLUMNS,
        }
    },
}

#: Cells worth trying in any column: near-valid values, edge numbers, odd text.
CELLS = [
    "",
    " ",
    "2026-10-15",
    "10/15/2026",
    "02/30/2026",
    "2026-10-15T18:30:00Z",
    "2026-10-15T18:30:00+99:00",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01",
    "1",
    "-1",
    "0",
    "2650.00",
    "(12.50)",
    "$1,234.50",
    "1e999999999",
    "-1E-999999999",
    "NaN",
    "sNaN",
    "Infinity",
    "-inf",
    "9" * 400,
    "1_000",
    "١٢٣",
    "A2110.150-00-0000",
    "A2110.150-01-0000",
    "10-1000-100-001-100",
    "A2110.150-000-00000",
    "earning",
    "deduction",
    "SAL",
    '"',
    '""',
    "a\nb",
    "a\r\nb",
    "\x00",
    "\ufeff",
    "Peña, José",
    "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "x" * 5000,
    "x" * 140_000,  # past the csv module's field size limit
]


def _csv_bytes(columns: Sequence[str], delimiter: str, encoding: str) -> st.SearchStrategy[bytes]:
    """Files shaped like the export: the header (columns maybe dropped or repeated), rows of
    cells near and far from valid, quoted or not, with mixed line ends."""
    cell = st.one_of(st.sampled_from(CELLS), st.text(max_size=20))

    def quote(text: str, quoted: bool) -> str:
        return '"' + text.replace('"', '""') + '"' if quoted else text

    @st.composite
    def files(draw: st.DrawFn) -> bytes:
        header = list(columns)
        if draw(st.booleans()):
            header = draw(st.lists(st.sampled_from(columns), min_size=0, max_size=len(columns) + 2))
        width = len(header)
        rows = draw(
            st.lists(
                st.lists(
                    st.tuples(cell, st.booleans()),
                    min_size=max(width - 1, 0),
                    max_size=width + 1,
                ),
                max_size=6,
            )
        )
        ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        lines = [delimiter.join(header)] + [
            delimiter.join(quote(text, quoted) for text, quoted in row) for row in rows
        ]
        text = ending.join(lines) + draw(st.sampled_from(["", ending]))
        data = text.encode(encoding, "replace")
        if draw(st.booleans()):  # splice raw bytes somewhere (invalid in the encoding, maybe)
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        return data

    return files()


def _read_folder(data: bytes, options: dict[str, Any], *, parts: int = 0) -> list[sdk.Batch]:
    """`data` as the only file in a connection's folder, read serially (or split in `parts`)."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "export.csv").write_bytes(data)
        raw = {"folder": folder, **options}
        context = sdk.ConnectionContext(connection="fuzz", member="eastview", base_dir=folder)
        connector = FlatFileSource(FlatFileSource.parse_options(raw), {}, context)
        connector.batch_size = 3  # several batches even from a small file

        async def read() -> list[sdk.Batch]:
            batches = []
            if parts:
                split = await connector.partitions("pay_lines", None, parts) or [None]
                for state in split:
                    batches += [b async for b in connector.read("pay_lines", state)]
            else:
                batches = [b async for b in connector.read("pay_lines", None)]
            await connector.close()
            return batches

        batches = asyncio.run(read())
    for batch in batches:
        for reject in batch.rejects:
            assert reject.reason and reject.position, reject
    return batches


def _sample(name: str) -> bytes:
    return next((SAMPLES / name).iterdir()).read_bytes()


@fuzz_target(
    "flat_file.csv_utf8",
    refusals=(sdk.ConnectorError,),
    seeds=[_sample("eastview")],
    inputs=_csv_bytes([*EASTVIEW_COLUMNS.values(), "Account"], ",", "utf-8"),
)
def flat_file_csv(data: bytes) -> None:
    _read_folder(data, EASTVIEW)


@fuzz_target(
    "flat_file.pipe_cp1252",
    refusals=(sdk.ConnectorError,),
    seeds=[_sample("millbrook")],
    inputs=_csv_bytes([*MILLBROOK_COLUMNS.values(), "GL_ACCOUNT"], "|", "cp1252"),
)
def flat_file_pipe(data: bytes) -> None:
    _read_folder(data, MILLBROOK)


@fuzz_target(
    "flat_file.csv_utf8_partitioned",
    refusals=(sdk.ConnectorError,),
    seeds=[_sample("eastview")],
    inputs=_csv_bytes([*EASTVIEW_COLUMNS.values(), "Account"], ",", "utf-8"),
)
def flat_file_partitioned(data: bytes) -> None:
    _read_folder(data, EASTVIEW, parts=3)


#: A payroll system's fixed-width export: record type, then fields at positions (see
#: tests/test_flat_file_fixed_width.py); H header and T trailer lines around the D lines.
FIXED_WIDTH_FIELDS = {
    "pay_run_id": (2, 11),
    "pay_date": (12, 19),
    "employee_id": (20, 27),
    "line_number": (28, 33),
    "code": (34, 37),
    "amount": (38, 46),
    "employee_name": (64, 83),
}
FIXED_WIDTH = {
    "encoding": "cp1252",
    "streams": {
        "pay_lines": {
            "record": "payroll.pay_line",
            "format": "fixed_width",
            "pattern": "*.csv",
            "record_type_column": "1",
            "record_types": ["D"],
            "skip_header_lines": 1,
            "skip_trailer_lines": 1,
            "date_format": "%Y%m%d",
            "implied_decimals": {"amount": 2},
            "account_column": "47-63",
            "columns": {f: f"{a}-{b}" for f, (a, b) in FIXED_WIDTH_FIELDS.items()},
        }
    },
}
FIXED_WIDTH_SEED = (
    b"H20261015 EASTVIEW\r\n"
    b"DEA-2026-2020261015E1001   000001REG 000012345A2110.150-00-0000Mu\xf1oz, Ana\r\n"
    b"DEA-2026-2020261015E1002   000002REG 00004555-A2110.150-00-0000O\x92Brien \x96 Jr\r\n"
    b"T000002\r\n"
)


def _fixed_width_bytes() -> st.SearchStrategy[bytes]:
    """Files shaped like the fixed-width export: lines of any record type whose fields hold
    cells near and far from valid, cut or padded to their widths, some lines cut short."""
    cell = st.one_of(st.sampled_from(CELLS), st.text(max_size=12))

    @st.composite
    def files(draw: st.DrawFn) -> bytes:
        lines = []
        for _ in range(draw(st.integers(0, 6))):
            text = draw(st.sampled_from(["D", "D", "H", "T", " ", ""]))
            for first, last in [*FIXED_WIDTH_FIELDS.values(), (47, 63)]:
                text = text.ljust(first - 1)[: first - 1] + draw(cell)[: last - first + 1]
            lines.append(text[: draw(st.integers(0, 90))] if draw(st.booleans()) else text)
        ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        return ending.join(lines).encode("cp1252", "replace")

    return files()


@fuzz_target(
    "flat_file.fixed_width_cp1252",
    refusals=(sdk.ConnectorError,),
    seeds=[FIXED_WIDTH_SEED],
    inputs=_fixed_width_bytes(),
)
def flat_file_fixed_width(data: bytes) -> None:
    _read_folder(data, FIXED_WIDTH)


# --- single values: account codes, amounts, dates, as the mapping converts them --------------


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


for _layout in ACCOUNT_LAYOUTS.values():

    def _parse_account(data: bytes, layout: sdk.AccountLayout = _layout) -> None:
        layout.parse(_text(data))

    fuzz_target(
        f"account_code.{_layout.name}",
        refusals=(ValueError,),
        seeds=[b"A2110.150-00-0000", b"10-1000-100-001-100", b"AB9999.999-999-9999"],
    )(_parse_account)


@fuzz_target("amount", refusals=(ValueError,), seeds=[b"2650.00", b"(12.50)", b"$1,234.50"])
def amount(data: bytes) -> None:
    _decimal(_text(data))


def _converters(date_format: str, datetime_format: str | None) -> Mapping:
    profile = StreamProfile(
        record="payroll.pay_line",
        columns={"pay_date": "d", "updated_at": "u"},
        date_format=date_format,
        datetime_format=datetime_format,
        timezone="America/New_York",
    )
    return Mapping(profile, "nys", "fuzz")


_US_DATES = _converters("%m/%d/%Y", "%m/%d/%Y %H:%M")
_ISO = _converters("%Y-%m-%d", None)


@fuzz_target("date.us", refusals=(ValueError,), seeds=[b"10/15/2026", b"2/29/2025"])
def us_date(data: bytes) -> None:
    convert = _US_DATES.converters["pay_date"]
    assert convert is not None
    convert(_text(data))


@fuzz_target(
    "datetime.iso", refusals=(ValueError,), seeds=[b"2026-10-15T18:30:00Z", b"2026-10-15 18:30"]
)
def iso_datetime(data: bytes) -> None:
    convert = _ISO.converters["updated_at"]
    assert convert is not None
    convert(_text(data))


@fuzz_target("datetime.us", refusals=(ValueError,), seeds=[b"10/15/2026 18:30"])
def us_datetime(data: bytes) -> None:
    convert = _US_DATES.converters["updated_at"]
    assert convert is not None
    convert(_text(data))


# --- XML: the SDK's safe parser, which cXML and other XML connectors read documents with -------

CXML_SEED = (
    b'<?xml version="1.0" encoding="UTF-8"?><cXML payloadID="1@boces" timestamp="2026-11-30T10:00:00Z">'
    b'<Response><Status code="200" text="OK"/></Response></cXML>'
)


@fuzz_target(
    "sdk.xml",
    refusals=(sdk.BadRecord,),
    seeds=[
        CXML_SEED,
        b'<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><x>&b;</x>',
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
    ],
)
def xml_document(data: bytes) -> None:
    sdk.xml.parse(data)


# --- X12: an inbound interchange read by every stream of an x12 connection, 997s sent ---------

X12_SEED = (
    b"ISA*00*          *00*          *ZZ*ACMESUPPLY     *ZZ*BOCESHUB       *261018*0800*U*00401*"
    b"000004713*0*P*>~\r\nGS*IN*ACMESUPPLY*BOCESHUB*20261018*0800*4713*X*004010~\r\n"
    b"ST*810*0001~BIG*20261018*INV-4**PO-2002~IT1*1*10*EA*2.15**VP*MRK-1*PL*1~"
    b"PID*F****Markers~TDS*2300~TXI*ST*1.5~CTT*1~SE*8*0001~GE*1*4713~IEA*1*000004713~"
)
#: Segments near and far from what the four sets and 997s hold, for structured inputs.
X12_SEGMENTS = [
    "ST*855*0001",
    "ST*856*0002",
    "ST*810*0003",
    "ST*997*0004",
    "SE*4*0001",
    "SE*x*0002",
    "BAK*00*AC*PO-1*20261016****SO-1*20261016",
    "BAK*00*ZZ*PO-1*2026",
    "PO1*1*10*EA*2.15**VP*P-1",
    "PO1*x*1e9*EACH*NaN",
    "ACK*IA*10*EA*068*20261020",
    "ACK*QQ",
    "BSN*00*SH-1*20261017*1400",
    "HL*1**S",
    "HL*2*1*O",
    "HL*3*2*I",
    "PRF*PO-1",
    "LIN**PL*1*VP*P-1",
    "LIN**PL*99999999999",
    "SN1**10*EA",
    "SN1",
    "BIG*20261018*INV-1**PO-1",
    "IT1*1*1*EA*1",
    "TDS*2300",
    "TDS*-",
    "TXI*ST*1.5",
    "CTT*1",
    "AK1*PO*1",
    "AK2*850*0001",
    "AK5*R*5",
    "AK9*R*1*1*0",
    "GE*1*4713",
    "GS*PR*ACMESUPPLY*BOCESHUB*20261016*0912*1*X*004010",
    "GS*FA*ACMESUPPLY*BOCESHUB*20261016*0912*2*X*004010",
    "IEA*1*000004713",
    "",
    "*",
    "\x00",
]


@st.composite
def _x12_bytes(draw: st.DrawFn) -> bytes:
    """An ISA from Acme (its separators drawn), then segments from `X12_SEGMENTS` or random
    text, with the separators swapped in and CR/LF sometimes after the terminator."""
    element, component, terminator = draw(
        st.sampled_from([("*", ">", "~"), ("|", "^", "'"), ("!", ":", "\n"), ("*", "*", "~")])
    )
    isa = X12_SEED[:106].decode().replace("*", element)[:104] + component + terminator
    body = draw(
        st.lists(st.one_of(st.sampled_from(X12_SEGMENTS), st.text(max_size=30)), max_size=25)
    )
    end = terminator + draw(st.sampled_from(["", "\r\n", "\n"]))
    text = isa + end.join(segment.replace("*", element) for segment in body)
    return text.encode("utf-8", "replace")


@fuzz_target(
    "x12.interchange",
    refusals=(sdk.ConnectorError,),
    seeds=[X12_SEED, X12_SEED.replace(b"*", b"|"), X12_SEED[:120], X12_SEED.replace(b"~", b"\n")],
    inputs=_x12_bytes(),
)
def x12_interchange(data: bytes) -> None:
    from connectors.x12 import X12Connector

    with tempfile.TemporaryDirectory() as folder:
        for name in ("in", "out"):
            (Path(folder) / name).mkdir()
        (Path(folder) / "in" / "interchange.x12").write_bytes(data)
        raw = {
            "sender_id": "BOCESHUB",
            "receiver_id": "ACMESUPPLY",
            "inbound_folder": "in",
            "outbound_folder": "out",
            "max_file_bytes": 1 << 20,
        }
        context = sdk.ConnectionContext(connection="fuzz", member="eastview", base_dir=folder)
        connector = X12Connector(X12Connector.parse_options(raw), {}, context)

        async def read() -> None:
            for stream in ("purchase_orders", "acknowledgements", "ship_notices", "invoices"):
                async for batch in connector.read(stream, None):
                    for reject in batch.rejects:
                        assert reject.reason and reject.position, reject
                    await connector.acknowledge(stream, batch.state)
            await connector.close()

        asyncio.run(read())


# --- help desks: vendor JSON pages and signed webhooks, through the connectors' mapping ---------

ZENDESK_PAGE = (
    b'{"tickets": [{"id": 1001, "subject": "Printer", "status": "open", "priority": "high",'
    b' "requester_id": 7, "created_at": "2026-09-01T12:00:00Z", "updated_at": "2026-09-01T12:05:00Z",'
    b' "external_id": "eastview:incident_iq:10423"}], "users": [{"id": 7, "name": "Dana"}],'
    b' "after_cursor": "x", "end_of_stream": true}'
)
IIQ_PAGE = (
    b'{"Items": [{"TicketId": "a", "TicketNumber": 10001, "Subject": "Projector",'
    b' "CreatedDate": "2026-09-01T12:00:00", "ModifiedDate": "2026-09-01T12:00:00",'
    b' "WorkflowStep": {"StatusName": "New"}, "For": {"Name": "Dana"}, "IsUrgent": false,'
    b' "CustomFieldValues": [{"CustomFieldTypeId": "f", "Value": "cooperative:zendesk:1"}]}],'
    b' "Paging": {"PageIndex": 0, "PageSize": 100, "TotalRows": 1, "PageCount": 1}}'
)


@fuzz_target("zendesk.export_page", refusals=(msgspec.DecodeError,), seeds=[ZENDESK_PAGE])
def zendesk_export_page(data: bytes) -> None:
    body = msgspec.json.decode(data)
    rows = body.get("tickets") if isinstance(body, dict) else None
    if isinstance(rows, list):
        users = body.get("users") if isinstance(body.get("users"), list) else []
        zendesk.map_tickets(
            rows,
            {
                u.get("id"): u
                for u in users
                if isinstance(u, dict) and isinstance(u.get("id"), int | str)
            },
        )


@fuzz_target(
    "zendesk.webhook", refusals=(sdk.BadRecord,), seeds=[b'{"ticket": {"id": 5}}', ZENDESK_PAGE]
)
def zendesk_webhook(data: bytes) -> None:
    """A body Zendesk signed: whatever it holds is read or refused as a bad record."""
    desk = zendesk.Zendesk(
        zendesk.Zendesk.parse_options({"subdomain": "fuzz"}),
        {"webhook_secret": "s"},
        sdk.ConnectionContext(connection="fuzz", member=None),
    )
    stamp = desk.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = base64.b64encode(hmac.new(b"s", stamp.encode() + data, hashlib.sha256).digest())
    headers = {
        "x-zendesk-webhook-signature": signature.decode(),
        "x-zendesk-webhook-signature-timestamp": stamp,
    }
    received = asyncio.run(desk.receive(sdk.Inbound(body=data, headers=headers)))
    for raw in received.raws:
        desk.map_raw("tickets", raw)


@fuzz_target("incident_iq.ticket_page", refusals=(msgspec.DecodeError,), seeds=[IIQ_PAGE])
def incident_iq_ticket_page(data: bytes) -> None:
    body = msgspec.json.decode(data)
    rows = body.get("Items") if isinstance(body, dict) else None
    if isinstance(rows, list):
        sdk.map_objects(
            sdk.record_type("ticketing.ticket"),
            rows,
            lambda raw: incident_iq.map_ticket(raw, "f"),
            lambda index, raw: f"ticket {index}",
            "an Incident IQ ticket is an object",
        )


# --- ServiceNow and Jira Service Management: what their webhooks and business rules push -------

SN_INCIDENT = (
    b'{"result": {"sys_id": "a1", "number": "INC0010042", "short_description": "Wi-Fi down",'
    b' "state": "2", "priority": "", "impact": "1", "urgency": "3", "caller_id.name": "Ana",'
    b' "opened_at": "2026-09-01 07:00:00", "correlation_id": "eastview:HELP-1",'
    b' "sys_updated_on": "2026-09-01 07:05:00"}}'
)
JIRA_EVENT = (
    b'{"webhookEvent": "jira:issue_updated", "issue": {"id": "10001", "key": "HELP-1", "fields":'
    b' {"summary": "Laptop", "status": {"name": "In progress", "statusCategory": {"key":'
    b' "indeterminate"}}, "priority": {"name": "High"}, "reporter": {"displayName": "Ana"},'
    b' "created": "2026-09-01T12:00:00.000+0000", "updated": "2026-09-01T12:00:00.000+0000",'
    b' "labels": ["cohub:eastview:INC1"], "description": {"type": "doc", "version": 1,'
    b' "content": [{"type": "bulletList", "content": [{"type": "listItem", "content":'
    b' [{"type": "paragraph", "content": [{"type": "text", "text": "a"}, {"type":'
    b' "hardBreak"}]}]}]}]}}}}'
)


@fuzz_target("servicenow.pushed_incident", refusals=(sdk.BadRecord,), seeds=[SN_INCIDENT])
def servicenow_pushed_incident(data: bytes) -> None:
    desk = servicenow.ServiceNow(
        servicenow.ServiceNow.parse_options({"instance_url": "https://x.service-now.com"}),
        {},
        sdk.ConnectionContext(connection="fuzz", member=None),
    )
    received = asyncio.run(desk.receive(sdk.Inbound(body=data, headers={})))
    for raw in received.raws:
        desk.map_raw("tickets", raw)


@fuzz_target("jira_sm.webhook", refusals=(sdk.BadRecord,), seeds=[JIRA_EVENT])
def jira_webhook(data: bytes) -> None:
    desk = jira_sm.JiraServiceManagement(
        jira_sm.JiraServiceManagement.parse_options(
            {"site_url": "https://x.atlassian.net", "email": "a@b", "project_key": "HELP"}
        ),
        {"webhook_secret": "s"},
        sdk.ConnectionContext(connection="fuzz", member=None),
    )
    signature = "sha256=" + hmac.new(b"s", data, hashlib.sha256).hexdigest()
    headers = {"x-hub-signature": signature}
    received = asyncio.run(desk.receive(sdk.Inbound(body=data, headers=headers)))
    for raw in received.raws:
        desk.map_raw(received.stream or "tickets", raw)


# --- cXML: documents a supplier or a browser posts (the target lives in tests/test_cxml.py) ---

import tests.test_cxml  # noqa: E402, F401
