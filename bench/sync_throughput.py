"""Sync throughput: Cohub against a plain-Python baseline, on SQLite and PostgreSQL.

A seeded generator writes a district payroll export (CSV laid out like the Eastview example in
``config/``) of ``--lines`` pay lines. Each target database then gets two contenders, each run in
its own fresh subprocess, ``--runs`` times, interleaved:

* ``cohub``: the real engine. A generated configuration folder (one ``flat_file`` source, one
  ``sql_table`` destination, one route) is applied with ``cohub apply`` (not timed) into a fresh
  hub state database, then ``cohub sync --all`` is timed from spawn to exit.
* ``baseline (csv + executemany)``: the same CSV read with Python's csv module, every value
  parsed into its Python type (int, date, aware datetime, Decimal, account code split with a
  regular expression), inserted into a table with the same columns and the same primary key in
  batches with one commit per batch: stdlib sqlite3 ``executemany`` (WAL) or asyncpg
  ``executemany``.

Records per second are lines divided by the subprocess's wall-clock time (interpreter start-up
and imports included, for both contenders); peak memory is the subprocess's own maximum resident
set size (``os.wait4`` rusage). Every run is checked: the destination holds exactly ``--lines``
rows and their amounts add up to the generator's total, or the benchmark stops.

    .venv/bin/python bench/sync_throughput.py --lines 200000 --runs 3

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import hashlib
import itertools
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_WORKDIR = BENCH_DIR / ".work" / "sync_throughput"
RESULTS_DIR = BENCH_DIR / "results"

#: Bump when the generated file's content changes, so an old file is not reused.
GENERATOR_VERSION = 1
CSV_NAME = "payroll_bench.csv"
MEMBER = "bench-district"
STREAM = "pay_lines"
TABLE_PREFIX = "bench_"
TABLE = f"{TABLE_PREFIX}{STREAM}"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
COHUB = "cohub"
BASELINE = "baseline (csv + executemany)"
TARGETS = ("sqlite", "postgresql")
#: What the baseline writes in `sync_generation` (Cohub writes its run's id: one integer a run).
GENERATION = 1

#: The table `connectors/sql_table.py` creates for `payroll.pay_line` (member, record key, the
#: record's fields with the account code flattened, then the sync generation and deletion time),
#: as (name, SQLite type, PostgreSQL type).
#: The PostgreSQL types are those SQLAlchemy emits for the connector's column types; SQLite gets
#: plain TEXT/INTEGER/NUMERIC affinities. After the first Cohub run of each target the benchmark
#: checks that Cohub's table has exactly these columns.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("member", "TEXT", "VARCHAR(64)"),
    ("record_key", "TEXT", "VARCHAR(255)"),
    ("updated_at", "TEXT", "TIMESTAMP WITH TIME ZONE"),
    ("pay_run_id", "TEXT", "TEXT"),
    ("employee_id", "TEXT", "TEXT"),
    ("line_number", "INTEGER", "BIGINT"),
    ("pay_date", "TEXT", "DATE"),
    ("period_start", "TEXT", "DATE"),
    ("period_end", "TEXT", "DATE"),
    ("code", "TEXT", "TEXT"),
    ("kind", "TEXT", "TEXT"),
    ("hours", "NUMERIC", "NUMERIC(19, 4)"),
    ("rate", "NUMERIC", "NUMERIC(19, 4)"),
    ("amount", "NUMERIC", "NUMERIC(19, 4)"),
    ("account_code", "TEXT", "TEXT"),
    ("account_fund", "TEXT", "TEXT"),
    ("account_function", "TEXT", "TEXT"),
    ("account_object", "TEXT", "TEXT"),
    ("account_location", "TEXT", "TEXT"),
    ("account_program", "TEXT", "TEXT"),
    ("employee_name", "TEXT", "TEXT"),
    ("ssn", "TEXT", "TEXT"),
    ("bank_account", "TEXT", "TEXT"),
    # The read cycle that last delivered the row, and when a full read found it gone.
    ("sync_generation", "INTEGER", "BIGINT"),
    ("deleted_at", "TEXT", "TIMESTAMP WITH TIME ZONE"),
)
COLUMN_NAMES = tuple(name for name, _, _ in COLUMNS)

HEADER = (
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
)

#: New York's uniform system of accounts, as `hub.model.accounting.ACCOUNT_LAYOUTS["nys"]`.
NYS_ACCOUNT = re.compile(
    r"(?P<fund>[A-Z]{1,2})(?P<function>\d{4})\.(?P<object>\d{3})"
    r"(?:-(?P<location>\d{2,3}))?(?:-(?P<program>\d{1,4}))?"
)


# -- the generated export ------------------------------------------------------------------

FIRST_NAMES = (  # noqa: SIM905 (a list literal would take a line per name)
    "Maria James Li Rosa Thomas Aisha Daniel Priya Kevin Grace Omar Hannah Luis Mei "
    "Patrick Fatima Brian Sofia Andre Emily Jamal Nora Victor Chloe Samuel Ingrid Marcus "
    "Leah Diego Tanya Robert Yuki Ethan Carmen Noah Abigail Hassan Olivia Peter Lucia"
).split()
LAST_NAMES = (  # noqa: SIM905 (a list literal would take a line per name)
    "Anderson Brooks Chen Delgado Evans Fischer Garcia Hughes Ibrahim Jensen Kowalski "
    "Lopez Murphy Nguyen O'Brien Patel Quinn Rossi Schmidt Thompson Underwood Vasquez "
    "Walsh Xu Young Zimmerman Baker Carter Dubois Esposito Flores Gupta Hansen Ito Johnson "
    "Kim Larsen Moreno"
).split()

#: (job, account code, salaried, annual salary range or hourly rate range in cents)
JOBS = (
    ("teacher", "A2110.120-{loc}-0000", True, (4_800_000, 11_500_000)),
    ("special education teacher", "A2250.150-{loc}-0000", True, (5_000_000, 11_000_000)),
    ("federal program teacher", "F2110.150-{loc}-4001", True, (4_800_000, 9_000_000)),
    ("principal", "A2020.150-{loc}-0000", True, (11_000_000, 16_500_000)),
    ("business office", "A1310.160-00-0000", True, (4_200_000, 9_500_000)),
    ("teaching assistant", "A2110.160-{loc}-0000", False, (1_650, 2_450)),
    ("custodian", "A1620.160-{loc}-0000", False, (1_750, 2_900)),
    ("bus driver", "A5510.160-00-0000", False, (2_100, 3_100)),
    ("food service", "C2860.160-{loc}-0000", False, (1_600, 2_300)),
)
JOB_WEIGHTS = (40, 8, 4, 2, 4, 14, 10, 10, 8)
#: Deductions every employee has (code, percent of gross x100) and ones some opt into.
DEDUCTIONS = (("FIT", 1200), ("SS", 620), ("MED", 145), ("RET", 600))
OPTIONAL = (("HLTH", 8840), ("DENT", 1420), ("403B", 0), ("UNION", 2650))
#: "Several districts' worth": about four component districts' payrolls in one export.
EMPLOYEES = 4_000


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def export_path(workdir: Path, lines: int, seed: int) -> Path:
    return workdir / "data" / f"lines-{lines}-seed-{seed}-v{GENERATOR_VERSION}" / CSV_NAME


def generate_export(path: Path, lines: int, seed: int) -> dict[str, Any]:
    """Write `lines` pay lines to `path` (reused if a finished file with that size and seed is
    there); return what the checks need: the line count and the total amount in cents."""
    marker = path.with_name("complete.json")
    if marker.is_file() and path.is_file():
        meta = json.loads(marker.read_text())
        if (
            meta.get("lines") == lines
            and meta.get("seed") == seed
            and meta.get("bytes") == path.stat().st_size
        ):
            return meta
    import random

    rng = random.Random(seed)
    employees = []
    for number in range(EMPLOYEES):
        job = rng.choices(JOBS, weights=JOB_WEIGHTS)[0]
        _, account, salaried, (low, high) = job
        name = f"{rng.choice(LAST_NAMES)}, {rng.choice(FIRST_NAMES)}"
        location = f"{rng.randrange(1, 9):02d}"
        optional = [d for d in OPTIONAL if rng.random() < 0.6]
        employees.append(
            (
                f"E{100_001 + number}",
                name,
                account.format(loc=location),
                salaried,
                rng.randrange(low, high),
                optional,
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    written = 0
    total_cents = 0
    pay_date = date(2021, 7, 9)
    run_number = 0
    with partial.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)  # CRLF line ends, like the district's export
        writer.writerow(HEADER)
        while written < lines:
            run_number += 1
            fiscal_year = pay_date.year + (1 if pay_date.month >= 7 else 0)
            run_id = f"BN-{fiscal_year}-{run_number:03d}"
            dates = (
                pay_date.isoformat(),
                (pay_date - timedelta(days=14)).isoformat(),
                (pay_date - timedelta(days=1)).isoformat(),
            )
            modified = f"{pay_date.isoformat()}T{rng.randrange(17, 23)}:{rng.randrange(60):02d}:00Z"
            rows = []
            for emp_id, name, account, salaried, pay, optional in employees:
                items: list[tuple[str, str, str, str, int]] = []
                if salaried:
                    gross = pay // 26
                    items.append(("SAL", "earning", "", "", gross))
                    if rng.random() < 0.15:
                        stipend = rng.randrange(5_000, 60_000)
                        items.append(("STIP", "earning", "", "", stipend))
                        gross += stipend
                else:
                    hours = rng.choice((60, 70, 72, 75, 76, 80, 80, 80))
                    gross = hours * pay
                    items.append(("REG", "earning", str(hours), money(pay), gross))
                    if rng.random() < 0.2:
                        overtime = rng.randrange(1, 12)
                        rate = pay * 3 // 2
                        items.append(("OT", "earning", str(overtime), money(rate), overtime * rate))
                        gross += overtime * rate
                for code, percent in DEDUCTIONS:
                    kind = "deduction" if code == "RET" else "tax"
                    items.append((code, kind, "", "", -(gross * percent // 10_000)))
                for code, flat in optional:
                    amount = flat or gross * 5 // 100
                    items.append((code, "deduction", "", "", -amount))
                if rng.random() < 0.5:
                    items.append(("EMPHLTH", "benefit", "", "", rng.randrange(40_000, 90_000)))
                for line, (code, kind, hours, rate, cents) in enumerate(items, 1):
                    if written >= lines:
                        break
                    written += 1
                    total_cents += cents
                    rows.append(
                        (
                            run_id,
                            *dates,
                            emp_id,
                            name,
                            line,
                            code,
                            kind,
                            hours,
                            rate,
                            money(cents),
                            account,
                            modified,
                        )
                    )
                if written >= lines:
                    break
            writer.writerows(rows)
            pay_date += timedelta(days=14)
    partial.replace(path)
    meta = {
        "lines": lines,
        "seed": seed,
        "bytes": path.stat().st_size,
        "total_cents": total_cents,
        "pay_runs": run_number,
        "employees": EMPLOYEES,
        "generator_version": GENERATOR_VERSION,
    }
    marker.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


# -- the baseline (runs in its own subprocess) ---------------------------------------------


def parse_rows(path: Path, batch_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """The export's rows in batches, every value parsed to the type Cohub's record gives it."""
    decimal = Decimal
    fromiso_date = date.fromisoformat
    fromiso_datetime = datetime.fromisoformat
    split_account = NYS_ACCOUNT.fullmatch
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        if tuple(h.strip() for h in header) != HEADER:
            raise SystemExit(f"{path}: unexpected header {header}")
        while True:
            batch = []
            for row in itertools.islice(reader, batch_size):
                (
                    run,
                    paid,
                    start,
                    end,
                    emp,
                    name,
                    line,
                    code,
                    kind,
                    hours,
                    rate,
                    amount,
                    acct,
                    mod,
                ) = row
                number = int(line)
                account = split_account(acct)
                if account is None:
                    raise ValueError(f"account code {acct!r} does not fit the nys layout")
                batch.append(
                    (
                        MEMBER,
                        f"{run}|{emp}|{number}",
                        fromiso_datetime(mod),
                        run,
                        emp,
                        number,
                        fromiso_date(paid),
                        fromiso_date(start) if start else None,
                        fromiso_date(end) if end else None,
                        code,
                        kind,
                        decimal(hours) if hours else None,
                        decimal(rate) if rate else None,
                        decimal(amount),
                        acct,
                        *account.groups(),
                        name or None,
                        None,
                        None,
                        GENERATION,
                        None,
                    )
                )
            if not batch:
                return
            yield batch


def insert_statement(placeholder: Any) -> str:
    columns = ", ".join(COLUMN_NAMES)
    values = ", ".join(placeholder(i) for i in range(1, len(COLUMNS) + 1))
    return f"INSERT INTO {TABLE} ({columns}) VALUES ({values})"


def create_statement(dialect: str) -> str:
    index = 1 if dialect == "sqlite" else 2
    body = ", ".join(f"{c[0]} {c[index]}" for c in COLUMNS)
    return f"CREATE TABLE {TABLE} ({body}, PRIMARY KEY (member, record_key))"


def baseline_sqlite(csv_path: Path, database: str, batch_size: int) -> int:
    """stdlib sqlite3: plain INSERTs with executemany, one commit per batch, WAL."""
    # Bind the parsed values as Cohub's SQLite column types store them: exact decimal text,
    # ISO dates, naive UTC timestamps.
    sqlite3.register_adapter(Decimal, str)
    sqlite3.register_adapter(date, date.isoformat)
    sqlite3.register_adapter(
        datetime, lambda value: value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
    )
    conn = sqlite3.connect(database)
    # The same pragmas Cohub's engine sets (hub/store/database.py).
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(create_statement("sqlite"))
    conn.commit()
    insert = insert_statement(lambda _: "?")
    count = 0
    for batch in parse_rows(csv_path, batch_size):
        conn.executemany(insert, batch)
        conn.commit()
        count += len(batch)
    conn.close()
    return count


async def baseline_postgresql(csv_path: Path, url: str, batch_size: int) -> int:
    """asyncpg: plain INSERTs with executemany, one transaction per batch."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(create_statement("postgresql"))
        insert = insert_statement(lambda i: f"${i}")
        count = 0
        for batch in parse_rows(csv_path, batch_size):
            async with conn.transaction():
                await conn.executemany(insert, batch)
            count += len(batch)
    finally:
        await conn.close()
    return count


