"""A local Incident IQ API v1.0 answering as its API hub describes (assumptions: see
docs/connectors/incident-iq.md, "Known limits").

- every request needs ``Authorization: Bearer {token}`` (else 401), ``SiteId`` of this site
  and ``Client: ApiClient`` (else 403 ``{"Message": ...}``);
- ``POST /api/v1.0/tickets?$p&$s&$o=ModifiedDate&$d=Ascending`` with ``OnlyShowDeleted``,
  ``Schema`` (a saved view: only its tickets) and ``Filters`` (``ModifiedDate`` ``>=ISO``,
  ``CustomField`` by ``Id`` and ``Value``): ``{"Items", "Paging": {"PageIndex", "PageSize",
  "TotalRows", "PageCount"}}``;
- ``GET /api/v1.0/tickets/{id}/activities``; ``POST .../activities/new`` (201);
- ``POST /api/v1.0/tickets/new`` (201 ``{"Item"}``, 400 ``{"Message", "Errors"}`` without a
  subject), ``POST /api/v1.0/tickets/{id}`` updates, ``.../close``, ``.../cancel``.

`fail_next(path, status, retry_after, body)` queues faults; `fail_after("POST /path", status)`
applies the next such request and answers `status`.
"""

from __future__ import annotations

import itertools
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

ROOT = "/api/v1.0/"
EPOCH = datetime(2026, 9, 1, 12, tzinfo=UTC)


