"""The daemon's worker in this process (issue #6, items 1 and 3-6): scheduled slots, maintenance
windows, retries with backoff and alerts, graceful shutdown that hands runs over, SIGHUP reload,
limits and fair sharing, health endpoints. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from hub.api.health import health_app
from hub.apply import apply
from hub.config import ConfigError, WorkerSettings, load_config
from hub.engine.claims import RouteRefused
from hub.engine.connections import load_route
from hub.engine.run import run_route
from hub.store.tables import runs, usage_events
from hub.worker import Due, Running, Worker, holds_of, system_of
from tests.test_partitioned_reads import use_part_faults

ROUTES = ["eastview-payroll", "millbrook-payroll", "harbor-falls-payroll"]
FAST = WorkerSettings(
    lease_seconds=2, heartbeat_seconds=0.3, poll_seconds=0.2, shutdown_grace_seconds=10
)


def set_routes(config_dir: Path, **per_route: str) -> None:
    """Extra TOML lines for each route (`eastview_payroll="schedule = {...}"`)."""
    routes = config_dir / "routes.toml"
    text = routes.read_text()
    for name, lines in per_route.items():
        route = name.replace("_", "-")
        text = text.replace(f"[routes.{route}]\n", f"[routes.{route}]\n{lines}\n")
    routes.write_text(text)


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def run_rows(runtime, route: str | None = None) -> list[dict]:
    query = select(runs).order_by(runs.c.id)
    if route:
        query = query.where(runs.c.route == route)
    async with runtime.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def synced(runtime) -> dict[str, Decimal]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            select(usage_events.c.member, func.sum(usage_events.c.quantity))
            .where(usage_events.c.meter == "records_synced")
            .group_by(usage_events.c.member)
        )
        return dict(rows.all())


class Serving:
    """A worker serving in a task of this test's loop."""

    def __init__(self, runtime, settings: WorkerSettings = FAST, **options) -> None:
        self.worker = Worker(runtime, settings, **options)
        self.task = asyncio.create_task(self.worker.run_until_stopped())

    async def stop(self) -> None:
        self.worker.request_stop()
        await asyncio.wait_for(self.task, 60)

    async def fire_now(self, route: str) -> None:
        """Start `route` now, as if its slot had come (its schedule's are far off)."""
        await until(lambda: asyncio.sleep(0, self.worker.timetables != {}))
        now = datetime.now(UTC)
        self.worker.pending.append(Due(now, route, now))
        self.worker.wake.set()


async def test_each_slot_runs_once_and_no_route_runs_twice_at_once(runtime, config_dir):
    every = 'schedule = { every = "1s", misfire_grace_seconds = 30 }'
    set_routes(
        config_dir, eastview_payroll=every, millbrook_payroll=every, harbor_falls_payroll=every
    )
    await apply(runtime.engine, load_config(config_dir))
    worker = Serving(runtime)

    async def three_slots_each() -> bool:
        rows = await run_rows(runtime)
        done = [r for r in rows if r["status"] == "succeeded"]
        return all(sum(r["route"] == name for r in done) >= 3 for name in ROUTES)

    await until(three_slots_each)
    await worker.stop()

    rows = await run_rows(runtime)
    assert {r["route"] for r in rows} == set(ROUTES)
    for route in {r["route"] for r in rows}:
        mine = [r for r in rows if r["route"] == route]
        slots = [r["scheduled_for"] for r in mine]
        assert len(slots) == len(set(slots))
        assert all(slot.microsecond == 0 for slot in slots)  # whole seconds: the 1 s grid
        assert all(r["trigger"] == "schedule" for r in mine)
        for first, second in itertools.pairwise(mine):
            assert first["finished_at"] <= second["started_at"]  # never two at once
            assert first["scheduled_for"] < second["scheduled_for"]
    # The first slot of each route delivered its export; later ones found nothing new.
    assert await synced(runtime) == {
        "eastview": Decimal(51),
        "millbrook": Decimal(39),
        "harbor-falls": Decimal(42),
    }


