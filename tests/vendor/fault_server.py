"""A district HR roster API on a bad day: the vendor system the fault-injection test syncs from.

What the vendor documents (and `tests.vendor.roster_api` is written against):

- ``GET /v1/employees?limit=<n>[&cursor=<id>]`` with the key in ``X-Api-Key`` answers
  ``{"data": [...], "next_cursor": "E00100"}``: employees ordered by id, after `cursor` (the id
  of the last employee already read); `next_cursor` is the id of the page's last employee, and
  null when the page is empty. Pages hold at most 100 employees.
- An employee is ``{"id", "givenName", "familyName", "employmentStatus", "hireDate", "email",
  "lastModified"}``.

How it misbehaves: on about a fifth of requests, chosen by a seeded random generator so every
run is the same, it answers 429 with ``Retry-After: 1``, or 500, or hangs longer than any
sensible client timeout, or cuts the body short, or sends malformed JSON (in that order, over
and over). And a few employees
are invalid as exported (`INVALID`).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

FAULTS = ("throttled", "server_error", "hang", "truncated", "malformed")

#: Employee number → the field the vendor exports wrong and the value it exports.
INVALID: dict[int, tuple[str, str]] = {
    5: ("hireDate", "2019-02-29"),
    137: ("hireDate", "2019-02-30"),
    512: ("employmentStatus", "fired"),
    1024: ("hireDate", "2021-13-01"),
    1999: ("hireDate", "not a date"),
}

GIVEN = ["Ana", "Ben", "Chloe", "Dev", "Eun-ji", "Femi", "Grace", "Hugo", "Ines", "José"]
FAMILY = ["Abbott", "Baptiste", "Chen", "Duarte", "Eriksen", "Fofana", "García", "Hale"]


def employee(number: int) -> dict[str, Any]:
    """Employee `number` (1-based) as the vendor exports it."""
    record = {
        "id": f"E{number:05d}",
        "givenName": GIVEN[number % len(GIVEN)],
        "familyName": FAMILY[number % len(FAMILY)],
        "employmentStatus": "on_leave" if number % 50 == 0 else "active",
        "hireDate": f"{2000 + number % 25}-{1 + number % 12:02d}-{1 + number % 28:02d}",
        "email": f"e{number:05d}@eastview.k12.example",
        "lastModified": "2026-10-15T16:00:00Z",
    }
    if number in INVALID:
        field, value = INVALID[number]
        record[field] = value
    return record


class FaultyRosterApi:
    """The roster API on 127.0.0.1, with `employees` employees and faults on `fault_rate` of
    requests; `faults` counts each fault served, `requests` every request."""

    def __init__(
        self,
        *,
        api_key: str,
        employees: int = 2000,
        fault_rate: float = 0.2,
        seed: int = 7,
        hang_seconds: float = 2.0,
    ) -> None:
        self.api_key = api_key
        self.records = [employee(n) for n in range(1, employees + 1)]
        self.fault_rate = fault_rate
        self.rng = random.Random(seed)
        self.hang_seconds = hang_seconds
        self.faults: Counter[str] = Counter()
        self.requests = 0
        app = web.Application()
        app.router.add_get("/v1/employees", self.employees)
        self.server = TestServer(app, host="127.0.0.1")
        self.base_url = ""

    async def start(self) -> None:
        """Start serving at `base_url`."""
        await self.server.start_server()
        self.base_url = str(self.server.make_url("/"))

    async def close(self) -> None:
        await self.server.close()

    async def employees(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if request.headers.get("X-Api-Key") != self.api_key:
            return web.json_response({"error": "unknown API key"}, status=401)
        fault = None
        if self.rng.random() < self.fault_rate:
            # The generator picks which requests fail; the kinds take turns, so every kind of
            # fault shows up once five have been served.
            fault = FAULTS[sum(self.faults.values()) % len(FAULTS)]
            self.faults[fault] += 1
        if fault == "throttled":
            return web.json_response(
                {"error": "slow down"}, status=429, headers={"Retry-After": "1"}
            )
        if fault == "server_error":
            return web.json_response({"error": "internal error"}, status=500)
        if fault == "hang":
            await asyncio.sleep(self.hang_seconds)  # cancelled once the client hangs up
        body = json.dumps(self._page(request.query)).encode()
        if fault == "truncated":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            request.transport.close()
            return response
        if fault == "malformed":
            body = body.replace(b'"data"', b"data", 1)
        return web.Response(body=body, content_type="application/json")

    def _page(self, query: Any) -> dict[str, Any]:
        limit = min(int(query.get("limit", "100")), 100)
        after = query.get("cursor")
        start = 0 if after is None else int(after[1:])  # ids are E + the 1-based number
        page = self.records[start : start + limit]
        return {"data": page, "next_cursor": page[-1]["id"] if page else None}
