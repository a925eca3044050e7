"""The daemon for real (issue #6, item 7): `cohub run` processes sharing one database.

Three workers share PostgreSQL and a set of routes: every slot runs exactly once, never two runs
of a route at once; one worker is killed with SIGKILL in the middle of a run, and another takes
the run over under the same run id and finishes it, with every record delivered and billed once.
One worker on SQLite keeps working the same way.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import socket
import subprocess
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from connectors.sql_table import StreamTable
from hub.model.payroll import PayLine
from hub.store.database import create_engine
from hub.store.tables import runs, usage_events
from tests.conftest import EXAMPLE_CONFIG
from tests.test_crash_safety import cohub, cohub_command, worker_environment
from tests.test_worker import until

#: Lines each member's export delivers (Harbor Falls' two bad lines become dead letters).
EXPORTS = {"eastview": 51, "millbrook": 39, "harbor-falls": 42}
SLOT = timedelta(seconds=2)
WORKER_SETTINGS = """
[worker]
lease_seconds = 3
heartbeat_seconds = 0.5
poll_seconds = 0.3
shutdown_grace_seconds = 20
"""


def daemon_config(tmp_path: Path, database_url: str, *, slow: bool) -> Path:
    """The example cooperative with every route on a 2 s schedule and fast worker settings;
    with `slow`, Eastview's route delivers batches of 5 lines, 0.25 s each."""
    config = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG, config)
    destination = config / "connections" / "cbo-payroll-db.toml"
    destination.write_text(
        destination.read_text().replace("sqlite:///.cohub/cbo_payroll.db", database_url)
    )
    cooperative = config / "cooperative.toml"
    text = cooperative.read_text()
    if slow:
        plugins = tmp_path / "plugins"
        plugins.mkdir()
        shutil.copy(Path(__file__).parent / "plugins" / "part_faults.py", plugins)
        (plugins / "part_faults.on").write_text("slow 0.25")
        text = text.replace('paths = ["../plugins"]', f"paths = [{json.dumps(str(plugins))}]")
    cooperative.write_text(text + WORKER_SETTINGS)
    routes = config / "routes.toml"
    schedule = 'schedule = { every = "2s", misfire_grace_seconds = 60 }\n'
    text = routes.read_text()
    for route in ("eastview-payroll", "millbrook-payroll", "harbor-falls-payroll"):
        extra = schedule
        if slow and route == "eastview-payroll":
            extra += 'transforms = ["part_faults"]\nbatch_size = 5\n'
        text = text.replace(f"[routes.{route}]\n", f"[routes.{route}]\n{extra}")
    routes.write_text(text)
    return config


def start_worker(config: Path, database: str, cwd: Path, env: dict, log: Path):
    return subprocess.Popen(
        cohub_command(config, database, "--json", "--log-level", "info", "run", "--no-apply"),
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )


async def history(engine) -> list[dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(runs).order_by(runs.c.route, runs.c.scheduled_for))
        return [dict(r) for r in rows.mappings()]


def check_slots(rows: list[dict]) -> None:
    """Each slot of each route ran at most once (the database refuses a second claim), runs of a
    route never overlapped, and a slot was left out only while the route was running."""
    for route in {r["route"] for r in rows}:
        mine = [r for r in rows if r["route"] == route and r["scheduled_for"] is not None]
        slots = [r["scheduled_for"] for r in mine]
        assert len(slots) == len(set(slots)), f"{route}: a slot ran twice"
        by_start = sorted(mine, key=lambda r: r["started_at"])
        for first, second in itertools.pairwise(by_start):
            assert first["finished_at"] <= second["started_at"], f"{route}: runs overlapped"
        for first, second in itertools.pairwise(mine):
            missing = first["scheduled_for"] + SLOT
            while missing < second["scheduled_for"]:
                busy = [
                    r
                    for r in mine
                    if r["started_at"] <= missing + SLOT and r["finished_at"] >= missing
                ]
                assert busy, f"{route}: slot {missing} was lost, not skipped for a running run"
                missing += SLOT


async def delivered_and_billed(engine) -> tuple[dict, int, dict]:
    table = StreamTable("pay_lines", PayLine).table
    async with engine.connect() as conn:
        per_member = dict(
            (
                await conn.execute(select(table.c.member, func.count()).group_by(table.c.member))
            ).all()
        )
        twice = len(
            (
                await conn.execute(
                    select(table.c.member, table.c.record_key)
                    .group_by(table.c.member, table.c.record_key)
                    .having(func.count() > 1)
                )
            ).all()
        )
        billed = dict(
            (
                await conn.execute(
                    select(usage_events.c.member, func.sum(usage_events.c.quantity))
                    .where(usage_events.c.meter == "records_synced")
                    .group_by(usage_events.c.member)
                )
            ).all()
        )
    return per_member, twice, billed