def child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sync_throughput.py _baseline")
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--dest", required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    args = parser.parse_args(argv)
    if args.target == "sqlite":
        count = baseline_sqlite(args.csv, args.dest, args.batch_size)
    else:
        count = asyncio.run(baseline_postgresql(args.csv, args.dest, args.batch_size))
    print(json.dumps({"rows": count}))
    return 0


# -- measuring subprocesses ----------------------------------------------------------------


class BenchError(Exception):
    """A run failed or delivered wrong data: the benchmark stops and says why."""


#: Watches a running child: called with its pid right after the spawn, the context it returns
#: is left once the child has exited and been reaped (bench/memory_flatness.py samples RSS).
Monitor = Callable[[int], AbstractContextManager[object]]


def run_measured(
    command: list[str], env: dict[str, str], cwd: Path, log: Path, monitor: Monitor | None = None
) -> tuple[float, int]:
    """Run `command` to completion; return (wall seconds, peak RSS in bytes) of that child.

    `os.wait4` returns the rusage of exactly this child (and anything it waited for), so each
    contender's peak memory is its own, not the maximum over every child this process had.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=output, stderr=output
        )
        with monitor(process.pid) if monitor is not None else contextlib.nullcontext():
            _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise BenchError(
            f"{' '.join(command)} exited with {process.returncode} (log: {log}):\n{tail}"
        )
    peak = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return elapsed, peak


def cohub_command() -> list[str]:
    script = Path(sys.executable).parent / "cohub"
    if script.is_file():
        return [str(script)]
    found = shutil.which("cohub")
    return [found] if found else [sys.executable, "-m", "hub"]


#: Never passed to a measured process. An installed Cohub, like every contender's
#: site-packages, has its bytecode compiled; a shell that sets PYTHONDONTWRITEBYTECODE would make
#: every run compile the editable tree's modules again (0.2 s of a 2 s run, measured here).
NOT_INHERITED = ("PYTHONDONTWRITEBYTECODE",)


def compile_cohub() -> None:
    """Write the bytecode of Cohub's own code (installed editable) before anything is timed, as
    installing a package does."""
    import compileall

    for folder in ("hub", "connectors", "bench/cohub_plugins"):
        compileall.compile_dir(REPO / folder, quiet=1, workers=1)


def cohub_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """The environment of a Cohub run: its own hub home, nothing inherited that redirects it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("COHUB_DATABASE_URL", "COHUB_CONFIG", "COHUB_MASTER_KEY", "COHUB_HOME")
        and k not in NOT_INHERITED
    }
    env["COHUB_HOME"] = str(home)
    env.update(extra)
    return env


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(
    directory: Path,
    export: Path,
    url: str,
    batch_size: int,
    secret: bool,
    parallel_reads: int = 1,
) -> None:
    """A configuration folder: one member, one service, the export as source, the target as
    destination, one route (reading the export in `parallel_reads` parts at once)."""
    if directory.exists():
        shutil.rmtree(directory)
    (directory / "connections").mkdir(parents=True)
    (directory / "cooperative.toml").write_text(
        f"""\
# Generated by bench/sync_throughput.py; rewritten on every run.
[cooperative]
code = "bench-boces"
name = "Benchmark BOCES"

[plugins]
paths = []   # no site plugins: only the built-in connectors, loaded through entry points

[members.{MEMBER}]
name = "Benchmark Central School District"

[services.cbo-payroll]
name = "Central Business Office: payroll processing"
# Billed per record: the hub's own meters only, no per-employee or per-paycheck events.
meters = []
"""
    )
    (directory / "connections" / "bench-export.toml").write_text(
        f"""\
connector = "flat_file"
member = "{MEMBER}"

[options]
folder = {toml_string(str(export.parent))}
encoding = "utf-8-sig"
account_layout = "nys"

[options.streams.{STREAM}]
record = "payroll.pay_line"
pattern = "{CSV_NAME}"
account_column = "Account"

[options.streams.{STREAM}.columns]
pay_run_id = "PayRunID"
pay_date = "PayDate"
period_start = "PeriodStart"
period_end = "PeriodEnd"
employee_id = "EmpID"
employee_name = "EmpName"
line_number = "LineNo"
code = "EarnCode"
kind = "Type"
hours = "Hours"
rate = "Rate"
amount = "Amount"
updated_at = "LastModified"
"""
    )
    secrets = '\n[secrets]\npassword = "env:COHUB_BENCH_PASSWORD"\n' if secret else ""
    (directory / "connections" / "bench-db.toml").write_text(
        f"""\
connector = "sql_table"

[options]
url = {toml_string(url)}
table_prefix = "{TABLE_PREFIX}"
{secrets}"""
    )
    (directory / "routes.toml").write_text(
        f"""\
[routes.bench-payroll]
source = "bench-export"
source_stream = "{STREAM}"
destination = "bench-db"
destination_stream = "{STREAM}"
service = "cbo-payroll"
batch_size = {batch_size}
parallel_reads = {parallel_reads}
"""
    )


