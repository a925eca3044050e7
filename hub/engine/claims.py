"""Claims: which process runs a route now, held in the database so that it holds across workers.

A run row is the claim. It names its holder (`worker`, host:pid) and a lease the holder renews
by heartbeat; while the lease holds, no other run of the route starts, on any worker. A scheduled
run also names its slot, and a slot is claimed once: ``(route, scheduled_for)`` is unique. A run
whose lease lapsed (its worker died or hung) is taken over by another worker, which resumes it
from its last checkpoint under the same run id. Every checkpoint is fenced by the holder: a
worker that lost its claim cannot commit another batch, so a run taken over never counts a
batch twice.

PostgreSQL: claims lock the route's row (``FOR UPDATE``) and takeovers skip rows another worker
has locked (``SKIP LOCKED``). SQLite has neither, and needs neither: one worker, and every claim in
a ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.engine.checkpoint import WORKER, StreamState, load_state, stored_counts
from hub.engine.connections import RouteRow, load_route
from hub.sdk.connector import State
from hub.sdk.lifecycle import RunCounts
from hub.store.database import writing
from hub.store.tables import routes, runs

#: How long a claim holds without a heartbeat, unless the caller says otherwise.
DEFAULT_LEASE = timedelta(seconds=30)

FULL_MODES = ("full_refresh", "full_refresh_deletes")

#: Runs this process has in hand, so a run row naming this pid is told apart from a stale one.
_ACTIVE_RUNS: set[int] = set()


class RouteRefused(Exception):
    """The route cannot run now: disabled, or already running."""


class SlotTaken(RouteRefused):
    """Another worker already claimed this schedule slot."""


class Start(msgspec.Struct, frozen=True):
    """Where a run begins: the source state to read after, and the read cycle it belongs to."""

    state: State | None
    generation: int


class Claim(msgspec.Struct, frozen=True):
    """A run this process holds: its route, run id, where it starts and its counts so far."""

    route: RouteRow
    run_id: int
    trigger: str
    start: Start
    counts: RunCounts = msgspec.field(default_factory=RunCounts)
    scheduled_for: datetime | None = None


async def database_now(conn: AsyncConnection) -> datetime:
    """The time by the database's clock on PostgreSQL, which every worker shares, so that hosts
    whose clocks drift apart still agree on when a lease lapses; this host's clock on SQLite
    (one host)."""
    if conn.dialect.name == "postgresql":
        return (await conn.scalar(select(func.statement_timestamp()))).astimezone(UTC)
    return datetime.now(UTC)


async def claim(
    engine: AsyncEngine,
    name: str,
    trigger: str,
    *,
    scheduled_for: datetime | None = None,
    lease: timedelta = DEFAULT_LEASE,
) -> Claim:
    """Create the run row, refusing if the route is disabled, running under a live claim, or
    (`scheduled_for`) its slot was claimed already."""
    async with writing(engine) as conn:
        if scheduled_for is not None and await _slot_taken(conn, name, scheduled_for):
            raise SlotTaken(f"route {name!r}: the slot {scheduled_for.isoformat()} is taken")
        # Claims of one route wait for each other here (PostgreSQL; SQLite: the whole database);
        # a scheduled claim does not wait: another worker claiming the route has the slot.
        locked = await conn.scalar(
            select(routes.c.name)
            .where(routes.c.name == name)
            .with_for_update(skip_locked=scheduled_for is not None)
        )
        if locked is None and scheduled_for is not None:
            raise SlotTaken(f"route {name!r}: another worker is claiming it")
        route = await load_route(conn, name)
        if not route.enabled:
            raise RouteRefused(f"route {name!r} is disabled")
        for end in (route.source, route.destination):
            if not end.enabled:
                raise RouteRefused(f"route {name!r}: connection {end.name!r} is disabled")
        if scheduled_for is not None and await _slot_taken(conn, name, scheduled_for):
            raise SlotTaken(f"route {name!r}: the slot {scheduled_for.isoformat()} is taken")
        # A scheduled claim leaves a dead worker's run to be taken over (and resumed under its
        # own id); an admin's `cohub sync` ends it as abandoned and resumes in a new run.
        live = await live_run(conn, name, abandon=scheduled_for is None)
        if live is not None:
            raise RouteRefused(
                f"route {name!r} is already running (run {live[0]}, worker {live[1]})"
            )
        stored = await load_state(conn, name)
        started = await database_now(conn)
        run_id = (
            await conn.execute(
                runs.insert().values(
                    route=name,
                    member=route.member,
                    service=route.service,
                    trigger=trigger,
                    status="running",
                    worker=WORKER,
                    started_at=started,
                    state_before=stored.state,
                    state_after=stored.state,
                    scheduled_for=scheduled_for,
                    lease_expires_at=started + lease,
                    heartbeat_at=started,
                )
            )
        ).inserted_primary_key[0]
        _ACTIVE_RUNS.add(run_id)
    return Claim(route, run_id, trigger, _start(route, run_id, stored), scheduled_for=scheduled_for)


async def _slot_taken(conn: AsyncConnection, route: str, slot: datetime) -> bool:
    taken = select(runs.c.id).where(runs.c.route == route, runs.c.scheduled_for == slot)
    return await conn.scalar(taken) is not None


def _start(route: RouteRow, run_id: int, stored: StreamState) -> Start:
    state, generation, complete = stored.state, stored.generation, stored.cycle_complete
    # A full refresh reads everything again once the previous full read finished; a run that
    # died mid-way is resumed from its checkpoint, in the same read cycle.
    fresh_cycle = route.mode in FULL_MODES and (state is None or complete)
    if fresh_cycle or generation is None:
        return Start(state=None if fresh_cycle else state, generation=run_id)
    return Start(state=state, generation=generation)


async def take_over(engine: AsyncEngine, *, lease: timedelta, limit: int) -> list[Claim]:
    """Claim up to `limit` runs whose lease lapsed, to resume each from its last checkpoint
    under its own run id; runs another worker is taking over are skipped, not waited for."""
    claims: list[Claim] = []
    async with writing(engine) as conn:
        moment = await database_now(conn)
        # Lapsed leases, and runs of this host whose process is gone (no need to wait out
        # their lease: the kernel says they are dead).
        candidates = (
            (
                await conn.execute(
                    select(runs)
                    .where(
                        runs.c.status == "running",
                        (runs.c.lease_expires_at < moment)
                        | runs.c.worker.startswith(f"{socket.gethostname()}:"),
                    )
                    .order_by(runs.c.lease_expires_at)
                    .limit(limit * 4)
                    .with_for_update(skip_locked=True)
                )
            )
            .mappings()
            .all()
        )
        lapsed = [
            row
            for row in candidates
            if _holder_gone(
                row["id"], row["worker"], row["started_at"], row["lease_expires_at"], moment
            )
        ][:limit]
        for row in lapsed:
            try:
                route = await load_route(conn, row["route"])
            except LookupError:
                route = None
            if route is None or not route.enabled:
                await _end(
                    conn, row["id"], "abandoned", "its route was removed or disabled", moment
                )
                continue
            await conn.execute(
                runs.update()
                .where(runs.c.id == row["id"])
                .values(
                    worker=WORKER,
                    lease_expires_at=moment + lease,
                    heartbeat_at=moment,
                    takeovers=runs.c.takeovers + 1,
                )
            )
            _ACTIVE_RUNS.add(row["id"])
            stored = await load_state(conn, row["route"])
            claims.append(
                Claim(
                    route,
                    row["id"],
                    row["trigger"],
                    _start(route, row["id"], stored),
                    stored_counts(row),
                    row["scheduled_for"],
                )
            )
    return claims


async def renew(engine: AsyncEngine, run_id: int, lease: timedelta) -> bool:
    """Extend this process's claim on a run; False if it is no longer this process's."""
    async with engine.begin() as conn:
        moment = await database_now(conn)
        renewed = await conn.execute(
            runs.update()
            .where(runs.c.id == run_id, runs.c.worker == WORKER, runs.c.status == "running")
            .values(lease_expires_at=moment + lease, heartbeat_at=moment)
        )
    return renewed.rowcount == 1


async def release(engine: AsyncEngine, run_id: int) -> None:
    """Give a run's claim up without ending the run: another worker takes it over at once and
    resumes it from its last checkpoint (a worker shutting down does this)."""
    async with engine.begin() as conn:
        lapsed = await database_now(conn) - timedelta(seconds=1)
        await conn.execute(
            runs.update()
            .where(runs.c.id == run_id, runs.c.worker == WORKER, runs.c.status == "running")
            .values(lease_expires_at=lapsed, worker=None)
        )
    forget(run_id)


def forget(run_id: int) -> None:
    """This process no longer holds `run_id`."""
    _ACTIVE_RUNS.discard(run_id)


async def live_run(
    conn: AsyncConnection, route: str, *, abandon: bool = True
) -> tuple[int, str] | None:
    """The (id, worker) of a run of `route` in the way of a new one: held by a live claim, or
    (without `abandon`) left by a dead worker for another to take over. With `abandon`, runs
    whose holder is gone are marked `abandoned` on the way (in the caller's transaction)."""
    running = (
        await conn.execute(
            select(runs.c.id, runs.c.worker, runs.c.started_at, runs.c.lease_expires_at).where(
                runs.c.route == route, runs.c.status == "running"
            )
        )
    ).all()
    moment = await database_now(conn)
    for run_id, worker, started_at, lease_expires_at in running:
        reason = _holder_gone(run_id, worker, started_at, lease_expires_at, moment)
        if reason is None or not abandon:
            return run_id, worker or "none, awaiting takeover"
        await _end(conn, run_id, "abandoned", reason, moment)
    return None


def _holder_gone(
    run_id: int,
    worker: str | None,
    started_at: datetime,
    lease_expires_at: datetime | None,
    moment: datetime,
) -> str | None:
    """Why a running run's holder is gone at `moment` (its lease lapsed, its process on this
    host died), or None while it holds."""
    if lease_expires_at is not None and lease_expires_at < moment:
        return f"its worker ({worker or 'none'}) stopped renewing its claim"
    if _is_dead_local_worker(run_id, worker, started_at):
        return "its process died"
    return None


async def _end(
    conn: AsyncConnection, run_id: int, status: str, error: str, moment: datetime
) -> None:
    await conn.execute(
        runs.update()
        .where(runs.c.id == run_id)
        .values(status=status, finished_at=moment, error=error, lease_expires_at=None)
    )


def _is_dead_local_worker(run_id: int, worker: str | None, started_at: datetime) -> bool:
    """Whether the run's process, on this host, is gone: no such pid, a pid the system has since
    given to a newer process, or this very process without the run in hand (a restart that
    kept its pid, as a container's pid 1 does)."""
    host, _, pid_text = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return run_id not in _ACTIVE_RUNS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    born = _process_started_at(pid)
    return born is not None and born > started_at + timedelta(seconds=1)


def _process_started_at(pid: int) -> datetime | None:
    """When process `pid` started (Linux /proc), or None where that cannot be read."""
    try:
        after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
    except (OSError, StopIteration, IndexError):
        return None
    ticks = int(after_name[19])  # field 22, "starttime", in clock ticks after boot
    return datetime.fromtimestamp(int(boot.split()[1]) + ticks / os.sysconf("SC_CLK_TCK"), UTC)
