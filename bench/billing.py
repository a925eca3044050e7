"""The usage ledger at a year's scale: ingest, rollups, usage report and statements against plain SQL.

A seeded generator makes ``--events`` usage events over fiscal year FY2027 (July 2026 to June
2027 in America/New_York) for ``--members`` member districts and ``--services`` shared services:
sums of whole numbers (paychecks), sums of hundredths (support hours, purchase dollars), a count
(tickets), a maximum (storage) and a unique count with subjects (employees paid). About 1 % of the
events are sent again with the same idempotency key, as a retried batch would be. On each target
database (SQLite, PostgreSQL) two contenders take the same events, batch by batch, interleaved:

* **cohub**: ``hub.metering.append_usage``, one transaction per batch, into a ledger created by
  the hub's migrations; then the year's usage report (``usage_totals(by="period")`` for each of
  the twelve months) and the year's statements (``hub.billing.statements.compute_statements``
  for ``FY2027``, plans for every service in a generated ``billing.toml`` model).
* **baseline (plain SQL)**: the same events, each once, bulk-inserted into one plain table with no
  key or index (stdlib sqlite3 ``executemany``; asyncpg ``copy_records_to_table``), then one
  ``SELECT member, service, meter, sum(quantity), count(*), max(quantity),
  count(DISTINCT subject) … GROUP BY member, service, meter`` per month of the year.

Every figure is a ratio to the baseline, measured in the same run on the same machine. After the
ingest the ledger's totals are checked, exactly, against a sum of the generated events kept by
the generator, and the baseline's monthly GROUP BY must give the same figures.

    .venv/bin/python bench/billing.py --quick             # CI smoke check, under a minute
    .venv/bin/python bench/billing.py                     # 10,000,000 events, both targets

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sync_throughput import (
    DEFAULT_POSTGRES_URL,
    RESULTS_DIR,
    code_fingerprint,
    environment_facts,
    make_console,
    record_code_versions,
)

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_WORKDIR = BENCH_DIR / ".work" / "billing"
BENCH_DATABASE = "cohub_bench_billing"
BASELINE_TABLE = "bench_usage_events"
TARGETS = ("sqlite", "postgresql")
COHUB = "cohub"
BASELINE = "baseline"

TIMEZONE = "America/New_York"
ZONE = ZoneInfo(TIMEZONE)
FISCAL_YEAR = "FY2027"
MONTHS = tuple(f"{2026 + (6 + i) // 12}-{(6 + i) % 12 + 1:02d}" for i in range(12))

QUICK = {"events": 100_000, "members": 50, "services": 5}


# -- the workload ------------------------------------------------------------------------------

# meter: (unit, aggregation, smallest and largest quantity in hundredths, or None for 1 with a
# subject per event). Whole-number meters draw multiples of 100.
METER_SPECS: dict[str, tuple[str, str, tuple[int, int, int] | None]] = {
    "paychecks": ("paycheck", "sum", (100, 6_000, 100)),
    "employees_paid": ("employee", "unique_count", None),
    "tickets": ("ticket", "count", (100, 100, 100)),
    "support_hours": ("hour", "sum", (25, 800, 1)),
    "purchase_dollars": ("dollar", "sum", (1_000, 2_500_000, 1)),
    "storage_gb": ("gigabyte", "max", (100, 500_000, 1)),
}

# A kind of service: the meters its events carry and how it is billed (a billing.toml plan).
KINDS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "payroll": (
        ("paychecks", "employees_paid"),
        {"method": "unit_price", "meter": "employees_paid", "rate": "4.25"},
    ),
    "helpdesk": (
        ("tickets", "support_hours"),
        {
            "method": "base_plus_usage",
            "meter": "support_hours",
            "base_fee": "250.00",
            "tiers": [{"up_to": "40", "price": "68.00"}, {"price": "55.50"}],
        },
    ),
    "purchasing": (
        ("purchase_dollars",),
        {"method": "patronage", "meter": "purchase_dollars", "budget": "120000.00"},
    ),
    "hosting": (
        ("storage_gb",),
        {
            "method": "proportional",
            "meter": "storage_gb",
            "budget": "360000.00",
            "actual_cost": "371234.56",
        },
    ),
    "consulting": (
        ("support_hours",),
        {"method": "weighted", "basis": "enrollment", "budget": "900000.00"},
    ),
    "network": (("tickets",), {"method": "equal", "budget": "50000.00"}),
}

SERVICES = (
    ("cbo-payroll", "payroll"),
    ("it-helpdesk", "helpdesk"),
    ("coop-purchasing", "purchasing"),
    ("data-hosting", "hosting"),
    ("curriculum-consulting", "consulting"),
    ("wide-area-network", "network"),
    ("cbo-hr-payroll", "payroll"),
    ("sis-support", "helpdesk"),
    ("food-service-purchasing", "purchasing"),
    ("backup-hosting", "hosting"),
    ("special-ed-consulting", "consulting"),
    ("internet-filtering", "network"),
    ("substitute-payroll", "payroll"),
    ("library-automation", "helpdesk"),
    ("energy-purchasing", "purchasing"),
    ("email-hosting", "hosting"),
    ("data-privacy-consulting", "consulting"),
    ("phone-network", "network"),
    ("retiree-payroll", "payroll"),
    ("instructional-tech", "helpdesk"),
)


class Workload:
    """Members, services, who uses what and how much, the meters and the plans."""

    def __init__(self, members: int, services: int, seed: int) -> None:
        rng = random.Random(f"workload-{seed}")
        self.members: list[dict[str, Any]] = []
        for number in range(1, members + 1):
            # District sizes are skewed: many small districts, a few large ones.
            enrollment = max(120, int(rng.lognormvariate(7.6, 0.9)))
            self.members.append(
                {
                    "code": f"district-{number:04d}",
                    "name": f"District {number:04d} Central School District",
                    "enrollment": enrollment,
                    "employees": max(20, enrollment // 8),
                }
            )
        self.services = [
            {"code": code, "name": code.replace("-", " ").title(), "kind": kind}
            for code, kind in (SERVICES[i % len(SERVICES)] for i in range(services))
        ]
        for index, service in enumerate(self.services):
            if index >= len(SERVICES):
                service["code"] = f"{service['code']}-{index // len(SERVICES) + 1}"
        self.meters = {
            name: (unit, aggregation)
            for service in self.services
            for name in KINDS[service["kind"]][0]
            for unit, aggregation, _ in [METER_SPECS[name]]
        }
        # Each member takes part in about 60 % of the services (at least one); its usage of a
        # service grows with its size.
        self.pairs: list[tuple[int, int]] = []
        weights: list[float] = []
        self.participants: dict[str, list[str]] = {s["code"]: [] for s in self.services}
        for m, member in enumerate(self.members):
            taken = [s for s in range(len(self.services)) if rng.random() < 0.6]
            for s in taken or [rng.randrange(len(self.services))]:
                self.pairs.append((m, s))
                weights.append(member["employees"] * (0.5 + rng.random()))
                self.participants[self.services[s]["code"]].append(member["code"])
        self.cum_weights = list(itertools.accumulate(weights))

    def plans_model(self) -> dict[str, Any]:
        """``billing.toml`` as a mapping: a plan per service for FY2027."""
        plans = {}
        for service in self.services:
            plan = dict(KINDS[service["kind"]][1])
            if plan["method"] in ("base_plus_usage", "weighted", "equal"):
                plan["members"] = self.participants[service["code"]]
            plans[service["code"]] = plan
        return {"plans": {FISCAL_YEAR: plans}}


class Expected:
    """The year's usage as the generator made it, kept apart from the ledger for the check:
    per (member, service, meter, month) the sum in hundredths, the count, the largest value in
    hundredths and the set of subjects."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str, str, str], list[Any]] = {}

    def add(self, key: tuple[str, str, str, str], hundredths: int, subject: int | None) -> None:
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = [0, 0, 0, set()]
        cell[0] += hundredths
        cell[1] += 1
        if hundredths > cell[2]:
            cell[2] = hundredths
        if subject is not None:
            cell[3].add(subject)

    def report(self, aggregations: dict[str, str]) -> dict[tuple[str, str, str, str], Decimal]:
        """What a usage report by billing period must show for each cell."""
        result = {}
        for key, (total, count, largest, subjects) in self.cells.items():
            result[key] = {
                "sum": Decimal(total).scaleb(-2),
                "count": Decimal(count),
                "max": Decimal(largest).scaleb(-2),
                "unique_count": Decimal(len(subjects)),
            }[aggregations[key[2]]]
        return result