# -- targets -------------------------------------------------------------------------------


class Target:
    """A destination database: how to reset it, check it, and point each contender at it."""

    name: str
    #: The URL Cohub's `sql_table` connection gets (never with a password in it).
    url: str
    #: The password, handed to Cohub as an ``env:`` secret; None if the URL has none.
    password: str | None = None
    #: What the baseline subprocess gets as ``--dest``.
    baseline_dest: str

    def reset(self) -> None:
        raise NotImplementedError

    def check(self, lines: int, total_cents: int, contender: str) -> None:
        raise NotImplementedError

    def columns(self) -> set[str]:
        raise NotImplementedError

    def finish(self) -> None:
        """Leave nothing behind."""


class SqliteTarget(Target):
    name = "sqlite"

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "target" / "sqlite.db"
        self.url = f"sqlite:///{self.path}"
        self.baseline_dest = str(self.path)

    def reset(self) -> None:
        # A fresh file: the table dropped and no free pages left over from the previous run.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def check(self, lines: int, total_cents: int, contender: str) -> None:
        count, cents = self._query(
            f"SELECT COUNT(*), SUM(CAST(ROUND(amount * 100) AS INTEGER)) FROM {TABLE}"
        )[0]
        verify(self.name, contender, lines, total_cents, count, cents)

    def columns(self) -> set[str]:
        return {row[1] for row in self._query(f"PRAGMA table_info({TABLE})")}

    def finish(self) -> None:
        self.reset()


