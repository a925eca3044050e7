"""A local Ed-Fi ODS/API v7 (Data Standard 5) that answers as the Ed-Fi documentation describes.

- ``GET /`` answers the version, data models and URLs (discovery);
- ``POST /oauth/token`` takes client credentials in the form and issues bearer tokens that
  expire after `token_uses` requests (then the API answers 401, as for an expired token);
- ``GET /changeQueries/v1/availableChangeVersions``;
- ``GET /data/v3/ed-fi/{resource}`` with ``offset``, ``limit``, ``totalCount``,
  ``minChangeVersion``, ``maxChangeVersion``; ``GET .../{resource}/deletes`` the same;
- ``GET /data/v3/ed-fi/{resource}`` with a natural key's fields as query parameters answers
  the rows holding them;
- ``POST /data/v3/ed-fi/{resource}`` upserts by natural key (201 created, 200 updated);
- ``DELETE /data/v3/ed-fi/{resource}/{id}`` deletes (204), or answers 404.

Every resource change bumps one change version counter, as the ODS does. Faults are queued per
path: `fail_next(path, status, retry_after)`. `forbidden` holds resources answering 403.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

DATA = "/data/v3/ed-fi/"
#: Query parameters that page or window a listing; any other one filters by a natural key field.
PAGING = frozenset({"offset", "limit", "totalCount", "minChangeVersion", "maxChangeVersion"})

#: The natural key of each resource, for upserts and for ``keyValues`` of deletes.
NATURAL_KEYS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "staffs": lambda r: {"staffUniqueId": r["staffUniqueId"]},
    "staffEducationOrganizationAssignmentAssociations": lambda r: {
        "educationOrganizationId": r["educationOrganizationReference"]["educationOrganizationId"],
        "staffClassificationDescriptor": r["staffClassificationDescriptor"],
        "beginDate": r["beginDate"],
        "staffUniqueId": r["staffReference"]["staffUniqueId"],
    },
    "staffEducationOrganizationEmploymentAssociations": lambda r: {"id": r["id"]},
    "chartOfAccounts": lambda r: {"accountIdentifier": r["accountIdentifier"]},
    "localAccounts": lambda r: {"accountIdentifier": r["accountIdentifier"]},
    "localBudgets": lambda r: {
        "accountIdentifier": r["localAccountReference"]["accountIdentifier"],
        "fiscalYear": r["localAccountReference"]["fiscalYear"],
        "asOfDate": r["asOfDate"],
    },
    "localActuals": lambda r: {
        "accountIdentifier": r["localAccountReference"]["accountIdentifier"],
        "fiscalYear": r["localAccountReference"]["fiscalYear"],
        "asOfDate": r["asOfDate"],
    },
    "localPayrolls": lambda r: {"id": r["id"]},
}


class EdFiApi:
    """The ODS: resources by name, each a list of rows with ``_changeVersion``."""

    def __init__(
        self, *, client_id: str = "cohub", client_secret: str = "s3cret", token_uses: int = 1000
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_uses = token_uses
        self.tokens: dict[str, int] = {}
        self.tokens_issued = 0
        self.version = 0
        self.rows: dict[str, list[dict[str, Any]]] = {name: [] for name in NATURAL_KEYS}
        self.deleted: dict[str, list[dict[str, Any]]] = {name: [] for name in NATURAL_KEYS}
        self.faults: dict[str, list[tuple[int, str | None]]] = {}
        self.forbidden: set[str] = set()
        self.requests: list[str] = []
        self.max_limit = 500
        self._ids = itertools.count(1)
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    # the data

    def put(
        self, resource: str, row: dict[str, Any], modified: str = "2026-09-01T12:00:00Z"
    ) -> int:
        """Upsert `row` by natural key; 201 if created, 200 if updated."""
        self.version += 1
        key = NATURAL_KEYS[resource](row)
        rows = self.rows[resource]
        for index, old in enumerate(rows):
            if "_raw" not in old and NATURAL_KEYS[resource](old) == key:
                rows[index] = {
                    **row,
                    "id": old["id"],
                    "_lastModifiedDate": modified,
                    "_changeVersion": self.version,
                }
                return 200
        rows.append(
            {
                **row,
                "id": row.get("id") or f"{next(self._ids):032x}",
                "_lastModifiedDate": modified,
                "_changeVersion": self.version,
            }
        )
        return 201

    def put_raw(self, resource: str, value: Any) -> None:
        """A malformed row as the server will send it, whatever it is."""
        self.version += 1
        self.rows[resource].append({"_raw": value, "_changeVersion": self.version})

    def delete(self, resource: str, key: dict[str, Any]) -> None:
        self.version += 1
        rows = self.rows[resource]
        for old in list(rows):
            if "_raw" not in old and NATURAL_KEYS[resource](old) == key:
                rows.remove(old)
                self.deleted[resource].append(
                    {"id": old["id"], "changeVersion": self.version, "keyValues": key}
                )

    def fail_next(self, path: str, status: int, retry_after: str | None = None) -> None:
        self.faults.setdefault(path, []).append((status, retry_after))

    # the server

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self.root)
        app.router.add_post("/oauth/token", self.token)
        app.router.add_get("/changeQueries/v1/availableChangeVersions", self.versions)
        app.router.add_get(DATA + "{resource}/deletes", self.list_deletes)
        app.router.add_get(DATA + "{resource}", self.list_rows)
        app.router.add_post(DATA + "{resource}", self.upsert)
        app.router.add_delete(DATA + "{resource}/{id}", self.delete_by_id)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _fault(self, request: web.Request) -> web.Response | None:
        self.requests.append(f"{request.method} {request.path_qs}")
        queue = self.faults.get(request.path)
        if queue:
            status, retry_after = queue.pop(0)
            headers = {"Retry-After": retry_after} if retry_after else {}
            return web.json_response({"message": "fault"}, status=status, headers=headers)
        return None

    def _authorized(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        if token not in self.tokens:
            return web.json_response({"message": "Authorization denied."}, status=401)
        self.tokens[token] -= 1
        if self.tokens[token] < 0:
            del self.tokens[token]
            return web.json_response({"message": "Invalid token (expired)"}, status=401)
        return None

    async def root(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "version": "7.1",
                "apiMode": "Sandbox",
                "dataModels": [{"name": "Ed-Fi", "version": "5.0.0"}],
                "urls": {
                    "dependencies": f"{self.base_url}metadata/data/v3/dependencies",
                    "openApiMetadata": f"{self.base_url}metadata/",
                    "oauth": f"{self.base_url}oauth/token",
                    "dataManagementApi": f"{self.base_url}data/v3/",
                },
            }
        )

    async def token(self, request: web.Request) -> web.Response:
        if fault := self._fault(request):
            return fault
        form = await request.post()
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        self.tokens_issued += 1
        token = f"token-{self.tokens_issued}"
        self.tokens[token] = self.token_uses
        return web.json_response(
            {"access_token": token, "expires_in": 1800, "token_type": "bearer"}
        )

    async def versions(self, request: web.Request) -> web.Response:
        if fault := self._fault(request) or self._authorized(request):
            return fault
        return web.json_response({"oldestChangeVersion": 0, "newestChangeVersion": self.version})

    def _window(
        self, request: web.Request, rows: list[dict[str, Any]], version_of: str
    ) -> web.Response:
        query = request.query
        low = int(query.get("minChangeVersion", 0))
        high = int(query.get("maxChangeVersion", 2**62))
        selected = [row for row in rows if low <= row[version_of] <= high]
        wanted = {k: v for k, v in query.items() if k not in PAGING}
        if wanted:
            resource = request.match_info["resource"]
            selected = [
                row
                for row in selected
                if "_raw" not in row
                and {k: str(v) for k, v in NATURAL_KEYS[resource](row).items() if k in wanted}
                == wanted
            ]
        offset = int(query.get("offset", 0))
        limit = int(query.get("limit", 25))
        if limit > self.max_limit:
            return web.json_response(
                {"message": f"Limit must be between 0 and {self.max_limit}."}, status=400
            )
        page = selected[offset : offset + limit]
        headers = {}
        if query.get("totalCount") == "true":
            headers["Total-Count"] = str(len(selected))
        body = [
            row["_raw"]
            if "_raw" in row
            else {k: v for k, v in row.items() if k != "_changeVersion"}
            for row in page
        ]
        return web.Response(text=json.dumps(body), content_type="application/json", headers=headers)

    async def list_rows(self, request: web.Request) -> web.Response:
        if fault := self._fault(request) or self._authorized(request):
            return fault
        resource = request.match_info["resource"]
        if resource not in self.rows:
            return web.json_response({"message": "not found"}, status=404)
        if resource in self.forbidden:
            return web.json_response({"message": "Access to the resource is denied."}, status=403)
        return self._window(request, self.rows[resource], "_changeVersion")

    async def list_deletes(self, request: web.Request) -> web.Response:
        if fault := self._fault(request) or self._authorized(request):
            return fault
        resource = request.match_info["resource"]
        return self._window(request, self.deleted[resource], "changeVersion")

    async def delete_by_id(self, request: web.Request) -> web.Response:
        if fault := self._fault(request) or self._authorized(request):
            return fault
        resource, identifier = request.match_info["resource"], request.match_info["id"]
        for row in self.rows.get(resource, []):
            if row.get("id") == identifier:
                self.delete(resource, NATURAL_KEYS[resource](row))
                return web.Response(status=204)
        return web.json_response({"message": "Resource not found."}, status=404)

    async def upsert(self, request: web.Request) -> web.Response:
        if fault := self._fault(request) or self._authorized(request):
            return fault
        resource = request.match_info["resource"]
        body = await request.json()
        try:
            status = self.put(resource, body)
        except (KeyError, TypeError):
            return web.json_response({"message": "The request is invalid."}, status=400)
        return web.Response(status=status)
