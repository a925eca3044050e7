"""QuickBooks Online Accounting API (v3): accounts, vendors, invoices, bills, journal entries.

Read top to bottom as Intuit's documentation goes:

- **auth**: OAuth 2.0 refresh token grant at Intuit's token endpoint, the app's client ID and
  secret in HTTP Basic. Access tokens live an hour; each refresh may answer a *new* refresh token
  and the old one is refused afterwards, so the new one is stored in the vault before the access
  token is used (`hub.sdk.secrets.rotate`), and a refresh token the hub cannot store (``env:``) is
  refused before it is spent.
- **company**: every call is under ``/v3/company/{realmId}/`` on the sandbox or production host,
  with ``minorversion``. ``companyinfo/{realmId}`` proves the realm.
- **query**: ``GET query?query=SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '…'
  ORDERBY MetaData.LastUpdatedTime STARTPOSITION 1 MAXRESULTS 1000`` answers
  ``{"QueryResponse": {"Invoice": [...], "startPosition": 1, "maxResults": N}, "time": …}``; an
  empty page has no entity key, a short page is the last.
- **change data capture**: ``GET cdc?entities=Invoice&changedSince=…`` answers
  ``{"CDCResponse": [{"QueryResponse": [{"Invoice": [...]}]}], "time": …}`` with the full payload
  of what changed, deleted entities as ``{"Id": …, "status": "Deleted"}``. It reaches back 30
  days and answers at most 1,000 objects an entity.
- **faults**: ``{"Fault": {"Error": [{"Message", "Detail", "code"}], "type": "ValidationFault"}}``.
- **writes**: ``POST invoice`` creates, or with ``"sparse": true``, ``Id`` and ``SyncToken``
  updates; ``requestid`` makes a retried POST answer as the first one did.
- **throttling**: 500 requests a minute per company, 10 at once; 429 is backed off by the toolkit.

A read with no state queries everything. After that it asks CDC for what changed since the
stored cursor less the route's lookback, or, when that is beyond CDC's reach (or CDC's answer
was cut at 1,000), queries what was updated since, keyset-paged on ``LastUpdatedTime``. The state
is an `sdk.IncrementalCursor`; a complete read moves it to the server's ``time`` of its first
answer, so a quiet stream stays within CDC's reach.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from hub import sdk
from hub.sdk import secrets as sdk_secrets
from hub.sdk.http import (
    ApiOptions,
    HttpAuthError,
    HttpClient,
    HttpStatusError,
    OAuth2RefreshToken,
    OAuthError,
    Retryable,
)

log = logging.getLogger("connectors.quickbooks")

TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
BASE_URLS = {
    "sandbox": "https://sandbox-quickbooks.api.intuit.com/",
    "production": "https://quickbooks.api.intuit.com/",
}
#: How far back CDC answers (Intuit: 30 days), less a day for clocks and time zones.
CDC_REACH = timedelta(days=29)
#: The most objects CDC answers for one entity; an answer this long may be cut.
CDC_LIMIT = 1000
#: QuickBooks' longest DocNumber.
DOC_NUMBER_LENGTH = 21
#: DocNumbers looked up in one query when writing.
LOOKUP_CHUNK = 30

#: Request bodies with amounts as JSON numbers written exactly as the Decimal (no float).
_ENCODER = msgspec.json.Encoder(decimal_format="number")


class QuickBooksOptions(ApiOptions, kw_only=True):
    """Which QuickBooks Online company to reach and how; the app's keys and the refresh token
    are secrets (``client_id``, ``client_secret``, ``refresh_token``)."""

    realm_id: Annotated[
        str, msgspec.Meta(pattern=r"^\d{1,32}$", description="the company ID (realmId)")
    ]
    environment: Annotated[
        Literal["sandbox", "production"],
        msgspec.Meta(description="sandbox or production company (and keys)"),
    ] = "production"
    base_url: Annotated[
        str | None, msgspec.Meta(description="API host instead of the environment's")
    ] = None
    token_url: str = TOKEN_URL
    minor_version: Annotated[int, msgspec.Meta(ge=1)] = 75
    page_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000
    account_layout: Annotated[
        str,
        msgspec.Meta(description="layout of account numbers (AcctNum), see sdk.ACCOUNT_LAYOUTS"),
    ] = "nces"
    seller_id: Annotated[
        str | None,
        msgspec.Meta(description="vendor_id of the invoices this company issues (default realm)"),
    ] = None
    customer_id: Annotated[
        str | None, msgspec.Meta(description="QuickBooks Customer Id invoices are written to")
    ] = None
    customers: Annotated[
        dict[str, str], msgspec.Meta(description="member code to QuickBooks Customer Id")
    ] = {}
    item_id: Annotated[
        str | None, msgspec.Meta(description="QuickBooks Item Id of written invoice lines")
    ] = None


# --- faults ----------------------------------------------------------------------------------


class Fault(msgspec.Struct, frozen=True):
    """An Intuit fault: its type and its errors' messages, details and codes as one text."""

    type: str
    text: str