class IncidentIqApi:
    """One district's iiQ site: tickets with activities, a clock that ticks a minute a change."""

    def __init__(self, *, token: str = "iiq-token", site_id: str | None = None) -> None:
        self.token = token
        self.site_id = site_id or str(uuid.UUID(int=7))
        self.tickets: dict[str, dict[str, Any]] = {}
        self.activities: dict[str, list[dict[str, Any]]] = {}
        self.views: dict[str, set[int]] = {}
        self.raw_items: list[Any] = []
        self.faults: dict[str, list[tuple[int, str | None, Any]]] = {}
        self.apply_then_fail: dict[str, list[int]] = {}
        self.requests: list[str] = []
        self.bodies: list[Any] = []
        self._numbers = itertools.count(10001)
        self._minute = itertools.count(1)
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    # the data

    def _now(self) -> str:
        # iiQ writes UTC without a zone
        return (EPOCH + timedelta(minutes=next(self._minute))).strftime("%Y-%m-%dT%H:%M:%S")

    def put(self, subject: str, **fields: Any) -> dict[str, Any]:
        """A new ticket, or (with TicketNumber) that ticket changed."""
        number = fields.pop("TicketNumber", None)
        for ticket in self.tickets.values():
            if ticket["TicketNumber"] == number:
                ticket.update(Subject=subject, ModifiedDate=self._now(), **fields)
                return ticket
        ticket_id = str(uuid.uuid4())
        ticket = {
            "TicketId": ticket_id,
            "SiteId": self.site_id,
            "TicketNumber": number or next(self._numbers),
            "Subject": subject,
            "IssueDescription": fields.pop("IssueDescription", subject),
            "IsDeleted": False,
            "IsClosed": False,
            "IsUrgent": False,
            "CreatedDate": self._now(),
            "ClosedDate": None,
            "For": {
                "UserId": str(uuid.UUID(int=9)),
                "Name": "Dana Reyes",
                "Email": "dreyes@eastview.example.org",
            },
            "Issue": {"IssueId": str(uuid.UUID(int=11)), "Name": "Chromebook"},
            "WorkflowStep": {"StatusName": "New"},
            "AssignedToTeam": {"TeamId": str(uuid.UUID(int=12)), "TeamName": "Tier 1"},
            "CustomFieldValues": [],
            **fields,
        }
        ticket["ModifiedDate"] = ticket["CreatedDate"]
        self.tickets[ticket_id] = ticket
        self.activities[ticket_id] = []
        return ticket

    def comment(self, ticket: dict[str, Any], details: str, public: bool = True) -> dict[str, Any]:
        activity = {
            "ActivityId": str(uuid.uuid4()),
            "ItemId": ticket["TicketId"],
            "ActivityType": 6,
            "ActivityDate": self._now(),
            "Details": details,
            "IsPublic": public,
            "UserId": str(uuid.UUID(int=13)),
            "User": {"Name": "Sam Ortiz"},
        }
        self.activities[ticket["TicketId"]].append(activity)
        ticket["ModifiedDate"] = activity["ActivityDate"]
        return activity

    def delete(self, ticket: dict[str, Any]) -> None:
        ticket.update(IsDeleted=True, ModifiedDate=self._now())

    def fail_next(
        self, path: str, status: int, retry_after: str | None = None, body: Any = None
    ) -> None:
        self.faults.setdefault(path, []).append((status, retry_after, body))

    def fail_after(self, request: str, status: int) -> None:
        self.apply_then_fail.setdefault(request, []).append(status)

    # the server

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post(ROOT + "tickets", self.search)
        app.router.add_post(ROOT + "tickets/new", self.create)
        app.router.add_get(ROOT + "tickets/{id}/activities", self.list_activities)
        app.router.add_post(ROOT + "tickets/{id}/activities/new", self.add_activity)
        app.router.add_post(ROOT + "tickets/{id}/close", self.close_ticket)
        app.router.add_post(ROOT + "tickets/{id}/cancel", self.cancel_ticket)
        app.router.add_post(ROOT + "tickets/{id}", self.update)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}{ROOT}"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        queue = self.faults.get(request.path)
        if queue:
            status, retry_after, body = queue.pop(0)
            headers = {"Retry-After": retry_after} if retry_after else {}
            return web.json_response(
                body if body is not None else {"Message": "fault"}, status=status, headers=headers
            )
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(
                {"Message": "Authorization has been denied for this request."}, status=401
            )
        if (
            request.headers.get("SiteId") != self.site_id
            or request.headers.get("Client") != "ApiClient"
        ):
            return web.json_response(
                {"Message": "The user does not have access to this site."}, status=403
            )
        if request.can_read_body:
            self.bodies.append(await request.json())
        response = await handler(request)
        after = self.apply_then_fail.get(f"{request.method} {request.path}")
        if after:
            return web.json_response({"Message": "An error has occurred."}, status=after.pop(0))
        return response

    def _matches(self, ticket: dict[str, Any], filters: list[dict[str, Any]]) -> bool:
        for rule in filters:
            if rule.get("Facet") == "ModifiedDate":
                if ticket["ModifiedDate"] < str(rule["Value"]).removeprefix(">=")[:19]:
                    return False
            elif rule.get("Facet") == "CustomField":
                values = {(v["CustomFieldTypeId"], v["Value"]) for v in ticket["CustomFieldValues"]}
                if (rule.get("Id"), rule.get("Value")) not in values:
                    return False
        return True

    async def search(self, request: web.Request) -> web.Response:
        body = self.bodies[-1]
        page, size = int(request.query.get("$p", 0)), int(request.query.get("$s", 20))
        deleted = bool(body.get("OnlyShowDeleted"))
        view = body.get("Schema")
        if view is not None and view not in self.views:
            return web.json_response({"Message": f"View '{view}' was not found."}, status=404)
        chosen = [
            t
            for t in self.tickets.values()
            if t["IsDeleted"] == deleted
            and self._matches(t, body.get("Filters") or [])
            and (view is None or t["TicketNumber"] in self.views[view])
        ]
        chosen.sort(key=lambda t: (t["ModifiedDate"], t["TicketNumber"]))
        items: list[Any] = chosen[page * size : (page + 1) * size]
        if self.raw_items and not deleted:
            items, self.raw_items = items + self.raw_items, []
        return web.json_response(
            {
                "Items": items,
                "Paging": {
                    "PageIndex": page,
                    "PageSize": size,
                    "TotalRows": len(chosen),
                    "PageCount": math.ceil(len(chosen) / size) if size else 0,
                },
            }
        )

    async def create(self, request: web.Request) -> web.Response:
        body = self.bodies[-1]
        if not body.get("Subject") or not body.get("IssueId") or not body.get("ForId"):
            return web.json_response(
                {
                    "Message": "The request is invalid.",
                    "Errors": [{"Message": "Subject, IssueId and ForId are required"}],
                },
                status=400,
            )
        ticket = self.put(
            body["Subject"],
            IssueDescription=body.get("IssueDescription"),
            IsUrgent=bool(body.get("IsUrgent")),
            CustomFieldValues=body.get("CustomFieldValues") or [],
        )
        return web.json_response({"Item": ticket}, status=201)

    def _ticket(self, request: web.Request) -> dict[str, Any] | None:
        return self.tickets.get(request.match_info["id"])

    async def update(self, request: web.Request) -> web.Response:
        ticket = self._ticket(request)
        if ticket is None:
            return web.json_response({"Message": "Ticket not found"}, status=404)
        body = self.bodies[-1]
        ticket.update(
            {k: v for k, v in body.items() if k in ("Subject", "IssueDescription", "IsUrgent")}
        )
        ticket["ModifiedDate"] = self._now()
        return web.json_response({"Item": ticket})

    async def close_ticket(self, request: web.Request) -> web.Response:
        ticket = self._ticket(request)
        if ticket is None:
            return web.json_response({"Message": "Ticket not found"}, status=404)
        ticket.update(
            IsClosed=True, ClosedDate=self._now(), WorkflowStep={"StatusName": "Resolved"}
        )
        ticket["ModifiedDate"] = ticket["ClosedDate"]
        return web.json_response({"Item": ticket})

    async def cancel_ticket(self, request: web.Request) -> web.Response:
        ticket = self._ticket(request)
        if ticket is None:
            return web.json_response({"Message": "Ticket not found"}, status=404)
        ticket.update(
            IsClosed=True, ClosedDate=self._now(), WorkflowStep={"StatusName": "Cancelled"}
        )
        ticket["ModifiedDate"] = ticket["ClosedDate"]
        return web.json_response({"Item": ticket})

    async def list_activities(self, request: web.Request) -> web.Response:
        ticket = self._ticket(request)
        if ticket is None:
            return web.json_response({"Message": "Ticket not found"}, status=404)
        return web.json_response({"Items": self.activities[ticket["TicketId"]]})

    async def add_activity(self, request: web.Request) -> web.Response:
        ticket = self._ticket(request)
        if ticket is None:
            return web.json_response({"Message": "Ticket not found"}, status=404)
        body = self.bodies[-1]
        [item] = body["ActivityItems"]
        activity = self.comment(ticket, item["Comments"], public=body.get("IsPublic", True))
        return web.json_response({"Item": activity}, status=201)
