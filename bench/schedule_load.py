"""The sync daemon under load: thousands of scheduled routes against a vendor API 50 ms away.

Issue #6 item 8. A local vendor server (aiohttp, its own process) answers every request after
``--latency`` seconds. A generated configuration holds ``--routes`` routes (``--members`` member
districts, each with one source connection of the bench-only ``bench_vendor_http`` connector,
bench/cohub_plugins/vendor_http.py, offering one staff list per route), all into one cheap
``jsonl_file`` destination. Each run reads one page of ``--page-size`` ``hr.employee`` records,
incrementally by the ``modified`` cursor, and appends them to a file: the benchmark measures
scheduling, not data volume. Workers are real ``cohub run`` processes on a fresh PostgreSQL
database. The phases:

1. **idle**: one worker with every route's slot a day away; its CPU use over ``--idle-seconds``
   once it has loaded its routes (what polling for changed routes costs).
2. **one worker**: every route fires at the same moment T (one slot per route): how late runs
   start after T (median, p99), how many ran or were skipped (``misfire_grace_seconds``), and
   runs finished per second.
3. **two workers**, then **three workers**: the same slot workload on a new T, the runs shared
   through the database's claims; each slot must run exactly once.

With ``--baseline-routes`` (default 200), phase 2 runs again on a database with that few routes,
and the one-worker throughput of the large configuration is given as a ratio to it: what the
number of routes costs the scheduler beyond the runs themselves.

    .venv/bin/python bench/schedule_load.py --quick      # 100 routes, about 1.5 minutes
    .venv/bin/python bench/schedule_load.py              # 5,000 routes, about 7 minutes

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sync_throughput import (
    DEFAULT_POSTGRES_URL,
    RESULTS_DIR,
    code_fingerprint,
    cohub_command,
    cohub_env,
    environment_facts,
    save_results,
    toml_string,
)

BENCH_DIR = Path(__file__).resolve().parent
WORKDIR = BENCH_DIR / ".work" / "schedule_load"
PLUGINS = BENCH_DIR / "cohub_plugins"
DATABASE = "cohub_bench_schedule"
TICK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark cannot go on: a process failed, or a check did not hold."""


# -- the vendor server (a subprocess of its own) -------------------------------------------------


def vendor_main(latency: float) -> int:
    """Serve the bench vendor's API on a free port; print the port as a JSON line."""
    from aiohttp import web

    requests = 0
    names = ("Maria", "James", "Aiyana", "Wei", "Fatima", "Liam", "Sofia", "Noah")

    async def staff(request: web.Request) -> web.Response:
        nonlocal requests
        await asyncio.sleep(latency)
        requests += 1
        stream = request.match_info["stream"]
        limit = min(int(request.query.get("limit", "5")), 100)
        # Every record changed just now: each run has `limit` new records past its cursor.
        modified = datetime.now(UTC).isoformat()
        data = [
            {
                "staffId": f"{stream}-{index:03}",
                "givenName": names[index % len(names)],
                "familyName": "Lopez",
                "status": "A",
                "modified": modified,
            }
            for index in range(limit)
        ]
        return web.json_response({"data": data, "next_cursor": None})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"requests": requests})

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/stats", stats)
        app.router.add_get("/v1/{district}/health", health)
        app.router.add_get("/v1/{district}/{stream}", staff)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]
        print(json.dumps({"port": port}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())
    return 0


class Vendor:
    """The vendor server's process."""

    def __init__(self, latency: float, logs: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "_vendor", str(latency)],
            stdout=subprocess.PIPE,
            stderr=(logs / "vendor.stderr").open("wb"),
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise BenchError(f"the vendor server did not start; see {logs / 'vendor.stderr'}")
        self.port = json.loads(line)["port"]

    def requests(self) -> int:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as reply:
            return json.load(reply)["requests"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- CPU from /proc --------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])
    return (total - idle) / TICK, total / TICK


# -- configuration ---------------------------------------------------------------------------------


