"""Crash safety (issue #3, item 7): a sync killed with SIGKILL over and over, then resumed,
delivers every record exactly once and bills each exactly once.

The worker is the real ``cohub`` command (``python -m hub``), started and killed as an admin's
shell or a supervisor would. Kills land at varied points: during interpreter start-up, plugin
loading and the run claim (by timer), and at random progress points anywhere in the export, with a
random delay after the checkpoint was seen so a kill falls while a batch is being read, written
to the destination or committed (by watching the usage ledger grow).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import IO

from sqlalchemy import func, select

from connectors.sql_table import DELETED_AT, StreamTable
from hub.model.payroll import PayLine
from hub.store.database import create_engine
from hub.store.tables import dead_letters, runs, stream_states, usage_events

ROUTE = "eastview-payroll"
MEMBER = "eastview"
#: Uneven file sizes, so the last batch of each file is a short one: 60,000 lines in all.
FILE_LINES = {
    "payroll_2026-07.csv": 23_457,
    "payroll_2026-08.csv": 19_871,
    "payroll_2026-09.csv": 16_672,
}
BATCH_SIZE = 500
MID_RUN_KILLS = 10
#: No kill target lies in the export's last records: a kill's overshoot must not finish it.
RESERVE = 7_500
MAX_ATTEMPTS = 40
SEED = 20261015

HEADER = [
    "PayRunID",
    "PayDate",
    "PeriodStart",
    "PeriodEnd",
    "EmpID",
    "EmpName",
    "LineNo",
    "EarnCode",
    "Type",
    "Hours",
    "Rate",
    "Amount",
    "Account",
    "LastModified",
]
SURNAMES = ["Anderson", "Brooks", "Peña", "O'Neil", "Nguyen", "Kowalski", "Müller", "Okafor"]
GIVEN = ["Maria", "Daniel", "José", "Aoife", "Linh", "Piotr", "Jürgen", "Chidi"]
LINES_OF_PAY = [
    ("SAL", "earning"),
    ("OT", "earning"),
    ("HLTH", "deduction"),
    ("RET", "deduction"),
    ("DENT", "deduction"),
]


def write_exports(folder: Path, rng: random.Random) -> dict[str, Decimal]:
    """Eastview's CSV exports (UTF-8 with BOM), one pay run per file: each line's amount by its
    record key."""
    for old in folder.iterdir():
        old.unlink()
    amounts: dict[str, Decimal] = {}
    for month, (name, count) in enumerate(FILE_LINES.items(), start=7):
        run_id = f"EA-2026-{month:02d}"
        pay_date = f"2026-{month:02d}-15"
        modified = f"2026-{month:02d}-15T18:30:00Z"
        with (folder / name).open("w", newline="", encoding="utf-8-sig") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            employee = 1000
            written = 0
            while written < count:
                employee += 1
                person = f"{rng.choice(SURNAMES)}, {rng.choice(GIVEN)}"
                for line, (code, kind) in enumerate(LINES_OF_PAY[: rng.randint(1, 5)], start=1):
                    if written == count:
                        break
                    hours = rate = ""
                    if code == "OT":
                        hours = f"{rng.randint(1, 4000) / 100:.2f}"
                        rate = f"{rng.randint(2000, 9000) / 100:.2f}"
                    cents = rng.randint(100, 500_000)
                    amount = Decimal(cents if kind == "earning" else -cents) / 100
                    account = (
                        f"A{rng.choice(['2110', '2250', '5510'])}.{rng.randint(100, 199)}-00-0000"
                    )
                    writer.writerow(
                        [
                            run_id,
                            pay_date,
                            f"2026-{month:02d}-01",
                            f"2026-{month:02d}-14",
                            f"E{employee}",
                            person,
                            line,
                            code,
                            kind,
                            hours,
                            rate,
                            f"{amount:.2f}",
                            account,
                            modified,
                        ]
                    )
                    amounts[f"{run_id}|E{employee}|{line}"] = amount
                    written += 1
    return amounts


def worker_environment(home: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("COHUB_")}
    environment["COHUB_HOME"] = str(home)
    return environment


def cohub_command(config: Path, database: str, *args: str) -> list[str]:
    """The ``cohub`` command line an admin types, run with this interpreter."""
    return [sys.executable, "-m", "hub", "--config", str(config), "--database", database, *args]


def cohub(
    *args: str, config: Path, database: str, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cohub_command(config, database, *args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_sync(
    config: Path, database: str, cwd: Path, env: dict[str, str], stderr: IO[str]
) -> subprocess.Popen[bytes]:
    """`cohub sync` of the route, as a worker process of its own."""
    return subprocess.Popen(
        cohub_command(config, database, "sync", ROUTE),
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


async def kill_point(
    worker: subprocess.Popen[bytes],
    started: float,
    deadline: float,
    target: int,
    delay: float,
    committed: Callable[[], Awaitable[int]],
) -> str:
    """Wait until `deadline` seconds after start or until `target` records are committed (then
    `delay` seconds more), whichever comes first; what triggered."""
    while worker.poll() is None:
        if time.monotonic() - started >= deadline:
            return "timer"
        if await committed() >= target:
            await asyncio.sleep(delay)
            return "progress"
        await asyncio.sleep(0.01)
    return "exited"


async def test_a_sync_killed_ten_times_mid_run_resumes_with_every_record_once(
    config_dir: Path, database_url: str, tmp_path: Path
):
    rng = random.Random(SEED)
    total_lines = sum(FILE_LINES.values())
    amounts = write_exports(config_dir / "sample-data" / "eastview", rng)
    assert len(amounts) == total_lines
    routes = config_dir / "routes.toml"
    routes.write_text(
        routes.read_text().replace(
            f"[routes.{ROUTE}]\n", f"[routes.{ROUTE}]\nbatch_size = {BATCH_SIZE}\n"
        )
    )
    env = worker_environment(tmp_path / "home")
    for step in (["db", "upgrade"], ["apply", str(config_dir)]):
        done = cohub(*step, config=config_dir, database=database_url, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr

    engine = create_engine(database_url)

    async def committed() -> int:
        """Records whose batch is committed: the usage ledger's records_synced total."""
        async with engine.connect() as conn:
            return int(
                await conn.scalar(
                    select(func.coalesce(func.sum(usage_events.c.quantity), 0)).where(
                        usage_events.c.member == MEMBER,
                        usage_events.c.meter == "records_synced",
                    )
                )
            )

    async def run_of(pid: int) -> str | None:
        async with engine.connect() as conn:
            return await conn.scalar(
                select(runs.c.status).where(runs.c.worker == f"{socket.gethostname()}:{pid}")
            )

    kills: list[tuple[str, float, int]] = []  # (trigger, seconds after start, committed)
    startup_kills = 0
    attempts = 0
    try:
        while len(kills) < MID_RUN_KILLS:
            attempts += 1
            assert attempts <= MAX_ATTEMPTS, f"only {len(kills)} mid-run kills: {kills}"
            # Kill when the ledger reaches a random point ahead (plus a random delay, so the kill
            # falls anywhere in the read-write-commit cycle of a batch), or, every third attempt,
            # at a random time after start (interpreter start-up, plugin loading, the claim, the
            # destination table, the first batches) if that comes first. The points spread over
            # the whole export but stay RESERVE records short of its end, so no kill comes late.
            before = await committed()
            room = max(1, total_lines - RESERVE - before)
            target = before + rng.randint(1, max(1, 2 * room // (MID_RUN_KILLS - len(kills) + 1)))
            deadline = rng.uniform(0.2, 2.0) if attempts % 3 == 0 else math.inf
            delay = rng.uniform(0.0, 0.05)
            log = tmp_path / f"worker-{attempts}.log"
            with log.open("w") as stderr:
                started = time.monotonic()
                worker = start_sync(config_dir, database_url, tmp_path, env, stderr)
                try:
                    trigger = await kill_point(worker, started, deadline, target, delay, committed)
                    if worker.poll() is None:
                        worker.send_signal(signal.SIGKILL)
                    worker.wait(timeout=30)
                finally:
                    if worker.poll() is None:
                        worker.kill()
                        worker.wait()
            elapsed = round(time.monotonic() - started, 2)
            # Only a kill that found the process alive counts.
            assert worker.returncode == -signal.SIGKILL, (
                f"attempt {attempts} exited {worker.returncode} before its kill: {log.read_text()}"
            )
            status = await run_of(worker.pid)
            if status is None:
                startup_kills += 1  # killed before it claimed its run
                continue
            assert status == "running", f"a killed worker's run is {status!r}"
            kills.append((trigger, elapsed, await committed()))

        resumed_from = await committed()
        assert resumed_from < total_lines, "the kills let the sync finish: make the export larger"
        final = cohub(
            "sync", ROUTE, config=config_dir, database=database_url, cwd=tmp_path, env=env
        )
        assert final.returncode == 0, final.stdout + final.stderr

        destination = StreamTable("pay_lines", PayLine).table
        async with engine.connect() as conn:
            duplicates = (
                await conn.execute(
                    select(destination.c.member, destination.c.record_key)
                    .group_by(destination.c.member, destination.c.record_key)
                    .having(func.count() > 1)
                )
            ).all()
            rows = await conn.scalar(select(func.count()).select_from(destination))
            marked_deleted = await conn.scalar(
                select(func.count()).where(destination.c[DELETED_AT].is_not(None))
            )
            stored = (
                await conn.execute(
                    select(destination.c.member, destination.c.record_key, destination.c.amount)
                )
            ).all()
            synced = await conn.scalar(
                select(func.sum(usage_events.c.quantity)).where(
                    usage_events.c.member == MEMBER, usage_events.c.meter == "records_synced"
                )
            )
            events = await conn.scalar(
                select(func.count()).where(usage_events.c.meter == "records_synced")
            )
            shared_keys = (
                await conn.execute(
                    select(usage_events.c.idempotency_key)
                    .group_by(usage_events.c.idempotency_key)
                    .having(func.count() > 1)
                )
            ).all()
            state = await conn.scalar(
                select(stream_states.c.state).where(stream_states.c.route == ROUTE)
            )
            history = (
                await conn.execute(
                    select(runs.c.status, runs.c.records_read)
                    .where(runs.c.route == ROUTE)
                    .order_by(runs.c.id)
                )
            ).all()
            letters = await conn.scalar(select(func.count()).select_from(dead_letters))
    finally:
        await engine.dispose()

    # The destination holds every exported line exactly once, with its own values.
    assert duplicates == []
    assert rows == total_lines
    assert marked_deleted == 0
    assert {(member, key) for member, key, _ in stored} == {(MEMBER, key) for key in amounts}
    assert {key: amount for _, key, amount in stored} == amounts
    assert letters == 0
    # The ledger bills each line exactly once: one records_synced event per batch of each file
    # (the per-subject meters add one event per employee and paycheck), no key twice.
    assert synced == total_lines
    assert shared_keys == []
    assert events == sum(math.ceil(n / BATCH_SIZE) for n in FILE_LINES.values())
    # Every file is complete in the checkpoint, with its row count and checksum.
    folder = config_dir / "sample-data" / "eastview"
    assert state["seen"] == {}  # no file left the folder
    assert {
        name: {key: entry[key] for key in ("sha256", "rows", "complete")}
        for name, entry in state["files"].items()
    } == {
        name: {
            "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest(),
            "rows": count,
            "complete": True,
        }
        for name, count in FILE_LINES.items()
    }
    # Each killed run was found dead and abandoned; the last one resumed and succeeded.
    statuses = [status for status, _ in history]
    assert "running" not in statuses
    assert len(statuses) == len(kills) + 1, (statuses, kills)
    assert set(statuses[:-1]) <= {"abandoned", "failed"}, statuses
    assert statuses[-1] == "succeeded"
    assert history[-1].records_read == total_lines - resumed_from
    # The kills landed at many different points of the export, not all in one place.
    assert len({position for _, _, position in kills}) >= MID_RUN_KILLS // 2, kills
    print(
        f"\n{attempts} attempts: {len(kills)} kills mid-run, {startup_kills} during start-up; "
        f"kills at (how, seconds, records committed): {kills}; resumed from {resumed_from}"
    )
