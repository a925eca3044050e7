"""The sync daemon (`cohub run`): runs routes on their schedules, takes over the runs of workers
that died, and shares one database with any number of other workers.

Every worker computes the same schedule slots (`hub.schedule`); the database decides which
worker runs each (`hub.engine.claims`). One worker runs many routes at once on its event loop,
within limits per worker, per connection and per vendor system, and picks the next run from the
member with the fewest runs going, so one member's large sync does not hold the others back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import signal
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import structlog
from sqlalchemy import func, select

from hub.apply import apply
from hub.config import ConfigError, HubConfig, WorkerSettings
from hub.engine.claims import (
    WORKER,
    Claim,
    RouteRefused,
    SlotTaken,
    database_now,
    release,
    take_over,
)
from hub.engine.connections import ConnectionRow, RouteRow, UnknownRoute, load_routes, route_names
from hub.engine.run import RunSummary, run_claimed, run_route
from hub.redaction import redact_text
from hub.runtime import Runtime
from hub.schedule import ScheduleError, Timetable
from hub.store.database import is_sqlite
from hub.store.tables import cooperative, runs, workers

log = structlog.get_logger("hub.worker")


def is_live(row: Mapping[str, Any], now: datetime) -> bool:
    """Whether a `workers` row is a live worker: not stopped, and its last heartbeat (by the
    database's clock, `now`) within its lease. A crashed or cut-off worker is not."""
    age = (now - row["heartbeat_at"]).total_seconds()
    return row["status"] != "stopped" and age < row["lease_seconds"]


class WorkerRefused(Exception):
    """This worker cannot start here."""


@dataclass(order=True)
class Due:
    """A run waiting to start: a schedule slot, or a retry after a failure. Runs due at the same
    moment are taken in an order of this worker's own (`rank`), so that workers sharing a
    database try different routes first instead of queueing for the same ones."""

    start_at: datetime
    rank: int = field(init=False, repr=False)
    route: str = field(compare=False)
    slot: datetime = field(compare=False)
    trigger: str = field(compare=False, default="schedule")

    def __post_init__(self) -> None:
        self.rank = spread(self.route)


def spread(name: str) -> int:
    """A number for `name` that differs from worker to worker."""
    digest = hashlib.blake2b(f"{WORKER}|{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest)


@dataclass
class Running:
    """A run in this worker: what it holds against the limits, and how to stop it."""

    route: str
    member: str | None
    holds: list[str]
    stop: asyncio.Event
    task: asyncio.Task[None]
    run_id: int | None = None


def system_of(connection: ConnectionRow) -> str:
    """The vendor system a connection reaches: its connector and host (an explicit ``system``
    option wins), so that routes of many members against one vendor share its limit."""
    options = connection.options
    if isinstance(options.get("system"), str):
        return f"system:{options['system']}"
    for key in ("url", "base_url", "instance_url", "host"):
        value = options.get(key)
        if isinstance(value, str) and value:
            host = urlsplit(value).hostname if "//" in value else value
            return f"system:{connection.connector}:{host or 'local'}"  # sqlite:///… is local
    return f"system:{connection.connector}"


def holds_of(route: RouteRow) -> list[str]:
    """The limits a run of `route` counts against: its connections and their systems."""
    ends = (route.source, route.destination)
    return sorted({f"connection:{end.name}" for end in ends} | {system_of(end) for end in ends})


class Worker:
    """One `cohub run` process."""

    def __init__(
        self,
        runtime: Runtime,
        settings: WorkerSettings,
        *,
        reload: Callable[[], HubConfig] | None = None,
    ) -> None:
        self.id = WORKER
        self.runtime = runtime
        self.engine = runtime.engine
        self.settings = settings
        self.reload_config = reload
        self.timetables: dict[str, Timetable] = {}
        self.route_rows: dict[str, RouteRow] = {}
        self.last_slot: dict[str, datetime] = {}
        self.upcoming: list[tuple[datetime, str]] = []  # (next slot, route), a heap
        self.pending: list[Due] = []  # a heap by start time
        #: Due runs waiting for room, per member, oldest first.
        self.ready: defaultdict[str | None, deque[Due]] = defaultdict(deque)
        self.running: dict[str, Running] = {}
        self.failures: Counter[str] = Counter()
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self.heartbeat_ok_at: datetime | None = None
        self.registered = False
        self.started_at = datetime.now(UTC)

    # -- the loop ------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run until SIGTERM or SIGINT, then shut down gracefully; SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self.request_stop, number)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        try:
            await self.run_until_stopped()
        finally:
            for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(number)

    def request_stop(self, number: int | None = None) -> None:
        if not self.stopping.is_set():
            log.info("worker.stopping", signal=signal.Signals(number).name if number else None)
        self.stopping.set()
        self.wake.set()

    async def run_until_stopped(self) -> None:
        if is_sqlite(self.engine):
            await self._refuse_a_second_worker()
        await self._beat()
        log.info("worker.started", max_runs=self.settings.max_runs, sqlite=is_sqlite(self.engine))
        heart = asyncio.create_task(self._heartbeats())
        next_poll = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not self.stopping.is_set():
                if loop.time() >= next_poll:
                    await self._guarded(self.refresh)
                    await self._guarded(self._take_over)
                    next_poll = loop.time() + self.settings.poll_seconds
                now = datetime.now(UTC)
                self._collect_due(now)
                self._dispatch(now)
                self.wake.clear()
                # Sleep until the next slot, start or poll, or until woken (a run ended, a signal).
                moments = [self.upcoming[0][0]] if self.upcoming else []
                moments += [self.pending[0].start_at] if self.pending else []
                wait = min([next_poll - loop.time(), *((m - now).total_seconds() for m in moments)])
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(wait, 0.01)):
                        await self.wake.wait()
        finally:
            await self._shutdown()
            heart.cancel()
            await asyncio.gather(heart, return_exceptions=True)
            await self._register("stopped")
            log.info("worker.stopped")

    async def _guarded(self, step: Callable[[], object]) -> None:
        """A step of the loop that must not end the worker when the database is away."""
        try:
            await step()  # type: ignore[misc]
        except Exception as error:
            log.error("worker.step_failed", step=step.__name__, error=redact_text(str(error)))

    # -- schedules -----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the routes and their schedules again: `cohub apply` or the API may have changed
        them (and the vault, for a connection created through the API)."""
        await self.runtime.unlock_vault_if_changed()
        async with self.engine.connect() as conn:
            zone = await conn.scalar(select(cooperative.c.timezone)) or "UTC"
            names = set(await route_names(conn))
            rows = {row.name: row for row in await load_routes(conn) if row.name in names}
            now = await database_now(conn)
            timetables: dict[str, Timetable] = {}
            changed: list[str] = []
            for name, row in rows.items():
                if row.schedule is None:
                    continue
                old = self.timetables.get(name)
                if old is not None and old.schedule == row.schedule:
                    timetables[name] = old
                    continue
                try:
                    timetables[name] = Timetable(name, row.schedule, zone)
                except ScheduleError as error:
                    log.error("schedule.invalid", route=name, error=str(error))
                    continue
                changed.append(name)
            # A new or changed schedule starts from now, not from slots before it existed, nor
            # from slots a worker already ran (read through the (route, slot) index).
            last = dict(
                (
                    await conn.execute(
                        select(runs.c.route, func.max(runs.c.scheduled_for))
                        .where(runs.c.route.in_(changed))
                        .group_by(runs.c.route)
                    )
                ).all()
                if changed
                else []
            )
        for name in changed:
            self.last_slot[name] = max(filter(None, (last.get(name), now)))
            self._push_next(name, timetables[name], self.last_slot[name])
        for name in set(self.timetables) - set(timetables):
            self.last_slot.pop(name, None)
        self.timetables = timetables
        self.route_rows = rows

    def _push_next(self, name: str, timetable: Timetable, after: datetime) -> None:
        slot = timetable.next_slot(after)
        if slot is not None:
            heapq.heappush(self.upcoming, (slot, name))

    def _collect_due(self, now: datetime) -> None:
        """Move routes whose next slot has come to the pending runs."""
        while self.upcoming and self.upcoming[0][0] <= now:
            slot, name = heapq.heappop(self.upcoming)
            timetable = self.timetables.get(name)
            last = self.last_slot.get(name)
            if timetable is None or last is None or slot <= last:
                continue  # removed, or an outdated entry of a changed schedule
            slots, missed = timetable.due(last, now)
            if missed:
                log.warning("schedule.missed", route=name, coalesced=timetable.schedule.coalesce)
            for due in slots:
                heapq.heappush(self.pending, Due(timetable.start_at(due), name, due))
            self.last_slot[name] = max(slots[-1] if slots else last, last)
            self._push_next(name, timetable, max(self.last_slot[name], now))

    # -- starting runs -------------------------------------------------------------------------

    def _dispatch(self, now: datetime) -> None:
        """Start what is due, within the limits, fairly between members: the member with the
        fewest runs going first, each member's runs oldest first. Each due run is queued once;
        only the runs about to start are looked at, however many wait."""
        while self.pending and self.pending[0].start_at <= now:
            due = heapq.heappop(self.pending)
            row = self.route_rows.get(due.route)
            if row is not None:
                self.ready[row.member].append(due)
        members = Counter(r.member for r in self.running.values())
        blocked: set[str | None] = set()  # members whose next run does not fit now
        while len(self.running) < self.settings.max_runs:
            waiting = [m for m, queue in self.ready.items() if queue and m not in blocked]
            if not waiting:
                break
            member = min(
                waiting, key=lambda m: (members[m], self.ready[m][0].start_at, spread(str(m)))
            )
            queue = self.ready[member]
            due = queue.popleft()
            row = self.route_rows.get(due.route)
            if row is None or not self._still_wanted(due, now):
                continue
            if due.route in self.running or not self._fits(holds_of(row)):
                queue.appendleft(due)  # starts when a run ends
                blocked.add(member)
                continue
            self._start(row, due)
            members[member] += 1
        for member in [m for m, queue in self.ready.items() if not queue]:
            del self.ready[member]

    def _still_wanted(self, due: Due, now: datetime) -> bool:
        """Whether a due run should start now: not in a maintenance window, not too late."""
        timetable = self.timetables.get(due.route)
        if due.trigger == "schedule" and timetable is None:
            return False  # the route lost its schedule
        if timetable is None:
            return True
        window = timetable.in_maintenance(due.start_at)
        if window is not None:
            log.info("schedule.skipped", route=due.route, maintenance=window.text)
            return False
        if (now - due.start_at).total_seconds() > timetable.schedule.misfire_grace_seconds:
            log.warning("schedule.missed", route=due.route, slot=due.slot.isoformat())
            return False
        return True

    def _fits(self, holds: list[str]) -> bool:
        if len(self.running) >= self.settings.max_runs:
            return False
        held = Counter(h for r in self.running.values() for h in r.holds)
        for hold in holds:
            limit = (
                self.settings.max_runs_per_connection
                if hold.startswith("connection:")
                else self.settings.max_runs_per_system
            )
            if held[hold] >= limit:
                return False
        return True

    def _start(self, row: RouteRow, due: Due | None, held: Claim | None = None) -> None:
        stop = asyncio.Event()
        running = Running(row.name, row.member, holds_of(row), stop, None)  # type: ignore[arg-type]
        running.task = asyncio.create_task(self._run(running, due, held))
        self.running[row.name] = running

    async def _run(self, running: Running, due: Due | None, held: Claim | None) -> None:
        lease = timedelta(seconds=self.settings.lease_seconds)
        try:
            if held is not None:
                running.run_id = held.run_id
                log.info("run.taken_over", run_id=held.run_id, route=held.route.name)
                summary = await run_claimed(
                    self.engine,
                    self.runtime.plugins,
                    held,
                    stop=running.stop,
                    lease=lease,
                    release_on_stop=True,
                    heartbeat=self.settings.heartbeat_seconds,
                )
            elif not running.stop.is_set():  # not when the worker began to stop meanwhile
                assert due is not None
                summary = await run_route(
                    self.engine,
                    self.runtime.plugins,
                    running.route,
                    trigger=due.trigger,
                    stop=running.stop,
                    scheduled_for=due.slot,
                    lease=lease,
                    release_on_stop=True,
                    heartbeat=self.settings.heartbeat_seconds,
                    claimed=lambda run_id: setattr(running, "run_id", run_id),
                )
            else:
                return
            await self._after(summary)
        except SlotTaken:
            pass  # another worker runs this slot
        except (RouteRefused, UnknownRoute) as refused:
            log.info("schedule.skipped", route=running.route, reason=str(refused))
        except Exception as error:
            log.error("run.crashed", route=running.route, error=redact_text(str(error)))
        finally:
            self.running.pop(running.route, None)
            self.wake.set()

    async def _after(self, summary: RunSummary) -> None:
        """Retry a failed run on the route's restart policy; alert after repeated failures."""
        name = summary.route
        if summary.status != "failed":
            if summary.status == "succeeded":
                self.failures.pop(name, None)
            return
        self.failures[name] += 1
        failures = self.failures[name]
        row = self.route_rows.get(name)
        if row is None:
            return
        policy = row.restart
        if failures % policy.alert_after == 0:
            log.error("route.alert", route=name, failures=failures, error=summary.error)
            await self.runtime.plugins.notify(
                "cohub_route_alert",
                timeout=row.call_timeout_seconds,
                route=name,
                failures=failures,
                error=summary.error,
            )
        if failures <= policy.attempts and not self.stopping.is_set():
            delay = min(policy.backoff_seconds * 2 ** (failures - 1), policy.max_backoff_seconds)
            at = datetime.now(UTC) + timedelta(seconds=delay)
            log.info("run.retry_scheduled", route=name, attempt=failures, delay_seconds=delay)
            heapq.heappush(self.pending, Due(at, name, at, trigger="retry"))

    async def _take_over(self) -> None:
        """Resume runs whose worker stopped renewing its claim."""
        room = self.settings.max_runs - len(self.running)
        if room <= 0 or self.stopping.is_set():
            return
        lease = timedelta(seconds=self.settings.lease_seconds)
        for held in await take_over(self.engine, lease=lease, limit=room):
            if held.route.name in self.running:  # cannot happen while claims hold: hand back
                await release(self.engine, held.run_id)
                continue
            self.route_rows[held.route.name] = held.route
            self._start(held.route, None, held)

    # -- heartbeats, reload, shutdown ------------------------------------------------------------

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await self._beat()
            except Exception as error:
                log.error("worker.heartbeat_failed", error=redact_text(str(error)))

    async def _beat(self) -> None:
        await self._register("stopping" if self.stopping.is_set() else "running")
        self.heartbeat_ok_at = datetime.now(UTC)

    async def _refuse_a_second_worker(self) -> None:
        """SQLite has one writer: one worker per database file, or claims queue behind each
        other's transactions. Several workers need PostgreSQL."""
        async with self.engine.connect() as conn:
            moment = await database_now(conn)
            others = (
                (await conn.execute(select(workers).where(workers.c.id != WORKER))).mappings().all()
            )
        for other in others:
            if is_live(other, moment):
                raise WorkerRefused(
                    f"worker {other['id']} already runs on this SQLite database; several "
                    "workers need PostgreSQL (see docs/operations.md)"
                )

    @property
    def queued(self) -> int:
        """Runs due and waiting for room (a limit, or a member's turn): the queue depth."""
        return sum(len(queue) for queue in self.ready.values())

    async def _register(self, status: str) -> None:
        """Insert or refresh this worker's row."""
        async with self.engine.begin() as conn:
            values = {
                "status": status,
                "heartbeat_at": await database_now(conn),
                "max_runs": self.settings.max_runs,
                "running": len(self.running),
                "queued": self.queued,
                "lease_seconds": self.settings.lease_seconds,
            }
            updated = await conn.execute(
                workers.update().where(workers.c.id == WORKER).values(**values)
            )
            if updated.rowcount == 0:
                host, _, pid = WORKER.rpartition(":")
                await conn.execute(
                    workers.insert().values(
                        id=WORKER, host=host, pid=int(pid), started_at=self.started_at, **values
                    )
                )
        self.registered = True

    async def reload(self) -> None:
        """SIGHUP: read the configuration folder again and apply it; a bad one changes nothing."""
        if self.reload_config is None:
            await self._guarded(self.refresh)
            return
        try:
            config = self.reload_config()
            changes = await apply(self.engine, config, actor=f"worker {WORKER} (SIGHUP)")
        except ConfigError as error:
            log.error("worker.reload_refused", issues=[str(i) for i in error.issues])
            return
        except Exception as error:
            log.error("worker.reload_failed", error=redact_text(str(error)))
            return
        self.settings = config.worker
        log.info("worker.reloaded", changes=len(changes))
        await self._guarded(self.refresh)
        self.wake.set()

    async def _shutdown(self) -> None:
        """Stop claiming; let each run commit the batch in hand and give its claim up (another
        worker resumes it); after the grace period cancel what is left and release it too."""
        if not self.running:
            return
        log.info("worker.draining", runs=len(self.running))
        for running in self.running.values():
            running.stop.set()
        going = list(self.running.values())
        _, late = await asyncio.wait(
            [r.task for r in going], timeout=self.settings.shutdown_grace_seconds
        )
        if not late:
            return
        log.warning("worker.grace_expired", cancelled=len(late))
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        # What they wrote since their last checkpoint is read again by the worker that resumes.
        for running in going:
            if running.task in late and running.run_id is not None:
                await self._guarded(lambda r=running: release(self.engine, r.run_id))