def fault_of(body: Any) -> Fault | None:
    """The ``Fault`` of an answer, if it is one."""
    fault = body.get("Fault") if isinstance(body, dict) else None
    if not isinstance(fault, dict):
        return None
    errors = [e for e in fault.get("Error") or () if isinstance(e, dict)]
    parts = []
    for error in errors:
        words = [str(error[k]) for k in ("Message", "Detail") if error.get(k)]
        code = f" (code {error['code']})" if error.get("code") else ""
        parts.append(": ".join(dict.fromkeys(words)) + code)
    return Fault(type=str(fault.get("type") or "Fault"), text="; ".join(parts) or "no message")


# --- mapping ---------------------------------------------------------------------------------


def _money(value: Any) -> Any:
    """A JSON amount as Decimal: the toolkit decodes numbers with a fraction as Decimal, a whole
    number arrives as int. Anything else is left for validation to report."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


def _ref(raw: Mapping[str, Any], name: str, part: str = "value") -> Any:
    ref = raw.get(name)
    return ref.get(part) if isinstance(ref, dict) else None


def _updated(raw: Mapping[str, Any]) -> Any:
    return _ref(raw, "MetaData", "LastUpdatedTime")


def stamp(raw: Any) -> datetime | None:
    """An entity's ``MetaData.LastUpdatedTime`` as a datetime (None if it has none)."""
    value = _updated(raw) if isinstance(raw, dict) else None
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _address(raw: Any) -> str | None:
    if not isinstance(raw, dict):
        return None
    lines = [raw.get(f"Line{n}") for n in range(1, 6)]
    place = " ".join(
        str(p)
        for p in (raw.get("City"), raw.get("CountrySubDivisionCode"), raw.get("PostalCode"))
        if p
    )
    return ", ".join(str(p) for p in (*lines, place) if p) or None


def map_account(raw: dict[str, Any], reader: QuickBooks) -> list[dict[str, Any]]:
    """An ``Account`` as `accounting.account`: its number (``AcctNum``) split by the account
    layout; QuickBooks accounts are made inactive, not deleted."""
    number = raw.get("AcctNum")
    return [
        {
            "code": number,
            "account": reader.account_code(number, f"account {raw.get('Name')!r}"),
            "title": raw.get("FullyQualifiedName") or raw.get("Name"),
            "active": raw.get("Active", True),
            "updated_at": _updated(raw),
        }
    ]


def map_vendor(raw: dict[str, Any], reader: QuickBooks) -> list[dict[str, Any]]:
    """A ``Vendor`` as `purchasing.vendor`, keyed by its QuickBooks Id (what bills refer to)."""
    return [
        {
            "vendor_id": raw.get("Id"),
            "name": raw.get("DisplayName") or raw.get("CompanyName"),
            "active": raw.get("Active", True),
            "remit_address": _address(raw.get("BillAddr")),
            "email": _ref(raw, "PrimaryEmailAddr", "Address"),
            "phone": _ref(raw, "PrimaryPhone", "FreeFormNumber"),
            "tax_id": raw.get("TaxIdentifier"),
            "updated_at": _updated(raw),
        }
    ]


def _line(number: int, line: Mapping[str, Any], detail: Mapping[str, Any]) -> dict[str, Any]:
    amount = _money(line.get("Amount"))
    return {
        "line_number": line.get("LineNum") or number,
        "description": line.get("Description"),
        "supplier_part_id": _ref(detail, "ItemRef", "name"),
        "quantity": _money(detail.get("Qty", 1)),
        "unit_price": _money(detail.get("UnitPrice", amount)),
        "amount": amount,
    }