async def test_no_route_starts_in_a_maintenance_window(runtime, config_dir):
    set_routes(
        config_dir,
        eastview_payroll='schedule = { every = "1s", maintenance = ["00:00-12:00", "12:00-00:00"] }',
        millbrook_payroll='schedule = { every = "1s" }',
    )
    await apply(runtime.engine, load_config(config_dir))
    worker = Serving(runtime)

    async def millbrook_ran_twice() -> bool:
        return len(await run_rows(runtime, "millbrook-payroll")) >= 2

    await until(millbrook_ran_twice)
    await worker.stop()
    assert await run_rows(runtime, "eastview-payroll") == []


async def test_a_failing_route_is_retried_with_backoff_then_alerts(runtime, config_dir):
    alerts = use_part_faults(runtime, config_dir, "fail 1").with_name("part_faults.alerts")
    set_routes(
        config_dir,
        eastview_payroll='transforms = ["part_faults"]\n'
        'schedule = { every = "1h" }\n'
        "restart = { attempts = 2, backoff_seconds = 1, alert_after = 2 }",
    )
    await apply(runtime.engine, load_config(config_dir))
    worker = Serving(runtime)
    await worker.fire_now("eastview-payroll")

    async def three_failures() -> bool:
        rows = await run_rows(runtime, "eastview-payroll")
        return len([r for r in rows if r["status"] == "failed"]) == 3

    await until(three_failures)
    await asyncio.sleep(2.5)  # no fourth: the two retries are used up
    await worker.stop()

    rows = await run_rows(runtime, "eastview-payroll")
    assert [(r["trigger"], r["status"]) for r in rows] == [
        ("schedule", "failed"),
        ("retry", "failed"),
        ("retry", "failed"),
    ]
    first_gap = rows[1]["started_at"] - rows[0]["finished_at"]
    second_gap = rows[2]["started_at"] - rows[1]["finished_at"]
    assert timedelta(seconds=0.9) <= first_gap < second_gap  # 1 s, then 2 s
    assert second_gap >= timedelta(seconds=1.9)
    assert "refused line 1" in rows[-1]["error"]
    [alert] = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert alert["route"] == "eastview-payroll" and alert["failures"] == 2
    assert "refused line 1" in alert["error"]


async def test_sigterm_lets_the_batch_commit_and_hands_the_run_to_the_next_worker(
    runtime, config_dir
):
    use_part_faults(runtime, config_dir, "slow 0.3")
    set_routes(
        config_dir,
        eastview_payroll='transforms = ["part_faults"]\nbatch_size = 5\n'
        'schedule = { every = "1h" }',
    )
    await apply(runtime.engine, load_config(config_dir))
    first = Serving(runtime)
    await first.fire_now("eastview-payroll")

    async def two_batches() -> bool:
        rows = await run_rows(runtime, "eastview-payroll")
        return bool(rows) and rows[0]["batches"] >= 2

    await until(two_batches)
    await first.stop()

    [handed] = await run_rows(runtime, "eastview-payroll")
    assert (handed["status"], handed["worker"]) == ("running", None)
    assert handed["lease_expires_at"] < datetime.now(UTC)
    assert 0 < handed["records_written"] < 51

    second = Serving(runtime)

    async def finished() -> bool:
        rows = await run_rows(runtime, "eastview-payroll")
        return rows[0]["status"] == "succeeded"

    await until(finished)
    await second.stop()
    [done] = await run_rows(runtime, "eastview-payroll")
    assert (done["id"], done["takeovers"], done["records_written"]) == (handed["id"], 1, 51)
    assert await synced(runtime) == {"eastview": Decimal(51)}


