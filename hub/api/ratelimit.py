"""Rate limits on guessing credentials: failed sign-ins and failed bearer tokens per client
address, and API tokens created per token, each a sliding window kept in this process.

A client address that has failed `FAILURES` times within `WINDOW_SECONDS` (a console sign-in
answered 401, or an API request whose bearer token did not verify) is refused every further
credentialed attempt (``POST /login``, any API request sending ``Authorization``, any push to
``/inbound/``, whose refusals count as failures too) with a 429
and ``Retry-After`` until its oldest failure leaves the window: the API answers in its JSON error
shape, the console with an HTML page. A valid token may create at most `CREATIONS` tokens in the
window (``POST /api/v1/tokens``), so a leaked admin token cannot mint tokens in bulk.

`RateLimit` is one aiohttp middleware holding its own windows, so each application (and each
test's) counts alone. It sits between ``json_errors`` and ``authenticate``: it sees the refusal
``authenticate`` raises for a bad token, and the 401 page the console's login answers, without
either knowing about it. The limits are per process: N workers serving the API allow N times
as many guesses, still far too few to guess a 256-bit token secret; the point is to stop a
flood, not to be exact. The address is the TCP peer (`request.remote`): behind a reverse proxy
every client shares the proxy's address, so set the proxy's own limits there, or have it pass the
client address the way aiohttp's ``forwarded`` helpers read it.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from hub.api.auth import PREFIX as TOKEN_PREFIX
from hub.api.errors import ApiError, ErrorBody, ErrorResponse

Clock = Callable[[], float]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

WINDOW_SECONDS = 60.0
#: Failed sign-ins or bearer tokens per address per window.
FAILURES = 10
#: Tokens one token may create per window.
CREATIONS = 20
#: Keys remembered per limiter; past this the least recently touched are forgotten, so a flood
#: from many addresses costs bounded memory (it then limits less, never more).
MAX_KEYS = 10_000

LOGIN_PATH = "/login"
#: Pushes (`hub.api.inbound`) refused as unsigned, wrongly signed or replayed count as failures.
INBOUND_PREFIX = "/inbound/"
TOKENS_PATH = "/api/v1/tokens"


class SlidingWindow:
    """At most `limit` events per key within any `window` seconds; `clock` is injectable
    (monotonic seconds) so tests move time by hand."""

    def __init__(
        self,
        limit: int,
        window: float = WINDOW_SECONDS,
        *,
        clock: Clock = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a sliding window needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.window:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may act again; 0 while it is under its limit."""
        now = self.clock()
        events = self._recent(key, now)
        if events is None or len(events) < self.limit:
            return 0.0
        return max(events[len(events) - self.limit] + self.window - now, 0.0)

    def hit(self, key: str) -> None:
        """Count one event for `key` now."""
        now = self.clock()
        events = self._recent(key, now)
        if events is None:
            events = self._events[key] = deque(maxlen=self.limit)
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(key)
        events.append(now)

    def reset(self, key: str) -> None:
        self._events.pop(key, None)


def claimed_token_id(header: str | None) -> str | None:
    """The token id a bearer header names (unverified), or None."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
        return None
    token_id, _, secret = token.removeprefix(TOKEN_PREFIX).partition("_")
    return token_id if token_id and secret else None


def _seconds(delay: float) -> str:
    return str(max(1, math.ceil(delay)))


def too_many_json(delay: float, message: str) -> web.Response:
    body = ErrorBody(status=429, code="too_many_requests", message=message)
    return web.Response(
        body=msgspec.json.encode(ErrorResponse(error=body)),
        status=429,
        content_type="application/json",
        headers={"Retry-After": _seconds(delay)},
    )


def too_many_page(request: web.Request, delay: float) -> web.Response:
    from hub.api.console import error_page  # Jinja2 loads only where pages are served

    response = error_page(
        request,
        429,
        f"Too many failed sign-ins from your address; try again in {_seconds(delay)} seconds.",
    )
    response.headers["Retry-After"] = _seconds(delay)
    return response


class RateLimit:
    """The aiohttp middleware; install it right before ``authenticate``."""

    __middleware_version__ = 1  # a new-style middleware, as @web.middleware marks functions

    def __init__(
        self,
        *,
        failures: int = FAILURES,
        creations: int = CREATIONS,
        window: float = WINDOW_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        self.failures = SlidingWindow(failures, window, clock=clock)
        self.creations = SlidingWindow(creations, window, clock=clock)

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        api = request.path.startswith("/api/")
        login = request.path == LOGIN_PATH and request.method == "POST"
        bearer = api and "Authorization" in request.headers
        pushed = request.path.startswith(INBOUND_PREFIX)
        if not (login or bearer or pushed):
            return await handler(request)
        address = f"address:{request.remote or 'unknown'}"
        delay = self.failures.retry_after(address)
        if delay:
            if login:
                return too_many_page(request, delay)
            if pushed:
                return too_many_json(delay, "too many refused pushes from this address")
            return too_many_json(delay, "too many failed API tokens from this address")
        creator = None
        if request.method == "POST" and request.path.rstrip("/") == TOKENS_PATH:
            creator = claimed_token_id(request.headers.get("Authorization"))
            if creator is not None and (delay := self.creations.retry_after(f"token:{creator}")):
                return too_many_json(delay, "this token has created too many tokens; wait")
        try:
            response = await handler(request)
        except ApiError as error:
            # `authenticate` refuses a token that does not verify with a 401 before any handler
            # runs; with a token sent, no other 401 is possible. A push's 401 is its signature.
            if (bearer or pushed) and error.body.status == 401:
                self.failures.hit(address)
            raise
        if login and response.status == 401:
            self.failures.hit(address)
        if creator is not None and response.status == 201:
            self.creations.hit(f"token:{creator}")
        return response