def invoice_lines(lines: Iterable[Any]) -> list[dict[str, Any]]:
    """Invoice and bill lines as `purchasing.InvoiceLine` fields: item and account lines as they
    are, a discount as a negative line, a group's lines in its place; subtotals are left out
    (they repeat the lines above them)."""
    mapped: list[dict[str, Any]] = []
    for line in lines:
        if not isinstance(line, dict):
            continue
        kind = line.get("DetailType")
        detail = line.get(kind) if isinstance(line.get(kind), dict) else {}
        if kind == "GroupLineDetail":
            mapped += invoice_lines(detail.get("Line") or ())
        elif kind == "DiscountLineDetail":
            amount = -_money(line.get("Amount") or 0)
            mapped.append({**_line(len(mapped) + 1, line, {}), "unit_price": amount})
            mapped[-1]["amount"] = amount
        elif kind in (
            "SalesItemLineDetail",
            "ItemBasedExpenseLineDetail",
            "AccountBasedExpenseLineDetail",
        ):
            mapped.append(_line(len(mapped) + 1, line, detail))
    return mapped


def _invoice_status(raw: Mapping[str, Any]) -> str:
    total, balance = _money(raw.get("TotalAmt")), _money(raw.get("Balance"))
    if total == 0 and "voided" in str(raw.get("PrivateNote") or "").lower():
        return "void"
    return "paid" if balance == 0 and total else "received"


def _tax(raw: Mapping[str, Any]) -> Any:
    return _money(_ref(raw, "TxnTaxDetail", "TotalTax"))


def map_invoice(raw: dict[str, Any], reader: QuickBooks) -> list[dict[str, Any]]:
    """An ``Invoice`` (what this company bills a customer) as `purchasing.invoice`, the company
    being the vendor (`seller_id`) and its invoice number (``DocNumber``) the invoice ID."""
    return [
        {
            "invoice_id": raw.get("DocNumber") or raw.get("Id"),
            "vendor_id": reader.seller_id,
            "invoice_date": raw.get("TxnDate"),
            "due_date": raw.get("DueDate"),
            "status": _invoice_status(raw),
            "lines": invoice_lines(raw.get("Line") or ()),
            "total_amount": _money(raw.get("TotalAmt")),
            "tax_amount": _tax(raw),
            "updated_at": _updated(raw),
        }
    ]


def map_bill(raw: dict[str, Any], reader: QuickBooks) -> list[dict[str, Any]]:
    """A ``Bill`` (a vendor's invoice to this company) as `purchasing.invoice`: the vendor by its
    QuickBooks Id, the vendor's reference number (``DocNumber``, else the bill's Id)."""
    return [
        {
            "invoice_id": raw.get("DocNumber") or raw.get("Id"),
            "vendor_id": _ref(raw, "VendorRef"),
            "invoice_date": raw.get("TxnDate"),
            "due_date": raw.get("DueDate"),
            "status": "paid" if _money(raw.get("Balance")) == 0 else "received",
            "lines": invoice_lines(raw.get("Line") or ()),
            "total_amount": _money(raw.get("TotalAmt")),
            "tax_amount": _tax(raw),
            "updated_at": _updated(raw),
        }
    ]


def map_journal_entry(raw: dict[str, Any], reader: QuickBooks) -> list[dict[str, Any]]:
    """A ``JournalEntry`` as one `accounting.journal_entry` per line, each account by its number.
    A line that cannot be mapped rejects the whole entry: half an entry does not balance."""
    lines = []
    for line in raw.get("Line") or ():
        detail = line.get("JournalEntryLineDetail") if isinstance(line, dict) else None
        if not isinstance(detail, dict):
            continue  # a description-only line
        number = len(lines) + 1
        account = reader.account_code(
            reader.chart.get(str(_ref(detail, "AccountRef"))),
            f"line {number}: account {_ref(detail, 'AccountRef', 'name')!r}",
        )
        amount = _money(line.get("Amount"))
        debit = detail.get("PostingType") == "Debit"
        lines.append(
            {
                "entry_id": raw.get("Id"),
                "line_number": number,
                "posted_on": raw.get("TxnDate"),
                "account": account,
                "debit": amount if debit else Decimal(0),
                "credit": Decimal(0) if debit else amount,
                "description": line.get("Description") or raw.get("PrivateNote"),
                "updated_at": _updated(raw),
            }
        )
    return lines


