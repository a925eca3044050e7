"""Rate limits on guessing credentials: the sliding window on a hand-moved clock, then the
middleware in a served hub (built here with it installed, as `hub.api.app` will)."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from hub.api import app as app_module
from hub.api.ratelimit import RateLimit, SlidingWindow, claimed_token_id
from hub.runtime import Runtime
from tests.apikit import Answer, served_hub


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_under_its_limit_may_act():
    clock = Clock()
    window = SlidingWindow(3, 60, clock=clock)

    window.hit("a")
    window.hit("a")

    assert window.retry_after("a") == 0.0


def test_the_limit_th_event_blocks_until_the_oldest_leaves_the_window():
    clock = Clock()
    window = SlidingWindow(3, 60, clock=clock)
    for step in (0, 10, 20):
        clock.now = 1000 + step
        window.hit("a")

    clock.now = 1030
    assert window.retry_after("a") == 30.0  # the first event (at 1000) leaves at 1060
    clock.now = 1060
    assert window.retry_after("a") == 0.0


def test_keys_are_counted_apart():
    clock = Clock()
    window = SlidingWindow(1, 60, clock=clock)

    window.hit("a")

    assert window.retry_after("a") == 60.0
    assert window.retry_after("b") == 0.0


def test_memory_is_bounded_by_forgetting_the_least_recent_keys():
    clock = Clock()
    window = SlidingWindow(1, 60, clock=clock, max_keys=2)
    for key in ("a", "b", "c"):
        window.hit(key)

    assert window.retry_after("a") == 0.0  # forgotten
    assert window.retry_after("c") == 60.0


def test_a_bearer_header_names_its_token_id_only_when_well_formed():
    assert claimed_token_id("Bearer cohub_abc123_secret") == "abc123"
    assert claimed_token_id("Bearer cohub_abc123") is None
    assert claimed_token_id("Basic cohub_abc123_secret") is None
    assert claimed_token_id(None) is None


def test_a_window_needs_a_positive_limit():
    with pytest.raises(ValueError):
        SlidingWindow(0, 60)


async def call(hub, method: str, path: str, *, token: str | None, json=None) -> Answer:
    """A call not checked against the OpenAPI document, which does not list 429 yet."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with hub.session.request(
        method, f"{hub.url}/api/v1{path}", json=json, headers=headers
    ) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return Answer(response.status, body, response.headers)


# --- in a served hub --------------------------------------------------------------------------


@pytest.fixture
async def limited_hub(runtime: Runtime, config_dir: Path, monkeypatch):
    """The served example hub with build_app's `RateLimit` swapped for one with small limits
    and a hand-moved clock."""
    clock = Clock()
    limit = RateLimit(failures=3, creations=2, window=60, clock=clock)
    original = web.Application

    def application(*args, middlewares=(), **kwargs):
        listed = [limit if isinstance(m, RateLimit) else m for m in middlewares]
        assert limit in listed, "build_app installs a RateLimit before authenticate"
        return original(*args, middlewares=listed, **kwargs)

    monkeypatch.setattr(app_module.web, "Application", application)
    async with served_hub(runtime, config_dir, sync=False) as served:
        served.clock = clock  # type: ignore[attr-defined]
        yield served


async def test_failed_bearer_tokens_from_an_address_end_in_a_429(limited_hub):
    hub = limited_hub
    admin = hub.tokens["admin"]
    for _ in range(3):
        assert (await call(hub, "GET", "/whoami", token="x")).status == 401

    refused = await call(hub, "GET", "/whoami", token="x")
    valid_too = await call(hub, "GET", "/whoami", token=admin)  # the address is held back

    assert refused.status == 429
    assert refused.headers["Retry-After"] == "60"
    assert refused.body["error"]["code"] == "too_many_requests"
    assert refused.body["error"]["status"] == 429
    assert valid_too.status == 429
    hub.clock.now += 60
    assert (await call(hub, "GET", "/whoami", token=admin)).status == 200


async def test_requests_without_a_token_are_not_counted(limited_hub):
    hub = limited_hub
    for _ in range(5):
        assert (await hub.call("GET", "/whoami", as_=None)).status == 401

    assert (await hub.call("GET", "/whoami")).status == 200


async def test_a_token_may_create_only_so_many_tokens(limited_hub):
    hub = limited_hub
    body = {"name": "more", "role": "operator"}
    admin, operator = hub.tokens["admin"], hub.tokens["operator"]
    statuses = [
        (await call(hub, "POST", "/tokens", token=admin, json=body)).status for _ in range(3)
    ]

    assert statuses == [201, 201, 429]
    assert (await call(hub, "GET", "/tokens", token=admin)).status == 200  # reading goes on
    # Another token's budget is its own (an operator may not create tokens: 403, not 429).
    assert (await call(hub, "POST", "/tokens", token=operator, json=body)).status == 403


async def _login_form(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(f"{url}/login") as response:
        text = await response.text()
    return re.search(r'name="login_token" value="([^"]+)"', text).group(1)


async def test_failed_sign_ins_end_in_a_429_page(limited_hub):
    hub = limited_hub
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        statuses = []
        for _ in range(4):
            login_token = await _login_form(browser, hub.url)
            async with browser.post(
                f"{hub.url}/login",
                data={"login_token": login_token, "token": "cohub_nope_nope"},
                allow_redirects=False,
            ) as response:
                statuses.append(response.status)
                last = (response.headers, response.content_type, await response.text())

    assert statuses == [401, 401, 401, 429]
    headers, media, text = last
    assert headers["Retry-After"] == "60"
    assert media == "text/html"
    assert "Too many failed sign-ins" in text