class PostgresTarget(Target):
    name = "postgresql"

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        self.password = parsed.password
        # Cohub gets the URL without the password and the password as an env: secret, so the
        # generated configuration never holds it.
        self.url = parsed.set(drivername="postgresql", password=None).render_as_string(
            hide_password=False
        )
        self.asyncpg_url = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self.baseline_dest = self.asyncpg_url
        self.error = ""

    def _run(self, *statements: str) -> list[Any]:
        import asyncpg

        async def go() -> list[Any]:
            conn = await asyncpg.connect(self.asyncpg_url, timeout=10)
            try:
                return [await conn.fetch(s) for s in statements]
            finally:
                await conn.close()

        return asyncio.run(go())

    def answers(self) -> str | None:
        """The server version, or None if it does not answer."""
        try:
            return self._run("SHOW server_version")[0][0][0]
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
            return None

    def reset(self) -> None:
        self._run(f"DROP TABLE IF EXISTS {TABLE}")
        # Flush the previous run's dirty pages now, not during the next run (needs superuser).
        with contextlib.suppress(Exception):
            self._run("CHECKPOINT")

    def check(self, lines: int, total_cents: int, contender: str) -> None:
        row = self._run(f"SELECT COUNT(*), SUM(amount) FROM {TABLE}")[0][0]
        cents = None if row[1] is None else int(row[1] * 100)
        verify(self.name, contender, lines, total_cents, row[0], cents)

    def columns(self) -> set[str]:
        rows = self._run(
            "SELECT column_name FROM information_schema.columns "
            f"WHERE table_name = '{TABLE}' AND table_schema = current_schema()"
        )[0]
        return {r[0] for r in rows}

    def finish(self) -> None:
        self._run(f"DROP TABLE IF EXISTS {TABLE}")