@dataclass(frozen=True)
class Entity:
    """One QuickBooks entity as a stream: its canonical record, mapping and delete key."""

    name: str
    record: str
    description: str
    map: Callable[[dict[str, Any], QuickBooks], list[dict[str, Any]]]
    #: The record key of an entity CDC reports deleted (it gives only the Id), where the key
    #: is made of the Id alone; else deletions cannot be matched to records.
    deleted_key: Callable[[str], str] | None = None
    writable: bool = False


ENTITIES: dict[str, Entity] = {
    "accounts": Entity("Account", "accounting.account", "chart of accounts", map_account),
    "vendors": Entity("Vendor", "purchasing.vendor", "vendors", map_vendor, lambda id: id),
    "invoices": Entity(
        "Invoice", "purchasing.invoice", "invoices to customers", map_invoice, writable=True
    ),
    "bills": Entity("Bill", "purchasing.invoice", "bills from vendors", map_bill),
    "journal_entries": Entity(
        "JournalEntry",
        "accounting.journal_entry",
        "journal entries, a record a line",
        map_journal_entry,
    ),
}


def invoice_body(record: Any, customer: str, item: str | None) -> dict[str, Any]:
    """A `purchasing.invoice` as a QuickBooks ``Invoice`` to POST, its invoice ID the DocNumber
    by which it is found again."""
    lines = []
    for line in record.lines:
        detail: dict[str, Any] = {"Qty": line.quantity, "UnitPrice": line.unit_price}
        if item is not None:
            detail["ItemRef"] = {"value": item}
        lines.append(
            {
                "LineNum": line.line_number,
                "Description": line.description,
                "Amount": line.amount,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": detail,
            }
        )
    body: dict[str, Any] = {
        "DocNumber": record.invoice_id,
        "TxnDate": record.invoice_date.isoformat(),
        "CustomerRef": {"value": customer},
        "Line": lines,
    }
    if record.due_date is not None:
        body["DueDate"] = record.due_date.isoformat()
    return body


