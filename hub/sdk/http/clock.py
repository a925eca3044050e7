"""Time as the HTTP toolkit sees it, injectable so tests of retries and rate limits run instantly."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta


class Clock:
    """The real clock: monotonic seconds for intervals, UTC wall time for HTTP dates, real sleep."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        return time.monotonic()

    def now(self) -> datetime:
        """The current UTC time, to turn a ``Retry-After`` date into a delay."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""
        await asyncio.sleep(seconds)


class ManualClock(Clock):
    """A clock that only moves when something sleeps on it, for tests.

    A sleep returns at once and moves time forward by the delay, and every requested delay is
    kept in `sleeps`. Time is exact for one task sleeping at a time; concurrent sleepers each
    move it by their own delay.
    """

    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self.start = start
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.elapsed

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass without anyone sleeping (a cool-down, a token's lifetime)."""
        self.elapsed += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += max(seconds, 0.0)
        await asyncio.sleep(0)  # still a suspension point, as a real sleep is


#: The clock every helper uses unless a test passes another.
SYSTEM_CLOCK = Clock()