@dataclass
class Workload:
    routes: int
    members: int
    page_size: int
    port: int
    out: Path
    max_runs: int
    grace: int

    def member_codes(self) -> list[str]:
        return [f"d{index:03}" for index in range(1, self.members + 1)]

    def route_names(self) -> list[tuple[str, str, str]]:
        """(route, member, stream) of every route: routes spread evenly over the members."""
        codes = self.member_codes()
        names = []
        for index in range(self.routes):
            member = codes[index % self.members]
            stream = f"staff_{index // self.members:04}"
            names.append((f"{member}-{stream.replace('_', '-')}", member, stream))
        return names


def one_slot_every(slot: datetime) -> str:
    """An `every` interval whose first slot after the interval anchor is `slot` and whose next
    one is decades later: every route gets exactly one slot, at `slot`, to the second (a cron
    expression only names minutes)."""
    from hub.schedule import ANCHOR

    seconds = (slot - ANCHOR.replace(tzinfo=UTC)).total_seconds()
    if seconds != int(seconds) or seconds <= 0:
        raise ValueError(f"{slot} is not a whole second after {ANCHOR}")
    return f"{int(seconds)}s"


def check_slot(every: str, slot: datetime, now: datetime) -> None:
    """The hub's own timetable puts the first slot after `now` at `slot`."""
    from hub.config import Schedule
    from hub.schedule import Timetable

    found = Timetable("check", Schedule(every=every), "UTC").next_slot(now)
    if found != slot:
        raise BenchError(f"every = {every!r} gives the slot {found}, not {slot}")


def write_config(directory: Path, load: Workload, every: str, poll_seconds: float | None) -> None:
    """The configuration folder: members, one vendor connection per member, one jsonl
    destination, and `load.routes` routes each with the schedule `every`."""
    (directory / "connections").mkdir(parents=True, exist_ok=True)
    for old in (directory / "connections").glob("*.toml"):
        old.unlink()
    # The limits per connection and per vendor system are raised to max_runs: every route here
    # writes to the one destination connection and reads from the one vendor host, so the
    # defaults (4 and 8) would measure those limits rather than the scheduler.
    worker = [
        "[worker]",
        f"max_runs = {load.max_runs}",
        f"max_runs_per_connection = {load.max_runs}",
        f"max_runs_per_system = {load.max_runs}",
        "shutdown_grace_seconds = 10",
    ]
    if poll_seconds is not None:
        worker.append(f"poll_seconds = {poll_seconds:g}")
    lines = [
        "# Generated by bench/schedule_load.py; rewritten for every phase.",
        "[cooperative]",
        'code = "bench-boces"',
        'name = "Benchmark BOCES"',
        'timezone = "UTC"',
        "",
        "[plugins]",
        f"paths = [{toml_string(str(PLUGINS))}]",
        "",
        *worker,
        "",
        "[services.hr-roster]",
        'name = "HR roster sync"',
        "meters = []  # the hub's own meters only",
        "",
    ]
    for code in load.member_codes():
        lines += [f"[members.{code}]", f'name = "District {code}"', ""]
    (directory / "cooperative.toml").write_text("\n".join(lines))
    (directory / "connections" / "bench-out.toml").write_text(
        f'connector = "jsonl_file"\n\n[options]\nfolder = {toml_string(str(load.out))}\n'
    )
    for code in load.member_codes():
        (directory / "connections" / f"vendor-{code}.toml").write_text(
            f'connector = "bench_vendor_http"\nmember = "{code}"\n\n[options]\n'
            f'base_url = "http://127.0.0.1:{load.port}/v1/{code}/"\n'
            f"page_size = {load.page_size}\n"
            f"max_connections = {max(load.max_runs * 2, 20)}\n"
        )
    routes = []
    for name, member, stream in load.route_names():
        routes += [
            f"[routes.{name}]",
            f'source = "vendor-{member}"',
            f'source_stream = "{stream}"',
            'destination = "bench-out"',
            'destination_stream = "employees"',
            'service = "hr-roster"',
            f"[routes.{name}.schedule]",
            f'every = "{every}"',
            f"misfire_grace_seconds = {load.grace}",
            "",
        ]
    (directory / "routes.toml").write_text("\n".join(routes))


# -- the database ------------------------------------------------------------------------------------


