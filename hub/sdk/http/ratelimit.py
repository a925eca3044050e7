"""Rate limits: requests per second and requests in flight, one budget per vendor system.

A vendor's limit belongs to its system, not to a connection: a regional student-information or
HR API that serves twenty member districts allows its requests per second to all twenty
together. So limiters live in a registry keyed by the system (by default the API's origin), and
every connection reaching that system in this worker draws on the same one. Workers do not
share budgets with each other: with N workers, give each 1/N of the vendor's limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NamedTuple

from hub.sdk.http.clock import SYSTEM_CLOCK, Clock
from hub.sdk.http.per_loop import PerLoop


class RateLimit(NamedTuple):
    """A vendor system's published limits; None means unlimited.

    `per_second` requests per second on average, of which up to `burst` may go back to back;
    `max_concurrent` requests in flight at once.
    """

    per_second: float | None = None
    burst: int = 1
    max_concurrent: int | None = None


UNLIMITED = RateLimit()


class Limiter:
    """One budget: a semaphore for requests in flight and a token bucket for their pace.

    The bucket is kept as its "theoretical arrival time" (the GCRA form of a token bucket): each
    request reserves the next free slot before it sleeps, so concurrent callers queue in order
    without a lock, and the pacing costs one subtraction per request.
    """

    def __init__(self, limit: RateLimit, clock: Clock = SYSTEM_CLOCK) -> None:
        self.limit = limit
        self.clock = clock
        self._free_at = float("-inf")
        self._in_flight = asyncio.Semaphore(limit.max_concurrent) if limit.max_concurrent else None

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one request's place: wait for a free concurrency slot, then for its turn."""
        if self._in_flight is None:
            await self._pace()
            yield
            return
        async with self._in_flight:
            await self._pace()
            yield

    async def _pace(self) -> None:
        if self.limit.per_second is None:
            return
        interval = 1.0 / self.limit.per_second
        now = self.clock.monotonic()
        due = max(self._free_at, now)
        self._free_at = due + interval
        wait = due - (self.limit.burst - 1) * interval - now
        if wait > 0:
            await self.clock.sleep(wait)


_limiters: PerLoop[str, Limiter] = PerLoop()


def shared_limiter(system: str, limit: RateLimit, clock: Clock = SYSTEM_CLOCK) -> Limiter:
    """The limiter of vendor system `system`, made with `limit` by the first connection that
    asks; later connections to the same system share it, whatever limit they state."""
    return _limiters.get(system, lambda: Limiter(limit, clock))