def verify(
    target: str, contender: str, lines: int, total_cents: int, count: int, cents: int | None
) -> None:
    if count != lines:
        raise BenchError(
            f"{target}/{contender}: the destination holds {count:,} rows, the export has "
            f"{lines:,} lines"
        )
    if cents != total_cents:
        raise BenchError(
            f"{target}/{contender}: amounts add up to {cents} cents, the export's to {total_cents}"
        )


# -- the benchmark -------------------------------------------------------------------------


def run_cohub(
    target: Target,
    workdir: Path,
    export: Path,
    batch_size: int,
    run: int,
    profile: Path | None,
    monitor: Monitor | None = None,
) -> tuple[float, int]:
    """`cohub apply` (not timed), then `cohub sync --all` measured by `run_measured`; the
    run's configuration, hub home and logs are in `<workdir>/runs/<target>-cohub-<run>/`."""
    base = workdir / "runs" / f"{target.name}-cohub-{run}"
    if base.exists():
        shutil.rmtree(base)
    config = base / "config"
    home = base / "home"  # a fresh hub state database for every run
    secret = target.password is not None
    write_config(config, export, target.url, batch_size, secret)
    env = cohub_env(home, {"COHUB_BENCH_PASSWORD": target.password} if target.password else {})
    cohub = cohub_command()
    target.reset()
    run_measured([*cohub, "--config", str(config), "apply"], env, base, base / "apply.log")
    sync = [*cohub, "--config", str(config), "sync", "--all"]
    if profile is not None:
        sync = [sys.executable, "-m", "cProfile", "-o", str(profile), *sync]
    return run_measured(sync, env, base, base / "sync.log", monitor)