def _quoted(value: str) -> str:
    """A string literal of Intuit's query language (a quote escaped with a backslash)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


# --- the connector ---------------------------------------------------------------------------


class QuickBooks(sdk.Connector[QuickBooksOptions]):
    """A QuickBooks Online company: five incremental streams (CDC), invoices written."""

    name = "quickbooks_online"
    title = "QuickBooks Online (Accounting API v3)"
    options = QuickBooksOptions
    secrets = ("client_id", "client_secret", "refresh_token")

    def __init__(
        self,
        options: QuickBooksOptions,
        secrets: Mapping[str, str],
        context: sdk.ConnectionContext,
    ) -> None:
        super().__init__(options, secrets, context)
        self._client: HttpClient | None = None
        self._auth: OAuth2RefreshToken | None = None
        self.layout = sdk.account_layout(options.account_layout)
        #: Account Id → account number, for journal lines (loaded by a journal read).
        self.chart: dict[str, str | None] = {}

    # auth and the client

    def _base(self) -> str:
        return (self.config.base_url or BASE_URLS[self.config.environment]).rstrip("/") + "/"

    @property
    def client(self) -> HttpClient:
        """The authenticated client, built on first use; before it is, the refresh token must
        be one the hub can replace when Intuit rotates it."""
        if self._client is None:
            missing = [name for name in self.secrets if name not in self.secret_values]
            if missing:
                raise sdk.ConnectorConfigError(
                    f"the connection gives no {', '.join(missing)} secret"
                )
            sdk_secrets.ensure_rotatable(self.context, "refresh_token")
            self._auth = OAuth2RefreshToken(
                token_url=self.config.token_url,
                client_id=self.secret_values["client_id"],
                client_secret=self.secret_values["client_secret"],
                refresh_token=self.secret_values["refresh_token"],
                on_rotate=self._rotated,
            )
            self._client = self.config.client(self._base(), self.context, auth=self._auth)
        return self._client

    async def _rotated(self, refresh_token: str, lives: float | None) -> None:
        """Intuit issued a new refresh token: keep it, or this connection is lost."""
        await sdk_secrets.rotate(self.context, "refresh_token", refresh_token)
        self.secret_values["refresh_token"] = refresh_token
        days = None if lives is None else int(lives // 86400)
        log.info(
            "qbo.refresh_token_rotated: connection %s, new refresh token stored (valid %s days)",
            self.context.connection,
            days,
        )

    @property
    def seller_id(self) -> str:
        """The vendor ID of the invoices this company issues."""
        return self.config.seller_id or self.config.realm_id

    def _path(self, resource: str) -> str:
        return f"v3/company/{self.config.realm_id}/{resource}"

    def _params(self, **params: str | int) -> dict[str, str | int]:
        return {**params, "minorversion": self.config.minor_version}

    async def _get(self, resource: str, **params: str | int) -> dict[str, Any]:
        """GET a company resource; a fault or an answer that is not an object is an error."""
        body = await self.client.get_json(self._path(resource), params=self._params(**params))
        fault = fault_of(body)
        if fault is not None:
            raise sdk.ConnectorError(f"QuickBooks {resource}: {fault.type}: {fault.text}")
        if not isinstance(body, dict):
            raise sdk.ConnectorError(
                f"QuickBooks {resource}: the answer is {type(body).__name__}, not an object"
            )
        return body

    def account_code(self, number: Any, what: str) -> Any:
        """An account number split into NCES dimensions, or `BadRecord` saying why not."""
        if not isinstance(number, str) or not number.strip():
            raise sdk.BadRecord(
                f"{what} has no account number (AcctNum): turn on account numbers in "
                "QuickBooks (Settings > Advanced > Chart of accounts) and number it"
            )
        try:
            return msgspec.to_builtins(self.layout.parse(number))
        except ValueError as error:
            raise sdk.BadRecord(f"{what}: {error}") from None

    # check and streams

    async def check(self) -> None:
        """The refresh token gets an access token, the realm is a company the app may reach,
        and every entity can be read; each failure says which and what to do."""
        client = self.client
        assert self._auth is not None
        try:
            await self._auth.headers(client)
        except Retryable as error:
            raise sdk.TransientError(
                f"cannot reach Intuit's token endpoint {self.config.token_url}: {error.reason}"
            ) from None
        except OAuthError as error:
            raise sdk.AuthError(_token_refusal(error, self.context.connection)) from None
        try:
            info = await self._get(f"companyinfo/{self.config.realm_id}")
            for entity in ENTITIES.values():
                await self._query(f"SELECT * FROM {entity.name} MAXRESULTS 1")
        except sdk.TransientError as error:
            raise sdk.TransientError(
                f"cannot reach the QuickBooks API at {self._base()}: {error}"
            ) from None
        except HttpAuthError as error:
            raise sdk.AuthError(self._access_refusal(error)) from None
        except HttpStatusError as error:
            raise sdk.ConnectorConfigError(
                f"{self._base()} does not answer as the QuickBooks Online API for realm "
                f"{self.config.realm_id}: HTTP {error.status} (check environment and base_url)"
            ) from None
        if "CompanyInfo" not in info:
            raise sdk.ConnectorConfigError(
                f"{self._base()}: companyinfo answered without CompanyInfo; is it QuickBooks Online?"
            )

    def _access_refusal(self, error: HttpAuthError) -> str:
        fault = fault_of(error.body)
        said = f"{fault.type}: {fault.text}" if fault else "no fault given"
        if error.status == 403 and fault and "ApplicationAuthorizationFailed" in fault.text:
            return (
                f"QuickBooks refused realm_id {self.config.realm_id} (HTTP 403, {said}): it is not "
                f"a {self.config.environment} company this app is connected to; check realm_id "
                "(the Company ID) and environment"
            )
        return (
            f"QuickBooks refused access (HTTP {error.status}, {said}): the app needs the "
            "com.intuit.quickbooks.accounting scope and a user with access to all accounting "
            "data must connect it"
        )

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(
                name=name,
                record=entity.record,
                description=f"QuickBooks {entity.name}: {entity.description}",
                writable=entity.writable,
            )
            for name, entity in ENTITIES.items()
        ]

    def _entity(self, stream: str) -> Entity:
        return self.offered(stream, ENTITIES)

    # mapping a page

    def map_rows(
        self, entity: Entity, rows: list[Any]
    ) -> tuple[list[sdk.Record], list[sdk.Reject]]:
        """Entities as canonical records, and those that cannot be, with the reason."""
        record = sdk.record_type(entity.record)
        mapped: list[dict[str, Any]] = []
        origin: list[int] = []
        rejects: list[sdk.Reject] = []

        def reject(index: int, reason: str) -> None:
            raw = rows[index]
            where = f"{entity.name} Id {raw.get('Id')}" if isinstance(raw, dict) else entity.name
            body = raw if isinstance(raw, dict) else {"value": msgspec.to_builtins(raw)}
            rejects.append(sdk.Reject(position=where, reason=reason, raw=body))

        for index, raw in enumerate(rows):
            if not isinstance(raw, dict):
                reject(index, f"a QuickBooks entity is an object, not {type(raw).__name__}")
                continue
            try:
                fields = entity.map(raw, self)
            except sdk.BadRecord as error:
                reject(index, error.reason)
                continue
            mapped += fields
            origin += [index] * len(fields)
        records, failures = sdk.convert_rows(record, mapped)
        failed = {origin[i]: reason for i, reason in failures}
        for index, reason in failed.items():
            reject(index, reason)
        if failed:  # every line of a rejected entry goes with it
            kept = [r for i, r in enumerate(mapped) if origin[i] not in failed]
            records, _ = sdk.convert_rows(record, kept)
        return records, rejects

    def map_raw(self, stream: str, raw: dict[str, Any]) -> sdk.Record:
        entity = self._entity(stream)
        records, rejects = self.map_rows(entity, [raw])
        if rejects:
            raise sdk.BadRecord(rejects[0].reason, position=rejects[0].position)
        if len(records) != 1:
            raise sdk.BadRecord(
                f"a {entity.name} maps to {len(records)} records; it is read again when it changes"
            )
        return records[0]

    def pii_columns(self, stream: str) -> frozenset[str]:
        return frozenset({"TaxIdentifier"}) if stream == "vendors" else frozenset()

    # read

    async def _query(self, statement: str) -> tuple[list[Any], Any]:
        """One page of a query: its entities and the server's time."""
        body = await self._get("query", query=statement)
        answer = body.get("QueryResponse")
        if not isinstance(answer, dict):
            raise sdk.ConnectorError("QuickBooks query answered without a QueryResponse object")
        entity = statement.split(" FROM ", 1)[1].split(" ", 1)[0]
        rows = answer.get(entity, [])
        if not isinstance(rows, list):
            raise sdk.ConnectorError(
                f"QuickBooks query: QueryResponse.{entity} is {type(rows).__name__}, not a list"
            )
        return rows, body.get("time")

    async def _load_chart(self) -> None:
        """Account Id → number, for journal lines (which name accounts by Id)."""
        start, size = 1, self.config.page_size
        while True:
            rows, _ = await self._query(
                f"SELECT * FROM Account STARTPOSITION {start} MAXRESULTS {size}"
            )
            self.chart.update(
                {str(r.get("Id")): r.get("AcctNum") for r in rows if isinstance(r, dict)}
            )
            if len(rows) < size:
                return
            start += len(rows)

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        entity = self._entity(stream)
        if entity.name == "JournalEntry" and not self.chart:
            await self._load_chart()
        cursor = sdk.IncrementalCursor(state, self.lookback)
        since = cursor.since()
        if since is not None and since >= datetime.now(UTC) - CDC_REACH:
            batches = self._read_changes(entity, cursor, since)
        else:
            if since is not None:
                log.warning(
                    "qbo.cdc_out_of_reach: %s last read up to %s, beyond the 30 days change "
                    "data capture reaches back: querying what changed since instead; entities "
                    "deleted meanwhile are not reported (a full_refresh_deletes run finds them)",
                    stream,
                    _when(since),
                )
            batches = self._read_query(entity, cursor, since)
        async for batch in batches:
            yield batch

    def _batches(
        self, entity: Entity, rows: list[Any], cursor: sdk.IncrementalCursor
    ) -> Iterable[sdk.Batch]:
        for start in range(0, len(rows), self.batch_size):
            records, rejects = self.map_rows(entity, rows[start : start + self.batch_size])
            yield sdk.Batch(records=cursor.admit(records), rejects=rejects, state=cursor.state())

    def _closing(
        self, cursor: sdk.IncrementalCursor, server_time: Any, deletes: list[str]
    ) -> sdk.Batch:
        """The last batch of a complete read: the cursor moved to the server's time when the
        read began (so a quiet stream stays within CDC's reach), and what was deleted."""
        try:
            moment = datetime.fromisoformat(server_time) if isinstance(server_time, str) else None
        except ValueError:
            moment = None
        if moment is not None and (cursor.cursor is None or moment > cursor.cursor):
            cursor.cursor = moment
            cursor.admit([])  # forget what fell out of the lookback window
        return sdk.Batch(records=[], state=cursor.state(), deletes=deletes)

    async def _read_query(
        self, entity: Entity, cursor: sdk.IncrementalCursor, since: datetime | None
    ) -> AsyncIterator[sdk.Batch]:
        """Pages ordered by ``LastUpdatedTime``, keyset-paged: each page starts at the last
        page's time (``>=``) past the entities already read at that very time, so an entity
        updated during the read cannot shift one out of the walk."""
        size, start, began = self.config.page_size, 1, None
        while True:
            where = "" if since is None else f" WHERE MetaData.LastUpdatedTime >= '{_when(since)}'"
            rows, server_time = await self._query(
                f"SELECT * FROM {entity.name}{where} ORDERBY MetaData.LastUpdatedTime "
                f"STARTPOSITION {start} MAXRESULTS {size}"
            )
            began = began or server_time
            for batch in self._batches(entity, rows, cursor):
                yield batch
            if len(rows) < size:
                break
            last = stamp(rows[-1])
            if last is None or (since is not None and last == since):
                start += len(rows)
            else:
                since, start = last, 1 + sum(1 for r in rows if stamp(r) == last)
        yield self._closing(cursor, began, [])

    async def _read_changes(
        self, entity: Entity, cursor: sdk.IncrementalCursor, since: datetime
    ) -> AsyncIterator[sdk.Batch]:
        """What CDC reports changed since `since`, oldest first, then the deletions."""
        body = await self._get("cdc", entities=entity.name, changedSince=_when(since))
        rows = _cdc_rows(body, entity.name)
        deleted = [r for r in rows if isinstance(r, dict) and r.get("status") == "Deleted"]
        changed = [r for r in rows if not (isinstance(r, dict) and r.get("status") == "Deleted")]
        if len(rows) >= CDC_LIMIT:
            log.warning(
                "qbo.cdc_cut: CDC answered %d %s entities, its most: querying them instead",
                len(rows),
                entity.name,
            )
            async for batch in self._read_query(entity, cursor, since):
                yield batch
        else:
            changed.sort(key=lambda r: stamp(r) or datetime.min.replace(tzinfo=UTC))
            for batch in self._batches(entity, changed, cursor):
                yield batch
        yield self._closing(cursor, body.get("time"), self._deleted_keys(entity, deleted))

    def _deleted_keys(self, entity: Entity, deleted: list[dict[str, Any]]) -> list[str]:
        ids = [str(r.get("Id")) for r in deleted]
        if entity.deleted_key is not None:
            return [entity.deleted_key(i) for i in ids]
        if ids:
            log.warning(
                "qbo.deletes_unmatched: QuickBooks deleted %s Id %s; a %s record is not keyed "
                "by the QuickBooks Id, so the deletion cannot be delivered",
                entity.name,
                ", ".join(ids),
                entity.record,
            )
        return []

    # write

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        """Create each invoice, or update the one with its DocNumber (sparse, at its SyncToken):
        a batch written twice leaves one invoice each. QuickBooks' refusal of one invoice
        (``ValidationFault``) rejects that invoice with Intuit's message."""
        entity = self._entity(stream)
        if not entity.writable:
            raise sdk.ConnectorConfigError(
                f"stream {stream!r} cannot be written; writable: "
                + ", ".join(n for n, e in ENTITIES.items() if e.writable)
            )
        customer = self.config.customers.get(member or "") or self.config.customer_id
        if customer is None:
            raise sdk.ConnectorConfigError(
                f"no QuickBooks customer to invoice for member {member!r}: set options.customers "
                "(member code = Customer Id) or options.customer_id"
            )
        existing = await self._existing([r.invoice_id for r in batch.records])
        written, rejects = 0, []
        for record in batch.records:
            reason = await self._write_invoice(record, customer, existing.get(record.invoice_id))
            if reason is None:
                written += 1
            else:
                rejects.append(
                    sdk.Reject(
                        position=f"invoice {record.key}",
                        reason=reason,
                        raw=msgspec.to_builtins(record),
                    )
                )
        return sdk.WriteResult(written=written, rejects=rejects)

    async def _existing(self, numbers: list[str]) -> dict[str, tuple[str, str]]:
        """DocNumber → (Id, SyncToken) of the invoices already there."""
        found: dict[str, tuple[str, str]] = {}
        unique = sorted(set(n for n in numbers if len(n) <= DOC_NUMBER_LENGTH))
        for start in range(0, len(unique), LOOKUP_CHUNK):
            listed = ", ".join(_quoted(n) for n in unique[start : start + LOOKUP_CHUNK])
            rows, _ = await self._query(
                f"SELECT * FROM Invoice WHERE DocNumber IN ({listed}) MAXRESULTS 1000"
            )
            for row in rows:
                if isinstance(row, dict):
                    found[str(row.get("DocNumber"))] = (str(row["Id"]), str(row["SyncToken"]))
        return found

    async def _write_invoice(
        self, record: Any, customer: str, existing: tuple[str, str] | None
    ) -> str | None:
        """POST one invoice; None when QuickBooks took it, else why it refused it."""
        if len(record.invoice_id) > DOC_NUMBER_LENGTH:
            return (
                f"invoice ID {record.invoice_id!r} is longer than QuickBooks' "
                f"{DOC_NUMBER_LENGTH}-character DocNumber"
            )
        body = invoice_body(record, customer, self.config.item_id)
        if existing is not None:
            body.update(Id=existing[0], SyncToken=existing[1], sparse=True)
        encoded = _ENCODER.encode(body)
        # The same invoice with the same content is the same request: a retry after a lost
        # answer is answered as the first one was, never a second invoice.
        digest = hashlib.sha256(f"{self.context.connection}\0".encode() + encoded).digest()
        request_id = uuid.UUID(bytes=digest[:16]).hex
        try:
            answer = await self.client.post_json(
                self._path("invoice"),
                msgspec.Raw(encoded),
                params=self._params(requestid=request_id),
                idempotent=True,
            )
        except HttpStatusError as error:
            fault = fault_of(error.body)
            if fault is None or fault.type != "ValidationFault":
                raise sdk.ConnectorError(
                    f"{error}: {fault.type + ': ' + fault.text if fault else 'no fault given'}"
                ) from None
            return f"QuickBooks refused invoice {record.invoice_id}: {fault.text}"
        fault = fault_of(answer)
        if fault is not None:
            return f"QuickBooks refused invoice {record.invoice_id}: {fault.type}: {fault.text}"
        if not (isinstance(answer, dict) and isinstance(answer.get("Invoice"), dict)):
            raise sdk.ConnectorError("QuickBooks answered an invoice POST without the Invoice")
        return None

    async def close(self) -> None:
        self._client = None


