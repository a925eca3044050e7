"""Retries of transient failures: exponential backoff with full jitter, ``Retry-After`` honoured.

Full jitter (a delay drawn uniformly between zero and the exponential bound, as the AWS
Architecture Blog's "Exponential Backoff and Jitter" recommends) spreads the retries of many
connections that failed together, so a recovering vendor system is not hit by them in waves.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import structlog

from hub.sdk.errors import TransientError
from hub.sdk.http.clock import SYSTEM_CLOCK, Clock
from hub.sdk.lifecycle import count_retry

log = structlog.get_logger("hub.sdk.http")

T = TypeVar("T")

#: Statuses that say "try again later": request timeout, too many requests, and the server-side
#: failures a gateway or an overloaded server answers with.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class Retryable(Exception):
    """One attempt failed in a way another attempt may not.

    `reason` names what happened and never holds credentials or a query string; `retry_after`
    is the wait the server asked for; `down` says whether the failure counts against the
    system's health (a 429 means it is up but busy); `unsent` says the server certainly did not
    act on the request, so even a non-idempotent one may be sent again.
    """

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        down: bool = True,
        unsent: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.down = down
        self.unsent = unsent


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently to retry: `attempts` in all (the first included), delays
    drawn from ``jitter(0, min(cap, base * 2 ** retry))``, a server's ``Retry-After`` obeyed up
    to `max_retry_after` seconds, and no retry begun once `deadline` seconds have passed since
    the first attempt (so a call gives up well inside the route's `call_timeout_seconds`)."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 120.0
    deadline: float = 240.0
    jitter: Callable[[float, float], float] = field(
        default=random.uniform, compare=False, repr=False
    )

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `retry` (0 for the first retry)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.jitter(0.0, min(self.cap, self.base * 2**retry))


DEFAULT_RETRY = RetryPolicy()


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header (RFC 9110 section 10.2.3) as seconds from `now`: either a number
    of seconds or an HTTP date. None if absent or unreadable; a date in the past gives 0."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; an obsolete form may parse naive
        return None
    return max((when - now).total_seconds(), 0.0)


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    request: str,
    policy: RetryPolicy = DEFAULT_RETRY,
    idempotent: bool = True,
    clock: Clock = SYSTEM_CLOCK,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Await `attempt()` until it stops raising `Retryable`, at most `policy.attempts` times.

    `request` (``GET https://host/path``, no query string) names the call in logs and in the
    `TransientError` raised when the attempts run out. A non-idempotent request is repeated
    only after a failure that certainly left it unsent. Each retry is added to the run's
    counters (`count_retry`), logged, and reported to `on_retry`.
    """
    number = 0
    started = clock.monotonic()
    while True:
        number += 1
        try:
            return await attempt()
        except Retryable as failure:
            if not (idempotent or failure.unsent):
                raise TransientError(
                    f"{request} failed and was not retried (it may have been applied): "
                    f"{failure.reason}"
                ) from None
            delay = (
                None if number >= policy.attempts else policy.delay(number - 1, failure.retry_after)
            )
            if delay is None or clock.monotonic() - started + delay > policy.deadline:
                log.warning("http.gave_up", request=request, attempts=number, reason=failure.reason)
                raise TransientError(
                    f"{request} failed after {number} attempt{'s' if number > 1 else ''}: "
                    f"{failure.reason}"
                ) from None
            count_retry()
            if on_retry is not None:
                on_retry()
            log.info(
                "http.retry",
                request=request,
                attempt=number,
                reason=failure.reason,
                delay_seconds=round(delay, 3),
            )
            await clock.sleep(delay)
