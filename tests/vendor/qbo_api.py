"""A local QuickBooks Online Accounting API and Intuit token endpoint, answering as Intuit documents.

- ``POST /oauth2/v1/tokens/bearer``: the refresh token grant, the app's keys in HTTP Basic. Each
  refresh answers a new refresh token (with ``x_refresh_token_expires_in``) and refuses the old
  one from then on (``invalid_grant``), as Intuit does; a wrong key is ``invalid_client``.
  Access tokens are refused (401 ``AuthenticationFailed``) after `token_uses` calls, as after
  their hour.
- ``GET /v3/company/{realmId}/companyinfo/{realmId}``; another realm is 403
  ``ApplicationAuthorizationFailed``; a refresh token granted without the accounting scope reads
  nothing (403 ``AuthorizationFault``).
- ``GET .../query?query=SELECT * FROM E [WHERE f op v [AND ...]] [ORDERBY f [ASC|DESC]]
  [STARTPOSITION n] [MAXRESULTS m]`` with ``=``, ``<``, ``>``, ``<=``, ``>=`` and ``IN``; the
  ``QueryResponse`` has no entity key when the page is empty; MAXRESULTS above 1000 is a fault.
- ``GET .../cdc?entities=E,F&changedSince=T``: the full payload of what changed since T (30 days
  at most), deleted entities as ``{"Id", "status": "Deleted"}``, at most 1,000 an entity.
- ``POST .../invoice?requestid=R``: create, or sparse update at the current ``SyncToken``; a
  missing customer, an unknown one, or a line whose amount is not quantity times price is a
  ``ValidationFault``; a repeated ``requestid`` answers the first answer again.

Faults are queued per path suffix (`fail_next`): a status with ``Retry-After``, or a raw body.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from aiohttp import web

from tests.canaries import plant

SCOPE = "com.intuit.quickbooks.accounting"

QUERY = re.compile(
    r"^\s*SELECT\s+\*\s+FROM\s+(?P<entity>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDERBY\s+(?P<order>[\w.]+)(?:\s+(?P<direction>ASC|DESC))?)?"
    r"(?:\s+STARTPOSITION\s+(?P<start>\d+))?"
    r"(?:\s+MAXRESULTS\s+(?P<max>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
LITERAL = r"'(?:[^'\\]|\\.)*'"
CONDITION = re.compile(
    rf"\s*(?P<field>[\w.]+)\s*(?P<op>>=|<=|=|<|>|\bIN\b)\s*"
    rf"(?P<value>{LITERAL}|\(\s*{LITERAL}(?:\s*,\s*{LITERAL})*\s*\))\s*(?:\bAND\b|$)",
    re.IGNORECASE,
)


def fault(kind: str, message: str, code: str, detail: str | None = None) -> dict[str, Any]:
    """Intuit's fault body."""
    error = {"Message": message, "code": code}
    if detail:
        error["Detail"] = detail
    return {"Fault": {"Error": [error], "type": kind}, "time": _now()}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def _field(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _comparable(path: str, value: Any) -> Any:
    if path.endswith("Time") and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def _matches(row: dict[str, Any], conditions: list[tuple[str, str, Any]]) -> bool:
    for path, op, value in conditions:
        have = _comparable(path, _field(row, path))
        if have is None:
            return False
        if op == "IN":
            if have not in [_comparable(path, v) for v in value]:
                return False
            continue
        want = _comparable(path, value)
        if not {
            "=": have == want,
            "<": have < want,
            ">": have > want,
            "<=": have <= want,
            ">=": have >= want,
        }[op]:
            return False
    return True


class QboApi:
    """One QuickBooks Online company and the app connected to it."""

    def __init__(
        self,
        *,
        realm: str = "9130357766031515",
        client_id: str = "ABcohubClientId",
        client_secret: str = "qbo-client-secret",
        refresh_token: str = "RT1-first",
        token_uses: int = 10_000,
    ) -> None:
        self.realm = realm
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.scopes = {SCOPE}
        self.token_uses = token_uses
        self.tokens: dict[str, int] = {}
        self.issued_refresh: list[str] = []
        self.refused_refresh: list[str] = []
        self.entities: dict[str, dict[str, dict[str, Any]]] = {}
        self.deleted: dict[str, list[dict[str, Any]]] = {}
        self.customers = {"58"}
        self.answered: dict[str, tuple[int, str]] = {}
        #: Invoice POSTs acted on whose answer is then lost (503 in its place).
        self.lose_answers = 0
        self.faults: dict[str, list[tuple[int, str | None, str | None]]] = {}
        self.requests: list[str] = []
        self._ids = itertools.count(100)
        self._tokens = itertools.count(1)
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    # the data

    def put(self, entity: str, row: dict[str, Any], updated: str | None = None) -> dict[str, Any]:
        """Create or replace an entity (by Id); it is stamped `updated` (default: now)."""
        rows = self.entities.setdefault(entity, {})
        ident = str(row.get("Id") or next(self._ids))
        old = rows.get(ident)
        sync = str(int(old["SyncToken"]) + 1) if old else "0"
        stamp = updated or datetime.now(UTC).isoformat(timespec="seconds")
        created = old["MetaData"]["CreateTime"] if old else stamp
        rows[ident] = {
            **row,
            "Id": ident,
            "SyncToken": sync,
            "domain": "QBO",
            "MetaData": {"CreateTime": created, "LastUpdatedTime": stamp},
        }
        return rows[ident]

    def put_raw(self, entity: str, value: Any, updated: str) -> None:
        """A malformed entity as the server will send it, sorted as if updated at `updated`."""
        ident = str(next(self._ids))
        self.entities.setdefault(entity, {})[ident] = {
            "_raw": value,
            "MetaData": {"LastUpdatedTime": updated},
        }

    def delete(self, entity: str, ident: str, when: str | None = None) -> None:
        self.entities[entity].pop(ident)
        stamp = when or datetime.now(UTC).isoformat(timespec="seconds")
        self.deleted.setdefault(entity, []).append(
            {
                "domain": "QBO",
                "status": "Deleted",
                "Id": ident,
                "MetaData": {"LastUpdatedTime": stamp},
            }
        )

    def fail_next(
        self, suffix: str, status: int, retry_after: str | None = None, body: str | None = None
    ) -> None:
        """The next request whose path ends with `suffix` answers `status` (with `body`)."""
        self.faults.setdefault(suffix, []).append((status, retry_after, body))

    # the server

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/oauth2/v1/tokens/bearer", self.token)
        app.router.add_get("/v3/company/{realm}/companyinfo/{id}", self.company_info)
        app.router.add_get("/v3/company/{realm}/query", self.query)
        app.router.add_get("/v3/company/{realm}/cdc", self.cdc)
        app.router.add_post("/v3/company/{realm}/invoice", self.invoice)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/"

    @property
    def token_url(self) -> str:
        return self.base_url + "oauth2/v1/tokens/bearer"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _fault(self, request: web.Request) -> web.Response | None:
        self.requests.append(f"{request.method} {request.path_qs}")
        for suffix, queue in self.faults.items():
            if request.path.endswith(suffix) and queue:
                status, retry_after, body = queue.pop(0)
                headers = {"Retry-After": retry_after} if retry_after else {}
                if body is not None:
                    return web.Response(
                        status=status, text=body, content_type="application/json", headers=headers
                    )
                return web.json_response(
                    fault("SystemFault", "An application error has occurred", "10000"),
                    status=status,
                    headers=headers,
                )
        return None

    def _refused(self, request: web.Request) -> web.Response | None:
        """The access token and realm checks every API call goes through."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens or self.tokens[token] <= 0:
            self.tokens.pop(token, None)
            return web.json_response(
                fault(
                    "AUTHENTICATION",
                    "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                    "3200",
                ),
                status=401,
            )
        self.tokens[token] -= 1
        if request.match_info["realm"] != self.realm:
            return web.json_response(
                fault(
                    "AUTHENTICATION",
                    "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
                    "003100",
                ),
                status=403,
            )
        if SCOPE not in self.scopes:
            return web.json_response(
                fault(
                    "AuthorizationFault",
                    "Permission Denied Error",
                    "5020",
                    "You do not have access to use QuickBooks Online Accounting API",
                ),
                status=403,
            )
        return None

    async def token(self, request: web.Request) -> web.Response:
        if failed := self._fault(request):
            return failed
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"error": "invalid_client"}, status=401)
        form = await request.post()
        if form.get("grant_type") != "refresh_token":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if form.get("refresh_token") != self.refresh_token:
            self.refused_refresh.append(str(form.get("refresh_token")))
            return web.json_response({"error": "invalid_grant"}, status=400)
        serial = next(self._tokens)
        self.refresh_token = plant(f"RT{serial + 1}-canary-{serial:04d}-rotated")
        self.issued_refresh.append(self.refresh_token)
        access = plant(f"eyJ-access-canary-{serial:04d}")
        self.tokens[access] = self.token_uses
        return web.json_response(
            {
                "token_type": "bearer",
                "expires_in": 3600,
                "refresh_token": self.refresh_token,
                "x_refresh_token_expires_in": 8726400,
                "access_token": access,
            }
        )

    async def company_info(self, request: web.Request) -> web.Response:
        if failed := self._fault(request) or self._refused(request):
            return failed
        return web.json_response(
            {
                "CompanyInfo": {"CompanyName": "Harbor Falls Charter School", "Id": self.realm},
                "time": _now(),
            }
        )

    def _page(self, statement: str) -> tuple[str, list[dict[str, Any]]] | web.Response:
        """The entity name and the rows a statement selects, or a fault."""
        parsed = QUERY.match(statement)
        if parsed is None:
            return web.json_response(
                fault(
                    "ValidationFault",
                    "QueryParserError: Encountered an unexpected token",
                    "4000",
                    statement,
                ),
                status=400,
            )
        conditions: list[tuple[str, str, Any]] = []
        where = parsed["where"] or ""
        position = 0
        while position < len(where):
            found = CONDITION.match(where, position)
            if found is None:
                return web.json_response(
                    fault("ValidationFault", "QueryParserError", "4000", where[position:]),
                    status=400,
                )
            op = found["op"].upper()
            value = found["value"]
            literal = (
                [_unquote(v) for v in re.findall(LITERAL, value)] if op == "IN" else _unquote(value)
            )
            conditions.append((found["field"], op, literal))
            position = found.end()
        limit = int(parsed["max"] or 100)
        if limit > 1000:
            return web.json_response(
                fault(
                    "ValidationFault",
                    "Invalid query",
                    "4001",
                    "QueryValidationError: value 1001 is too large. Max allowed value is: 1000",
                ),
                status=400,
            )
        entity = parsed["entity"]
        rows = [
            r
            for r in self.entities.get(entity, {}).values()
            if "_raw" in r or _matches(r, conditions)
        ]
        if parsed["order"]:
            rows.sort(
                key=lambda r: _comparable(parsed["order"], _field(r, parsed["order"])),
                reverse=(parsed["direction"] or "").upper() == "DESC",
            )
        start = int(parsed["start"] or 1)
        return entity, rows[start - 1 : start - 1 + limit]

    async def query(self, request: web.Request) -> web.Response:
        if failed := self._fault(request) or self._refused(request):
            return failed
        selected = self._page(request.query.get("query", ""))
        if isinstance(selected, web.Response):
            return selected
        entity, rows = selected
        answer: dict[str, Any] = {}
        if rows:
            answer = {
                entity: [r.get("_raw", r) for r in rows],
                "startPosition": 1,
                "maxResults": len(rows),
            }
        return _json({"QueryResponse": answer, "time": _now()})

    async def cdc(self, request: web.Request) -> web.Response:
        if failed := self._fault(request) or self._refused(request):
            return failed
        since = datetime.fromisoformat(request.query["changedSince"])
        if since < datetime.now(UTC) - timedelta(days=30):
            return web.json_response(
                fault(
                    "ValidationFault",
                    "Invalid ChangedSince",
                    "4001",
                    "changedSince must be within the last 30 days",
                ),
                status=400,
            )
        answers = []
        for entity in request.query["entities"].split(","):
            changed = [
                r.get("_raw", r)
                for r in [*self.entities.get(entity, {}).values(), *self.deleted.get(entity, [])]
                if datetime.fromisoformat(r["MetaData"]["LastUpdatedTime"]) >= since
            ][:1000]
            answers.append({entity: changed, "startPosition": 1, "maxResults": len(changed)})
        return _json({"CDCResponse": [{"QueryResponse": answers}], "time": _now()})

    async def invoice(self, request: web.Request) -> web.Response:
        if failed := self._fault(request) or self._refused(request):
            return failed
        request_id = request.query.get("requestid")
        if request_id in self.answered:
            status, text = self.answered[request_id]
            return web.Response(status=status, text=text, content_type="application/json")
        body = json.loads(await request.text(), parse_float=Decimal)
        status, answer = self._save_invoice(body)
        text = _ENCODER.encode(answer).decode()
        if request_id:
            self.answered[request_id] = (status, text)
        if self.lose_answers:
            self.lose_answers -= 1
            return web.json_response(
                fault("SystemFault", "An application error has occurred", "10000"), status=503
            )
        return web.Response(status=status, text=text, content_type="application/json")

    def _save_invoice(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        customer = (body.get("CustomerRef") or {}).get("value")
        if body.get("sparse"):
            old = self.entities.get("Invoice", {}).get(str(body.get("Id")))
            if old is None:
                return 400, fault("ValidationFault", "Object Not Found", "610")
            if body.get("SyncToken") != old["SyncToken"]:
                return 400, fault(
                    "ValidationFault",
                    "Stale Object Error",
                    "5010",
                    "You and someone else are editing the same record",
                )
            body = {**old, **body}
            customer = (body.get("CustomerRef") or {}).get("value")
        if customer is None:
            return 400, fault(
                "ValidationFault",
                "Required param missing, need to supply the required value for the API",
                "2020",
                "Required parameter CustomerRef is missing in the request",
            )
        if customer not in self.customers:
            return 400, fault(
                "ValidationFault",
                "Invalid Reference Id",
                "2500",
                f"Invalid Reference Id : Customer assigned to this transaction has "
                f"been deleted or does not exist: {customer}",
            )
        total = Decimal(0)
        for line in body.get("Line") or ():
            detail = line.get("SalesItemLineDetail") or {}
            if Decimal(detail.get("Qty", 1)) * Decimal(
                detail.get("UnitPrice", line["Amount"])
            ) != Decimal(line["Amount"]):
                return 400, fault(
                    "ValidationFault",
                    "Amount is not equal to UnitPrice * Qty",
                    "6070",
                    f"Line {line.get('LineNum')}: Amount {line['Amount']}",
                )
            total += Decimal(line["Amount"])
        stored = {k: v for k, v in body.items() if k not in ("sparse", "SyncToken", "MetaData")}
        saved = self.put("Invoice", {**stored, "TotalAmt": total, "Balance": total})
        return 200, {"Invoice": saved, "time": _now()}


#: Amounts go out as JSON numbers, exactly as stored, as Intuit writes them.
_ENCODER = msgspec.json.Encoder(decimal_format="number")


def _json(body: Any) -> web.Response:
    return web.Response(text=_ENCODER.encode(body).decode(), content_type="application/json")
