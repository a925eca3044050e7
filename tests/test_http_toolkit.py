"""The SDK's HTTP toolkit against real local servers: retries, auth, rate limits, circuit breakers,
paging, and no secret in any error or log line. Time is a `ManualClock`, so backoff and pacing
are checked exactly and cost nothing."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import LogCapture

from hub.sdk.errors import AuthError, ConnectorConfigError, ConnectorError, TransientError
from hub.sdk.http import (
    ApiKeyHeader,
    BasicAuth,
    BearerToken,
    BreakerPolicy,
    ClientCounts,
    HttpAuthError,
    HttpClient,
    HttpStatusError,
    ManualClock,
    OAuth2ClientCredentials,
    OAuth2RefreshToken,
    OAuthError,
    RateLimit,
    RetryPolicy,
    SystemDown,
    close_sessions,
    cursor_pages,
    link_pages,
    offset_pages,
    page_number_pages,
    parse_retry_after,
    shared_session,
)
from hub.sdk.http import breaker as breaker_module
from hub.sdk.http import retry as retry_module
from hub.sdk.lifecycle import CURRENT_RUN, RunCounts
from tests.vendor.tls import self_signed

Serve = Callable[..., Awaitable[str]]
Answer = Callable[[], web.StreamResponse]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a local vendor server from route definitions; returns its base URL."""
    servers: list[TestServer] = []

    async def start(*routes: web.RouteDef, tls: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        app.add_routes(routes)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server(ssl=tls)
        servers.append(server)
        return str(server.make_url("/"))

    yield start
    await close_sessions()
    for server in servers:
        await server.close()


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every event the toolkit logs at any level, as structlog receives it (before redaction).

    The toolkit's loggers are swapped for ones that capture: whatever an earlier test configured
    (a level filter, a cached logger) would otherwise decide what reaches the capture.
    """
    capture = LogCapture()
    logger = structlog.wrap_logger(
        None,
        processors=[capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )
    for module in (retry_module, breaker_module):
        monkeypatch.setattr(module, "log", logger)
    return capture.entries


def answer(status: int = 200, body: Any = None, **headers: str) -> Answer:
    """A response to give: a status, a JSON body and headers (``Retry_After`` → ``Retry-After``)."""
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    if body is None:
        return lambda: web.Response(status=status, headers=named)
    return lambda: web.json_response(body, status=status, headers=named)


class Script:
    """A handler that gives its answers in turn (the last one repeats) and keeps each request."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            {"headers": dict(request.headers), "query": dict(request.query), "path": request.path}
        )
        index = min(len(self.requests), len(self.answers)) - 1
        return self.answers[index]()


def quick(attempts: int = 5) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, base=1.0, cap=8.0, max_retry_after=120.0)


# -- retries ---------------------------------------------------------------------------------


async def test_backoff_delays_are_drawn_with_full_jitter_up_to_the_capped_exponential(serve):
    # Given a system that keeps answering 503 and a seeded jitter that records its bounds
    script = Script(answer(503))
    base = await serve(web.get("/roster", script.handle))
    draws: list[tuple[float, float, float]] = []
    rng = random.Random(20260701)

    def jitter(low: float, high: float) -> float:
        value = rng.uniform(low, high)
        draws.append((low, high, value))
        return value

    clock = ManualClock()
    policy = RetryPolicy(attempts=6, base=1.0, cap=8.0, jitter=jitter)
    client = HttpClient(base, retry=policy, breaker=BreakerPolicy(failures=10), clock=clock)

    # When the client gives up
    with pytest.raises(TransientError):
        await client.get_json("roster")

    # Then each delay was drawn from [0, min(8, 1 * 2**retry)] and slept exactly
    assert [(low, high) for low, high, _ in draws] == [
        (0.0, 1.0),
        (0.0, 2.0),
        (0.0, 4.0),
        (0.0, 8.0),
        (0.0, 8.0),
    ]
    assert all(low <= value <= high for low, high, value in draws)
    assert clock.sleeps == [value for _, _, value in draws]
    assert len(script.requests) == 6


async def test_retry_after_in_seconds_is_waited_exactly(serve):
    script = Script(answer(429, Retry_After="7"), answer(200, {"ok": True}))
    base = await serve(web.get("/roster", script.handle))
    clock = ManualClock()
    client = HttpClient(base, retry=quick(), clock=clock)

    assert await client.get_json("roster") == {"ok": True}
    assert clock.sleeps == [7.0]


