"""The web console without a browser: signing in, CSRF, what a district viewer may see, and the
connection form's validation, over HTTP as a browser would send it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from yarl import URL

from hub.store.tables import dead_letters, runs
from tests.apikit import ServedHub

pytestmark = pytest.mark.asyncio


class Browser:
    """A cookie jar of its own (as one browser), speaking form posts to the served console."""

    def __init__(self, hub: ServedHub) -> None:
        self.hub = hub
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""
        self.cookies_set: list[str] = []

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.hub.url + path, allow_redirects=False) as response:
            text = await response.text()
            if found := re.search(r'name="csrf" value="([^"]+)"', text):
                self.csrf = found.group(1)
            return response.status, text

    async def post(
        self, path: str, data: dict[str, Any], *, csrf: bool = True
    ) -> tuple[int, str, str]:
        form = {**data, "csrf": self.csrf} if csrf else data
        async with self.session.post(
            self.hub.url + path, data=form, allow_redirects=False
        ) as response:
            self.cookies_set = response.headers.getall("Set-Cookie", [])
            return response.status, response.headers.get("Location", ""), await response.text()

    async def sign_in(self, token: str) -> tuple[int, str, str]:
        _, text = await self.get("/login")
        login_token = re.search(r'name="login_token" value="([^"]+)"', text)
        assert login_token is not None
        answer = await self.post(
            "/login", {"token": token, "login_token": login_token.group(1)}, csrf=False
        )
        set_by_login = self.cookies_set
        await self.get("/console")  # picks up the session's CSRF token
        self.cookies_set = set_by_login
        return answer


async def test_not_signed_in_pages_lead_to_the_login_form(hub: ServedHub) -> None:
    async with Browser(hub) as browser:
        assert await browser.get("/") == (302, "302: Found")
        status, _ = await browser.get("/console/usage")
        assert status == 303
        status, text = await browser.get("/login")
        assert status == 200 and 'name="token"' in text


async def test_a_good_token_signs_in_with_a_strict_http_only_cookie(hub: ServedHub) -> None:
    async with Browser(hub) as browser:
        status, location, _ = await browser.sign_in(hub.tokens["admin"])
        assert (status, location) == (303, "/console")
        [session] = [c for c in browser.cookies_set if c.startswith("cohub_session=")]
        assert {"HttpOnly", "Path=/", "SameSite=Strict"} <= {
            part.strip() for part in session.split(";")
        }
        status, text = await browser.get("/console")
        assert status == 200
        assert "eastview-payroll" in text and "Run now" in text


async def test_a_bad_token_is_refused_on_the_login_form(hub: ServedHub) -> None:
    async with Browser(hub) as browser:
        status, _, text = await browser.sign_in("cohub_nothere_forged")
        assert status == 401
        assert "not valid" in text
        assert (await browser.get("/console"))[0] == 303


async def test_a_post_without_the_session_csrf_token_is_refused(hub: ServedHub) -> None:
    async with Browser(hub) as browser:
        await browser.sign_in(hub.tokens["operator"])
        status, _, text = await browser.post(
            "/console/runs", {"route": "eastview-payroll"}, csrf=False
        )
        assert status == 403 and "CSRF" in text
        status, _, _ = await browser.post(
            "/console/runs", {"route": "eastview-payroll", "csrf": "guessed"}, csrf=False
        )
        assert status == 403
        async with hub.runtime.engine.connect() as conn:
            triggers = (await conn.execute(select(runs.c.trigger))).scalars().all()
        assert "api" not in triggers


async def test_sign_out_ends_the_session(hub: ServedHub) -> None:
    async with Browser(hub) as browser:
        await browser.sign_in(hub.tokens["admin"])
        cookie = browser.session.cookie_jar.filter_cookies(URL(hub.url))["cohub_session"].value
        status, location, _ = await browser.post("/logout", {})
        assert (status, location) == (303, "/login")
        async with (
            aiohttp.ClientSession(cookies={"cohub_session": cookie}) as replayed,
            replayed.get(hub.url + "/console", allow_redirects=False) as response,
        ):
            assert response.status == 303


async def _millbrook_dead_letter(hub: ServedHub) -> tuple[int, int]:
    """(run id, dead letter id) of a millbrook run with one dead letter."""
    async with hub.runtime.engine.begin() as conn:
        run_id = await conn.scalar(select(runs.c.id).where(runs.c.route == "millbrook-payroll"))
        letter = await conn.execute(
            dead_letters.insert().values(
                run_id=run_id,
                route="millbrook-payroll",
                member="millbrook",
                stream="pay_lines",
                position="payroll_2026-10.csv:9",
                reason="Amount is not a number",
                raw={"EmpID": "M-17", "SSN": "123-45-6789", "Amount": "ten"},
                status="open",
                created_at=datetime.now(UTC),
            )
        )
    return run_id, letter.inserted_primary_key[0]


async def test_a_viewer_sees_nothing_of_another_member(hub: ServedHub) -> None:
    run_id, letter_id = await _millbrook_dead_letter(hub)
    async with Browser(hub) as browser:
        await browser.sign_in(hub.tokens["eastview"])
        refused = {
            f"/console/runs/{run_id}": 404,
            f"/console/dead-letters/{letter_id}": 404,
            "/console/connections/millbrook-payroll": 404,
            "/console/usage?member=millbrook": 403,
            "/console/statements?period=2026-11&member=millbrook": 403,
            "/console/statements/2026-11/millbrook": 403,
            "/console/statements/2026-11/millbrook.csv": 403,
            "/console/statements/2026-11/millbrook.html": 403,
        }
        for path, expected in refused.items():
            status, text = await browser.get(path)
            assert status == expected, path
            assert f"Error {expected}" in text, path
        _, overview = await browser.get("/console")
        assert "eastview-payroll" in overview and "millbrook-payroll" not in overview
        _, letters = await browser.get("/console/dead-letters?status=any")
        assert "Amount is not a number" not in letters
        _, usage = await browser.get("/console/usage")
        assert "millbrook" not in usage and "eastview" in usage


async def test_an_operator_sees_a_dead_letter_masked_and_may_discard_it(hub: ServedHub) -> None:
    _, letter_id = await _millbrook_dead_letter(hub)
    async with Browser(hub) as browser:
        await browser.sign_in(hub.tokens["operator"])
        status, text = await browser.get(f"/console/dead-letters/{letter_id}")
        assert status == 200
        assert "123-45-6789" not in text and "M-17" in text
        status, location, _ = await browser.post(f"/console/dead-letters/{letter_id}/discard", {})
        assert (status, location) == (303, f"/console/dead-letters/{letter_id}")
        _, text = await browser.get(f"/console/dead-letters/{letter_id}")
        assert "discarded by token operator" in text


async def test_only_an_admin_gets_the_connection_form(hub: ServedHub) -> None:
    async with Browser(hub) as browser:
        await browser.sign_in(hub.tokens["operator"])
        status, text = await browser.get("/console/connections/new")
        assert status == 403 and "Error 403" in text


async def test_the_connection_form_is_generated_from_the_connector_schema(hub: ServedHub) -> None:
    async with Browser(hub) as browser:
        await browser.sign_in(hub.tokens["admin"])
        status, text = await browser.get("/console/connections/new?connector=sql_table")
        assert status == 200
        assert 'name="option.url"' in text
        assert 'type="checkbox" name="option.create_tables"' in text
        assert 'type="password" name="secret.password"' in text
        _, text = await browser.get("/console/connections/new?connector=flat_file")
        assert 'type="number" step="any" name="option.settle_seconds"' in text
        assert '<textarea name="option.streams"' in text


async def test_connection_form_errors_are_shown_next_to_the_form(hub: ServedHub) -> None:
    async with Browser(hub) as browser:
        await browser.sign_in(hub.tokens["admin"])
        await browser.get("/console/connections/new?connector=flat_file")
        form = {
            "connector": "flat_file",
            "name": "westfield-payroll",
            "member": "eastview",
            "option.folder": "/nowhere",
            "option.settle_seconds": "soon",
            "option.streams": "{not json",
            "action": "create",
        }
        status, _, text = await browser.post("/console/connections/new", form)
        assert status == 422
        assert "must be a number" in text and "not valid JSON" in text
        status, _, text = await browser.post(
            "/console/connections/new",
            {**form, "option.settle_seconds": "", "option.streams": '{"pay_lines": {}}'},
        )
        assert status == 422
        assert "options.streams" in text and "required" in text.lower()
        status, _, text = await browser.post(
            "/console/connections/new",
            {
                **form,
                "name": "eastview-payroll",
                "option.settle_seconds": "",
                "option.streams": "{}",
            },
        )
        assert status == 422 and "exists" in text
        assert (await browser.get("/console/connections/westfield-payroll"))[0] == 404


async def test_a_config_managed_connection_is_read_only(hub: ServedHub) -> None:
    async with Browser(hub) as browser:
        await browser.sign_in(hub.tokens["admin"])
        status, text = await browser.get("/console/connections/eastview-payroll")
        assert status == 200
        assert "connections/eastview-payroll.toml" in text and "cohub apply" in text


async def test_the_route_form_shows_what_is_wrong(hub: ServedHub) -> None:
    async with Browser(hub) as browser:
        await browser.sign_in(hub.tokens["admin"])
        shown, form = await browser.get("/console/routes/new")
        assert shown == 200 and 'name="inbound"' in form
        status, _, text = await browser.post(
            "/console/routes/new",
            {
                "name": "eastview-again",
                "source": "eastview-payroll",
                "source_stream": "pay_lines",
                "destination": "cbo-payroll-db",
                "destination_stream": "pay_lines",
                "service": "no-such-service",
            },
        )
        assert status == 422 and "no service" in text


async def test_usage_shows_a_chart_with_a_titled_bar_per_day(hub: ServedHub) -> None:
    async with Browser(hub) as browser:
        await browser.sign_in(hub.tokens["billing"])
        status, text = await browser.get("/console/usage?service=cbo-payroll&by=day")
        assert status == 200
        bars = re.findall(r'<rect class="bar"[^>]*><title>([^<]+)</title>', text)
        assert len(bars) == 1
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}: 132 record", bars[0])  # 51 + 42 + 39 lines


async def test_statement_downloads_work_with_the_session(hub: ServedHub) -> None:
    period = datetime.now(UTC).strftime("%Y-%m")
    async with Browser(hub) as browser:
        await browser.sign_in(hub.tokens["eastview"])
        status, text = await browser.get(f"/console/statements?period={period}")
        assert status == 200 and "eastview" in text and "millbrook" not in text
        async with browser.session.get(
            f"{hub.url}/console/statements/{period}/eastview.csv"
        ) as response:
            assert response.status == 200
            assert response.content_type == "text/csv"
            assert (await response.text()).startswith("period,member,service")


async def test_a_statement_is_shown_with_its_lines_and_total(hub: ServedHub) -> None:
    period = datetime.now(UTC).strftime("%Y-%m")
    async with Browser(hub) as browser:
        await browser.sign_in(hub.tokens["billing"])
        status, text = await browser.get(f"/console/statements/{period}/eastview")
        assert status == 200
        assert "Statement for Eastview Central School District (eastview)" in text
        assert "Total due" in text and f"/console/statements/{period}/eastview.html" in text


async def test_the_dead_letter_list_filters_by_run(hub: ServedHub) -> None:
    run_id, letter_id = await _millbrook_dead_letter(hub)
    async with Browser(hub) as browser:
        await browser.sign_in(hub.tokens["admin"])
        _, text = await browser.get(f"/console/dead-letters?run={run_id}")
        assert f'href="/console/dead-letters/{letter_id}"' in text
        _, text = await browser.get(f"/console/dead-letters?run={run_id + 100}")
        assert "No dead letters match." in text
        status, _ = await browser.get("/console/dead-letters?status=lost")
        assert status == 400


async def test_an_unknown_console_page_is_a_readable_404(hub: ServedHub) -> None:
    async with Browser(hub) as browser:
        await browser.sign_in(hub.tokens["admin"])
        status, text = await browser.get("/console/nothing-here")
        assert status == 404 and "Error 404" in text
