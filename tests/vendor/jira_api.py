"""A local Jira Service Management Cloud site, answering as Atlassian's REST documentation says.

- HTTP Basic with an e-mail and API token; anything else is 401 with ``errorMessages``.
  `revoke` makes the token refused from then on.
- ``GET /rest/api/3/serverInfo`` (anonymous), ``/rest/api/3/myself``,
  ``/rest/api/3/project/{key}`` (404 for an unknown project),
  ``/rest/servicedeskapi/servicedesk/{id}``.
- ``GET /rest/api/3/search`` with ``jql`` (``project = "X"``, ``updated >= "yyyy/MM/dd HH:mm"``
  read in the account's time zone `user_zone`, ``labels in ("a", ...)``, ``ORDER BY updated
  ASC, key ASC``), ``startAt``, ``maxResults`` (at most 100), ``fields``; answers ``startAt``,
  ``maxResults``, ``total`` and ``issues``. Times are ``2026-09-01T12:00:00.000+0000``.
- ``POST /rest/servicedeskapi/request`` (201 with ``issueKey``; a missing summary is 400),
  ``GET``/``POST /rest/servicedeskapi/request/{key}/comment`` (``start``, ``limit``,
  ``isLastPage``), ``PUT /rest/api/3/issue/{key}`` (fields and ``update.labels[].add``; 204).

`now` is the site clock stamping changes. Faults are queued per method and path
(`fail_next`): a status with ``Retry-After`` and ``X-RateLimit-*``, a raw body, or a write that
is applied before its answer fails.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

LABELS = re.compile(r"^labels in \((.*)\)$")
UPDATED = re.compile(r'^updated >= "(\d{4}/\d{2}/\d{2} \d{2}:\d{2})"$')
PROJECT = re.compile(r'^project = "?([A-Z0-9_]+)"?$')
CATEGORIES = {
    "Waiting for support": "new",
    "In progress": "indeterminate",
    "Waiting for customer": "indeterminate",
    "Resolved": "done",
    "Closed": "done",
    "Canceled": "done",
}


def jira_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000%z")


def errors(status: int, *messages: str, **fields: str) -> web.Response:
    return web.json_response({"errorMessages": list(messages), "errors": fields}, status=status)


class Fault:
    def __init__(self, status: int, retry_after: str | None, body: str | None, applied: bool):
        self.status, self.retry_after, self.body, self.applied = status, retry_after, body, applied

    def response(self) -> web.Response:
        if self.body is not None:
            return web.Response(status=self.status, text=self.body, content_type="application/json")
        headers = {}
        if self.retry_after:
            headers = {
                "Retry-After": self.retry_after,
                "X-RateLimit-Limit": "350",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": "2026-09-01T12:01Z",
            }
        if self.status == 429:
            return web.Response(status=429, text="Rate limit exceeded", headers=headers)
        return web.Response(status=self.status, text="<html>Bad gateway</html>", headers=headers)


class JiraApi:
    """A site with one service project, its issues and their comments."""

    def __init__(
        self,
        *,
        email: str = "cohub@boces.example.org",
        token: str = "tok",
        project: str = "HELP",
        desk: str = "4",
        request_type: str = "25",
        user_zone: str = "UTC",
    ) -> None:
        self.email = email
        self.token = token
        self.project = project
        self.desk = desk
        self.request_type = request_type
        self.user_zone = ZoneInfo(user_zone)
        self.now = datetime(2026, 9, 1, 12, 0, 0, tzinfo=UTC)
        self.issues: list[dict[str, Any]] = []
        self.comments: dict[str, list[Any]] = {}
        self.faults: dict[str, list[Fault]] = {}
        self.requests: list[str] = []
        self.revoked = False
        self._numbers = itertools.count(1)
        self._ids = itertools.count(10001)
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    # the data

    def tick(self, seconds: float = 1) -> None:
        self.now += timedelta(seconds=seconds)

    def issue(self, summary: str, *, status: str = "Waiting for support", **fields: Any) -> dict:
        """A request created now; `fields` override its fields."""
        number = next(self._numbers)
        issue = {
            "id": str(10000 + number),
            "key": f"{self.project}-{number}",
            "fields": {
                "summary": summary,
                "description": None,
                "status": {"name": status, "statusCategory": {"key": CATEGORIES[status]}},
                "priority": {"name": "Medium"},
                "reporter": {
                    "accountId": "5b10ac8d82e05b22cc7d4ef5",
                    "displayName": "Ana Muñoz",
                    "emailAddress": "amunoz@eastview.example.org",
                },
                "created": jira_time(self.now),
                "updated": jira_time(self.now),
                "resolutiondate": None,
                "issuetype": {"name": "IT Help"},
                "labels": [],
                "project": {"key": self.project},
                **fields,
            },
        }
        self.issues.append(issue)
        self.comments[issue["key"]] = []
        return issue

    def update(self, key: str, **fields: Any) -> None:
        [issue] = [i for i in self.issues if i.get("key") == key]
        if "status" in fields:
            name = fields["status"]
            fields["status"] = {"name": name, "statusCategory": {"key": CATEGORIES[name]}}
        issue["fields"].update(fields, updated=jira_time(self.now))

    def comment(
        self, key: str, body: str, *, public: bool = True, author: str = "Ana Muñoz"
    ) -> dict:
        created = {
            "iso8601": self.now.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "epochMillis": int(self.now.timestamp() * 1000),
        }
        comment = {
            "id": str(next(self._ids)),
            "body": body,
            "public": public,
            "author": {"displayName": author, "emailAddress": "x@example.org"},
            "created": created,
        }
        self.comments[key].append(comment)
        self.update(key)
        return comment

    def put_raw(self, value: Any, updated: datetime | None = None) -> None:
        """A malformed issue, sent as it is, ordered as if updated now."""
        self.issues.append({"_raw": value, "_updated": updated or self.now, "key": "~"})

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
        app.router.add_get("/rest/api/3/serverInfo", self.server_info)
        app.router.add_get("/rest/api/3/myself", self.myself)
        app.router.add_get("/rest/api/3/project/{key}", self.project_info)
        app.router.add_get("/rest/api/3/search", self.search)
        app.router.add_put("/rest/api/3/issue/{key}", self.edit)
        app.router.add_get("/rest/servicedeskapi/servicedesk/{id}", self.service_desk)
        app.router.add_post("/rest/servicedeskapi/request", self.create)
        app.router.add_get("/rest/servicedeskapi/request/{key}/comment", self.list_comments)
        app.router.add_post("/rest/servicedeskapi/request/{key}/comment", self.add_comment)
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

    def _refused(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.email}:{self.token}".encode()).decode()
        if self.revoked or header != f"Basic {expected}":
            return errors(
                401,
                "You are not authenticated. Authentication required to perform this operation.",
            )
        return None

    async def server_info(self, request: web.Request) -> web.Response:
        self._fault(request)
        return web.json_response(
            {
                "baseUrl": self.base_url.rstrip("/"),
                "version": "1001.0.0-SNAPSHOT",
                "deploymentType": "Cloud",
            }
        )

    async def myself(self, request: web.Request) -> web.Response:
        if fault := self._fault(request):
            return fault.response()
        if refused := self._refused(request):
            return refused
        return web.json_response({"accountId": "x", "emailAddress": self.email})

    async def project_info(self, request: web.Request) -> web.Response:
        if refused := self._refused(request):
            return refused
        if request.match_info["key"] != self.project:
            return errors(404, "No project could be found with key 'NOPE'.")
        return web.json_response({"key": self.project, "projectTypeKey": "service_desk"})

    async def service_desk(self, request: web.Request) -> web.Response:
        if refused := self._refused(request):
            return refused
        if request.match_info["id"] != self.desk:
            return web.json_response({"errorMessage": "Service Desk does not exist"}, status=404)
        return web.json_response({"id": self.desk, "projectKey": self.project})

    def _updated(self, issue: dict[str, Any]) -> datetime:
        if "_raw" in issue:
            return issue["_updated"]
        return datetime.fromisoformat(issue["fields"]["updated"])

    def _select(self, jql: str) -> list[dict[str, Any]]:
        query, _, order = jql.partition(" ORDER BY ")
        rows = list(self.issues)
        for condition in query.split(" AND "):
            if match := PROJECT.match(condition):
                rows = [r for r in rows if "_raw" in r or r["fields"]["project"]["key"] == match[1]]
            elif match := UPDATED.match(condition):
                local = datetime.strptime(match[1], "%Y/%m/%d %H:%M").replace(tzinfo=self.user_zone)
                rows = [r for r in rows if self._updated(r) >= local]
            elif match := LABELS.match(condition):
                wanted = set(json.loads(f"[{match[1]}]"))
                rows = [r for r in rows if "_raw" not in r and wanted & set(r["fields"]["labels"])]
            else:
                raise ValueError(condition)
        if order:
            rows.sort(
                key=lambda r: (
                    self._updated(r),
                    int(r["key"].split("-")[1]) if "-" in r["key"] else 0,
                )
            )
        return rows

    async def search(self, request: web.Request) -> web.Response:
        if fault := self._fault(request):
            return fault.response()
        if refused := self._refused(request):
            return refused
        start = int(request.query.get("startAt", 0))
        size = int(request.query.get("maxResults", 50))
        if size > 100:
            return errors(400, "maxResults must be at most 100")
        try:
            rows = self._select(request.query["jql"])
        except ValueError as error:
            return errors(400, f"Error in the JQL Query: {error}")
        wanted = request.query.get("fields", "").split(",")
        issues = [
            r["_raw"]
            if "_raw" in r
            else {
                **{k: r[k] for k in ("id", "key")},
                "fields": {f: r["fields"].get(f) for f in wanted},
            }
            for r in rows[start : start + size]
        ]
        return web.json_response(
            {"startAt": start, "maxResults": size, "total": len(rows), "issues": issues}
        )

    def _issue(self, key: str) -> dict[str, Any] | None:
        return next((i for i in self.issues if i.get("key") == key), None)

    async def edit(self, request: web.Request) -> web.Response:
        fault = self._fault(request)
        if fault and not fault.applied:
            return fault.response()
        if refused := self._refused(request):
            return refused
        issue = self._issue(request.match_info["key"])
        if issue is None:
            return errors(404, "Issue does not exist or you do not have permission to see it.")
        body = await request.json()
        fields = dict(body.get("fields") or {})
        if "summary" in fields and not fields["summary"]:
            return errors(400, summary="You must specify a summary of the issue.")
        labels = list(issue["fields"]["labels"])
        for change in (body.get("update") or {}).get("labels", []):
            if " " in change.get("add", ""):
                return errors(400, labels="The label '…' contains spaces which is invalid.")
            if change.get("add") and change["add"] not in labels:
                labels.append(change["add"])
        self.update(issue["key"], **fields, labels=labels)
        if fault:
            return fault.response()
        return web.Response(status=204)

    async def create(self, request: web.Request) -> web.Response:
        fault = self._fault(request)
        if fault and not fault.applied:
            return fault.response()
        if refused := self._refused(request):
            return refused
        body = await request.json()
        if body.get("serviceDeskId") != self.desk or body.get("requestTypeId") != self.request_type:
            return web.json_response(
                {"errorMessage": "The request type does not exist"}, status=400
            )
        values = body.get("requestFieldValues") or {}
        if not values.get("summary"):
            return errors(400, summary="Summary is required.")
        description = {
            "type": "doc",
            "version": 1,
            "content": [
                {
                    "type": "paragraph",
                    "content": [{"type": "text", "text": values.get("description", "")}],
                }
            ],
        }
        issue = self.issue(values["summary"], description=description)
        if fault:
            return fault.response()
        return web.json_response(
            {"issueId": issue["id"], "issueKey": issue["key"], "requestTypeId": self.request_type},
            status=201,
        )

    async def list_comments(self, request: web.Request) -> web.Response:
        if fault := self._fault(request):
            return fault.response()
        if refused := self._refused(request):
            return refused
        key = request.match_info["key"]
        if key not in self.comments:
            return web.json_response({"errorMessage": "Request does not exist"}, status=404)
        start = int(request.query.get("start", 0))
        limit = int(request.query.get("limit", 50))
        values = self.comments[key][start : start + limit]
        return web.json_response(
            {
                "size": len(values),
                "start": start,
                "limit": limit,
                "isLastPage": start + limit >= len(self.comments[key]),
                "values": values,
            }
        )

    async def add_comment(self, request: web.Request) -> web.Response:
        fault = self._fault(request)
        if fault and not fault.applied:
            return fault.response()
        if refused := self._refused(request):
            return refused
        key = request.match_info["key"]
        if key not in self.comments:
            return web.json_response({"errorMessage": "Request does not exist"}, status=404)
        body = await request.json()
        comment = self.comment(key, body["body"], public=body.get("public", True), author="Cohub")
        if fault:
            return fault.response()
        return web.json_response(comment, status=201)
