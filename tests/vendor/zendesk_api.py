"""A local Zendesk Support API v2 that answers as Zendesk's documentation describes.

- auth: Basic ``{email}/token:{api_token}`` or ``Bearer {oauth token}``; anything else is
  ``401 {"error": "Couldn't authenticate you"}``, an expired OAuth token
  ``401 {"error": "invalid_token", ...}``;
- ``GET /api/v2/users/me.json``;
- ``GET /api/v2/incremental/tickets/cursor.json`` with ``start_time`` or ``cursor``,
  ``per_page`` and ``include=users``: tickets in order of change, the latest version of each,
  deleted ones with ``status: "deleted"``; ``after_cursor``/``after_url``/``end_of_stream``.
  At most 10 requests a minute by the injected clock, else 429 with ``Retry-After``;
- ``GET /api/v2/tickets/{id}/comments`` with ``page[size]``/``page[after]``: ``meta.has_more``,
  ``meta.after_cursor``, ``links.next``;
- ``GET /api/v2/tickets?external_id=``; ``POST /api/v2/tickets`` (``Idempotency-Key`` honoured:
  the same key and body answer the first ticket again; a creation without a comment is a 422
  RecordInvalid); ``PUT /api/v2/tickets/{id}`` (a comment adds one; a closed ticket is 422).

Faults are queued per path with `fail_next`; `fail_after("POST /path", status)` applies the next such request
and then answers `status`, as a server whose answer was lost.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

EXPORT = "/api/v2/incremental/tickets/cursor.json"
EPOCH = datetime(2026, 9, 1, 12, tzinfo=UTC)


def _encode(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode()


def _decode(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return int(text[4:]) if text.startswith("seq:") and text[4:].isdigit() else None


class ZendeskApi:
    """One Zendesk account: users, tickets with comments, and a change sequence."""

    def __init__(
        self,
        *,
        email: str = "it@boces.example.org",
        api_token: str = "zd-token",
        oauth_token: str = "zd-oauth",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.email = email
        self.api_token = api_token
        self.oauth_tokens = {oauth_token}
        self.role = "admin"
        self.clock = clock or (lambda: 0.0)
        self.users: dict[int, dict[str, Any]] = {
            1: {"id": 1, "name": "Shared Desk Admin", "email": email, "role": "admin"}
        }
        self.tickets: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.seq = 0
        self.changed: dict[int, int] = {}  # ticket id → sequence of its last change
        self.raw_export: list[Any] = []  # malformed items the next export page carries
        self.faults: dict[str, list[tuple[int, str | None, Any]]] = {}
        self.apply_then_fail: dict[str, list[int]] = {}
        self.idempotency: dict[str, tuple[str, dict[str, Any]]] = {}
        self.export_times: deque[float] = deque()
        self.export_limit = 10
        self.requests: list[str] = []
        self.rate_limited = 0
        self._ids = itertools.count(1001)
        self._comment_ids = itertools.count(5001)
        self._minute = itertools.count(1)
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    # the data

    def _now(self) -> str:
        return (EPOCH + timedelta(minutes=next(self._minute))).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _touch(self, ticket: dict[str, Any]) -> None:
        self.seq += 1
        self.changed[ticket["id"]] = self.seq
        ticket["updated_at"] = self._now()

    def user(self, name: str, email: str) -> int:
        identifier = len(self.users) + 1
        self.users[identifier] = {
            "id": identifier,
            "name": name,
            "email": email,
            "role": "end-user",
        }
        return identifier

    def put(self, subject: str, **fields: Any) -> dict[str, Any]:
        """A new ticket (or `fields["id"]`'s, changed)."""
        identifier = fields.pop("id", None)
        if identifier in self.tickets:
            ticket = self.tickets[identifier]
            ticket.update(subject=subject, **fields)
        else:
            identifier = identifier or next(self._ids)
            ticket = {
                "id": identifier,
                "subject": subject,
                "description": fields.pop("description", subject),
                "status": "new",
                "priority": "normal",
                "type": "incident",
                "requester_id": 1,
                "group_id": None,
                "external_id": None,
                "tags": [],
                "created_at": self._now(),
                **fields,
            }
            self.tickets[identifier] = ticket
            self.comments[identifier] = []
            self.comment(identifier, ticket["description"], author_id=ticket["requester_id"])
        self._touch(ticket)
        return ticket

    def comment(
        self, ticket_id: int, body: str, *, public: bool = True, author_id: int = 1, custom=None
    ) -> dict[str, Any]:
        comment = {
            "id": next(self._comment_ids),
            "type": "Comment",
            "author_id": author_id,
            "body": body,
            "plain_body": body,
            "public": public,
            "created_at": self._now(),
            "metadata": {"system": {"client": "cohub-test"}, "custom": custom or {}},
        }
        self.comments[ticket_id].append(comment)
        return comment

    def delete(self, ticket_id: int) -> None:
        self.tickets[ticket_id]["status"] = "deleted"
        self._touch(self.tickets[ticket_id])

    def fail_next(
        self, path: str, status: int, retry_after: str | None = None, body: Any = None
    ) -> None:
        self.faults.setdefault(path, []).append((status, retry_after, body))

    def fail_after(self, request: str, status: int) -> None:
        """Apply the next `request` (``POST /api/v2/tickets``), then answer `status`."""
        self.apply_then_fail.setdefault(request, []).append(status)

    # the server

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/api/v2/users/me.json", self.me)
        app.router.add_get(EXPORT, self.export)
        app.router.add_get("/api/v2/tickets/{id}/comments", self.list_comments)
        app.router.add_get("/api/v2/tickets/{id}/comments.json", self.list_comments)
        app.router.add_get("/api/v2/tickets", self.list_tickets)
        app.router.add_post("/api/v2/tickets", self.create)
        app.router.add_put("/api/v2/tickets/{id}", self.update)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        if request.path == EXPORT:
            limited = self._export_budget()
            if limited is not None:
                return limited
        queue = self.faults.get(request.path)
        if queue:
            status, retry_after, body = queue.pop(0)
            headers = {"Retry-After": retry_after} if retry_after else {}
            if isinstance(body, bytes):
                return web.Response(
                    body=body, status=status, headers=headers, content_type="application/json"
                )
            return web.json_response(
                body if body is not None else {"error": "InternalError", "description": "fault"},
                status=status,
                headers=headers,
            )
        refused = self._authorized(request)
        if refused is not None:
            return refused
        response = await handler(request)
        after = self.apply_then_fail.get(f"{request.method} {request.path}")
        if after:
            return web.json_response({"error": "fault"}, status=after.pop(0))
        return response

    def _export_budget(self) -> web.Response | None:
        """10 requests a minute to the incremental exports, by the injected clock."""
        now = self.clock()
        while self.export_times and self.export_times[0] <= now - 60:
            self.export_times.popleft()
        if len(self.export_times) >= self.export_limit:
            self.rate_limited += 1
            wait = math.ceil(self.export_times[0] + 60 - now)
            return web.json_response(
                {
                    "error": "APIRateLimitExceeded",
                    "description": "Number of allowed incremental export API requests per minute exceeded",
                },
                status=429,
                headers={"Retry-After": str(max(wait, 1))},
            )
        self.export_times.append(now)
        return None

    def _authorized(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            if header[7:] in self.oauth_tokens:
                return None
            return web.json_response(
                {
                    "error": "invalid_token",
                    "error_description": "The access token provided is expired, revoked, "
                    "malformed or invalid for other reasons.",
                },
                status=401,
            )
        expected = base64.b64encode(f"{self.email}/token:{self.api_token}".encode()).decode()
        if header == f"Basic {expected}":
            return None
        return web.json_response({"error": "Couldn't authenticate you"}, status=401)

    async def me(self, request: web.Request) -> web.Response:
        return web.json_response({"user": {**self.users[1], "role": self.role}})

    def _view(self, ticket: dict[str, Any]) -> dict[str, Any]:
        return dict(ticket)

    async def export(self, request: web.Request) -> web.Response:
        query = request.query
        per_page = min(int(query.get("per_page", 1000)), 1000)
        if "cursor" in query:
            after = _decode(query["cursor"])
            if after is None:
                return web.json_response(
                    {"error": "InvalidCursor", "description": "The cursor is invalid"}, status=400
                )
            chosen = [t for t, s in self.changed.items() if s > after]
        elif "start_time" in query:
            start = int(query["start_time"])
            after = 0
            chosen = [
                t
                for t in self.changed
                if datetime.fromisoformat(self.tickets[t]["updated_at"]).timestamp() >= start
            ]
        else:
            return web.json_response(
                {"error": "InvalidValue", "description": "start_time or cursor is required"},
                status=400,
            )
        chosen.sort(key=lambda t: self.changed[t])
        page = chosen[:per_page]
        last = self.changed[page[-1]] if page else after
        tickets: list[Any] = [self._view(self.tickets[t]) for t in page]
        if self.raw_export:
            tickets += self.raw_export
            self.raw_export = []
        end = len(chosen) <= per_page
        cursor = _encode(last) if page or "cursor" in query else None
        body: dict[str, Any] = {
            "tickets": tickets,
            "after_cursor": cursor,
            "after_url": f"{self.base_url}api/v2/incremental/tickets/cursor.json?cursor={cursor}"
            if cursor
            else None,
            "before_cursor": None,
            "before_url": None,
            "end_of_stream": end,
        }
        if query.get("include") == "users":
            wanted = {t.get("requester_id") for t in tickets if isinstance(t, dict)}
            body["users"] = [self.users[u] for u in wanted if u in self.users]
        return web.json_response(body)

    async def list_comments(self, request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["id"])
        if ticket_id not in self.comments:
            return web.json_response(
                {"error": "RecordNotFound", "description": "Not found"}, status=404
            )
        size = int(request.query.get("page[size]", 100))
        after = int(request.query.get("page[after]", 0))
        rest = [c for c in self.comments[ticket_id] if c["id"] > after]
        page = rest[:size]
        more = len(rest) > size
        body: dict[str, Any] = {
            "comments": page,
            "meta": {
                "has_more": more,
                "after_cursor": str(page[-1]["id"]) if page else None,
                "before_cursor": None,
            },
            "links": {
                "next": f"{self.base_url}api/v2/tickets/{ticket_id}/comments.json?"
                f"page[size]={size}&page[after]={page[-1]['id']}"
                if more
                else None,
                "prev": None,
            },
        }
        if request.query.get("include") == "users":
            body["users"] = list(self.users.values())
        return web.json_response(body)

    async def list_tickets(self, request: web.Request) -> web.Response:
        wanted = request.query.get("external_id")
        found = [
            t
            for t in self.tickets.values()
            if t["status"] != "deleted" and (wanted is None or t.get("external_id") == wanted)
        ]
        return web.json_response(
            {"tickets": found, "next_page": None, "previous_page": None, "count": len(found)}
        )

    def _invalid(self, field: str, description: str) -> web.Response:
        return web.json_response(
            {
                "error": "RecordInvalid",
                "description": "Record validation errors",
                "details": {field: [{"description": description, "error": "InvalidValue"}]},
            },
            status=422,
        )

    async def create(self, request: web.Request) -> web.Response:
        raw = await request.read()
        key = request.headers.get("Idempotency-Key")
        if key and key in self.idempotency:
            seen, answer = self.idempotency[key]
            if seen != raw.decode():
                return web.json_response(
                    {
                        "error": "IdempotentRequestError",
                        "description": "Request parameters don't match the original request",
                    },
                    status=400,
                )
            return web.json_response(answer, status=201, headers={"x-idempotency-lookup": "hit"})
        fields = json.loads(raw)["ticket"]
        comment = fields.pop("comment", None)
        if not comment or not comment.get("body"):
            return self._invalid("description", "Description: cannot be blank")
        if not fields.get("subject"):
            return self._invalid("subject", "Subject: cannot be blank")
        requester = fields.pop("requester", None)
        if requester:
            fields["requester_id"] = self.user(requester.get("name") or "?", requester["email"])
        ticket = self.put(fields.pop("subject"), description=comment["body"], **fields)
        self.comments[ticket["id"]][0]["public"] = comment.get("public", True)
        answer = {"ticket": self._view(ticket), "audit": {"events": []}}
        if key:
            self.idempotency[key] = (raw.decode(), answer)
        return web.json_response(answer, status=201)

    async def update(self, request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["id"])
        ticket = self.tickets.get(ticket_id)
        if ticket is None or ticket["status"] == "deleted":
            return web.json_response(
                {"error": "RecordNotFound", "description": "Not found"}, status=404
            )
        if ticket["status"] == "closed":
            return self._invalid("status", "Status: closed prevents ticket update")
        fields = (await request.json())["ticket"]
        comment = fields.pop("comment", None)
        custom = fields.pop("metadata", None)
        if comment:
            self.comment(
                ticket_id, comment["body"], public=comment.get("public", True), custom=custom
            )
        ticket.update(fields)
        self._touch(ticket)
        return web.json_response({"ticket": self._view(ticket), "audit": {"events": []}})