@dataclass
class Postgres:
    admin_url: str
    database: str

    @property
    def url(self) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.admin_url).set(database=self.database).render_as_string(False)

    def run(self, *statements: str, admin: bool = False) -> list[Any]:
        import asyncpg

        async def go() -> list[Any]:
            conn = await asyncpg.connect(self.admin_url if admin else self.url, timeout=10)
            try:
                return [await conn.fetch(s) for s in statements]
            finally:
                await conn.close()

        return asyncio.run(go())

    def recreate(self) -> None:
        self.run(
            f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)",
            f"CREATE DATABASE {self.database}",
            admin=True,
        )

    def transactions(self) -> int:
        """Transactions committed or rolled back in the database so far (PostgreSQL's
        statistics, flushed by each backend at least once a second and when it exits)."""
        [[row]] = self.run(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            f"WHERE datname = '{self.database}'",
            admin=True,
        )
        return int(row[0])

    def drop(self) -> None:
        self.run(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)", admin=True)


# -- workers -------------------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    spawned: float
    log: Path
    ready_at: float | None = None
    samples: list[tuple[float, float]] = field(default_factory=list)  # (wall, cpu s)

    @property
    def pid(self) -> int:
        return self.process.pid

    def sample(self) -> tuple[float, float]:
        point = (time.time(), cpu_seconds(self.pid))
        self.samples.append(point)
        return point

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds between two moments, from the samples nearest them."""
        before = min(self.samples, key=lambda s: abs(s[0] - start))
        after = min(self.samples, key=lambda s: abs(s[0] - end))
        return after[1] - before[1]


def cohub(config: Path, pg: Postgres, *args: str) -> list[str]:
    return [*cohub_command(), "--config", str(config), "--database", pg.url, *args]


def start_workers(
    count: int,
    config: Path,
    pg: Postgres,
    env: dict[str, str],
    logs: Path,
    profile: Path | None = None,
) -> list[WorkerProcess]:
    """`count` `cohub run` processes logging JSON lines at info level, as the daemon runs; with
    `profile`, the first one under cProfile (its figures are then not comparable)."""
    workers = []
    for index in range(count):
        log = logs / f"worker-{index + 1}.log"
        command = cohub(config, pg, "--json", "--log-level", "info", "run", "--no-apply")
        if profile is not None and index == 0:
            command = [sys.executable, "-m", "cProfile", "-o", str(profile), *command]
        process = subprocess.Popen(
            command, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
        )
        workers.append(WorkerProcess(process, time.time(), log))
    return workers


def sample_until(workers: list[WorkerProcess], until: float, interval: float = 0.25) -> None:
    """Sample the workers' CPU until the moment `until`; a worker that exits is an error."""
    while True:
        for worker in workers:
            if worker.process.poll() is not None:
                tail = worker.log.read_text(errors="replace")[-2000:]
                raise BenchError(
                    f"worker {worker.pid} exited ({worker.process.returncode}):\n{tail}"
                )
            worker.sample()
        if time.time() >= until:
            return
        time.sleep(min(interval, max(until - time.time(), 0.0)))


def wait_ready(workers: list[WorkerProcess], pg: Postgres, deadline: float) -> None:
    """Wait until each worker has loaded its routes. A worker registers in the `workers` table
    and then reads every route and its schedule, a solid burst of CPU: it is ready at the start
    of the first second after its registration in which it used under 3 % of a core."""
    registered: dict[int, float] = {}
    while any(w.ready_at is None for w in workers):
        if time.time() > deadline:
            late = [w.pid for w in workers if w.ready_at is None]
            raise BenchError(f"workers {late} did not settle before the deadline")
        sample_until(workers, time.time() + 0.25)
        pids = {w.pid for w in workers} - set(registered)
        if pids:
            [rows] = pg.run(
                "SELECT pid FROM workers WHERE status = 'running' AND pid IN "
                f"({', '.join(map(str, pids))})"
            )
            registered.update((row["pid"], time.time()) for row in rows)
        for worker in workers:
            if worker.ready_at is not None or worker.pid not in registered:
                continue
            now, cpu = worker.samples[-1]
            past = [s for s in worker.samples if s[0] <= now - 1.0]
            if past and past[-1][0] >= registered[worker.pid] and cpu - past[-1][1] < 0.03:
                worker.ready_at = past[-1][0]