def _cdc_rows(body: Mapping[str, Any], entity: str) -> list[Any]:
    """The entities of `entity` in a CDC answer; its shape is checked on the way."""
    try:
        answers = body["CDCResponse"][0]["QueryResponse"]
    except (KeyError, IndexError, TypeError):
        raise sdk.ConnectorError(
            "QuickBooks cdc answered without CDCResponse[0].QueryResponse"
        ) from None
    rows: list[Any] = []
    for answer in answers if isinstance(answers, list) else ():
        found = answer.get(entity, []) if isinstance(answer, dict) else []
        if not isinstance(found, list):
            raise sdk.ConnectorError(f"QuickBooks cdc: {entity} is {type(found).__name__}")
        rows += found
    return rows


def _token_refusal(error: OAuthError, connection: str) -> str:
    """What to do about Intuit's refusal of the token request."""
    if error.code == "invalid_grant":
        return (
            "Intuit refused the refresh token (invalid_grant): it was revoked, expired, or "
            "replaced by a newer one; reconnect the app to the QuickBooks company and store "
            f"the new refresh token with `cohub secrets set connection.{connection}.refresh_token`"
        )
    if error.code == "invalid_client":
        return (
            "Intuit refused the app's client_id and client_secret (invalid_client): use the "
            "keys of the app's Development section for sandbox companies, of Production for "
            "production ones"
        )
    return f"Intuit refused the token request: {error}"