def run_baseline(
    target: Target, workdir: Path, export: Path, batch_size: int, run: int
) -> tuple[float, int]:
    base = workdir / "runs" / f"{target.name}-baseline-{run}"
    base.mkdir(parents=True, exist_ok=True)
    target.reset()
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "_baseline",
        target.name,
        "--csv",
        str(export),
        "--dest",
        target.baseline_dest,
        "--batch-size",
        str(batch_size),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COHUB_")}
    return run_measured(command, env, base, base / "baseline.log")


def summarize(lines: int, timings: list[tuple[float, int]]) -> dict[str, Any]:
    seconds = [t for t, _ in timings]
    rates = [lines / t for t in seconds]
    return {
        "runs": len(timings),
        "seconds": [round(t, 3) for t in seconds],
        "records_per_second": [round(r, 1) for r in rates],
        "median_seconds": round(statistics.median(seconds), 3),
        "median_records_per_second": round(statistics.median(rates), 1),
        "peak_rss_mib": [round(p / 2**20, 1) for _, p in timings],
        "max_peak_rss_mib": round(max(p for _, p in timings) / 2**20, 1),
    }


def git_facts() -> dict[str, Any]:
    """The commit checked out and whether Cohub's code differs from it (read-only git calls)."""

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
            ).stdout.strip()
        except Exception:
            return None

    status = git("status", "--porcelain", "--", "hub", "connectors")
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "hub_or_connectors_modified": bool(status) if status is not None else None,
    }


def environment_facts(postgres_version: str | None) -> dict[str, Any]:
    import platform

    import sqlalchemy

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "postgresql": postgres_version,
        **git_facts(),
    }


