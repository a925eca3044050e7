"""Runs that deliver pushed records: the server that takes a push starts its routes' runs.

A push stored in the inbox wakes this loop, which starts a run of every inbound route with
records past its checkpoint (`hub.engine.inbox.pending`), claimed like a run started through
``POST /api/v1/runs`` (trigger ``inbound``): it never runs beside another run of the route, on
any worker. A route already running (here, in a daemon, in another server) is tried again when
the loop next looks: when a run of this server ends, and every `SWEEP_SECONDS` anyway. So a push
that arrives while its route runs, after that run read the inbox, is delivered by the next
run, and records left by a server that stopped are delivered once any server runs again (or
by a scheduled run of the route, which reads the inbox too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web

from hub.api.endpoints import RUNTIME
from hub.api.runs import STARTED, STOP
from hub.engine import inbox
from hub.engine.claims import RouteRefused, claim
from hub.engine.connections import UnknownRoute
from hub.engine.run import run_claimed
from hub.plugins import describe
from hub.redaction import redact_text
from hub.runtime import Runtime

log = structlog.get_logger("hub.api.inbound")

#: Seconds between looks for pushed records no run has delivered yet.
SWEEP_SECONDS = 5.0
TRIGGER = "inbound"


class Deliveries:
    """The loop starting inbound routes' runs in this server; `wake` it after a push."""

    def __init__(self, runtime: Runtime, started: set[asyncio.Task[Any]], stop: asyncio.Event):
        self.runtime = runtime
        self.started = started
        self.stop = stop
        self.running: dict[str, asyncio.Task[Any]] = {}
        self.woken = asyncio.Event()

    def wake(self) -> None:
        """Look for routes to run now rather than at the next sweep."""
        self.woken.set()

    async def loop(self) -> None:
        while not self.stop.is_set():
            self.woken.clear()
            try:
                await self.start_pending()
            except Exception as error:  # the database is away: the next sweep tries again
                log.warning("inbound.sweep_failed", error=redact_text(describe(error)))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SWEEP_SECONDS):
                    await self.woken.wait()

    async def start_pending(self) -> None:
        """Claim and start a run of each inbound route with undelivered records."""
        engine = self.runtime.engine
        for name in await inbox.pending(engine):
            if name in self.running or self.stop.is_set():
                continue
            try:
                held = await claim(engine, name, TRIGGER)
            except (RouteRefused, UnknownRoute):
                continue  # running elsewhere, or changed meanwhile: looked at again later
            task = asyncio.create_task(self._run(held), name=f"run {held.run_id}")
            self.running[name] = task
            self.started.add(task)
            task.add_done_callback(self.started.discard)

    async def _run(self, held: Any) -> None:
        name = held.route.name
        try:
            await self.runtime.unlock_vault_if_changed()
            await run_claimed(
                self.runtime.engine,
                self.runtime.plugins,
                held,
                stop=self.stop,
                release_on_stop=True,
            )
        except Exception:
            log.exception("inbound.run_crashed", run_id=held.run_id, route=name)
        finally:
            self.running.pop(name, None)
            self.woken.set()  # pushes that came while it ran


DELIVERIES: web.AppKey[Deliveries] = web.AppKey("deliveries")


async def deliver_pushes(app: web.Application) -> AsyncIterator[None]:
    """The app's delivery loop, from start to shutdown (runs then stop with `_stop_runs`)."""
    deliveries = Deliveries(app[RUNTIME], app[STARTED], app[STOP])
    app[DELIVERIES] = deliveries
    task = asyncio.create_task(deliveries.loop(), name="inbound deliveries")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