def stop_workers(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.process.wait(60)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def log_events(workers: list[WorkerProcess]) -> dict[str, int]:
    """How many of each event the workers logged (run.finished, schedule.missed, …)."""
    counts: Counter[str] = Counter()
    for worker in workers:
        for line in worker.log.read_text(errors="replace").splitlines():
            try:
                counts[json.loads(line)["event"]] += 1
            except (ValueError, KeyError, TypeError):
                counts["(not a JSON event)"] += 1
    return dict(sorted(counts.items()))


# -- figures -----------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted `values` (share 0.5: the median)."""
    return values[max(math.ceil(share * len(values)) - 1, 0)]


def slot_figures(pg: Postgres, slot: datetime, routes: int, grace: float) -> dict[str, Any]:
    """What became of one slot of every route, from the runs table."""
    rows = pg.run(
        "SELECT route, status, worker, extract(epoch FROM started_at) AS started, "
        "extract(epoch FROM finished_at) AS finished, records_written FROM runs "
        f"WHERE scheduled_for = '{slot.isoformat()}'",
        "SELECT count(*) FROM (SELECT route, scheduled_for FROM runs WHERE scheduled_for IS NOT "
        "NULL GROUP BY route, scheduled_for HAVING count(*) > 1) AS twice",
    )
    runs, duplicates = rows[0], rows[1][0][0]
    at = slot.timestamp()
    late = sorted(float(r["started"]) - at for r in runs)
    finished = sorted(float(r["finished"]) - at for r in runs if r["status"] == "succeeded")
    statuses = Counter(r["status"] for r in runs)
    missed = routes - len(runs)
    # Lateness over every slot, a skipped one counting as later than the grace: the p99 of all
    # slots is then "more than the grace" as soon as over 1 % were skipped.
    every_slot = late + [math.inf] * missed
    figures: dict[str, Any] = {
        "slots": routes,
        "runs": len(runs),
        "missed": missed,
        "duplicates": duplicates,
        "statuses": dict(statuses),
        "records_written": sum(r["records_written"] or 0 for r in runs),
        "runs_per_worker": sorted(Counter(r["worker"] for r in runs).values(), reverse=True),
    }
    if late:
        figures["lateness_seconds"] = {
            "of": "runs that started",
            "min": round(late[0], 3),
            "median": round(percentile(late, 0.5), 3),
            "p90": round(percentile(late, 0.9), 3),
            "p99": round(percentile(late, 0.99), 3),
            "max": round(late[-1], 3),
        }
    figures["lateness_all_slots_seconds"] = {
        "of": f"every slot, a skipped one counted as later than the grace ({grace:g} s)",
        "median": _finite(percentile(every_slot, 0.5)),
        "p99": _finite(percentile(every_slot, 0.99)),
    }
    if finished:
        drained = len(finished) == routes
        span = finished[-1] if drained else grace
        done = sum(1 for f in finished if f <= span)
        figures["throughput"] = {
            "runs_finished": done,
            "seconds": round(span, 3),
            "runs_per_second": round(done / span, 2) if span > 0 else None,
            "window": "slot to last run finished" if drained else "slot to slot + grace",
        }
    return figures


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 3)


# -- the phases ----------------------------------------------------------------------------------------