async def test_sighup_applies_a_good_configuration_and_refuses_a_bad_one(runtime, config_dir):
    await apply(runtime.engine, load_config(config_dir))
    worker = Serving(runtime, reload=lambda: runtime.load_checked(config_dir))
    await until(lambda: asyncio.sleep(0, worker.worker.route_rows != {}))
    assert worker.worker.timetables == {}

    routes = config_dir / "routes.toml"
    good = routes.read_text()
    routes.write_text(
        good.replace("[routes.eastview-payroll]\n", "[routes.eastview-payroll]\nx=1\n")
    )
    await worker.worker.reload()
    assert worker.worker.timetables == {}  # refused: nothing changed

    set_routes(config_dir, eastview_payroll='schedule = { cron = "0 3 * * *" }')
    routes.write_text(routes.read_text().replace("x=1\n", ""))
    cooperative = config_dir / "cooperative.toml"
    cooperative.write_text(cooperative.read_text() + "\n[worker]\nmax_runs = 3\n")
    await worker.worker.reload()
    await worker.stop()

    assert list(worker.worker.timetables) == ["eastview-payroll"]
    assert worker.worker.settings.max_runs == 3
    async with runtime.engine.connect() as conn:
        route = await load_route(conn, "eastview-payroll")
    assert route.schedule is not None and route.schedule.cron == "0 3 * * *"


async def test_limits_hold_and_members_share_fairly(runtime, config_dir):
    await apply(runtime.engine, load_config(config_dir))
    worker = Worker(runtime, WorkerSettings(max_runs=2, max_runs_per_connection=4))
    await worker.refresh()
    started: list[str] = []
    worker._start = lambda row, due, held=None: (  # type: ignore[method-assign]
        started.append(row.name),
        worker.running.__setitem__(row.name, _holding(row)),
    )
    now = datetime.now(UTC)
    # Eastview's two routes came due first; Millbrook's later; room for two runs.
    worker.route_rows["eastview-2"] = msgspec.structs.replace(
        worker.route_rows["eastview-payroll"], name="eastview-2"
    )
    worker.timetables = {}
    for offset, name in enumerate(["eastview-payroll", "eastview-2", "millbrook-payroll"]):
        worker.pending.append(Due(now - timedelta(seconds=3 - offset), name, now, "retry"))
    worker._dispatch(now)
    assert started == ["eastview-payroll", "millbrook-payroll"]  # one each, not Eastview twice
    assert [d.route for q in worker.ready.values() for d in q] == ["eastview-2"]  # waits for room

    # The shared CBO database takes at most one run at once when so limited.
    worker.running.clear()
    worker.settings = WorkerSettings(max_runs=10, max_runs_per_connection=1)
    started.clear()
    worker._dispatch(now)
    worker.pending.append(Due(now, "harbor-falls-payroll", now, "retry"))
    worker._dispatch(now)
    assert started == ["eastview-2"]
    assert [d.route for q in worker.ready.values() for d in q] == ["harbor-falls-payroll"]


def _holding(row) -> Running:
    return Running(row.name, row.member, holds_of(row), asyncio.Event(), None)  # type: ignore[arg-type]


async def test_vendor_systems_are_told_apart_by_connector_and_host(
    runtime, config_dir, database_url
):
    await apply(runtime.engine, load_config(config_dir))
    async with runtime.engine.connect() as conn:
        route = await load_route(conn, "eastview-payroll")
    assert system_of(route.source) == "system:flat_file"
    host = "local" if database_url.startswith("sqlite") else "127.0.0.1"
    assert holds_of(route) == [
        "connection:cbo-payroll-db",
        "connection:eastview-payroll",
        "system:flat_file",
        f"system:sql_table:{host}",
    ]
    api = msgspec.structs.replace(
        route.source, options={"base_url": "https://tickets.example.org/api"}
    )
    assert system_of(api) == "system:flat_file:tickets.example.org"
    named = msgspec.structs.replace(route.source, options={"system": "rics-erp"})
    assert system_of(named) == "system:rics-erp"


