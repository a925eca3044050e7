"""A local Skyward Qmlativ API answering its generic entity endpoints as the connector expects.

- ``POST /oauth/token``: client credentials in the form; tokens expire after `token_uses`
  requests (the API then answers 401);
- ``GET /Generic/{entity}/{Module}/{Object}/{page}/{size}``: ``{"Objects": [...], "Paging":
  {"CurrentPage", "PageSize", "TotalRecords", "NextPageUrl"}}``, ``NextPageUrl`` null on the
  last page. Objects are stored as the API answers them (related objects nested).

Faults are queued per object path with `fail_next`; `forbidden` lists object paths
answering 403.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


class QmlativApi:
    def __init__(self, *, client_secret: str = "s3cret", token_uses: int = 1000) -> None:
        self.client_id = "cohub"
        self.client_secret = client_secret
        self.token_uses = token_uses
        self.tokens: dict[str, int] = {}
        self.tokens_issued = 0
        self.objects: dict[str, list[Any]] = {
            "Employee/Employee": [],
            "Employee/EmployeePosition": [],
        }
        self.faults: dict[str, list[tuple[int, str | None]]] = {}
        self.forbidden: set[str] = set()
        self.requests: list[str] = []
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    def fail_next(self, object_path: str, status: int, retry_after: str | None = None) -> None:
        self.faults.setdefault(object_path, []).append((status, retry_after))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/oauth/token", self.token)
        app.router.add_get(
            "/api/Generic/{entity}/{module}/{object}/{page:\\d+}/{size:\\d+}", self.page
        )
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/api/"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        self.tokens_issued += 1
        token = f"q-{self.tokens_issued}"
        self.tokens[token] = self.token_uses
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": 3600}
        )

    async def page(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        info = request.match_info
        path = f"{info['module']}/{info['object']}"
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens or self.tokens[token] <= 0:
            self.tokens.pop(token, None)
            return web.json_response({"Message": "Authorization has been denied"}, status=401)
        self.tokens[token] -= 1
        queue = self.faults.get(path)
        if queue:
            status, retry_after = queue.pop(0)
            headers = {"Retry-After": retry_after} if retry_after else {}
            return web.json_response({"Message": "fault"}, status=status, headers=headers)
        if path in self.forbidden:
            return web.json_response({"Message": "Forbidden"}, status=403)
        if path not in self.objects:
            return web.json_response({"Message": "No such object"}, status=404)
        number, size = int(info["page"]), int(info["size"])
        rows = self.objects[path]
        chunk = rows[(number - 1) * size : number * size]
        last = number * size >= len(rows)
        following = None
        if not last:
            following = str(
                request.url.with_path(
                    f"/api/Generic/{info['entity']}/{path}/{number + 1}/{size}"
                ).with_query(None)
            )
        return web.json_response(
            {
                "Objects": chunk,
                "Paging": {
                    "CurrentPage": number,
                    "PageSize": size,
                    "TotalRecords": len(rows),
                    "NextPageUrl": following,
                },
            }
        )