async def test_retry_after_as_an_http_date_is_waited_until_that_date(serve):
    # The manual clock stands at 2026-01-01 00:00:00 UTC, a Thursday
    script = Script(
        answer(503, Retry_After="Thu, 01 Jan 2026 00:00:30 GMT"), answer(200, {"ok": True})
    )
    base = await serve(web.get("/roster", script.handle))
    clock = ManualClock()
    client = HttpClient(base, retry=quick(), clock=clock)

    assert await client.get_json("roster") == {"ok": True}
    assert clock.sleeps == [30.0]


async def test_a_retry_after_longer_than_the_maximum_is_cut_to_the_maximum(serve):
    script = Script(answer(429, Retry_After="86400"), answer(200, {"ok": True}))
    base = await serve(web.get("/roster", script.handle))
    clock = ManualClock()
    client = HttpClient(base, retry=quick(), clock=clock)

    await client.get_json("roster")

    assert clock.sleeps == [120.0]


def test_retry_after_values_are_read_as_rfc_9110_writes_them():
    now = ManualClock().now()
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:02:00 GMT", now) == 120.0
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


async def test_the_client_gives_up_after_the_last_attempt_naming_request_and_status(serve):
    script = Script(answer(503))
    base = await serve(web.get("/v2/roster", script.handle))
    client = HttpClient(base + "v2", retry=quick(attempts=3), clock=ManualClock())

    with pytest.raises(TransientError) as raised:
        await client.get_json("/roster", params={"api_key": "k-in-query", "page": 2})

    assert str(raised.value) == (
        f"GET {base}v2/roster failed after 3 attempts: HTTP 503 Service Unavailable"
    )
    assert len(script.requests) == 3
    assert client.counts == ClientCounts(requests=3, retries=2)


