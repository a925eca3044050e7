"""A local ServiceNow instance's Table API, answering as ServiceNow's REST API reference documents.

- ``POST /oauth_token.do``: the client credentials grant (form ``client_id``/``client_secret``);
  a wrong client is 401 ``access_denied``. Bearer tokens, like Basic credentials, are taken;
  a token is refused (401) after `token_uses` requests, as after its expiry.
- ``GET /api/now/table/{table}`` with ``sysparm_query`` (``field=v``, ``!=``, ``>=``, ``<=``,
  ``>``, ``<``, ``INa,b``, ``LIKE``, ``ORDERBYf``, ``ORDERBYDESCf``, joined by ``^``),
  ``sysparm_fields`` (dot-walked references: ``caller_id.email``), ``sysparm_offset``,
  ``sysparm_limit``; answers ``{"result": [...]}`` with ``X-Total-Count`` and a ``Link`` header
  (first, prev, next, last; no next on the last page). Times are UTC ``yyyy-MM-dd HH:mm:ss``.
- ``POST /api/now/table/incident`` (201) and ``PATCH /api/now/table/incident/{sys_id}``;
  ``comments`` and ``work_notes`` add ``sys_journal_field`` entries. An empty short description
  breaks the data policy: 403 ``Operation Failed``.
- Errors: ``{"error": {"message", "detail"}, "status": "failure"}``.

`now` is the instance clock stamping changes; `tick` moves it. Faults are queued per method
and path (`fail_next`): a status with ``Retry-After`` and ``X-RateLimit-*``, a raw body, or a write that
is applied before its answer fails.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

TABLE = "/api/now/table/"
CONDITION = re.compile(r"^([a-z_][a-z0-9_.]*?)(IN|LIKE|>=|<=|!=|=|>|<)(.*)$", re.DOTALL)
#: Reference fields and the table they point to, for dot-walking.
REFERENCES = {
    "caller_id": "sys_user",
    "opened_by": "sys_user",
    "assignment_group": "sys_user_group",
}


def failure(message: str, detail: str, status: int) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "detail": detail}, "status": "failure"}, status=status
    )


class Fault:
    """One queued fault: a status (with Retry-After), a raw 200 body, or an applied write."""

    def __init__(
        self, status: int, retry_after: str | None, body: str | None, applied: bool
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.body = body
        self.applied = applied

    def response(self) -> web.Response:
        if self.body is not None:
            return web.Response(status=self.status, text=self.body, content_type="application/json")
        headers = {}
        if self.retry_after:
            headers = {
                "Retry-After": self.retry_after,
                "X-RateLimit-Limit": "100",
                "X-RateLimit-Reset": "1790000000",
                "X-RateLimit-Rule": "integration users",
            }
        if self.status == 429:
            return web.json_response(
                {
                    "error": {
                        "message": "Too Many Requests",
                        "detail": "Rate limit of 100 requests per hour exceeded",
                    },
                    "status": "failure",
                },
                status=429,
                headers=headers,
            )
        return web.Response(
            status=self.status, text="<html>Service Unavailable</html>", headers=headers
        )


class ServiceNowApi:
    """An instance: tables of rows keyed by ``sys_id``, users and groups to dot-walk to."""

    def __init__(
        self,
        *,
        username: str = "cohub.integration",
        password: str = "pw",
        client_id: str = "cohub-client",
        client_secret: str = "cs",
        token_uses: int = 1000,
    ) -> None:
        self.username = username
        self.password = password
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_uses = token_uses
        self.tokens: dict[str, int] = {}
        self.tokens_issued = 0
        self.now = datetime(2026, 9, 1, 12, 0, 0, tzinfo=UTC)
        self.tables: dict[str, list[dict[str, Any]]] = {
            "incident": [],
            "sys_journal_field": [],
            "sys_user": [],
            "sys_user_group": [],
        }
        self.forbidden: set[str] = set()
        self.faults: dict[str, list[Fault]] = {}
        self.requests: list[str] = []
        self._ids = itertools.count(1)
        self._numbers = itertools.count(10001)
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    # the data

    def stamp(self) -> str:
        return self.now.strftime("%Y-%m-%d %H:%M:%S")

    def tick(self, seconds: float = 1) -> None:
        self.now += timedelta(seconds=seconds)

    def sys_id(self) -> str:
        return f"{next(self._ids):032x}"

    def user(self, name: str, user_name: str, email: str) -> str:
        sys_id = self.sys_id()
        self.tables["sys_user"].append(
            {"sys_id": sys_id, "name": name, "user_name": user_name, "email": email}
        )
        return sys_id

    def group(self, name: str) -> str:
        sys_id = self.sys_id()
        self.tables["sys_user_group"].append({"sys_id": sys_id, "name": name})
        return sys_id

    def incident(self, **fields: Any) -> dict[str, Any]:
        """Insert an incident stamped now; returns the row."""
        row = {
            "sys_id": self.sys_id(),
            "number": f"INC{next(self._numbers):07d}",
            "state": "1",
            "priority": "",
            "impact": "2",
            "urgency": "2",
            "short_description": "",
            "description": "",
            "category": "inquiry",
            "caller_id": "",
            "opened_by": "",
            "assignment_group": "",
            "opened_at": self.stamp(),
            "resolved_at": "",
            "sla_due": "",
            "made_sla": "true",
            "correlation_id": "",
            "correlation_display": "",
            "sys_created_on": self.stamp(),
            "sys_updated_on": self.stamp(),
            **fields,
        }
        self.tables["incident"].append(row)
        return row

    def update(self, sys_id: str, **fields: Any) -> dict[str, Any]:
        """Change an incident, stamped now; journal fields become journal entries."""
        [row] = [r for r in self.tables["incident"] if r.get("sys_id") == sys_id]
        for element in ("comments", "work_notes"):
            text = fields.pop(element, None)
            if text:
                self.journal(row["sys_id"], element, text)
        row.update(fields, sys_updated_on=self.stamp())
        return row

    def journal(self, element_id: str, element: str, value: str, by: str = "ana.munoz") -> dict:
        entry = {
            "sys_id": self.sys_id(),
            "name": "incident",
            "element": element,
            "element_id": element_id,
            "value": value,
            "sys_created_on": self.stamp(),
            "sys_created_by": by,
        }
        self.tables["sys_journal_field"].append(entry)
        return entry

    def put_raw(self, table: str, value: Any, **fields: Any) -> None:
        """A malformed row, sent as it is, selected and ordered by `fields` and stamped now."""
        self.tables[table].append(
            {
                "sys_id": self.sys_id(),
                "sys_updated_on": self.stamp(),
                "sys_created_on": self.stamp(),
                **fields,
                "_raw": value,
            }
        )

    def fail_next(
        self,
        path: str,
        status: int,
        retry_after: str | None = None,
        *,
        body: str | None = None,
        applied: bool = False,
        method: str = "GET",
    ) -> None:
        self.faults.setdefault(f"{method} {path}", []).append(
            Fault(status, retry_after, body, applied)
        )

    # the server

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/oauth_token.do", self.token)
        app.router.add_get(TABLE + "{table}", self.list_rows)
        app.router.add_post(TABLE + "incident", self.create)
        app.router.add_patch(TABLE + "incident/{sys_id}", self.patch)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _fault(self, request: web.Request) -> Fault | None:
        self.requests.append(f"{request.method} {request.path_qs}")
        queue = self.faults.get(f"{request.method} {request.path}")
        return queue.pop(0) if queue else None

    def _caller(self, request: web.Request) -> tuple[str | None, web.Response | None]:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            pair = base64.b64decode(header[6:]).decode()
            if pair == f"{self.username}:{self.password}":
                return self.username, None
        elif header.startswith("Bearer "):
            token = header[7:]
            if token in self.tokens:
                self.tokens[token] -= 1
                if self.tokens[token] >= 0:
                    return "oauth.client", None
                del self.tokens[token]
        return None, failure("User Not Authenticated", "Required to provide Auth information", 401)

    async def token(self, request: web.Request) -> web.Response:
        if fault := self._fault(request):
            return fault.response()
        form = await request.post()
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return web.json_response(
                {"error": "access_denied", "error_description": "access_denied"}, status=401
            )
        self.tokens_issued += 1
        token = f"sn-token-{self.tokens_issued}"
        self.tokens[token] = self.token_uses
        return web.json_response(
            {
                "access_token": token,
                "expires_in": 1799,
                "token_type": "Bearer",
                "scope": "useraccount",
            }
        )

    def _value(self, row: dict[str, Any], field: str) -> Any:
        if "." in field:
            reference, rest = field.split(".", 1)
            target = REFERENCES.get(reference)
            found = [
                r for r in self.tables.get(target or "", []) if r["sys_id"] == row.get(reference)
            ]
            return found[0].get(rest, "") if found else ""
        return row.get(field, "")

    def _matches(self, row: dict[str, Any], condition: str) -> bool:
        parsed = CONDITION.match(condition)
        if parsed is None:
            raise ValueError(condition)
        field, op, value = parsed.groups()
        actual = str(self._value(row, field))
        if op == "IN":
            return actual in value.split(",")
        if op == "LIKE":
            return value in actual
        return {
            "=": actual == value,
            "!=": actual != value,
            ">=": actual >= value,
            "<=": actual <= value,
            ">": actual > value,
            "<": actual < value,
        }[op]

    async def list_rows(self, request: web.Request) -> web.Response:
        if fault := self._fault(request):
            return fault.response()
        _, refused = self._caller(request)
        if refused:
            return refused
        table = request.match_info["table"]
        if table not in self.tables:
            return failure("Invalid table " + table, "", 400)
        if table in self.forbidden:
            return failure("User Not Authorized", f"Not permitted to read {table}", 403)
        query = request.query
        rows = list(self.tables[table])
        orders: list[tuple[str, bool]] = []
        for part in filter(None, query.get("sysparm_query", "").split("^")):
            if part.startswith("ORDERBYDESC"):
                orders.append((part[11:], True))
            elif part.startswith("ORDERBY"):
                orders.append((part[7:], False))
            else:
                rows = [r for r in rows if self._matches(r, part)]
        for field, descending in reversed(orders):
            rows.sort(key=lambda r, f=field: str(r.get(f, "")), reverse=descending)
        offset = int(query.get("sysparm_offset", 0))
        limit = int(query.get("sysparm_limit", 10000))
        page = rows[offset : offset + limit]
        fields = [f for f in query.get("sysparm_fields", "").split(",") if f]
        body = [
            r["_raw"] if "_raw" in r else {f: self._value(r, f) for f in (fields or r)}
            for r in page
        ]
        return web.Response(
            text=json.dumps({"result": body}),
            content_type="application/json",
            headers={
                "X-Total-Count": str(len(rows)),
                "Link": self._links(request, offset, limit, len(rows)),
            },
        )

    def _links(self, request: web.Request, offset: int, limit: int, total: int) -> str:
        def url(at: int) -> str:
            query = {**request.query, "sysparm_offset": str(at), "sysparm_limit": str(limit)}
            return f"{self.base_url.rstrip('/')}{request.path}?{urlencode(query)}"

        links = [f'<{url(0)}>;rel="first"']
        if offset > 0:
            links.append(f'<{url(max(offset - limit, 0))}>;rel="prev"')
        if offset + limit < total:
            links.append(f'<{url(offset + limit)}>;rel="next"')
        links.append(f'<{url(max(total - limit, 0))}>;rel="last"')
        return ",".join(links)

    async def create(self, request: web.Request) -> web.Response:
        fault = self._fault(request)
        if fault and not fault.applied:
            return fault.response()
        _, refused = self._caller(request)
        if refused:
            return refused
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return failure("Exception while reading request", "The payload is not valid JSON.", 400)
        if not body.get("short_description"):
            return failure(
                "Operation Failed", "Data Policy Exception: Short description is mandatory", 403
            )
        journal = {k: body.pop(k) for k in ("comments", "work_notes") if k in body}
        opener = self.user("Cohub Integration", self.username, "cohub@boces.example.org")
        row = self.incident(opened_by=opener, **{k: str(v) for k, v in body.items()})
        if journal:
            self.update(row["sys_id"], **journal)
        if fault:
            return fault.response()
        return web.json_response({"result": row}, status=201)

    async def patch(self, request: web.Request) -> web.Response:
        fault = self._fault(request)
        if fault and not fault.applied:
            return fault.response()
        _, refused = self._caller(request)
        if refused:
            return refused
        sys_id = request.match_info["sys_id"]
        if not any(r.get("sys_id") == sys_id for r in self.tables["incident"]):
            return failure(
                "No Record found", "Record doesn't exist or ACL restricts the record retrieval", 404
            )
        body = await request.json()
        if "short_description" in body and not body["short_description"]:
            return failure(
                "Operation Failed", "Data Policy Exception: Short description is mandatory", 403
            )
        row = self.update(sys_id, **{k: str(v) for k, v in body.items()})
        if fault:
            return fault.response()
        return web.json_response({"result": row})