@dataclass
class Suite:
    """One database and configuration size; its phases run one after the other."""

    name: str
    args: argparse.Namespace
    routes: int
    members: int
    pg: Postgres
    vendor: Vendor
    workdir: Path
    console: Any
    startup_seconds: float | None = None
    apply_seconds: float | None = None

    def __post_init__(self) -> None:
        self.out = self.workdir / "out"
        self.out.mkdir(parents=True, exist_ok=True)
        self.home = self.workdir / "home"
        self.env = cohub_env(self.home, {})
        self.load = Workload(
            self.routes,
            self.members,
            self.args.page_size,
            self.vendor.port,
            self.out,
            self.args.max_runs,
            self.args.grace,
        )

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{datetime.now().strftime('%H:%M:%S')}[/] {self.name}: {text}")

    def prepare(self) -> None:
        """A new database with the hub's schema."""
        self.pg.recreate()
        done = subprocess.run(
            [*cohub_command(), "--database", self.pg.url, "db", "upgrade"],
            env=self.env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BenchError(f"cohub db upgrade failed:\n{done.stderr[-2000:]}")

    def apply(self, config: Path, slot: datetime, poll_seconds: float | None) -> float:
        """Write the configuration with every route's one slot at `slot` and apply it."""
        every = one_slot_every(slot)
        check_slot(every, slot, datetime.now(UTC))
        write_config(config, self.load, every, poll_seconds)
        started = time.perf_counter()
        done = subprocess.run(
            cohub(config, self.pg, "apply"),
            env=self.env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BenchError(f"cohub apply failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        self.apply_seconds = time.perf_counter() - started
        return self.apply_seconds

    def clean_runs(self) -> None:
        """Runs a stopped worker left claimed would be taken over in the next phase: end them."""
        self.pg.run(
            "UPDATE runs SET status = 'abandoned', finished_at = now(), lease_expires_at = NULL "
            "WHERE status = 'running'"
        )

    def idle_phase(self) -> dict[str, Any]:
        """One worker, no slot due for a day, `poll_seconds` at its default: CPU while idle."""
        config = self.workdir / "config-idle"
        far = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        apply_seconds = self.apply(config, far, None)
        logs = self.workdir / "logs" / "idle"
        logs.mkdir(parents=True, exist_ok=True)
        self.say(f"idle, default poll_seconds: 1 worker, {self.routes:,} routes")
        workers = start_workers(1, config, self.pg, self.env, logs)
        try:
            wait_ready(workers, self.pg, time.time() + 300)
            worker = workers[0]
            assert worker.ready_at is not None
            start = worker.ready_at
            sample_until(workers, start + self.args.idle_seconds)
            end = time.time()
        finally:
            stop_workers(workers)
        self.startup_seconds = worker.ready_at - worker.spawned
        return {
            "phase": "idle, default poll_seconds",
            "workers": 1,
            "routes": self.routes,
            "poll_seconds": "5 (default)",
            "apply_seconds": round(apply_seconds, 2),
            "startup_seconds": [round(self.startup_seconds, 2)],
            "idle": _idle(worker, start, end),
            "events": log_events(workers),
        }

    def slot_phase(self, count: int) -> dict[str, Any]:
        """`count` workers, every route due at one moment T: idle before T, then the slot."""
        config = self.workdir / f"config-{count}"
        # The start-up measured in the idle phase, or a generous guess without one.
        guess = self.startup_seconds or 3 + self.routes / 250
        # Workers starting together share two cores (and PostgreSQL): allow for it.
        allowance = guess * (1 + 0.9 * (count - 1)) * 1.3 + 2
        # Idle CPU again, over a shorter window: the idle phase measured it at length.
        idle = min(self.args.idle_seconds, 15.0) if count == 1 else 0.0
        # The slot is fixed before the workers start (they read schedules when they start); if
        # the apply took so long that they could not be ready for it, a later one.
        for attempt in range(3):
            apply_guess = 1.5 * (self.apply_seconds or 2 + self.routes / 500) + 1
            slot = datetime.now(UTC).replace(microsecond=0) + timedelta(
                seconds=math.ceil((apply_guess + allowance) * (1 + attempt) + idle + 2)
            )
            apply_seconds = self.apply(config, slot, self.args.poll_seconds)
            if slot.timestamp() - time.time() > allowance + idle:
                break
        logs = self.workdir / "logs" / f"workers-{count}"
        logs.mkdir(parents=True, exist_ok=True)
        self.say(
            f"{count} worker(s), {self.routes:,} routes, all due at {slot:%H:%M:%S} "
            f"(in {slot.timestamp() - time.time():.0f} s)"
        )
        vendor_before = self.vendor.requests()
        busy_before = machine_busy()
        vendor_cpu_before = cpu_seconds(self.vendor.process.pid)
        transactions_before = self.pg.transactions()
        profile = logs / "worker-1.prof" if self.args.profile and count == 1 else None
        workers = start_workers(count, config, self.pg, self.env, logs, profile)
        at = slot.timestamp()
        try:
            wait_ready(workers, self.pg, at + 600)
            ready = max(w.ready_at or 0.0 for w in workers)
            if ready > at - 1:
                self.say(
                    f"[yellow]warning[/]: a worker settled only {ready - at:+.1f} s from the slot; "
                    "it may have missed it (the figures say how many ran)"
                )
            sample_until(workers, at - 0.5)
            idle_end = time.time()
            # Until every run of the slot finished, or the grace passed and none is running.
            quiet = 0
            while True:
                sample_until(workers, time.time() + 1.0)
                [[row]] = self.pg.run(
                    "SELECT count(*) FILTER (WHERE finished_at IS NOT NULL) AS done, "
                    "count(*) FILTER (WHERE status = 'running') AS going FROM runs "
                    f"WHERE scheduled_for = '{slot.isoformat()}'"
                )
                if row["done"] >= self.routes:
                    break
                past_grace = time.time() > at + self.args.grace + 2
                quiet = quiet + 1 if past_grace and row["going"] == 0 else 0
                if quiet >= 2 or time.time() > at + self.args.grace + 120:
                    break
            end = time.time()
        finally:
            stop_workers(workers)
        time.sleep(1.5)  # the workers' backends have flushed their statistics
        transactions = self.pg.transactions() - transactions_before
        figures = slot_figures(self.pg, slot, self.routes, self.args.grace)
        self.clean_runs()
        busy_after = machine_busy()
        work_cpu = sum(w.cpu_between(at, end) for w in workers)
        result: dict[str, Any] = {
            "phase": f"{count} worker(s), one slot",
            "workers": count,
            "routes": self.routes,
            "slot": slot.isoformat(),
            "poll_seconds": self.args.poll_seconds or "5 (default)",
            "grace": self.args.grace,
            "apply_seconds": round(apply_seconds, 2),
            "startup_seconds": [round((w.ready_at or 0) - w.spawned, 2) for w in workers],
            "settled_before_slot_seconds": round(at - ready, 2),
            **figures,
            # One request per run: a check that every run reached the vendor once.
            "vendor_requests": self.vendor.requests() - vendor_before,
            "worker_cpu_seconds_after_slot": round(work_cpu, 2),
            "worker_cpu_ms_per_run": round(1000 * work_cpu / figures["runs"], 1)
            if figures["runs"]
            else None,
            # Start-up, heartbeats and shutdown included: a few per worker.
            "database_transactions": transactions,
            "database_transactions_per_run": round(transactions / figures["runs"], 1)
            if figures["runs"]
            else None,
            "vendor_cpu_seconds": round(
                cpu_seconds(self.vendor.process.pid) - vendor_cpu_before, 2
            ),
            "machine_busy_share": round(
                (busy_after[0] - busy_before[0]) / (busy_after[1] - busy_before[1]), 3
            ),
            "events": log_events(workers),
        }
        if count == 1 and idle_end - ready >= 2:
            result["idle"] = _idle(workers[0], ready, idle_end)
        if profile is not None:
            result["profile"] = str(profile)
            from sync_throughput import print_profile

            print_profile(profile, self.console)
        if figures["duplicates"]:
            raise BenchError(f"{figures['duplicates']} (route, slot) pairs ran more than once")
        if result["vendor_requests"] != figures["runs"]:
            self.say(
                f"[yellow]warning[/]: {result['vendor_requests']:,} vendor requests for "
                f"{figures['runs']:,} runs"
            )
        return result


def _idle(worker: WorkerProcess, start: float, end: float) -> dict[str, Any]:
    """CPU use between `start` (the worker fell quiet) and `end`, as a share of one core.

    A worker polls in cycles: a burst (reading every route) and a quiet pause. The window is cut
    back to the last moment the worker fell quiet again, so that it holds whole cycles; a
    window cut anywhere else would count a fraction of a burst as if it were typical.
    """
    window = [s for s in worker.samples if start <= s[0] <= end]
    quiet_again = [
        later[0]
        for earlier, middle, later in zip(window, window[1:], window[2:], strict=False)
        if middle[1] - earlier[1] > 0.02 and later[1] - middle[1] <= 0.005
    ]
    cycles = bool(quiet_again) and quiet_again[-1] - start >= 2
    if cycles:
        end = quiet_again[-1]
    cpu = worker.cpu_between(start, end)
    per_second = []
    for second in range(int(end - start)):
        per_second.append(round(worker.cpu_between(start + second, start + second + 1), 2))
    return {
        "seconds": round(end - start, 1),
        "window": "whole poll cycles" if cycles else "as measured (no poll cycle ended in it)",
        "cpu_seconds": round(cpu, 2),
        "core_share": round(cpu / (end - start), 4),
        "cpu_per_second": per_second,
    }


# -- report --------------------------------------------------------------------------------------------


def print_tables(console: Any, suites: dict[str, list[dict[str, Any]]]) -> None:
    from rich.table import Table

    table = Table(title="Scheduled routes against a vendor 50 ms away, one slot per route")
    for column in (
        "routes",
        "workers",
        "poll s",
        "start-up s",
        "idle CPU",
        "ran / slots",
        "skipped",
        "late median s",
        "late p99 s",
        "p99, all slots",
        "runs/s",
        "vs 1 worker",
        "CPU ms/run",
    ):
        table.add_column(column, justify="right")
    for phases in suites.values():
        base = next((p for p in phases if p.get("workers") == 1 and "throughput" in p), None)
        base_rate = base["throughput"]["runs_per_second"] if base else None
        for phase in phases:
            idle = phase.get("idle")
            late = phase.get("lateness_seconds", {})
            every = phase.get("lateness_all_slots_seconds", {})
            rate = phase.get("throughput", {}).get("runs_per_second")
            if "slots" in phase:
                p99 = every.get("p99")
                all_slots = f"{p99:.2f}" if p99 is not None else f"> {phase['grace']}"
            else:
                all_slots = "-"
            table.add_row(
                f"{phase['routes']:,}",
                str(phase["workers"]),
                str(phase["poll_seconds"]),
                " ".join(f"{s:.1f}" for s in phase["startup_seconds"]),
                f"{100 * idle['core_share']:.1f} %" if idle else "-",
                f"{phase['runs']:,} / {phase['slots']:,}" if "slots" in phase else "-",
                f"{phase['missed']:,}" if "slots" in phase else "-",
                f"{late['median']:.2f}" if late else "-",
                f"{late['p99']:.2f}" if late else "-",
                all_slots,
                f"{rate:,.1f}" if rate else "-",
                f"{rate / base_rate:.2f}" if rate and base_rate else "-",
                f"{phase['worker_cpu_ms_per_run']:.0f}"
                if phase.get("worker_cpu_ms_per_run")
                else "-",
            )
    console.print(table)
    console.print(
        "late: seconds from the slot to the run's start, of the runs that started; "
        "p99, all slots: a skipped slot (not started within misfire_grace_seconds) counts as "
        "later than the grace. runs/s: runs finished from the slot until the last one, or "
        "within the grace when slots were skipped. CPU ms/run: the workers' CPU from the "
        "slot on, per run."
    )


# -- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_vendor"]:
        return vendor_main(float(argv[1]))

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, default=5000)
    parser.add_argument(
        "--members", type=int, default=50, help="member districts (one vendor connection each)"
    )
    parser.add_argument("--workers", default="1,2,3", help="worker counts of the slot phases")
    parser.add_argument("--latency", type=float, default=0.05, help="vendor answer delay, s")
    parser.add_argument("--page-size", type=int, default=5, help="records per run")
    parser.add_argument(
        "--max-runs",
        type=int,
        default=64,
        help="[worker] max_runs, and max_runs_per_connection and _per_system set to the same",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        help="[worker] poll_seconds of the slot phases (default: the hub's, 5)",
    )
    parser.add_argument(
        "--grace", type=int, default=60, help="misfire_grace_seconds: later slots are skipped"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=50.0,
        help="the idle phase's window, seconds (cut back to whole poll cycles)",
    )
    parser.add_argument(
        "--baseline-routes",
        type=int,
        default=200,
        help="a second configuration this size, one worker, as the throughput baseline (0: none)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: 100 routes, 2 members, 10 s idle window, grace 30 s, no baseline",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("COHUB_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    parser.add_argument("--keep-databases", action="store_true")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the one-worker slot phase's worker under cProfile and print its top functions",
    )
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.routes, args.members, args.idle_seconds, args.baseline_routes = 100, 2, 10.0, 0
        args.grace = min(args.grace, 30)
    counts = [int(x) for x in args.workers.split(",") if x.strip()]

    from rich.console import Console

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 170)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    try:
        [[row]] = Postgres(args.postgres_url, "postgres").run("SHOW server_version", admin=True)
        pg_version = row[0]
    except Exception as error:
        console.print(f"[red]PostgreSQL at {args.postgres_url} does not answer: {error}")
        return 1
    WORKDIR.mkdir(parents=True, exist_ok=True)
    # Two runs at once would drop each other's databases and share two cores.
    lock = (WORKDIR / "run.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        console.print(f"[red]another bench/schedule_load.py is running ({WORKDIR / 'run.lock'})")
        return 1
    results: dict[str, Any] = {
        "benchmark": "schedule_load",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "settings": {
            key: getattr(args, key)
            for key in (
                "routes",
                "members",
                "workers",
                "latency",
                "page_size",
                "max_runs",
                "poll_seconds",
                "grace",
                "idle_seconds",
                "baseline_routes",
            )
        },
        "environment": environment_facts(pg_version),
        "load_average_at_start": os.getloadavg(),
        "code_fingerprint": code_fingerprint(),
        "suites": {},
    }
    logs = WORKDIR / "logs"
    logs.mkdir(exist_ok=True)
    vendor = Vendor(args.latency, logs)
    sizes = [(args.routes, args.members, DATABASE)]
    if args.baseline_routes and args.baseline_routes != args.routes:
        small_members = max(1, min(args.members, args.baseline_routes // 50))
        sizes.append((args.baseline_routes, small_members, f"{DATABASE}_small"))
    databases = []
    status = 0
    try:
        for routes, members, database in sizes:
            pg = Postgres(args.postgres_url, database)
            databases.append(pg)
            suite_dir = WORKDIR / f"routes-{routes}"
            if suite_dir.exists():
                shutil.rmtree(suite_dir)
            suite = Suite(
                f"{routes:,} routes", args, routes, members, pg, vendor, suite_dir, console
            )
            suite.prepare()
            phases: list[dict[str, Any]] = []
            results["suites"][str(routes)] = phases
            baseline = routes != args.routes
            if not baseline:
                phases.append(suite.idle_phase())
                suite.say(f"idle CPU {100 * phases[-1]['idle']['core_share']:.1f} % of a core")
            for count in [1] if baseline else counts:
                phase = suite.slot_phase(count)
                phases.append(phase)
                rate = phase.get("throughput", {}).get("runs_per_second")
                suite.say(
                    f"{phase['runs']:,}/{phase['slots']:,} ran, {phase['missed']:,} missed, "
                    f"{rate} runs/s"
                )
    except BenchError as error:
        console.print(f"[red]failed[/]: {error}")
        status = 1
    finally:
        vendor.stop()
        if not args.keep_databases:
            for pg in databases:
                try:
                    pg.drop()
                except Exception as error:
                    console.print(f"[yellow]could not drop {pg.database}: {error}")
    if len(sizes) == 2 and len(results["suites"]) == 2:
        big = next(
            p for p in results["suites"][str(args.routes)] if p.get("workers") == 1 and "slot" in p
        )
        small = results["suites"][str(args.baseline_routes)][0]
        big_rate = big.get("throughput", {}).get("runs_per_second")
        small_rate = small.get("throughput", {}).get("runs_per_second")
        if big_rate and small_rate:
            results["throughput_ratio_to_baseline"] = round(big_rate / small_rate, 3)
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["code_changed_during_run"] = code_fingerprint() != results["code_fingerprint"]
    print_tables(console, results["suites"])
    if "throughput_ratio_to_baseline" in results:
        console.print(
            f"throughput of one worker at {args.routes:,} routes / at {args.baseline_routes:,} "
            f"routes: [bold]{results['throughput_ratio_to_baseline']:.2f}[/]"
        )
    stamp = datetime.now().strftime("%Y-%m-%dT%H%M%S")
    output = args.output or RESULTS_DIR / f"schedule_load-{stamp}-{args.routes}.json"
    save_results(console, results, output)
    return status


if __name__ == "__main__":
    sys.exit(main())