def month_starts() -> list[float]:
    """UTC timestamps of local midnight on the first of each month of FY2027, and of July 1,
    2027: the generator finds an event's month by bisection, without the ledger's calendar."""
    firsts = [datetime.fromisoformat(f"{m}-01T00:00:00").replace(tzinfo=ZONE) for m in MONTHS]
    firsts.append(datetime(2027, 7, 1, tzinfo=ZONE))
    return [moment.timestamp() for moment in firsts]


def generate(
    workload: Workload,
    events: int,
    batch: int,
    seed: int,
    duplicate_share: float,
    expected: Expected,
) -> Iterator[tuple[list[Any], list[Any]]]:
    """Batches of (events to send, the same without the re-sent ones); the expected totals are
    added up as the originals are made."""
    from hub.metering import UsageEvent

    starts = month_starts()
    first, span = starts[0], starts[-1] - starts[0]
    members = [m["code"] for m in workload.members]
    employees = [m["employees"] for m in workload.members]
    services = [s["code"] for s in workload.services]
    meters_of = [KINDS[s["kind"]][0] for s in workload.services]
    specs = {name: METER_SPECS[name][2] for name in METER_SPECS}
    one = Decimal(1)
    previous: list[Any] = []
    made = 0
    for number, offset in enumerate(range(0, events, batch)):
        size = min(batch, events - offset)
        rng = random.Random(f"events-{seed}-{number}")
        pairs = rng.choices(workload.pairs, cum_weights=workload.cum_weights, k=size)
        sent: list[Any] = []
        originals: list[Any] = []
        for m, s in pairs:
            if (previous or originals) and rng.random() < duplicate_share:
                pool = originals if originals and (not previous or rng.random() < 0.5) else previous
                sent.append(pool[int(rng.random() * len(pool))])
                continue
            meters = meters_of[s]
            meter = meters[0] if len(meters) == 1 else meters[int(rng.random() * len(meters))]
            spec = specs[meter]
            subject: int | None = None
            if spec is None:
                hundredths, quantity = 100, one
                subject = int(rng.random() * employees[m])
            else:
                low, high, step = spec
                hundredths = low + int(rng.random() * ((high - low) // step + 1)) * step
                quantity = Decimal(hundredths // 100) if step == 100 else _hundredths(hundredths)
            moment = first + int(rng.random() * span)
            made += 1
            event = UsageEvent(
                idempotency_key=f"bench-{seed}-{made:09d}",
                member=members[m],
                service=services[s],
                meter=meter,
                quantity=quantity,
                occurred_at=datetime.fromtimestamp(moment, UTC),
                subject="" if subject is None else f"E{subject:05d}",
            )
            month = MONTHS[bisect.bisect_right(starts, moment) - 1]
            expected.add((members[m], services[s], meter, month), hundredths, subject)
            sent.append(event)
            originals.append(event)
        previous = originals
        yield sent, originals


def _hundredths(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


# -- the targets -------------------------------------------------------------------------------


class Target:
    """A database both contenders write to: Cohub's ledger through SQLAlchemy, the baseline's
    plain table through the raw driver."""

    name: str
    cohub_url: str

    async def open(self) -> None:
        raise NotImplementedError

    async def insert_baseline(self, events: list[Any]) -> None:
        raise NotImplementedError

    async def baseline_month(self, month: str) -> list[tuple[Any, ...]]:
        """(member, service, meter, sum, count, max, distinct subjects) per group, quantities
        as Decimals."""
        raise NotImplementedError

    async def sizes(self) -> dict[str, Any]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


def _month_bounds(month: str) -> tuple[date, date]:
    first = date.fromisoformat(f"{month}-01")
    index = MONTHS.index(month)
    following = date.fromisoformat(f"{MONTHS[index + 1]}-01") if index < 11 else date(2027, 7, 1)
    return first, date.fromordinal(following.toordinal() - 1)


BASELINE_REPORT = (
    "SELECT member, service, meter, sum(quantity), count(*), max(quantity), "
    f"count(DISTINCT subject) FROM {BASELINE_TABLE} WHERE day >= {{0}} AND day <= {{1}} "
    "GROUP BY member, service, meter"
)


class SqliteTarget(Target):
    name = "sqlite"

    def __init__(self, workdir: Path) -> None:
        self.cohub_path = workdir / "cohub.db"
        self.baseline_path = workdir / "baseline.db"
        self.cohub_url = f"sqlite:///{self.cohub_path}"
        self.version = sqlite3.sqlite_version
        self.connection: sqlite3.Connection | None = None

    def _remove(self) -> None:
        for path in (self.cohub_path, self.baseline_path):
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    async def open(self) -> None:
        self.cohub_path.parent.mkdir(parents=True, exist_ok=True)
        self._remove()
        self.connection = sqlite3.connect(self.baseline_path, isolation_level=None)
        # The pragmas Cohub's engine sets; quantities are integer millionths, as in Cohub's
        # ledger: SQLite has no exact decimal, and SUM over text or NUMERIC goes through float.
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.execute(
            f"CREATE TABLE {BASELINE_TABLE} (member TEXT NOT NULL, service TEXT NOT NULL, "
            "meter TEXT NOT NULL, subject TEXT NOT NULL, quantity INTEGER NOT NULL, "
            "occurred_at TEXT NOT NULL, day TEXT NOT NULL)"
        )

    async def insert_baseline(self, events: list[Any]) -> None:
        assert self.connection is not None
        rows = [
            (
                e.member,
                e.service,
                e.meter,
                e.subject,
                int(e.quantity.scaleb(6)),
                e.occurred_at.astimezone(UTC).replace(tzinfo=None).isoformat(" "),
                e.occurred_at.astimezone(ZONE).date().isoformat(),
            )
            for e in events
        ]
        self.connection.execute("BEGIN")
        self.connection.executemany(
            f"INSERT INTO {BASELINE_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)", rows
        )
        self.connection.execute("COMMIT")

    async def baseline_month(self, month: str) -> list[tuple[Any, ...]]:
        assert self.connection is not None
        first, last = _month_bounds(month)
        rows = self.connection.execute(
            BASELINE_REPORT.format("?", "?"), (first.isoformat(), last.isoformat())
        ).fetchall()
        return [
            (m, s, meter, Decimal(total).scaleb(-6), n, Decimal(top).scaleb(-6), subjects)
            for m, s, meter, total, n, top, subjects in rows
        ]

    async def sizes(self) -> dict[str, Any]:
        return {
            "cohub_bytes": _file_bytes(self.cohub_path),
            "baseline_bytes": _file_bytes(self.baseline_path),
        }

    async def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        self._remove()


def _file_bytes(path: Path) -> int:
    return sum(
        Path(f"{path}{suffix}").stat().st_size
        for suffix in ("", "-wal")
        if Path(f"{path}{suffix}").exists()
    )


class PostgresTarget(Target):
    name = "postgresql"

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        parsed = make_url(url).set(drivername="postgresql")
        self.admin_url = parsed.render_as_string(hide_password=False)
        bench = parsed.set(database=BENCH_DATABASE)
        self.cohub_url = bench.render_as_string(hide_password=False)
        self.shown_url = parsed.render_as_string(hide_password=True)
        self.version: str | None = None
        self.error = ""
        self.connection: Any = None

    async def _admin(self, *statements: str) -> list[Any]:
        import asyncpg

        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            return [await conn.fetch(s) for s in statements]
        finally:
            await conn.close()

    async def answers(self) -> bool:
        try:
            self.version = (await self._admin("SHOW server_version"))[0][0][0]
            return True
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
            return False

    async def open(self) -> None:
        import asyncpg

        await self._admin(
            f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)",
            f"CREATE DATABASE {BENCH_DATABASE}",
        )
        self.connection = await asyncpg.connect(self.cohub_url, timeout=10)
        await self.connection.execute(
            f"CREATE TABLE {BASELINE_TABLE} (member VARCHAR(64) NOT NULL, "
            "service VARCHAR(64) NOT NULL, meter VARCHAR(64) NOT NULL, "
            "subject VARCHAR(200) NOT NULL, quantity NUMERIC(18, 6) NOT NULL, "
            "occurred_at TIMESTAMPTZ NOT NULL, day DATE NOT NULL)"
        )

    async def insert_baseline(self, events: list[Any]) -> None:
        rows = [
            (
                e.member,
                e.service,
                e.meter,
                e.subject,
                e.quantity,
                e.occurred_at,
                e.occurred_at.astimezone(ZONE).date(),
            )
            for e in events
        ]
        async with self.connection.transaction():
            await self.connection.copy_records_to_table(BASELINE_TABLE, records=rows)

    async def baseline_month(self, month: str) -> list[tuple[Any, ...]]:
        first, last = _month_bounds(month)
        rows = await self.connection.fetch(BASELINE_REPORT.format("$1", "$2"), first, last)
        return [tuple(row) for row in rows]

    async def sizes(self) -> dict[str, Any]:
        row = await self.connection.fetchrow(
            "SELECT pg_total_relation_size('usage_events') + pg_total_relation_size('usage_daily'),"
            f" pg_total_relation_size('{BASELINE_TABLE}')"
        )
        return {"cohub_bytes": row[0], "baseline_bytes": row[1]}

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
            self.connection = None
        await self._admin(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")


# -- measuring ---------------------------------------------------------------------------------


class BenchError(Exception):
    """A check failed: the figures would not mean what they say."""


async def prepare_ledger(engine: Any, workload: Workload) -> None:
    """Cohub's schema by its migrations, and the cooperative, members and services rows that
    `cohub apply` would write."""
    from hub.store import migrate
    from hub.store.database import writing
    from hub.store.tables import cooperative, members, services

    await migrate.upgrade(engine)
    async with writing(engine) as conn:
        await conn.execute(
            cooperative.insert().values(
                code="bench-boces",
                name="Benchmark BOCES",
                timezone=TIMEZONE,
                fiscal_year_start="07-01",
            )
        )
        await conn.execute(members.insert(), workload.members)
        await conn.execute(
            services.insert(),
            [{"code": s["code"], "name": s["name"], "description": ""} for s in workload.services],
        )


class Ingest:
    """Progress of the interleaved ingest: events and seconds per contender."""

    def __init__(self) -> None:
        self.sent = 0
        self.unique = 0
        self.appended = 0
        self.seconds = {COHUB: 0.0, BASELINE: 0.0}
        self.batches = 0
        #: Of Cohub's seconds, those spent adding the new events to the daily rollups.
        self.rollup_seconds = 0.0


async def ingest(
    target: Target,
    engine: Any,
    batches: Iterator[tuple[list[Any], list[Any]]],
    events: int,
    console: Any,
) -> Ingest:
    """Both contenders take each batch in turn, who goes first alternating, so drift on a busy
    machine hits both alike."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    import hub.metering
    from hub.metering import append_usage
    from hub.store.database import writing

    done = Ingest()
    # The rollups' share of Cohub's time, timed around the ledger's own (private) step; if it
    # is ever renamed, the share is simply not reported.
    roll_up = getattr(hub.metering, "_roll_up", None)

    async def timed_roll_up(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await roll_up(*args, **kwargs)  # type: ignore[misc]
        finally:
            done.rollup_seconds += time.perf_counter() - started

    async def cohub(sent: list[Any], originals: list[Any]) -> None:
        started = time.perf_counter()
        async with writing(engine) as conn:
            done.appended += await append_usage(conn, sent)
        done.seconds[COHUB] += time.perf_counter() - started

    async def baseline(sent: list[Any], originals: list[Any]) -> None:
        started = time.perf_counter()
        await target.insert_baseline(originals)
        done.seconds[BASELINE] += time.perf_counter() - started

    def rates() -> str:
        ours = done.sent / done.seconds[COHUB] if done.seconds[COHUB] else 0
        theirs = done.unique / done.seconds[BASELINE] if done.seconds[BASELINE] else 0
        return f"cohub {ours:>9,.0f} events/s  baseline {theirs:>9,.0f} events/s"

    progress = Progress(
        TextColumn(f"{target.name:>10} ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rates]}"),
        console=console,
        disable=not console.is_terminal,
    )
    notes = 1
    if roll_up is not None:
        hub.metering._roll_up = timed_roll_up  # type: ignore[attr-defined]
    try:
        with progress:
            task = progress.add_task("ingest", total=events, rates="")
            for sent, originals in batches:
                order = (cohub, baseline) if done.batches % 2 == 0 else (baseline, cohub)
                for contender in order:
                    await contender(sent, originals)
                done.batches += 1
                done.sent += len(sent)
                done.unique += len(originals)
                progress.update(task, completed=done.sent, rates=rates())
                if not console.is_terminal and done.sent * 10 >= notes * events:
                    console.print(
                        f"{target.name:>10} ingest {done.sent:>12,} / {events:,}  {rates()}"
                    )
                    notes += 1
    finally:
        if roll_up is not None:
            hub.metering._roll_up = roll_up  # type: ignore[attr-defined]
    return done


def report_cells(
    rows: list[tuple[Any, ...]], month: str, aggregations: dict[str, str]
) -> dict[tuple[str, str, str, str], Decimal]:
    """The baseline's GROUP BY rows as report cells, each meter aggregated its own way."""
    cells = {}
    for member, service, meter, total, count, largest, subjects in rows:
        cells[(member, service, meter, month)] = {
            "sum": Decimal(total),
            "count": Decimal(count),
            "max": Decimal(largest),
            "unique_count": Decimal(subjects),
        }[aggregations[meter]]
    return cells


def compare(
    what: str, found: dict[Any, Decimal], expected: dict[Any, Decimal], target: str
) -> None:
    if found == expected:
        return
    missing = sorted(set(expected) - set(found))[:3]
    extra = sorted(set(found) - set(expected))[:3]
    wrong = [
        (k, str(found[k]), str(expected[k]))
        for k in sorted(set(found) & set(expected))
        if found[k] != expected[k]
    ][:3]
    raise BenchError(
        f"{target}: {what} differs from the generated events: {len(expected):,} cells expected, "
        f"{len(found):,} found; missing {missing}, unexpected {extra}, wrong {wrong}"
    )


async def measure_target(
    target: Target, workload: Workload, args: argparse.Namespace, console: Any
) -> dict[str, Any]:
    """Ingest, check, report and bill on one target; the figures and facts as a dict."""
    import msgspec
    from sqlalchemy import func, select

    from hub.billing.plans import BillingPlans, plan_problems
    from hub.metering import usage_totals
    from hub.sdk.extensions import Meter
    from hub.store.database import create_engine
    from hub.store.tables import usage_daily, usage_events

    meters = {
        name: Meter(name=name, unit=unit, aggregation=aggregation)  # type: ignore[arg-type]
        for name, (unit, aggregation) in workload.meters.items()
    }
    aggregations = {name: aggregation for name, (_, aggregation) in workload.meters.items()}
    plans = msgspec.convert(workload.plans_model(), BillingPlans)
    problems = plan_problems(
        plans, {m["code"] for m in workload.members}, {s["code"] for s in workload.services}
    )
    if problems:
        raise BenchError(f"the generated billing.toml is refused: {problems[:3]}")

    await target.open()
    engine = create_engine(target.cohub_url)
    try:
        await prepare_ledger(engine, workload)

        # 1. Ingest, interleaved.
        expected = Expected()
        started = time.perf_counter()
        batches = generate(
            workload, args.events, args.batch, args.seed, args.duplicate_share, expected
        )
        done = await ingest(target, engine, batches, args.events, console)
        wall = time.perf_counter() - started
        cohub_s, baseline_s = done.seconds[COHUB], done.seconds[BASELINE]
        console.print(
            f"{target.name:>10} ingest: {done.sent:,} events sent ({done.unique:,} distinct) in "
            f"{done.batches:,} batches; cohub {cohub_s:.1f}s, baseline {baseline_s:.1f}s, "
            f"generator {wall - cohub_s - baseline_s:.1f}s; of Cohub's time, rollups "
            f"{done.rollup_seconds:.1f}s"
        )

        # 2. The ledger against the generator, exactly.
        async with engine.connect() as conn:
            stored = (await conn.execute(select(func.count()).select_from(usage_events))).scalar()
            rollup_rows, rolled = (
                await conn.execute(select(func.count(), func.sum(usage_daily.c.events)))
            ).one()
        if done.appended != done.unique or stored != done.unique or rolled != done.unique:
            raise BenchError(
                f"{target.name}: {done.unique:,} distinct events were sent; append_usage "
                f"reported {done.appended:,} new, the ledger holds {stored:,}, the rollups "
                f"count {rolled:,}"
            )
        wanted = expected.report(aggregations)
        del expected

        # 3. The year's usage report: twelve months, interleaved with the baseline's GROUP BY.
        report_s = {COHUB: 0.0, BASELINE: 0.0}
        cohub_cells: dict[Any, Decimal] = {}
        baseline_cells: dict[Any, Decimal] = {}
        for index, month in enumerate(MONTHS):
            order = (COHUB, BASELINE) if index % 2 == 0 else (BASELINE, COHUB)
            for contender in order:
                started = time.perf_counter()
                if contender == COHUB:
                    async with engine.connect() as conn:
                        totals = await usage_totals(conn, meters, periods=[month], by="period")
                else:
                    rows = await target.baseline_month(month)
                report_s[contender] += time.perf_counter() - started
            cohub_cells.update(
                ((t.member, t.service, t.meter, t.bucket), t.quantity) for t in totals
            )
            baseline_cells.update(report_cells(rows, month, aggregations))
        compare("Cohub's usage report", cohub_cells, wanted, target.name)
        compare("the baseline's GROUP BY", baseline_cells, wanted, target.name)
        console.print(
            f"{target.name:>10} checked: the ledger, its rollups ({rollup_rows:,} rows) and the "
            f"baseline all give the generator's {len(wanted):,} monthly figures exactly"
        )
        cells = len(wanted)
        del wanted, cohub_cells, baseline_cells

        # 4. The year's statements.
        statement_facts = await measure_statements(engine, plans, meters, target, console)
        sizes = await target.sizes()
    finally:
        await engine.dispose()
        await target.close()

    def step(cohub: float, baseline: float, count: int) -> dict[str, Any]:
        return {
            "cohub_seconds": round(cohub, 3),
            "baseline_seconds": round(baseline, 3),
            "cohub_events_per_second": round(count / cohub, 1),
            "baseline_events_per_second": round(done.unique / baseline, 1),
            "speed_ratio": round(baseline / cohub * count / done.unique, 3),
        }

    return {
        "events_sent": done.sent,
        "events_distinct": done.unique,
        "batches": done.batches,
        "rollup_rows": rollup_rows,
        "report_cells": cells,
        "sizes": sizes,
        "steps": {
            "ingest": {
                **step(cohub_s, baseline_s, done.sent),
                "cohub_rollup_seconds": round(done.rollup_seconds, 3),
                "generator_seconds": round(wall - cohub_s - baseline_s, 3),
            },
            "usage_report": step(report_s[COHUB], report_s[BASELINE], done.unique),
            "statements": {
                **step(statement_facts["seconds"], report_s[BASELINE], done.unique),
                "baseline": "the usage report's twelve GROUP BY queries",
                **{k: v for k, v in statement_facts.items() if k != "seconds"},
            },
        },
    }


async def measure_statements(
    engine: Any, plans: Any, meters: dict[str, Any], target: Target, console: Any
) -> dict[str, Any]:
    """The year's statements (``compute_statements`` for FY2027), timed."""
    from hub.billing.statements import compute_statements

    started = time.perf_counter()
    async with engine.connect() as conn:
        statements = await compute_statements(conn, plans, meters, FISCAL_YEAR)
    seconds = time.perf_counter() - started
    lines = sum(len(s.lines) for s in statements)
    total = sum((s.total for s in statements), Decimal(0))
    check_statements(statements, plans, target.name)
    console.print(
        f"{target.name:>10} statements: {len(statements):,} members, {lines:,} lines, "
        f"{total:,} in all, {seconds:.1f}s"
    )
    return {
        "seconds": seconds,
        "statements": len(statements),
        "lines": lines,
        "total": str(total),
        "fingerprint": statements[0].fingerprint,
    }


def check_statements(statements: list[Any], plans: Any, target: str) -> None:
    """Every statement adds up to its lines, every month's split of a cost pool to the month's
    twelfth of the budget, and a year with a true-up to the actual cost, to the cent."""
    from hub.billing.allocation import equal_shares
    from hub.billing.plans import POOL_METHODS

    if not statements:
        raise BenchError(f"{target}: no statements")
    charged: dict[tuple[str, str], Decimal] = {}
    yearly: dict[str, Decimal] = {}
    for statement in statements:
        if statement.total != sum((line.amount for line in statement.lines), Decimal(0)):
            raise BenchError(f"{target}: {statement.member}'s statement is not its lines' sum")
        for line in statement.lines:
            yearly[line.service] = yearly.get(line.service, Decimal(0)) + line.amount
            if line.kind == "charge":
                key = (line.service, line.month)
                charged[key] = charged.get(key, Decimal(0)) + line.amount
    for service, plan in plans.plans[FISCAL_YEAR].items():
        if plan.method not in POOL_METHODS:
            continue
        sign = -1 if plan.method == "patronage" else 1
        pools = equal_shares(plan.budget, MONTHS)
        for month in MONTHS:
            found = charged.get((service, month), Decimal(0))
            if found and found != sign * pools[month]:
                raise BenchError(
                    f"{target}: {service} {month}: members were charged {found}, the month's "
                    f"pool is {sign * pools[month]}"
                )
        if plan.actual_cost is not None and yearly.get(service) != plan.actual_cost:
            raise BenchError(
                f"{target}: {service}: the year's lines add up to {yearly.get(service)}, the "
                f"actual cost is {plan.actual_cost}"
            )


# -- the command -------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Ingest and roll up a year of usage events through Cohub's ledger, report "
        "and bill it, next to a plain SQL GROUP BY baseline; print events/s and ratios."
    )
    parser.add_argument("--events", type=int, default=10_000_000, help="usage events to send")
    parser.add_argument("--members", type=int, default=1_000, help="member districts")
    parser.add_argument("--services", type=int, default=20, help="services (up to 20 kinds)")
    parser.add_argument("--batch", type=int, default=10_000, help="events per append_usage")
    parser.add_argument("--seed", type=int, default=42, help="seed of the generator")
    parser.add_argument(
        "--duplicate-share",
        type=float,
        default=0.01,
        help="share of events sent again with the same key (default %(default)s)",
    )
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help="comma-separated: sqlite,postgresql"
    )
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help=f"PostgreSQL server (default %(default)s; {BENCH_DATABASE} is created and dropped)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help="SQLite files (default %(default)s)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke check: 100,000 events, 50 members, 5 services",
    )
    parser.add_argument("--output", type=Path, help="JSON results (default: bench/results/)")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown or not args.targets:
        parser.error(
            f"unknown target {unknown[0] if unknown else '(none)'}; known: sqlite,postgresql"
        )
    if min(args.events, args.members, args.services, args.batch) < 1:
        parser.error("--events, --members, --services and --batch must be at least 1")
    if not 0 <= args.duplicate_share < 1:
        parser.error("--duplicate-share must be at least 0 and below 1")
    return args


async def run(args: argparse.Namespace, console: Any) -> int:
    from rich.table import Table

    started = time.perf_counter()
    workload = Workload(args.members, args.services, args.seed)
    console.print(
        f"workload: {args.events:,} events over {FISCAL_YEAR} ({TIMEZONE}), "
        f"{args.members:,} members, {args.services} services ({len(workload.pairs):,} "
        f"member-service pairs), meters {', '.join(sorted(workload.meters))}; "
        f"batches of {args.batch:,}, {args.duplicate_share:.0%} sent twice"
    )
    chosen: list[Target] = []
    skipped: dict[str, str] = {}
    postgres_version = None
    for name in args.targets:
        if name == "sqlite":
            chosen.append(SqliteTarget(args.workdir.resolve()))
            continue
        postgres = PostgresTarget(args.postgres_url)
        if await postgres.answers():
            postgres_version = postgres.version
            chosen.append(postgres)
        else:
            skipped[name] = f"{postgres.shown_url} does not answer ({postgres.error})"
            console.print(f"[yellow]skipping PostgreSQL[/]: {skipped[name]}")

    results: dict[str, Any] = {
        "benchmark": "billing",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "arguments": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k != "postgres_url"
        },
        "environment": environment_facts(postgres_version),
        "skipped": skipped,
        "targets": {},
    }
    fingerprints = [code_fingerprint()]
    for target in chosen:
        began = time.perf_counter()
        results["targets"][target.name] = await measure_target(target, workload, args, console)
        results["targets"][target.name]["wall_seconds"] = round(time.perf_counter() - began, 1)

    table = Table(title=f"Usage ledger, {args.events:,} events, {FISCAL_YEAR}")
    for column in ("target", "step", "cohub s", "baseline s", "cohub events/s", "speed ratio"):
        table.add_column(column, justify="left" if column in ("target", "step") else "right")
    labels = {
        "ingest": "ingest + rollups",
        "usage_report": "usage report, 12 months",
        "statements": f"statements {FISCAL_YEAR}",
    }
    for name, facts in results["targets"].items():
        for step, label in labels.items():
            s = facts["steps"][step]
            table.add_row(
                name,
                label,
                f"{s['cohub_seconds']:,.2f}",
                f"{s['baseline_seconds']:,.2f}",
                f"{s['cohub_events_per_second']:,.0f}",
                f"{s['speed_ratio']:.2f}",
            )
    console.print(table)
    console.print(
        "speed ratio: Cohub's events/s over the baseline's (above 1, Cohub is faster); the "
        "statements are set against the baseline's twelve monthly GROUP BY queries."
    )
    for name, reason in skipped.items():
        console.print(f"[yellow]{name} skipped[/]: {reason}")

    record_code_versions(results, fingerprints, console)
    output = args.output or RESULTS_DIR / (
        f"billing-{datetime.now().strftime('%Y-%m-%dT%H%M%S')}-{args.events}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"results: {output}  (total {time.perf_counter() - started:.0f}s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    console = make_console()
    try:
        return asyncio.run(run(args, console))
    except BenchError as error:
        console.print(f"[red]billing: FAILED[/]: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
