"""Circuit breakers: stop calling a vendor system that keeps failing, and notice when it is back.

When a district's HR system is down, every connection to it would otherwise spend its whole
retry budget on each request, and hold a worker while doing so. After `failures` consecutive
failures the breaker opens: calls fail at once with a `TransientError` (the run fails fast and is
retried on its next schedule). After `cool_down` seconds it half-opens and lets one probe
through; a probe that succeeds closes it, one that fails opens it again. Like rate limits,
breakers are shared by every connection to the same system.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, NamedTuple

import structlog

from hub.sdk.errors import TransientError
from hub.sdk.http.clock import SYSTEM_CLOCK, Clock
from hub.sdk.http.per_loop import PerLoop
from hub.sdk.http.retry import Retryable

log = structlog.get_logger("hub.sdk.http")

BreakerState = Literal["closed", "open", "half_open"]


class BreakerPolicy(NamedTuple):
    """Consecutive failures that open the breaker, and seconds it stays open."""

    failures: int = 5
    cool_down: float = 30.0


DEFAULT_BREAKER = BreakerPolicy()


class SystemDown(TransientError):
    """The breaker of a vendor system is open: the call was not attempted."""


class CircuitBreaker:
    """The health of one vendor system as its recent calls saw it."""

    def __init__(
        self, system: str, policy: BreakerPolicy = DEFAULT_BREAKER, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.system = system
        self.policy = policy
        self.clock = clock
        self.state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @contextmanager
    def call(self) -> Iterator[None]:
        """Guard one attempt: refuse it while open; a `Retryable` failure that says the system
        is down counts against it, anything else that comes back proves it is up."""
        self._admit()
        try:
            yield
        except Retryable as failure:
            if failure.down:
                self._failed()
            else:
                self._succeeded()
            raise
        except BaseException:
            self._probing = False  # cancelled or refused: let another call probe
            raise
        self._succeeded()

    def _admit(self) -> None:
        if self.state == "open":
            if self.clock.monotonic() - self._opened_at < self.policy.cool_down:
                raise self._down()
            self.state = "half_open"
        if self.state == "half_open":
            if self._probing:
                raise self._down()
            self._probing = True

    def _down(self) -> SystemDown:
        return SystemDown(
            f"{self.system} is down: {self.policy.failures} calls in a row failed; "
            f"calls are refused for {self.policy.cool_down:g} s after the last failure"
        )

    def _succeeded(self) -> None:
        if self.state != "closed":
            log.info("http.breaker_closed", system=self.system)
        self.state = "closed"
        self._failures = 0
        self._probing = False

    def _failed(self) -> None:
        self._failures += 1
        if self.state == "half_open" or self._failures >= self.policy.failures:
            if self.state == "closed":
                log.warning(
                    "http.breaker_opened",
                    system=self.system,
                    failures=self._failures,
                    cool_down_seconds=self.policy.cool_down,
                )
            self.state = "open"
            self._opened_at = self.clock.monotonic()
            self._probing = False


_breakers: PerLoop[str, CircuitBreaker] = PerLoop()


def shared_breaker(
    system: str, policy: BreakerPolicy = DEFAULT_BREAKER, clock: Clock = SYSTEM_CLOCK
) -> CircuitBreaker:
    """The breaker of vendor system `system`, shared like its rate limit."""
    return _breakers.get(system, lambda: CircuitBreaker(system, policy, clock))
