"""A served hub for API, console and metrics tests: the example cooperative applied and synced,
a token per role, a real TCP server on loopback, and calls whose JSON answers are checked
against the OpenAPI document (so the document cannot drift from what the server does)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
from aiohttp import web

from hub.api.app import build_app
from hub.api.auth import create_token
from hub.api.openapi import document
from hub.runtime import Runtime, key_file
from hub.vault import create_key_file
from tests.test_end_to_end import apply_and_sync

#: Tokens the served hub has: a name for each role, two district viewers.
ROLES = {
    "admin": ("admin", None),
    "operator": ("operator", None),
    "billing": ("billing", None),
    "eastview": ("viewer", "eastview"),
    "millbrook": ("viewer", "millbrook"),
}


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any
    text: str = ""


@dataclass
class ServedHub:
    url: str
    runtime: Runtime
    config_dir: Path
    session: aiohttp.ClientSession
    tokens: dict[str, str] = field(default_factory=dict)

    async def call(
        self,
        method: str,
        path: str,
        *,
        as_: str | None = "admin",
        json: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """Call ``/api/v1`` + `path` as token `as_` (None: no token) and check the answer
        against the OpenAPI document."""
        sent = dict(headers or {})
        if as_ is not None:
            sent["Authorization"] = f"Bearer {self.tokens[as_]}"
        async with self.session.request(
            method, f"{self.url}/api/v1{path}", json=json, data=data, headers=sent
        ) as response:
            text = await response.text()
            body = None
            if response.content_type == "application/json":
                body = await response.json()
            answer = Answer(response.status, body, response.headers, text)
        conforms(method, "/api/v1" + path.split("?")[0], answer)
        return answer


def _operation(method: str, path: str) -> dict[str, Any] | None:
    """The document's operation for a concrete path; a literal segment beats a parameter
    (``/connections/test`` over ``/connections/{name}``)."""
    paths = document()["paths"]
    matching = [
        template
        for template, operations in paths.items()
        if method.lower() in operations
        and re.match("^" + re.sub(r"{\w+}", "[^/]+", template) + "$", path)
    ]
    if not matching:
        return None
    return paths[min(matching, key=lambda t: t.count("{"))][method.lower()]


def conforms(method: str, path: str, answer: Answer) -> None:
    """Assert `answer` is one the document lists for this operation, with a body matching it."""
    operation = _operation(method, path)
    if operation is None:  # an unknown path: the one error shape
        assert answer.status in (404, 405), (method, path, answer.status)
        assert set(answer.body) == {"error"}
        return
    listed = operation["responses"]
    assert str(answer.status) in listed, (
        f"{method} {path} answered {answer.status}, which the document does not list: {answer.text[:300]}"
    )
    content = listed[str(answer.status)].get("content", {})
    if answer.status == 204:
        assert answer.text == ""
        return
    if answer.body is not None:
        schema = content["application/json"]["schema"]
        jsonschema.validate(answer.body, {**schema, "components": document()["components"]})
    else:
        assert any(media != "application/json" for media in content), (method, path)


@asynccontextmanager
async def served_hub(
    runtime: Runtime, config_dir: Path, *, sync: bool = True
) -> AsyncIterator[ServedHub]:
    """The example cooperative applied (and synced), a master key, a token per role, served."""
    if not key_file(runtime.home).exists():
        create_key_file(key_file(runtime.home))
    if sync:
        await apply_and_sync(runtime, config_dir, only=None)
    else:
        from hub.apply import apply
        from hub.config import load_config

        await apply(runtime.engine, load_config(config_dir))
    await runtime.unlock_vault()
    tokens = {}
    for name, (role, member) in ROLES.items():
        _, tokens[name] = await create_token(
            runtime.engine, name=name, role=role, member=member, created_by="tests"
        )
    runner = web.AppRunner(build_app(runtime, config_dir), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as session:
        try:
            yield ServedHub(f"http://127.0.0.1:{port}", runtime, config_dir, session, tokens)
        finally:
            await runner.cleanup()