async def test_a_body_that_is_not_valid_json_is_retried(serve):
    # Given a server whose first answer is cut short and whose second is malformed JSON
    async def truncated(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 400
        await response.prepare(request)
        await response.write(b'{"data": [{"id": 1},')
        request.transport.close()
        return response

    async def malformed(request: web.Request) -> web.Response:
        return web.Response(text='{"data": [{"id": 1},,]}', content_type="application/json")

    async def whole(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": 1}]})

    answers = iter([truncated, malformed])

    async def roster(request: web.Request) -> web.StreamResponse:
        return await next(answers, whole)(request)

    base = await serve(web.get("/roster", roster))
    client = HttpClient(base, retry=quick(), clock=ManualClock())

    # Then the third answer is the one returned
    assert await client.get_json("roster") == {"data": [{"id": 1}]}
    assert client.counts == ClientCounts(requests=3, retries=2)


async def test_an_answer_slower_than_the_timeout_is_retried(serve):
    calls = {"n": 0}

    async def roster(request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            await asyncio.sleep(10)  # cancelled when the client hangs up
        return web.json_response({"ok": True})

    base = await serve(web.get("/roster", roster))
    client = HttpClient(
        base, retry=quick(), clock=ManualClock(), timeout=aiohttp.ClientTimeout(total=0.1)
    )

    assert await client.get_json("roster") == {"ok": True}
    assert client.counts == ClientCounts(requests=2, retries=1)


async def test_a_post_is_not_repeated_after_a_failure_it_may_have_survived(serve):
    script = Script(answer(500))
    base = await serve(web.post("/orders", script.handle))
    client = HttpClient(base, retry=quick(), clock=ManualClock())

    with pytest.raises(TransientError) as raised:
        await client.post_json("orders", {"po": "PO-1"})

    assert str(raised.value) == (
        f"POST {base}orders failed and was not retried (it may have been applied): "
        "HTTP 500 Internal Server Error"
    )
    assert len(script.requests) == 1


async def test_a_post_refused_with_429_is_sent_again(serve):
    script = Script(answer(429, Retry_After="1"), answer(201, {"id": "PO-1"}))
    base = await serve(web.post("/orders", script.handle))
    client = HttpClient(base, retry=quick(), clock=ManualClock())

    assert await client.post_json("orders", {"po": "PO-1"}) == {"id": "PO-1"}
    assert len(script.requests) == 2


async def test_every_retry_is_added_to_the_run_in_progress(serve):
    script = Script(answer(503), answer(502), answer(200, {"ok": True}))
    base = await serve(web.get("/roster", script.handle))
    client = HttpClient(base, retry=quick(), clock=ManualClock())
    counts = RunCounts()
    token = CURRENT_RUN.set(counts)
    try:
        await client.get_json("roster")
    finally:
        CURRENT_RUN.reset(token)

    assert counts.retried == 2
    assert client.counts.retries == 2


async def test_retries_outside_a_run_are_counted_by_the_client_only(serve):
    script = Script(answer(503), answer(200, {"ok": True}))
    base = await serve(web.get("/roster", script.handle))
    client = HttpClient(base, retry=quick(), clock=ManualClock())

    await client.get_json("roster")

    assert CURRENT_RUN.get() is None
    assert client.counts.retries == 1


# -- status errors and auth ------------------------------------------------------------------


async def test_401_raises_auth_error_at_once_without_retrying(serve):
    script = Script(answer(401))
    base = await serve(web.get("/me", script.handle))
    client = HttpClient(base, auth=BearerToken("long-lived"), retry=quick(), clock=ManualClock())

    with pytest.raises(AuthError) as raised:
        await client.get_json("me")

    assert str(raised.value) == f"GET {base}me refused the credentials: HTTP 401"
    assert len(script.requests) == 1
    assert script.requests[0]["headers"]["Authorization"] == "Bearer long-lived"


async def test_403_raises_auth_error_and_404_a_status_error_neither_retried(serve):
    forbidden, missing = Script(answer(403)), Script(answer(404))
    base = await serve(web.get("/payroll", forbidden.handle), web.get("/nothing", missing.handle))
    client = HttpClient(base, retry=quick(), clock=ManualClock())

    with pytest.raises(AuthError, match="HTTP 403"):
        await client.get_json("payroll")
    with pytest.raises(HttpStatusError) as raised:
        await client.get_json("nothing")

    assert raised.value.status == 404
    assert str(raised.value) == f"GET {base}nothing failed: HTTP 404 Not Found"
    assert (len(forbidden.requests), len(missing.requests)) == (1, 1)


async def test_basic_auth_and_api_key_headers_are_sent(serve):
    script = Script(answer(200, {"ok": True}))
    base = await serve(web.get("/me", script.handle))

    await HttpClient(base, auth=BasicAuth("cbo", "open sesame")).get_json("me")
    await HttpClient(base, auth=ApiKeyHeader("k-123", header="X-District-Key")).get_json("me")

    assert script.requests[0]["headers"]["Authorization"] == "Basic Y2JvOm9wZW4gc2VzYW1l"
    assert script.requests[1]["headers"]["X-District-Key"] == "k-123"


class TokenServer:
    """An OAuth 2.0 token endpoint and an API that accepts only the tokens it has issued."""

    def __init__(self, secret: str, expires_in: int = 3600) -> None:
        self.secret = secret
        self.expires_in = expires_in
        self.forms: list[dict[str, str]] = []
        self.issued: list[str] = []
        self.valid: set[str] = set()
        self.refuse_all = False
        self.unavailable = 0
        self.api_calls = 0

    async def token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.forms.append(form)
        if self.unavailable:
            self.unavailable -= 1
            return web.json_response({"error": "temporarily_unavailable"}, status=503)
        if form.get("client_secret") != self.secret:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = f"token-{len(self.issued) + 1}"
        self.issued.append(token)
        self.valid.add(token)
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        )

    async def api(self, request: web.Request) -> web.Response:
        self.api_calls += 1
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.refuse_all or token not in self.valid:
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response({"token": token})

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/oauth/token", self.token),
            web.get("/api/employees", self.api),
            web.post("/api/employees", self.api),
        ]


async def oauth_client(serve: Serve, server: TokenServer, secret: str, clock: ManualClock):
    base = await serve(*server.routes())
    auth = OAuth2ClientCredentials(
        token_url=base + "oauth/token",
        client_id="cohub-eastview",
        client_secret=secret,
        scope="roster.read",
        clock=clock,
    )
    return HttpClient(base + "api", auth=auth, retry=quick(), clock=clock), auth


async def test_an_oauth_token_is_fetched_once_and_reused(serve):
    server = TokenServer("s3cret")
    client, auth = await oauth_client(serve, server, "s3cret", ManualClock())

    answers = [await client.get_json("employees") for _ in range(3)]

    assert answers == [{"token": "token-1"}] * 3
    assert server.forms == [
        {
            "grant_type": "client_credentials",
            "client_id": "cohub-eastview",
            "client_secret": "s3cret",
            "scope": "roster.read",
        }
    ]
    assert auth.fetches == 1


async def test_an_oauth_token_is_refreshed_shortly_before_it_expires(serve):
    # Given a token that lives 3600 s, refreshed 60 s before it expires
    server = TokenServer("s3cret", expires_in=3600)
    clock = ManualClock()
    client, _ = await oauth_client(serve, server, "s3cret", clock)
    await client.get_json("employees")

    clock.advance(3539)
    assert await client.get_json("employees") == {"token": "token-1"}

    clock.advance(1)
    assert await client.get_json("employees") == {"token": "token-2"}
    assert len(server.forms) == 2


async def test_a_refused_oauth_token_is_replaced_once_then_auth_fails(serve):
    server = TokenServer("s3cret")
    client, _ = await oauth_client(serve, server, "s3cret", ManualClock())
    await client.get_json("employees")

    # When the vendor revokes the token, the next call fetches a new one and succeeds
    server.valid.clear()
    assert await client.get_json("employees") == {"token": "token-2"}

    # When the API refuses every token, the client refreshes once and then gives up
    server.refuse_all = True
    calls_before = server.api_calls
    with pytest.raises(AuthError, match="HTTP 401"):
        await client.get_json("employees")
    assert server.api_calls - calls_before == 2
    assert len(server.forms) == 3


async def test_a_token_endpoint_that_fails_briefly_is_retried_even_before_a_post(serve):
    # Given a token endpoint that answers 503 once
    server = TokenServer("s3cret")
    server.unavailable = 1
    client, auth = await oauth_client(serve, server, "s3cret", ManualClock())

    # Then a POST (never repeated after an ambiguous failure) still goes out once, with a token
    assert await client.post_json("employees", {"id": "E1"}) == {"token": "token-1"}
    assert (len(server.forms), auth.fetches, server.api_calls) == (2, 1, 1)
    assert client.counts == ClientCounts(requests=1, retries=1)


async def test_a_refused_client_secret_is_an_auth_error(serve):
    server = TokenServer("s3cret")
    client, _ = await oauth_client(serve, server, "wrong", ManualClock())

    with pytest.raises(AuthError) as raised:
        await client.get_json("employees")

    assert str(raised.value).endswith("refused the client credentials: HTTP 401 (invalid_client)")
    assert server.api_calls == 0


async def test_no_secret_appears_in_errors_or_logs(serve, logged):
    # Given credentials of every kind, each a canary string
    canaries = ["cs-Canary-5521", "pw-Canary-3371", "qk-Canary-4410", "ak-Canary-9034"]
    token_server = TokenServer("cs-Canary-5521")
    flaky, down = Script(answer(503), answer(401)), Script(answer(503))
    base = await serve(
        *token_server.routes(), web.get("/flaky", flaky.handle), web.get("/down", down.handle)
    )
    clock = ManualClock()
    oauth = OAuth2ClientCredentials(
        token_url=base + "oauth/token",
        client_id="cohub",
        client_secret="cs-Canary-5521",
        clock=clock,
    )
    clients = [
        HttpClient(base, auth=oauth, retry=quick(3), clock=clock),
        HttpClient(base, auth=BasicAuth("cbo", "pw-Canary-3371"), retry=quick(3), clock=clock),
        HttpClient(base, auth=ApiKeyHeader("ak-Canary-9034"), retry=quick(3), clock=clock),
    ]
    messages = []

    # When every request fails in every way
    for client in clients:
        for path in ("flaky", "down"):
            with pytest.raises(ConnectorError) as raised:
                await client.get_json(path, params={"api_key": "qk-Canary-4410"})
            messages.append(str(raised.value))
    with pytest.raises(AuthError) as refused:
        wrong = OAuth2ClientCredentials(
            token_url=base + "oauth/token", client_id="cohub", client_secret="pw-Canary-3371"
        )
        await HttpClient(base, auth=wrong).get_json("api/employees")
    messages.append(str(refused.value))

    # Then neither a secret nor an issued token is in a message, a log event or a repr
    issued = token_server.issued
    assert issued == ["token-1", "token-2"]
    text = "\n".join(messages) + repr(logged) + "".join(repr(c.auth) for c in clients)
    for secret in canaries + issued:
        assert secret not in text
    assert {e["event"] for e in logged} == {"http.retry", "http.gave_up"}


# -- the shared session ----------------------------------------------------------------------


async def test_one_session_per_worker_with_a_bounded_pool_and_explicit_timeouts():
    session = shared_session()

    assert shared_session() is session
    assert (session.connector.limit, session.connector.limit_per_host) == (100, 10)
    assert session.timeout == aiohttp.ClientTimeout(total=60, connect=10)

    await close_sessions()
    assert session.closed
    assert shared_session() is not session
    await close_sessions()


async def test_an_untrusted_certificate_is_a_configuration_error_and_a_trusted_ca_works(
    serve, tmp_path: Path
):
    server_tls, certificate = self_signed(tmp_path)
    base = await serve(web.get("/roster", Script(answer(200, {"ok": True})).handle), tls=server_tls)

    with pytest.raises(ConnectorConfigError, match="TLS certificate is not trusted"):
        await HttpClient(base, retry=quick(), clock=ManualClock()).get_json("roster")

    district_ca = ssl.create_default_context(cafile=str(certificate))
    assert await HttpClient(base, tls=district_ca).get_json("roster") == {"ok": True}


async def test_a_ca_bundle_option_trusts_a_district_authority_and_verification_never_turns_off(
    serve, tmp_path: Path
):
    from hub.sdk.http import TlsOptions, trusting

    server_tls, certificate = self_signed(tmp_path)
    base = await serve(web.get("/roster", Script(answer(200, {"ok": True})).handle), tls=server_tls)
    options = msgspec.convert({"ca_bundle": str(certificate)}, TlsOptions)
    client = HttpClient(base, tls=trusting(options.ca_bundle))
    assert await client.get_json("roster") == {"ok": True}
    with pytest.raises(ConnectorConfigError, match="does not exist"):
        trusting(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConnectorConfigError, match="not a PEM file"):
        trusting(tmp_path / "junk.pem")
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    for off in (False, lax):
        with pytest.raises(ConnectorConfigError, match="cannot be turned off"):
            HttpClient(base, tls=off)


async def test_credentials_are_never_sent_to_another_origin():
    client = HttpClient("https://api.district.example/v1", auth=BearerToken("t"))

    assert str(client.url("/staff")) == "https://api.district.example/v1/staff"
    with pytest.raises(ConnectorError, match="refusing to send credentials"):
        client.url("https://elsewhere.example/v1/staff")
    with pytest.raises(ConnectorConfigError, match="must not carry credentials"):
        HttpClient("https://cbo:pw@api.district.example/")


# -- rate limits -----------------------------------------------------------------------------


def arrivals(clock: ManualClock) -> tuple[list[float], web.RouteDef]:
    """A route that notes the clock's time as each request arrives."""
    times: list[float] = []

    async def roster(request: web.Request) -> web.Response:
        times.append(clock.monotonic())
        return web.json_response({"ok": True})

    return times, web.get("/roster", roster)


async def test_a_rate_limit_spaces_requests_evenly(serve):
    clock = ManualClock()
    times, route = arrivals(clock)
    base = await serve(route)
    client = HttpClient(base, rate_limit=RateLimit(per_second=4), clock=clock)

    for _ in range(4):
        await client.get_json("roster")

    assert times == [0.0, 0.25, 0.5, 0.75]
    assert clock.sleeps == [0.25, 0.25, 0.25]


async def test_a_burst_goes_back_to_back_then_the_pace_applies(serve):
    clock = ManualClock()
    times, route = arrivals(clock)
    base = await serve(route)
    client = HttpClient(base, rate_limit=RateLimit(per_second=4, burst=3), clock=clock)

    for _ in range(5):
        await client.get_json("roster")

    assert times == [0.0, 0.0, 0.0, 0.25, 0.5]


async def test_concurrent_requests_are_capped(serve):
    in_flight = {"now": 0, "most": 0, "served": 0}

    async def roster(request: web.Request) -> web.Response:
        in_flight["now"] += 1
        in_flight["most"] = max(in_flight["most"], in_flight["now"])
        await asyncio.sleep(0.02)
        in_flight["now"] -= 1
        in_flight["served"] += 1
        return web.json_response({"ok": True})

    base = await serve(web.get("/roster", roster))
    client = HttpClient(base, rate_limit=RateLimit(max_concurrent=2))

    await asyncio.gather(*(client.get_json("roster") for _ in range(6)))

    assert (in_flight["most"], in_flight["served"]) == (2, 6)


async def test_two_connections_to_the_same_system_share_one_budget(serve):
    # Given two districts' connections to one regional API allowing 4 requests per second
    clock = ManualClock()
    times, route = arrivals(clock)
    base = await serve(route)
    eastview = HttpClient(base, rate_limit=RateLimit(per_second=4), clock=clock)
    millbrook = HttpClient(base, rate_limit=RateLimit(per_second=4), clock=clock)

    # When they take turns
    for client in (eastview, millbrook, eastview, millbrook):
        await client.get_json("roster")

    # Then together they stay within the one budget
    assert eastview.limiter is millbrook.limiter
    assert times == [0.0, 0.25, 0.5, 0.75]


async def test_connections_naming_the_same_system_share_a_budget_across_hosts():
    limit = RateLimit(per_second=4)
    by_ip = HttpClient("http://10.0.0.7/hr", system="regional-hr", rate_limit=limit)
    by_name = HttpClient("https://hr.boces.example/api", system="regional-hr", rate_limit=limit)
    payroll = HttpClient("https://hr.boces.example/api", system="payroll", rate_limit=limit)

    assert by_ip.limiter is by_name.limiter
    assert by_ip.circuit is by_name.circuit
    assert payroll.limiter is not by_ip.limiter


async def test_connections_to_different_systems_keep_their_own_budgets(serve):
    clock = ManualClock()
    times, route = arrivals(clock)
    base = await serve(route)
    hr = HttpClient(base, system="hr", rate_limit=RateLimit(per_second=4), clock=clock)
    payroll = HttpClient(base, system="payroll", rate_limit=RateLimit(per_second=4), clock=clock)

    for client in (hr, payroll, hr, payroll):
        await client.get_json("roster")

    assert times == [0.0, 0.0, 0.25, 0.25]


# -- circuit breaker -------------------------------------------------------------------------


async def test_a_breaker_opens_fails_fast_half_opens_and_closes(serve, logged):
    # Given a system that is down, and a breaker opening after 3 failures for 30 s
    state = {"up": False, "hits": 0}

    async def roster(request: web.Request) -> web.Response:
        state["hits"] += 1
        return web.json_response({"ok": True}, status=200 if state["up"] else 500)

    base = await serve(web.get("/roster", roster))
    clock = ManualClock()
    policy = BreakerPolicy(failures=3, cool_down=30)
    client = HttpClient(base, retry=quick(attempts=1), breaker=policy, clock=clock)
    other_district = HttpClient(base, retry=quick(attempts=1), breaker=policy, clock=clock)

    # When three calls fail
    for _ in range(3):
        with pytest.raises(TransientError, match="failed after 1 attempt: HTTP 500"):
            await client.get_json("roster")

    # Then the breaker is open: calls fail fast, for every connection to the system
    for caller in (client, other_district, client):
        with pytest.raises(SystemDown) as refused:
            await caller.get_json("roster")
    assert str(refused.value) == (
        f"{base.rstrip('/')} is down: 3 calls in a row failed; "
        "calls are refused for 30 s after the last failure"
    )
    assert (client.circuit.state, state["hits"]) == ("open", 3)

    # After the cool-down one probe goes through; it fails, so the breaker opens again
    clock.advance(30)
    with pytest.raises(TransientError, match="HTTP 500"):
        await client.get_json("roster")
    with pytest.raises(SystemDown):
        await client.get_json("roster")
    assert (client.circuit.state, state["hits"]) == ("open", 4)

    # After another cool-down the system is back: the probe succeeds and the breaker closes
    clock.advance(30)
    state["up"] = True
    assert await client.get_json("roster") == {"ok": True}
    assert await other_district.get_json("roster") == {"ok": True}
    assert (client.circuit.state, state["hits"]) == ("closed", 6)
    assert [e["event"] for e in logged if e["event"].startswith("http.breaker")] == [
        "http.breaker_opened",
        "http.breaker_closed",
    ]


async def test_a_rate_limited_answer_does_not_count_against_the_system(serve):
    script = Script(answer(429))
    base = await serve(web.get("/roster", script.handle))
    client = HttpClient(
        base, retry=quick(attempts=1), breaker=BreakerPolicy(failures=2), clock=ManualClock()
    )

    for _ in range(4):
        with pytest.raises(TransientError, match="HTTP 429"):
            await client.get_json("roster")

    assert client.circuit.state == "closed"
    assert len(script.requests) == 4


# -- paging ----------------------------------------------------------------------------------

STAFF = [{"id": f"S{n:03d}"} for n in range(250)]


async def staff_offset(request: web.Request) -> web.Response:
    """GET /staff?offset=&limit= → {"items": [...]}; at most 100 items a page, whatever asked."""
    offset, limit = int(request.query["offset"]), min(int(request.query["limit"]), 100)
    return web.json_response({"items": STAFF[offset : offset + limit]})


async def staff_pages(request: web.Request) -> web.Response:
    """GET /staff/pages?page=&per_page= → {"results": [...]}, pages numbered from 1."""
    page, size = int(request.query["page"]), int(request.query["per_page"])
    return web.json_response({"results": STAFF[(page - 1) * size : page * size]})


async def staff_cursor(request: web.Request) -> web.Response:
    """GET /staff/cursor?cursor= → {"data": [...], "next_cursor": "c100" | null}."""
    offset = int(request.query.get("cursor", "c0")[1:])
    end = offset + 100
    return web.json_response(
        {"data": STAFF[offset:end], "next_cursor": f"c{end}" if end < len(STAFF) else None}
    )


async def staff_linked(request: web.Request) -> web.Response:
    """GET /staff/linked?page= → a bare list, with ``Link: <…?page=2>; rel="next"`` while
    there are more pages (GitHub style)."""
    page = int(request.query.get("page", "1"))
    links = [f'<{request.url.with_query(page=1)}>; rel="first"']
    if page * 100 < len(STAFF):
        links.append(f'<{request.url.with_query(page=page + 1)}>; rel="next"')
    return web.json_response(
        STAFF[(page - 1) * 100 : page * 100], headers={"Link": ", ".join(links)}
    )


@pytest.fixture
async def staff_api(serve) -> HttpClient:
    base = await serve(
        web.get("/staff", staff_offset),
        web.get("/staff/pages", staff_pages),
        web.get("/staff/cursor", staff_cursor),
        web.get("/staff/linked", staff_linked),
    )
    return HttpClient(base)


def ids(pages: list[Any]) -> list[str]:
    return [item["id"] for page in pages for item in page.items]


async def test_offset_paging_walks_every_page_even_when_the_api_caps_the_page_size(staff_api):
    pages = [p async for p in offset_pages(staff_api, "staff", items="items", limit=150)]

    assert ids(pages) == [f"S{n:03d}" for n in range(250)]
    assert [(p.position, p.next) for p in pages] == [(0, 100), (100, 200), (200, 250)]


async def test_page_number_paging_walks_every_page(staff_api):
    pages = [p async for p in page_number_pages(staff_api, "staff/pages", items="results")]

    assert ids(pages) == [f"S{n:03d}" for n in range(250)]
    assert [(p.position, p.next) for p in pages] == [(1, 2), (2, 3), (3, 4)]


async def test_cursor_paging_walks_every_page_and_resumes_from_a_cursor(staff_api):
    def next_cursor(body: dict[str, Any]) -> str | None:
        return body["next_cursor"]

    pages = [
        p
        async for p in cursor_pages(
            staff_api, "staff/cursor", items="data", next_cursor=next_cursor
        )
    ]
    resumed = [
        p
        async for p in cursor_pages(
            staff_api, "staff/cursor", items="data", next_cursor=next_cursor, start="c200"
        )
    ]

    assert ids(pages) == [f"S{n:03d}" for n in range(250)]
    assert [(p.position, p.next) for p in pages] == [
        (None, "c100"),
        ("c100", "c200"),
        ("c200", None),
    ]
    assert ids(resumed) == [f"S{n:03d}" for n in range(200, 250)]


async def test_link_header_paging_follows_rel_next_to_the_end(staff_api):
    pages = [p async for p in link_pages(staff_api, "staff/linked", items=lambda body: body)]

    base = str(staff_api.base_url)
    assert ids(pages) == [f"S{n:03d}" for n in range(250)]
    assert [(p.position, p.next) for p in pages] == [
        (None, f"{base}staff/linked?page=2"),
        (f"{base}staff/linked?page=2", f"{base}staff/linked?page=3"),
        (f"{base}staff/linked?page=3", None),
    ]


async def test_no_retry_begins_past_the_deadline_so_a_call_ends_inside_the_run_time_limit():
    clock = ManualClock()
    calls = []

    async def attempt():
        calls.append(clock.monotonic())
        raise retry_module.Retryable("HTTP 503 Service Unavailable", retry_after=100.0)

    policy = RetryPolicy(attempts=10, max_retry_after=100.0, deadline=250.0)
    with pytest.raises(TransientError, match="failed after 3 attempts: HTTP 503"):
        await retry_module.with_retries(
            attempt, request="GET http://vendor/roster", policy=policy, clock=clock
        )

    assert calls == [0.0, 100.0, 200.0]


# -- the refresh token grant ------------------------------------------------------------------


class RotatingTokenServer:
    """A token endpoint that takes the refresh token grant with the client in HTTP Basic and
    answers a new refresh token each time, refusing the old one from then on (as Intuit does)."""

    def __init__(self) -> None:
        self.refresh = "rt-1"
        self.requests: list[tuple[dict[str, str], str]] = []

    async def token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append((form, request.headers.get("Authorization", "")))
        if form.get("refresh_token") != self.refresh:
            return web.json_response({"error": "invalid_grant"}, status=400)
        self.refresh = f"rt-{len(self.requests) + 1}"
        return web.json_response(
            {
                "access_token": f"at-{len(self.requests)}",
                "expires_in": 3600,
                "refresh_token": self.refresh,
                "x_refresh_token_expires_in": 8726400,
            }
        )

    async def api(self, request: web.Request) -> web.Response:
        return web.json_response({"auth": request.headers.get("Authorization")})


async def test_a_rotated_refresh_token_is_handed_over_before_the_access_token_is_used(serve):
    server = RotatingTokenServer()
    base = await serve(web.post("/token", server.token), web.get("/api/me", server.api))
    kept: list[tuple[str, float | None]] = []

    async def keep(token: str, lives: float | None) -> None:
        kept.append((token, lives))

    auth = OAuth2RefreshToken(
        token_url=base + "token",
        client_id="app",
        client_secret="app-secret",
        refresh_token="rt-1",
        on_rotate=keep,
    )
    client = HttpClient(base + "api", auth=auth, retry=quick())

    assert await client.get_json("me") == {"auth": "Bearer at-1"}
    auth.forget()  # as after a 401
    assert await client.get_json("me") == {"auth": "Bearer at-2"}

    assert [form for form, _ in server.requests] == [
        {"grant_type": "refresh_token", "refresh_token": "rt-1"},
        {"grant_type": "refresh_token", "refresh_token": "rt-2"},
    ]
    assert {basic for _, basic in server.requests} == {"Basic YXBwOmFwcC1zZWNyZXQ="}
    assert kept == [("rt-2", 8726400), ("rt-3", 8726400)]
    assert "rt-3" not in repr(auth) and "app-secret" not in repr(auth)


async def test_a_refresh_token_that_cannot_be_kept_fails_the_fetch_and_a_refused_one_names_why(
    serve,
):
    server = RotatingTokenServer()
    base = await serve(web.post("/token", server.token), web.get("/api/me", server.api))

    async def cannot_keep(token: str, lives: float | None) -> None:
        raise ConnectorConfigError("the vault is not open")

    auth = OAuth2RefreshToken(
        token_url=base + "token",
        client_id="app",
        client_secret="s",
        refresh_token="rt-1",
        on_rotate=cannot_keep,
    )
    with pytest.raises(ConnectorConfigError, match="the vault is not open"):
        await HttpClient(base + "api", auth=auth, retry=quick()).get_json("me")

    stale = OAuth2RefreshToken(
        token_url=base + "token", client_id="app", client_secret="s", refresh_token="rt-1"
    )
    with pytest.raises(OAuthError) as refused:
        await HttpClient(base + "api", auth=stale, retry=quick()).get_json("me")
    assert refused.value.code == "invalid_grant"
    assert str(refused.value).endswith(
        "refused the refresh token or the client credentials: HTTP 400 (invalid_grant)"
    )


async def test_a_refusal_carries_the_vendors_json_body(serve):
    refusal = {"Fault": {"Error": [{"Message": "Invalid Reference Id"}], "type": "ValidationFault"}}
    script = Script(answer(400, refusal), answer(403, {"error": "forbidden"}))
    base = await serve(web.post("/invoice", script.handle))
    client = HttpClient(base)

    with pytest.raises(HttpStatusError) as invalid:
        await client.post_json("invoice", {"x": 1})
    with pytest.raises(HttpAuthError) as forbidden:
        await client.post_json("invoice", {"x": 1})

    assert (invalid.value.status, invalid.value.body) == (400, refusal)
    assert (forbidden.value.status, forbidden.value.body) == (403, {"error": "forbidden"})