async def test_health_and_readiness(runtime, config_dir):
    await apply(runtime.engine, load_config(config_dir))
    worker = Serving(runtime)
    await until(lambda: asyncio.sleep(0, worker.worker.registered))
    async with TestClient(TestServer(health_app(worker.worker))) as client:
        healthy = await client.get("/healthz")
        ready = await client.get("/readyz")
        assert (healthy.status, ready.status) == (200, 200)
        body = await ready.json()
        assert body["status"] == "ready" and body["worker"] == worker.worker.id
        worker.worker.request_stop()
        not_ready = await client.get("/readyz")
        assert not_ready.status == 503
        assert "shutting down" in (await not_ready.json())["problems"]
    await asyncio.wait_for(worker.task, 30)


@pytest.mark.parametrize(
    "settings", [{"max_runs": 0}, {"lease_seconds": 4, "heartbeat_seconds": 3}]
)
def test_bad_worker_settings_are_configuration_errors(config_dir, settings):
    cooperative = config_dir / "cooperative.toml"
    lines = "".join(f"{k} = {v}\n" for k, v in settings.items())
    cooperative.write_text(cooperative.read_text() + f"\n[worker]\n{lines}")
    with pytest.raises(ConfigError, match=r"cooperative\.toml: worker"):
        load_config(config_dir)


async def test_a_run_that_will_not_stop_is_cancelled_after_the_grace_and_handed_over(
    runtime, config_dir
):
    use_part_faults(runtime, config_dir, "hang")
    set_routes(
        config_dir,
        eastview_payroll='transforms = ["part_faults"]\nschedule = { every = "1h" }',
    )
    await apply(runtime.engine, load_config(config_dir))
    settings = msgspec.structs.replace(FAST, shutdown_grace_seconds=0.5)
    worker = Serving(runtime, settings)
    await worker.fire_now("eastview-payroll")

    async def running() -> bool:
        return bool(await run_rows(runtime, "eastview-payroll"))

    await until(running)
    began = asyncio.get_running_loop().time()
    await worker.stop()

    assert asyncio.get_running_loop().time() - began < 5  # the grace, not the hang
    [handed] = await run_rows(runtime, "eastview-payroll")
    assert (handed["status"], handed["worker"]) == ("running", None)


async def test_an_admins_sync_and_the_daemon_never_run_a_route_at_once(runtime, config_dir):
    use_part_faults(runtime, config_dir, "slow 0.2")
    slow = (
        'transforms = ["part_faults"]\nbatch_size = 5\n'
        'schedule = { every = "1s", misfire_grace_seconds = 60 }'
    )
    set_routes(config_dir, eastview_payroll=slow, millbrook_payroll=slow)
    await apply(runtime.engine, load_config(config_dir))
    # An admin syncs Millbrook by hand as the daemon starts ...
    manual = asyncio.create_task(run_route(runtime.engine, runtime.plugins, "millbrook-payroll"))

    async def manual_claimed() -> bool:
        return bool(await run_rows(runtime, "millbrook-payroll"))

    await until(manual_claimed)
    worker = Serving(runtime)

    async def daemon_running() -> bool:
        return any(r["status"] == "running" for r in await run_rows(runtime, "eastview-payroll"))

    await until(daemon_running)
    # ... and, while the daemon runs Eastview, the admin's sync of it is refused.
    with pytest.raises(RouteRefused, match="already running"):
        await run_route(runtime.engine, runtime.plugins, "eastview-payroll")
    by_hand = await manual

    async def after_the_admin() -> bool:
        rows = await run_rows(runtime, "millbrook-payroll")
        return any(r["trigger"] == "schedule" and r["status"] == "succeeded" for r in rows)

    await until(after_the_admin)
    await worker.stop()

    assert (by_hand.status, by_hand.counts.read) == ("succeeded", 39)
    rows = await run_rows(runtime)
    for route in ("eastview-payroll", "millbrook-payroll"):
        by_start = sorted((r for r in rows if r["route"] == route), key=lambda r: r["started_at"])
        for first, second in itertools.pairwise(by_start):
            assert first["finished_at"] <= second["started_at"]  # the slots passed it by
    millbrook = [r for r in rows if r["route"] == "millbrook-payroll"]
    assert millbrook[0]["trigger"] == "manual"
    assert all(r["records_read"] == 0 for r in millbrook[1:])
