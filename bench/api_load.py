"""The admin API under load: requests per second and latency of ``GET /api/v1/status`` and
``GET /api/v1/usage`` (by month, by day) from a separate process on loopback.

Issue #7 item 6. Set up in a fresh hub home under bench/.work/api_load: ``cohub demo`` (the
example cooperative applied and synced), ``--events`` more usage events (default 50,000, spread
over the 3 members and the last ``--days`` days, 4 meters: two summed, two unique counts) posted
with ``cohub usage post --file``, an admin token (``cohub tokens create``), then ``cohub serve``
as a subprocess on a free loopback port, as it runs by default (one process, log level warning).

The load generator is another subprocess (this file with ``--load-generator``): an aiohttp
client with N keep-alive connections, each sending the next request as soon as the last one is
answered (closed loop) for ``--duration`` seconds after ``--warmup`` unrecorded seconds, and
recording every latency. Each endpoint is measured in turn against the same server:

- ``GET /api/v1/whoami``: the **baseline**, the same middlewares and token check as the data
  endpoints (a verified token is cached) but no data query: the server's floor for an
  authenticated JSON answer. Every endpoint's req/s is given as a ratio to it, at the same
  concurrency, in the same run.
- ``GET /api/v1/openapi.json``: a cached constant document, no token: the floor without auth.
- ``GET /api/v1/status``, ``GET /api/v1/usage?by=month``, ``GET /api/v1/usage?by=day``.

The server's and the client's CPU time during each measurement are recorded too (one core =
100 %): on a 2-core machine both share the cores, and a client near 100 % means the figure is the
client's limit, not the server's.

    .venv/bin/python bench/api_load.py --quick       # CI smoke: about 20 s
    .venv/bin/python bench/api_load.py               # 10 s per endpoint at 16 and at 1 connection
    .venv/bin/python bench/api_load.py --database postgresql://postgres@127.0.0.1:5432/test

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sync_throughput import (
    RESULTS_DIR,
    code_fingerprint,
    cohub_command,
    cohub_env,
    environment_facts,
    save_results,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORKDIR = BENCH_DIR / ".work" / "api_load"
CONFIG = REPO / "config"
TICK = os.sysconf("SC_CLK_TCK")
MEMBERS = ("eastview", "harbor-falls", "millbrook")
SERVICE = "cbo-payroll"
BASELINE = "whoami"
#: name, path, whether it needs the token
ENDPOINTS: tuple[tuple[str, str, bool], ...] = (
    (BASELINE, "/api/v1/whoami", True),
    ("openapi.json", "/api/v1/openapi.json", False),
    ("status", "/api/v1/status", True),
    ("usage by=month", "/api/v1/usage?by=month", True),
    ("usage by=day", "/api/v1/usage?by=day", True),
)


class BenchError(Exception):
    """The benchmark cannot go on: a process failed, or a check did not hold."""


# -- the load generator (a subprocess of its own) ------------------------------------------------


def percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


async def generate(
    url: str, token: str | None, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    size = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        begin = time.perf_counter() + warmup
        end = begin + duration
        last = begin
        usage_before = resource.getrusage(resource.RUSAGE_SELF)

        async def worker() -> None:
            nonlocal last, size, usage_before
            while (sent := time.perf_counter()) < end:
                try:
                    async with session.get(url) as response:
                        body = await response.read()
                        status = response.status
                except aiohttp.ClientError as error:
                    failures[type(error).__name__] += 1
                    await asyncio.sleep(0.01)
                    continue
                done = time.perf_counter()
                if sent >= begin:
                    latencies.append(done - sent)
                    statuses[status] += 1
                    size = len(body)
                    last = max(last, done)

        async def mark_begin() -> None:
            nonlocal usage_before
            await asyncio.sleep(max(0.0, begin - time.perf_counter()))
            usage_before = resource.getrusage(resource.RUSAGE_SELF)

        await asyncio.gather(mark_begin(), *(worker() for _ in range(concurrency)))
        usage_after = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = last - begin
    cpu = (usage_after.ru_utime + usage_after.ru_stime) - (
        usage_before.ru_utime + usage_before.ru_stime
    )
    latencies.sort()
    ok = statuses.get(200, 0)
    return {
        "requests": len(latencies),
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "client_errors": dict(failures),
        "seconds": round(elapsed, 3),
        "requests_per_second": round(ok / elapsed, 1) if elapsed > 0 else None,
        "latency_ms": {
            name: round(1000 * percentile(latencies, share), 2)
            for name, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        },
        "mean_ms": round(1000 * sum(latencies) / len(latencies), 2) if latencies else None,
        "response_bytes": size,
        "client_cpu_share": round(cpu / elapsed, 3) if elapsed > 0 else None,
    }


def load_generator_main(spec: str) -> int:
    """Run one measurement as described by the JSON `spec`; print the figures as JSON."""
    settings = json.loads(spec)
    figures = asyncio.run(generate(**settings))
    print(json.dumps(figures))
    return 0


# -- the hub under test ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def write_events(path: Path, count: int, days: int, seed: int) -> dict[str, Any]:
    """`count` usage events over the members and the last `days` days, as JSON lines; returns
    the summed meters' totals for the checks."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    totals: Counter[str] = Counter()
    with path.open("w") as handle:
        for number in range(count):
            member = MEMBERS[number % len(MEMBERS)]
            at = now - timedelta(seconds=rng.randrange(days * 86400))
            meter = ("records_synced", "api_calls", "employees_served", "paychecks_processed")[
                number % 4
            ]
            if meter in ("records_synced", "api_calls"):
                quantity, subject = rng.randint(1, 60), ""
                totals[meter] += quantity
            else:
                quantity, subject = 1, f"{member}-{meter[:3]}-{rng.randrange(400)}"
            event = {
                "idempotency_key": f"bench-{seed}-{number}",
                "member": member,
                "service": SERVICE,
                "meter": meter,
                "quantity": str(quantity),
                "occurred_at": at.isoformat(),
                "subject": subject,
            }
            handle.write(json.dumps(event) + "\n")
    return dict(totals)