def workers_listed(config: Path, database: str, cwd: Path, env: dict) -> list[dict]:
    done = cohub("workers", "--json", config=config, database=database, cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_three_workers_on_postgresql_share_the_slots_and_survive_a_sigkill(
    postgres_url: str, tmp_path: Path
):
    config = daemon_config(tmp_path, postgres_url, slow=True)
    env = worker_environment(tmp_path / "home")
    for step in (["db", "upgrade"], ["apply"]):
        done = cohub(*step, config=config, database=postgres_url, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
    engine = create_engine(postgres_url)
    logs = [tmp_path / f"worker-{n}.log" for n in range(3)]
    workers = [start_worker(config, postgres_url, tmp_path, env, log) for log in logs]
    try:
        # Then three live workers are listed
        async def three_live() -> bool:
            return len(workers_listed(config, postgres_url, tmp_path, env)) == 3

        await until(three_live, 90)

        # When the worker running Eastview's slow first run is killed mid-run
        async def eastview_halfway() -> dict | None:
            for row in await history(engine):
                if (row["route"], row["status"]) == ("eastview-payroll", "running") and row[
                    "batches"
                ] >= 3:
                    return row
            return None

        async def found_halfway() -> bool:
            return await eastview_halfway() is not None

        await until(found_halfway, 90)
        halfway = await eastview_halfway()
        assert halfway is not None
        victim = next(w for w in workers if f"{socket.gethostname()}:{w.pid}" == halfway["worker"])
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)

        # Then another worker takes the run over, under its id, and finishes it
        async def taken_over_and_done() -> bool:
            rows = [r for r in await history(engine) if r["id"] == halfway["id"]]
            return rows[0]["status"] == "succeeded"

        await until(taken_over_and_done, 90)
        # ... and the others go on with the slots after it
        finished_at = max(r["finished_at"] or r["started_at"] for r in await history(engine))

        async def two_more_slots() -> bool:
            rows = await history(engine)
            return all(
                sum(r["route"] == route and r["started_at"] > finished_at for r in rows) >= 2
                for route in ("millbrook-payroll", "harbor-falls-payroll", "eastview-payroll")
            )

        await until(two_more_slots, 90)
        listed = workers_listed(config, postgres_url, tmp_path, env)
        assert len(listed) == 2 and all(w["status"] == "running" for w in listed)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(timeout=60) for worker in workers]
    try:
        rows = await history(engine)
        per_member, twice, billed = await delivered_and_billed(engine)
    finally:
        await engine.dispose()

    assert codes.count(-signal.SIGKILL) == 1 and codes.count(0) == 2, codes
    [run] = [r for r in rows if r["id"] == halfway["id"]]
    assert run["takeovers"] == 1
    assert run["worker"] != halfway["worker"]
    assert run["records_read"] == 51 and run["records_written"] == 51
    assert {r["status"] for r in rows} == {"succeeded"}
    assert len({r["worker"] for r in rows}) >= 2  # the slots were shared
    check_slots(rows)
    # Every record delivered once and billed once, the killed run's batches included.
    assert twice == 0
    assert per_member == EXPORTS
    assert billed == {m: Decimal(n) for m, n in EXPORTS.items()}
    for log in logs:
        assert "Traceback" not in log.read_text()


async def test_one_worker_on_sqlite_runs_the_schedules(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'hub.db'}"
    config = daemon_config(tmp_path, database, slow=False)
    env = worker_environment(tmp_path / "home")
    done = cohub("apply", config=config, database=database, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    engine = create_engine(database)
    log = tmp_path / "worker.log"
    worker = start_worker(config, database, tmp_path, env, log)
    try:

        async def two_slots_each() -> bool:
            rows = await history(engine)
            return all(
                sum(r["route"] == route and r["status"] == "succeeded" for r in rows) >= 2
                for route in ("millbrook-payroll", "harbor-falls-payroll", "eastview-payroll")
            )

        await until(two_slots_each, 90)
        second = cohub("run", config=config, database=database, cwd=tmp_path, env=env)
        assert second.returncode == 2
        assert "already runs on this SQLite database" in second.stderr
        assert "need PostgreSQL" in second.stderr
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    try:
        rows = await history(engine)
        per_member, twice, billed = await delivered_and_billed(engine)
    finally:
        await engine.dispose()
    assert code == 0, log.read_text()
    check_slots(rows)
    assert (per_member, twice) == (EXPORTS, 0)
    assert billed == {m: Decimal(n) for m, n in EXPORTS.items()}
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"worker.started", "run.finished", "worker.stopping", "worker.stopped"} <= {
        e["event"] for e in events
    }