def save_results(console: Any, results: dict[str, Any], output: Path) -> None:
    """Write `results` as JSON to `output` and say where, with the run's total time, and
    whether Cohub's code changed while it ran (then the figures mix versions)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    console.print(f"results: {output}  (total {results['seconds']:.0f} s)")
    if results["code_changed_during_run"]:
        console.print(
            "[yellow]hub/ or connectors/ changed during the run: the figures mix versions"
        )


def code_fingerprint() -> str:
    """A digest of Cohub's own code (hub/ and connectors/, installed editable), so a result
    says which code it measured, and a change in the middle of a benchmark is noticed."""
    digest = hashlib.sha256()
    for folder in ("hub", "connectors"):
        for path in sorted((REPO / folder).rglob("*.py")):
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def print_profile(profile: Path, console: Any) -> None:
    import io
    import pstats

    for order in ("cumulative", "tottime"):
        buffer = io.StringIO()
        pstats.Stats(str(profile), stream=buffer).strip_dirs().sort_stats(order).print_stats(25)
        text = buffer.getvalue()
        profile.with_suffix(f".{order}.txt").write_text(text)
        console.print(f"[bold]profile, by {order}[/] ({profile})")
        console.print(text[text.find("   ncalls") :], markup=False, highlight=False)


def add_common_arguments(parser: argparse.ArgumentParser, workdir: Path) -> None:
    """The options the benchmarks here share: --targets, --postgres-url, --workdir, --batch-size
    and --output."""
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help="comma-separated: sqlite,postgresql"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("COHUB_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="PostgreSQL URL (default: $COHUB_BENCH_POSTGRES_URL or %(default)s)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=workdir, help="generated files and run folders"
    )
    parser.add_argument(
        "--batch-size", type=int, default=5000, help="route batch_size and baseline batch"
    )
    parser.add_argument("--output", type=Path, help="JSON results file (default: bench/results/)")


def parse_targets(parser: argparse.ArgumentParser, value: str) -> list[str]:
    targets = [t.strip() for t in value.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown or not targets:
        parser.error(
            f"unknown target {unknown[0] if unknown else '(none)'}; known: sqlite,postgresql"
        )
    return targets


def make_console() -> Any:
    from rich.console import Console

    # Wide enough for the table when the output goes to a file or a pipe.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 150)


def prepare_export(
    workdir: Path, lines: int, seed: int, console: Any, started: float
) -> tuple[Path, dict[str, Any]]:
    """Generate (or reuse) the export of `lines` lines and say so; return its path and facts."""
    export = export_path(workdir, lines, seed)
    meta = generate_export(export, lines, seed)
    console.print(
        f"export: {export} ({meta['bytes'] / 2**20:.1f} MiB, {lines:,} lines, seed "
        f"{seed}, {meta['pay_runs']} pay runs, {EMPLOYEES:,} employees; "
        f"ready in {time.perf_counter() - started:.1f}s)"
    )
    return export, meta


def choose_targets(
    names: list[str], postgres_url: str, workdir: Path, console: Any
) -> tuple[list[Target], str | None, dict[str, str]]:
    """The targets to run, the PostgreSQL server version (None if not used or not answering)
    and the skipped targets with the reason."""
    chosen: list[Target] = []
    postgres_version = None
    skipped: dict[str, str] = {}
    for name in names:
        if name == "sqlite":
            chosen.append(SqliteTarget(workdir))
            continue
        postgres = PostgresTarget(postgres_url)
        postgres_version = postgres.answers()
        if postgres_version is None:
            reason = f"{postgres.url} does not answer ({postgres.error})"
            skipped[name] = reason
            console.print(f"[yellow]skipping PostgreSQL[/]: {reason}")
            continue
        chosen.append(postgres)
    return chosen, postgres_version, skipped


def finish_targets(chosen: list[Target], console: Any) -> None:
    for target in chosen:
        try:
            target.finish()
        except Exception as error:
            console.print(f"[yellow]could not clean up {target.name}: {error}")


def record_code_versions(results: dict[str, Any], fingerprints: list[str], console: Any) -> None:
    """Note in `results` which code was measured, and warn if it changed during the run."""
    fingerprints.append(code_fingerprint())
    results["code_fingerprints"] = sorted(set(fingerprints), key=fingerprints.index)
    results["code_changed_during_run"] = len(set(fingerprints)) > 1
    if results["code_changed_during_run"]:
        console.print(
            "[yellow]warning[/]: Cohub's code (hub/, connectors/) changed while the benchmark "
            "ran; these figures mix versions. Run it again on a quiet tree."
        )
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["environment_at_end"] = git_facts()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_baseline"]:
        return child_main(argv[1:])

    parser = argparse.ArgumentParser(
        description="Sync a generated payroll export through Cohub and through a plain-Python "
        "baseline into SQLite and PostgreSQL; print records/s and peak memory."
    )
    parser.add_argument("--lines", type=int, default=1_000_000, help="pay lines in the export")
    parser.add_argument("--seed", type=int, default=42, help="seed of the generator")
    parser.add_argument("--runs", type=int, default=3, help="runs per contender (median)")
    add_common_arguments(parser, DEFAULT_WORKDIR)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the measured runs, run one extra Cohub sync per target under cProfile "
        "(not counted) and print the top functions",
    )
    args = parser.parse_args(argv)
    targets = parse_targets(parser, args.targets)
    if args.lines < 1 or args.runs < 1 or args.batch_size < 1:
        parser.error("--lines, --runs and --batch-size must be at least 1")

    from rich.table import Table

    console = make_console()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    export, meta = prepare_export(workdir, args.lines, args.seed, console, started)
    chosen, postgres_version, skipped = choose_targets(targets, args.postgres_url, workdir, console)

    results: dict[str, Any] = {
        "benchmark": "sync_throughput",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "lines": args.lines,
        "seed": args.seed,
        "runs": args.runs,
        "batch_size": args.batch_size,
        "export": {k: meta[k] for k in ("bytes", "pay_runs", "employees", "total_cents")},
        "environment": environment_facts(postgres_version),
        "skipped": skipped,
        "targets": {},
    }
    compile_cohub()
    fingerprints = [code_fingerprint()]
    try:
        for target in chosen:
            timings: dict[str, list[tuple[float, int]]] = {BASELINE: [], COHUB: []}
            for run in range(1, args.runs + 1):
                # Interleaved, so drift (caches, a busy neighbour) hits both contenders alike.
                for contender in (BASELINE, COHUB):
                    if contender == COHUB:
                        fingerprints.append(code_fingerprint())
                        measured = run_cohub(target, workdir, export, args.batch_size, run, None)
                    else:
                        measured = run_baseline(target, workdir, export, args.batch_size, run)
                    target.check(args.lines, meta["total_cents"], contender)
                    if contender == COHUB and run == 1:
                        found = target.columns()
                        if found != set(COLUMN_NAMES):
                            raise BenchError(
                                f"{target.name}: Cohub's table columns changed; update COLUMNS "
                                f"in {Path(__file__).name}. Missing from Cohub: "
                                f"{sorted(set(COLUMN_NAMES) - found)}, new in Cohub: "
                                f"{sorted(found - set(COLUMN_NAMES))}"
                            )
                    timings[contender].append(measured)
                    seconds, peak = measured
                    console.print(
                        f"{target.name:>10} {contender:<30} run {run}/{args.runs}: "
                        f"{seconds:7.2f}s  {args.lines / seconds:>10,.0f} records/s  "
                        f"{peak / 2**20:7.1f} MiB"
                    )
            summary = {c: summarize(args.lines, t) for c, t in timings.items()}
            base, ours = summary[BASELINE], summary[COHUB]
            summary[COHUB]["ratio_records_per_second"] = round(
                ours["median_records_per_second"] / base["median_records_per_second"], 3
            )
            summary[COHUB]["ratio_peak_rss"] = round(
                ours["max_peak_rss_mib"] / base["max_peak_rss_mib"], 2
            )
            results["targets"][target.name] = summary
            if args.profile:
                profile = workdir / "runs" / f"profile-{target.name}-{args.lines}.prof"
                run_cohub(target, workdir, export, args.batch_size, 0, profile)
                target.check(args.lines, meta["total_cents"], COHUB)
                print_profile(profile, console)
    finally:
        finish_targets(chosen, console)

    table = Table(title=f"Sync throughput, {args.lines:,} lines, median of {args.runs}")
    for column in (
        "target",
        "contender",
        "lines",
        "median records/s",
        "median s",
        "peak MiB",
        "ratio cohub/baseline records/s",
        "ratio cohub/baseline peak MiB",
    ):
        table.add_column(column, justify="left" if column in ("target", "contender") else "right")
    for name, summary in results["targets"].items():
        for contender in (COHUB, BASELINE):
            s = summary[contender]
            table.add_row(
                name,
                contender,
                f"{args.lines:,}",
                f"{s['median_records_per_second']:,.0f}",
                f"{s['median_seconds']:.2f}",
                f"{s['max_peak_rss_mib']:,.1f}",
                f"{s['ratio_records_per_second']:.2f}" if contender == COHUB else "1.00",
                f"{s['ratio_peak_rss']:.2f}" if contender == COHUB else "1.00",
            )
    console.print(table)
    for name, reason in skipped.items():
        console.print(f"[yellow]{name} skipped[/]: {reason}")

    record_code_versions(results, fingerprints, console)
    output = args.output or RESULTS_DIR / (
        f"sync_throughput-{datetime.now().strftime('%Y-%m-%dT%H%M%S')}-{args.lines}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"results: {output}  (total {time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print(f"sync_throughput: FAILED: {error}", file=sys.stderr)
        sys.exit(1)
