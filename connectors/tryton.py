"""Tryton: the agency's own ERP, read and written over its JSON-RPC interface.

Tryton (8.x) answers JSON-RPC at ``POST /<database>/rpc/`` with a body
``{"id", "method", "params"}``; server-level calls (``common.server.version``) go to ``/rpc/``.
Errors come back as HTTP 200 with an ``error`` member (``["UserError", [message, ...]]``), a
refused login or an expired session as HTTP 401, an unknown database as HTTP 404.

Authentication: ``common.db.login [login, {"password": ...}, language]`` returns
``[user id, token, ...]``; every later call carries ``Authorization: Session
base64(login:uid:token)``. A session Tryton has expired answers 401, and the client logs in again
once (`TrytonSession.forget`).

Model calls are ``model.<model>.<method>`` with the context dict last. ``search_read`` takes
domain, offset, limit, order, fields and context; a dotted field (``party.code``) comes back as
``{"party.": {"code": ...}}``. Decimals travel as ``{"__class__": "Decimal", "decimal": "1.00"}``,
dates and datetimes (naive, UTC) as ``{"__class__": "date", "year", "month", "day", ...}``.

Streams read incrementally by ``write_date``/``create_date`` in two steps: the changed rows' ids
and stamps, paged by offset and ordered by id (a stable order while rows are added), sorted by
last change; then the rows themselves, one batch at a time, with their lines. So a batch is
always oldest change first, as `sdk.IncrementalCursor` needs, without Tryton having to order by
``max(write_date, create_date)``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import quote

import msgspec

from hub import sdk
from hub.sdk.http import Auth, HttpClient, HttpStatusError, RetryPolicy, TlsOptions, trusting

__version__ = "1.0.0"

#: Rows whose ids and stamps one ``search_read`` returns in the first step of a read.
STAMP_PAGE = 1000

#: How `check` asks: one quick attempt, so a wrong URL fails in seconds, not minutes.
CHECK_RETRY = RetryPolicy(attempts=2, base=0.2, cap=1.0, deadline=5.0)


class TrytonOptions(TlsOptions, kw_only=True):
    """Where the Tryton server is and who Cohub logs in as (the password is the ``password``
    secret)."""

    url: Annotated[
        str, msgspec.Meta(description="the Tryton server's base URL, e.g. https://erp.example.org/")
    ]
    database: Annotated[str, msgspec.Meta(description="the Tryton database name")]
    login: Annotated[str, msgspec.Meta(description="the Tryton user Cohub logs in as")]
    account_layout: Annotated[
        str,
        msgspec.Meta(
            description="how Tryton account codes are written: nys, nces, or a regular "
            "expression with named groups fund, function and object"
        ),
    ] = "nys"
    streams: Annotated[
        list[str] | None,
        msgspec.Meta(description="the streams this connection uses (default: all); check() "
                     "tests access to their models only"),
    ] = None  # fmt: skip
    language: str = "en"


# --- JSON-RPC values ---------------------------------------------------------------------------


def decode_value(value: Any) -> Any:
    """Tryton's JSON values as Python ones: Decimal, date, and datetimes as UTC."""
    if isinstance(value, dict):
        kind = value.get("__class__")
        if kind == "Decimal":
            return Decimal(value["decimal"])
        if kind == "date":
            return date(value["year"], value["month"], value["day"])
        if kind == "datetime":
            return datetime(
                value["year"], value["month"], value["day"], value.get("hour", 0),
                value.get("minute", 0), value.get("second", 0), value.get("microsecond", 0),
                tzinfo=UTC,
            )  # fmt: skip
        if kind == "time":
            return time(value["hour"], value["minute"], value["second"], value["microsecond"])
        if kind == "timedelta":
            return timedelta(seconds=value["seconds"])
        return {key: decode_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    return value


def encode_value(value: Any) -> Any:
    """Python values as Tryton's JSON: the inverse of `decode_value` (datetimes sent as UTC)."""
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return {
            "__class__": "datetime", "year": value.year, "month": value.month, "day": value.day,
            "hour": value.hour, "minute": value.minute, "second": value.second,
            "microsecond": value.microsecond,
        }  # fmt: skip
    if isinstance(value, date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, dict):
        return {key: encode_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [encode_value(item) for item in value]
    return value


class TrytonError(sdk.ConnectorError):
    """Tryton answered a call with an ``error`` member."""


def _raise_error(error: Any, method: str, login: str) -> None:
    kind, detail = [*error, None, None][:2] if isinstance(error, list) else (error, None)
    message = detail[0] if isinstance(detail, list) and detail else str(detail or "")
    if kind == "UserError" and "not allowed to" in str(message):
        raise sdk.AuthError(
            f"Tryton user {login!r} lacks an access right for {method}: {message} "
            "(add the user to the groups docs/connectors/tryton.md lists)"
        )
    raise TrytonError(f"Tryton refused {method}: {kind}: {message}".rstrip(": "))


# --- authentication ----------------------------------------------------------------------------


@dataclass
class TrytonSession(Auth):
    """Tryton's session authentication: log in once, send ``Session`` headers, log in again when
    Tryton answers 401 (the session expired or was ended)."""

    login_client: HttpClient
    database: str
    login: str
    password: str = field(repr=False)
    language: str = "en"
    logins: int = 0
    _header: str | None = field(default=None, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def headers(self, client: Any) -> dict[str, str]:
        async with self._lock:
            if self._header is None:
                self._header = await self._login()
        return {"Authorization": self._header}

    def forget(self) -> bool:
        self._header = None
        return True

    async def _login(self) -> str:
        body = {
            "id": 0,
            "method": "common.db.login",
            "params": [self.login, {"password": self.password}, self.language],
        }
        where = f"database {self.database!r} at {self.login_client.base_url}"
        try:
            answer = await self.login_client.post_json(
                f"{quote(self.database)}/rpc/", body, idempotent=True
            )
        except sdk.AuthError:
            raise sdk.AuthError(
                f"Tryton refused the login {self.login!r} on {where}: wrong login or password "
                "(HTTP 401)"
            ) from None
        except HttpStatusError as error:
            if error.status == 404:
                raise sdk.ConnectorConfigError(
                    f"Tryton has no database {self.database!r} at {self.login_client.base_url} "
                    "(HTTP 404)"
                ) from None
            raise
        if not isinstance(answer, dict) or "result" not in answer:
            if isinstance(answer, dict) and "error" in answer:
                _raise_error(answer["error"], "common.db.login", self.login)
            raise sdk.ConnectorError(f"unexpected answer to common.db.login on {where}")
        uid, token = answer["result"][:2]
        self.logins += 1
        pair = f"{self.login}:{uid}:{token}".encode()
        return "Session " + base64.b64encode(pair).decode("ascii")


# --- streams -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lines:
    """The child rows a stream reads with its rows: `model` rows whose `parent` is one of them."""

    model: str
    parent: str
    fields: tuple[str, ...]
    domain: tuple[Any, ...] = ()
    order: tuple[tuple[str, str], ...] = (("id", "ASC"),)


@dataclass(frozen=True)
class Stream:
    """One stream: the Tryton model, the rows it takes, and the mapping to a canonical record."""

    model: str
    record: str
    description: str
    fields: tuple[str, ...]
    map: Callable[[TrytonConnector, dict[str, Any]], list[dict[str, Any]]]
    domain: tuple[Any, ...] = ()
    lines: Lines | None = None
    writable: bool = False


STAMPS = ("write_date", "create_date")


def _updated_at(row: dict[str, Any]) -> Any:
    return row.get("write_date") or row.get("create_date")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _code(row: dict[str, Any], relation: str) -> Any:
    related = row.get(relation + ".")
    return related.get("code") if isinstance(related, dict) else None


class Skip(Exception):
    """A row that is not a record yet (a draft without a number): not delivered, not rejected.
    Its next change (the number it gets) makes it read again."""


def map_account(self: TrytonConnector, row: dict[str, Any]) -> list[dict[str, Any]]:
    code = _text(row.get("code"))
    if code is None:
        raise ValueError("account has no code")
    return [
        {
            "code": code,
            "account": self.account(code),
            "title": row.get("name"),
            "active": bool(row.get("active", True)),
            "updated_at": _updated_at(row),
        }
    ]


def map_party(self: TrytonConnector, row: dict[str, Any]) -> list[dict[str, Any]]:
    addresses = row.get("lines") or []
    address = _text(addresses[0].get("full_address")) if addresses else None
    return [
        {
            "vendor_id": row.get("code"),
            "name": row.get("name"),
            "active": bool(row.get("active", True)),
            "remit_address": ", ".join(address.splitlines()) if address else None,
            "email": _text(row.get("email")),
            "phone": _text(row.get("phone")),
            "updated_at": _updated_at(row),
        }
    ]


def map_move(self: TrytonConnector, row: dict[str, Any]) -> list[dict[str, Any]]:
    move = row.get("number")
    if not move:
        raise ValueError("posted move has no number")
    period = row.get("period.") or {}
    end = (period.get("fiscalyear.") or {}).get("end_date")
    fiscal_year = end.year if isinstance(end, date) else int(str(end)[:4]) if end else None
    entries = []
    for number, line in enumerate(row.get("lines") or [], start=1):
        code = _code(line, "account")
        if not code:
            raise ValueError(f"line {number} has an account without a code")
        entries.append(
            {
                "entry_id": move,
                "line_number": number,
                "posted_on": row.get("date"),
                "account": self.account(code),
                "debit": line.get("debit"),
                "credit": line.get("credit"),
                "description": _text(line.get("description")) or _text(row.get("description")),
                "fiscal_year": fiscal_year,
                "updated_at": _updated_at(row),
            }
        )
    return entries


INVOICE_STATUS = {
    "draft": "received",
    "validated": "received",
    "posted": "approved",
    "paid": "paid",
    "cancelled": "void",
}


def map_invoice(self: TrytonConnector, row: dict[str, Any]) -> list[dict[str, Any]]:
    invoice_id = _text(row.get("reference")) or _text(row.get("number"))
    if invoice_id is None:
        raise Skip
    return [
        {
            "invoice_id": invoice_id,
            "vendor_id": _code(row, "party"),
            "invoice_date": row.get("invoice_date"),
            "status": INVOICE_STATUS.get(row.get("state"), row.get("state")),
            "lines": _lines(row),
            "total_amount": row.get("total_amount"),
            "tax_amount": row.get("tax_amount"),
            "updated_at": _updated_at(row),
        }
    ]


def _lines(row: dict[str, Any], blank: str | None = None) -> list[dict[str, Any]]:
    """An invoice's or purchase's lines as the canonical record's; `blank` stands for a line
    without a description (a purchase order line needs one)."""
    return [
        {
            "line_number": number,
            "description": _text(line.get("description")) or blank,
            "supplier_part_id": _code(line, "product"),
            "quantity": line.get("quantity"),  # the toolkit decodes fractions as Decimal
            "unit_price": line.get("unit_price"),
            "amount": line.get("amount"),
        }
        for number, line in enumerate(row.get("lines") or [], start=1)
    ]


PURCHASE_STATUS = {
    "quotation": "open",
    "confirmed": "sent",
    "processing": "acknowledged",
    "done": "closed",
    "cancelled": "canceled",
}


def map_purchase(self: TrytonConnector, row: dict[str, Any]) -> list[dict[str, Any]]:
    po_id = _text(row.get("number"))
    if po_id is None or row.get("state") == "draft":
        raise Skip
    ordered = row.get("purchase_date") or row.get("create_date")
    return [
        {
            "po_id": po_id,
            "vendor_id": _code(row, "party"),
            "order_date": ordered.date() if isinstance(ordered, datetime) else ordered,
            "status": PURCHASE_STATUS.get(row.get("state"), row.get("state")),
            "lines": _lines(row, blank=""),
            "total_amount": row.get("total_amount"),
            "updated_at": _updated_at(row),
        }
    ]


STREAMS: dict[str, Stream] = {
    "accounts": Stream(
        model="account.account",
        record="accounting.account",
        description="the chart of accounts (account.account), codes split by account_layout",
        fields=("code", "name", "active", *STAMPS),
        map=map_account,
    ),
    "parties": Stream(
        model="party.party",
        record="purchasing.vendor",
        description="parties (party.party) as vendors, keyed by party code; writable",
        fields=("code", "name", "active", "email", "phone", *STAMPS),
        map=map_party,
        lines=Lines(
            "party.address", "party", ("full_address",), order=(("sequence", "ASC"), ("id", "ASC"))
        ),
        writable=True,
    ),
    "journal_entries": Stream(
        model="account.move",
        record="accounting.journal_entry",
        description="posted journal moves (account.move) with their lines, one record a line",
        fields=("number", "date", "description", "period.fiscalyear.end_date", *STAMPS),
        map=map_move,
        domain=(("state", "=", "posted"),),
        lines=Lines(
            "account.move.line", "move", ("account.code", "debit", "credit", "description")
        ),
    ),
    "invoices": Stream(
        model="account.invoice",
        record="purchasing.invoice",
        description="supplier invoices (account.invoice of type in) with their lines",
        fields=(
            "number",
            "reference",
            "state",
            "party.code",
            "invoice_date",
            "total_amount",
            "tax_amount",
            *STAMPS,
        ),
        map=map_invoice,
        domain=(("type", "=", "in"),),
        lines=Lines(
            "account.invoice.line",
            "invoice",
            ("description", "product.code", "quantity", "unit_price", "amount"),
            domain=(("type", "=", "line"),),
            order=(("sequence", "ASC"), ("id", "ASC")),
        ),
    ),
    "purchase_orders": Stream(
        model="purchase.purchase",
        record="purchasing.purchase_order",
        description="purchases (purchase.purchase) from quotation on, with their lines",
        fields=("number", "state", "party.code", "purchase_date", "total_amount", *STAMPS),
        map=map_purchase,
        domain=(("state", "!=", "draft"),),
        lines=Lines(
            "purchase.line",
            "purchase",
            ("description", "product.code", "quantity", "unit_price", "amount"),
            domain=(("type", "=", "line"),),
            order=(("sequence", "ASC"), ("id", "ASC")),
        ),
    ),
}


# --- the connector -----------------------------------------------------------------------------


class TrytonConnector(sdk.Connector[TrytonOptions]):
    """Tryton ERP over JSON-RPC: accounts, parties, journal moves, supplier invoices and
    purchases read incrementally; parties written (created or updated by party code)."""

    name = "tryton"
    title = "Tryton ERP (JSON-RPC)"
    options = TrytonOptions
    secrets = ("password",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: HttpClient | None = None
        self._session: TrytonSession | None = None
        self._layout: sdk.AccountLayout | None = None
        self._ids = itertools.count(1)

    # connection

    def _tls(self) -> Any:
        bundle = self.config.ca_bundle
        return trusting(self.context.resolve_path(bundle) if bundle else None)

    def _new_client(self, retry: RetryPolicy | None = None, auth: Auth | None = None) -> Any:
        extra = {} if retry is None else {"retry": retry}
        return HttpClient(
            self.config.url, tls=self._tls(), **({"auth": auth} if auth else {}), **extra
        )

    @property
    def client(self) -> HttpClient:
        if self._client is None:
            if "password" not in self.secret_values:
                raise sdk.ConnectorConfigError("the connection gives no 'password' secret")
            self._session = TrytonSession(
                self._new_client(),
                self.config.database,
                self.config.login,
                self.secret_values["password"],
                self.config.language,
            )
            self._client = self._new_client(auth=self._session)
        return self._client

    async def call(self, method: str, *params: Any, context: dict[str, Any] | None = None) -> Any:
        """One JSON-RPC call on the database, the context last; its decoded result."""
        body = {
            "id": next(self._ids),
            "method": method,
            "params": encode_value([*params, context or {}]),
        }
        path = f"{quote(self.config.database)}/rpc/"
        try:
            answer = await self.client.post_json(path, body, idempotent=".search" in method)
        except HttpStatusError as error:
            if error.status == 403:
                raise sdk.AuthError(
                    f"Tryton refused {method} (HTTP 403): the method is not published over RPC"
                ) from None
            raise
        if not isinstance(answer, dict):
            raise sdk.ConnectorError(f"unexpected answer to {method}: not a JSON-RPC object")
        if answer.get("error") is not None:
            _raise_error(answer["error"], method, self.config.login)
        return decode_value(answer.get("result"))

    def account(self, code: str) -> dict[str, Any]:
        if self._layout is None:
            self._layout = sdk.account_layout(self.config.account_layout)
        return msgspec.structs.asdict(self._layout.parse(code))

    def _stream(self, stream: str) -> Stream:
        if stream not in STREAMS or stream not in (self.config.streams or STREAMS):
            offered = ", ".join(self.config.streams or STREAMS)
            raise sdk.ConnectorConfigError(f"no stream {stream!r}; tryton offers {offered}")
        return STREAMS[stream]

    # check and streams

    async def check(self) -> None:
        url = self.config.url
        probe = self._new_client(retry=CHECK_RETRY)
        body = {"id": 0, "method": "common.server.version", "params": []}
        try:
            answer = await probe.post_json("rpc/", body)
        except HttpStatusError as error:
            raise sdk.ConnectorConfigError(
                f"{url} is not a Tryton server: POST /rpc/ answered HTTP {error.status}"
            ) from None
        except sdk.TransientError as error:
            if "not valid JSON" in str(error):
                raise sdk.ConnectorConfigError(
                    f"{url} is not a Tryton server: POST /rpc/ answered no JSON"
                ) from None
            raise sdk.TransientError(f"cannot reach Tryton at {url}: {error}") from None
        if not (isinstance(answer, dict) and isinstance(answer.get("result"), str)):
            raise sdk.ConnectorConfigError(
                f"{url} is not a Tryton server: common.server.version gave no version"
            )
        session = TrytonSession(
            self._new_client(retry=CHECK_RETRY),
            self.config.database,
            self.config.login,
            self.secret_values.get("password", ""),
            self.config.language,
        )
        await session.headers(probe)
        missing = []
        for name in self.config.streams or STREAMS:
            stream = self._stream(name)
            try:
                await self.call(f"model.{stream.model}.search_read", [], 0, 1, None, ["id"])
            except sdk.AuthError:
                missing.append(f"{stream.model} ({name})")
        if missing:
            raise sdk.AuthError(
                f"Tryton user {self.config.login!r} may not read {', '.join(missing)}: add it to "
                "the access groups docs/connectors/tryton.md lists"
            )

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(
                name=name, record=spec.record, description=spec.description,
                readable=True, writable=spec.writable,
            )
            for name, spec in STREAMS.items()
            if name in (self.config.streams or STREAMS)
        ]  # fmt: skip

    # reading

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        spec = self._stream(stream)
        cursor = sdk.IncrementalCursor(state, self.lookback)
        since = cursor.since()
        domain: list[Any] = [list(clause) for clause in spec.domain]
        if since is not None:
            domain.append(["OR", ["write_date", ">=", since], ["create_date", ">=", since]])
        changed = await self._changed(spec.model, domain)
        for start in range(0, len(changed), self.batch_size):
            ids = changed[start : start + self.batch_size]
            rows = await self._rows(spec, ids)
            records, rejects = self._map(stream, spec, rows)
            yield sdk.Batch(records=cursor.admit(records), rejects=rejects, state=cursor.state())

    async def _changed(self, model: str, domain: list[Any]) -> list[int]:
        """The ids of the rows `domain` selects, oldest change first (ties by id)."""
        stamps: list[tuple[datetime, int]] = []
        for offset in itertools.count(0, STAMP_PAGE):
            page = await self.call(
                f"model.{model}.search_read", domain, offset, STAMP_PAGE, [["id", "ASC"]], STAMPS
            )
            stamps.extend((_updated_at(row), row["id"]) for row in page)
            if len(page) < STAMP_PAGE:
                break
        stamps.sort()
        return [row_id for _, row_id in stamps]

    async def _rows(self, spec: Stream, ids: list[int]) -> list[dict[str, Any]]:
        """The rows `ids` in that order (deleted meanwhile: left out), with their lines."""
        found = await self.call(
            f"model.{spec.model}.search_read", [["id", "in", ids]], 0, None, None, spec.fields,
            context={"active_test": False},
        )  # fmt: skip
        by_id = {row["id"]: row for row in found}
        rows = [by_id[row_id] for row_id in ids if row_id in by_id]
        if spec.lines is not None:
            lines = spec.lines
            children = await self.call(
                f"model.{lines.model}.search_read",
                [[lines.parent, "in", ids], *(list(clause) for clause in lines.domain)],
                0, None, [list(order) for order in lines.order], [lines.parent, *lines.fields],
            )  # fmt: skip
            grouped: dict[int, list[dict[str, Any]]] = {}
            for child in children:
                grouped.setdefault(child[lines.parent], []).append(child)
            for row in rows:
                row["lines"] = grouped.get(row["id"], [])
        return rows

    def _map(
        self, stream: str, spec: Stream, rows: Iterable[dict[str, Any]]
    ) -> tuple[list[sdk.Record], list[sdk.Reject]]:
        record = sdk.record_type(spec.record)
        mapped: list[dict[str, Any]] = []
        sources: list[dict[str, Any]] = []
        rejects: list[sdk.Reject] = []
        for row in rows:
            position = f"{spec.model} {row.get('id')}"
            try:
                values = spec.map(self, row)
            except Skip:
                continue
            except ValueError as error:
                rejects.append(sdk.Reject(position=position, reason=str(error), raw=_raw(row)))
                continue
            mapped.extend(values)
            sources.extend([row] * len(values))
        records, failures = sdk.convert_rows(record, mapped)
        rejected: set[int] = set()
        for index, reason in failures:
            row = sources[index]
            if id(row) not in rejected:  # a move is rejected once, for its first bad line
                rejected.add(id(row))
                rejects.append(
                    sdk.Reject(
                        position=f"{spec.model} {row.get('id')}", reason=reason, raw=_raw(row)
                    )
                )
        if rejected:  # a move with one bad line is not delivered in part
            records = [r for r, row in zip(records, _kept(sources, failures), strict=True)
                       if id(row) not in rejected]  # fmt: skip
        return records, rejects

    def map_raw(self, stream: str, raw: dict[str, Any]) -> sdk.Record:
        spec = self._stream(stream)
        row = decode_value(raw)
        for key in (*STAMPS, "date", "invoice_date", "purchase_date"):
            if isinstance(row.get(key), str):
                text = row[key]
                row[key] = (
                    date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
                )
        records, rejects = self._map(stream, spec, [row])
        if rejects:
            raise sdk.BadRecord(rejects[0].reason, position=rejects[0].position)
        if not records:
            raise sdk.BadRecord(
                "the row is not a record yet (no number)", position=str(raw.get("id"))
            )
        return records[0]

    # writing

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        spec = self._stream(stream)
        if not spec.writable:
            raise sdk.ConnectorConfigError(f"stream {stream!r} cannot be written; parties can")
        vendors = {record.vendor_id: record for record in batch.records}  # the last copy wins
        existing = await self.call(
            "model.party.party.search_read", [["code", "in", list(vendors)]], 0, None, None,
            ["code", "name", "active"], context={"active_test": False},
        )  # fmt: skip
        known = {row["code"]: row for row in existing}
        creates = [_new_party(vendor) for code, vendor in vendors.items() if code not in known]
        if creates:
            await self.call("model.party.party.create", creates)
        for code, row in known.items():
            vendor = vendors[code]
            if (row["name"], bool(row["active"])) != (vendor.name, vendor.active):
                await self.call(
                    "model.party.party.write",
                    [row["id"]],
                    {"name": vendor.name, "active": vendor.active},
                )
        return sdk.WriteResult(written=len(vendors))

    async def close(self) -> None:
        self._client = None


def _kept(sources: list[dict[str, Any]], failures: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """The source rows of the mapped values `convert_rows` turned into records, in order."""
    failed = {index for index, _ in failures}
    return [row for index, row in enumerate(sources) if index not in failed]


def _new_party(vendor: Any) -> dict[str, Any]:
    """A party as RPC ``create`` needs it: no form defaults run, so the address and contact
    mechanisms are given as child rows."""
    values: dict[str, Any] = {
        "code": vendor.vendor_id,
        "name": vendor.name,
        "active": vendor.active,
    }
    values["addresses"] = [["create", [{"street": vendor.remit_address or ""}]]]
    mechanisms = [{"type": "email", "value": vendor.email}] if vendor.email else []
    if vendor.phone:
        mechanisms.append({"type": "phone", "value": vendor.phone})
    if mechanisms:
        values["contact_mechanisms"] = [["create", mechanisms]]
    return values


def _raw(row: dict[str, Any]) -> dict[str, Any]:
    """A row as plain JSON for a dead letter (Decimal and dates as text)."""
    return msgspec.to_builtins(row)