class Hub:
    """A fresh hub home with the demo and the extra usage, served by `cohub serve`."""

    def __init__(self, directory: Path, database: str | None, console: Any) -> None:
        self.directory = directory
        self.database = database
        self.console = console
        self.home = directory / "home"
        self.env = cohub_env(self.home, {})
        self.server: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.token = ""

    def cohub(self, *args: str) -> str:
        command = [*cohub_command(), "--config", str(CONFIG)]
        if self.database:
            command += ["--database", self.database]
        done = subprocess.run(
            [*command, *args],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BenchError(f"cohub {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def prepare(self, events: int, days: int, seed: int) -> dict[str, Any]:
        self.directory.mkdir(parents=True)
        started = time.perf_counter()
        if self.database:  # a fresh PostgreSQL database has no schema yet (SQLite: made by demo)
            self.cohub("db", "upgrade")
        self.cohub("demo")
        facts: dict[str, Any] = {"demo_seconds": round(time.perf_counter() - started, 1)}
        if events:
            path = self.directory / "events.jsonl"
            facts["posted_totals"] = write_events(path, events, days, seed)
            started = time.perf_counter()
            self.cohub("usage", "post", "--file", str(path))
            facts["post_seconds"] = round(time.perf_counter() - started, 1)
        created = json.loads(
            self.cohub("tokens", "create", "--name", "bench", "--role", "admin", "--json")
        )
        self.token = created["token"]
        return facts

    def serve(self) -> None:
        self.port = free_port()
        command = [*cohub_command(), "--config", str(CONFIG)]
        if self.database:
            command += ["--database", self.database]
        log = (self.directory / "serve.log").open("wb")
        self.server = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.directory,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise BenchError(
                    f"cohub serve exited: {(self.directory / 'serve.log').read_text()}"
                )
            try:
                self.get("/api/v1/whoami")
                return
            except OSError:
                time.sleep(0.1)
        raise BenchError("cohub serve did not answer within 30 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, bytes]:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()

    def measure(
        self, path: str, with_token: bool, concurrency: int, duration: float, warmup: float
    ) -> dict[str, Any]:
        assert self.server is not None
        spec = json.dumps(
            {
                "url": self.url + path,
                "token": self.token if with_token else None,
                "concurrency": concurrency,
                "duration": duration,
                "warmup": warmup,
            }
        )
        generator = subprocess.Popen(
            [sys.executable, __file__, "--load-generator", spec],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # The server's CPU over the measured window (after the warm-up), read from /proc.
        time.sleep(warmup)
        server_before, wall_before = cpu_seconds(self.server.pid), time.perf_counter()
        time.sleep(duration)
        server_after, wall_after = cpu_seconds(self.server.pid), time.perf_counter()
        out, err = generator.communicate(timeout=duration + warmup + 60)
        if generator.returncode != 0:
            raise BenchError(f"load generator failed: {err}")
        figures = json.loads(out)
        figures["server_cpu_share"] = round(
            (server_after - server_before) / (wall_after - wall_before), 3
        )
        if figures["ok"] != figures["requests"] or figures["client_errors"]:
            raise BenchError(f"GET {path}: not every answer was 200: {figures}")
        return figures


def check_answers(hub: Hub, totals: dict[str, Any]) -> dict[str, Any]:
    """Each endpoint answers 200 before the load, and the usage holds what was posted."""
    facts: dict[str, Any] = {}
    for name, path, _ in ENDPOINTS:
        status, body = hub.get(path)
        if status != 200:
            raise BenchError(f"GET {path} answered {status}: {body[:300]!r}")
        facts[name] = {"bytes": len(body)}
        if path.startswith("/api/v1/usage"):
            items = json.loads(body)["items"]
            facts[name]["rows"] = len(items)
    status, body = hub.get("/api/v1/usage?by=total&meter=api_calls")
    posted = sum(int(float(i["quantity"])) for i in json.loads(body)["items"])
    if totals and posted != totals.get("api_calls", 0):
        raise BenchError(f"usage holds {posted} api_calls, {totals.get('api_calls')} were posted")
    return facts


# -- PostgreSQL: a fresh database for the run ---------------------------------------------------


async def _postgres(server_url: str, statement: str) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = (
        make_url(server_url)
        .set(drivername="postgresql", database="postgres")
        .render_as_string(hide_password=False)
    )
    conn = await asyncpg.connect(dsn)
    try:
        if statement == "version":
            return await conn.fetchval("SHOW server_version")
        await conn.execute(statement)
        return ""
    finally:
        await conn.close()


def fresh_postgres(server_url: str) -> tuple[str, str, str]:
    """A new, empty database on `server_url`'s server: (its URL, its name, the server version)."""
    from sqlalchemy.engine import make_url

    name = f"cohub_bench_api_{uuid.uuid4().hex[:10]}"
    version = asyncio.run(_postgres(server_url, "version"))
    asyncio.run(_postgres(server_url, f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, name, version


# -- the report -----------------------------------------------------------------------------------


def print_table(console: Any, measurements: list[dict[str, Any]], title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in (
        "endpoint",
        "conns",
        "requests",
        "req/s",
        f"÷ {BASELINE}",
        "p50 ms",
        "p99 ms",
        "max ms",
        "server CPU",
        "client CPU",
        "bytes",
    ):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    for m in measurements:
        ratio = m.get("ratio_to_baseline")
        table.add_row(
            m["endpoint"],
            str(m["concurrency"]),
            f"{m['requests']:,}",
            f"{m['requests_per_second']:,.0f}",
            f"{ratio:.2f}" if ratio is not None else "-",
            f"{m['latency_ms']['p50']:.1f}",
            f"{m['latency_ms']['p99']:.1f}",
            f"{m['latency_ms']['max']:.1f}",
            f"{100 * m['server_cpu_share']:.0f} %",
            f"{100 * m['client_cpu_share']:.0f} %",
            f"{m['response_bytes']:,}",
        )
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-generator", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="CI smoke: short, fewer events")
    parser.add_argument("--duration", type=float, help="measured seconds per endpoint (10)")
    parser.add_argument("--warmup", type=float, help="unrecorded seconds before each (1)")
    parser.add_argument(
        "--concurrency", help="connection counts, comma-separated (default 16,1; quick: 16)"
    )
    parser.add_argument("--events", type=int, help="usage events posted (50,000; quick 5,000)")
    parser.add_argument("--days", type=int, default=90, help="days the events spread over")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--database",
        help="a PostgreSQL server URL (postgresql://postgres@127.0.0.1:5432/test): the hub "
        "runs on a fresh database created there (dropped after); default: SQLite",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and hub home")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.load_generator:
        return load_generator_main(args.load_generator)

    quick = args.quick
    duration = args.duration or (1.5 if quick else 10.0)
    warmup = args.warmup if args.warmup is not None else (0.5 if quick else 1.0)
    events = args.events if args.events is not None else (5000 if quick else 50000)
    concurrency = [
        int(x) for x in (args.concurrency or ("16" if quick else "16,1")).split(",") if x.strip()
    ]

    from rich.console import Console

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 170)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    database_url = database_name = pg_version = None
    if args.database:
        try:
            database_url, database_name, pg_version = fresh_postgres(args.database)
        except Exception as error:
            console.print(f"[red]PostgreSQL at {args.database} does not answer: {error}")
            return 1
    stamp = datetime.now().strftime("%Y-%m-%dT%H%M%S")
    directory = WORKDIR / stamp
    if directory.exists():
        shutil.rmtree(directory)
    results: dict[str, Any] = {
        "benchmark": "api_load",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "settings": {
            "duration": duration,
            "warmup": warmup,
            "concurrency": concurrency,
            "events": events,
            "days": args.days,
            "seed": args.seed,
            "database": "postgresql" if args.database else "sqlite",
            "baseline": BASELINE,
        },
        "environment": environment_facts(pg_version),
        "load_average_at_start": os.getloadavg(),
        "code_fingerprint": code_fingerprint(),
        "measurements": [],
    }
    hub = Hub(directory, database_url, console)
    status = 0
    try:
        console.print(f"[bold]setting up[/] {directory} ({results['settings']['database']})")
        results["setup"] = hub.prepare(events, args.days, args.seed)
        hub.serve()
        results["answers"] = check_answers(hub, results["setup"].get("posted_totals", {}))
        console.print(
            f"serving on {hub.url}; {events:,} usage events posted in "
            f"{results['setup'].get('post_seconds', 0)} s"
        )
        for count in concurrency:
            baseline_rate = None
            for name, path, with_token in ENDPOINTS:
                figures = hub.measure(path, with_token, count, duration, warmup)
                rate = figures["requests_per_second"]
                if name == BASELINE:
                    baseline_rate = rate
                figures = {"endpoint": name, "path": path, "concurrency": count, **figures}
                figures["ratio_to_baseline"] = (
                    round(rate / baseline_rate, 3) if baseline_rate and rate else None
                )
                results["measurements"].append(figures)
                console.print(
                    f"  {name:<15} x{count:<3} {rate:>8,.0f} req/s  "
                    f"p99 {figures['latency_ms']['p99']:.1f} ms"
                )
    except BenchError as error:
        console.print(f"[red]failed[/]: {error}")
        status = 1
    finally:
        hub.stop()
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
            if args.database and database_name:
                try:
                    asyncio.run(
                        _postgres(args.database, f'DROP DATABASE IF EXISTS "{database_name}"')
                    )
                except Exception as error:
                    console.print(f"[yellow]could not drop {database_name}: {error}")
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["code_changed_during_run"] = code_fingerprint() != results["code_fingerprint"]
    if results["measurements"]:
        print_table(
            console,
            results["measurements"],
            f"Admin API on loopback, {results['settings']['database']}, {events:,} extra usage "
            f"events, {duration:g} s per row (req/s ÷ {BASELINE} at the same concurrency)",
        )
    output = args.output or RESULTS_DIR / f"api_load-{stamp}.json"
    save_results(console, results, output)
    return status


if __name__ == "__main__":
    sys.exit(main())
