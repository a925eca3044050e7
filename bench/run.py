"""Cohub side by side with the tools an agency would otherwise use, on the same workload.

The workload is bench/sync_throughput.py's seeded payroll export (imported, not copied), as a CSV
file and as a PostgreSQL source table (``bench_src.pay_lines``, loaded with ``psql \\copy``, not
timed). Every contender runs in its own subprocess(es), from its own virtualenv under
bench/.work/venvs/ (``bench/setup_contenders.sh`` installs them at pinned versions), ``--runs``
times, interleaved, and is checked afterwards (row count; sum of the amounts where the output has
them as numbers or strings). Contenders that are not installed or that fail are reported with the
reason, never left out.

    bash bench/setup_contenders.sh                  # once: install the contenders
    .venv/bin/python bench/run.py --lines 200000 --runs 3
    .venv/bin/python bench/run.py --quick           # CI smoke check: installed contenders only

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sync_throughput import (
    COLUMN_NAMES,
    DEFAULT_POSTGRES_URL,
    NOT_INHERITED,
    STREAM,
    TABLE,
    create_statement,
    parse_rows,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORKDIR = BENCH_DIR / ".work" / "run"
VENVS = BENCH_DIR / ".work" / "venvs"
RESULTS_DIR = BENCH_DIR / "results"
PLUGINS = BENCH_DIR / "cohub_plugins"
SRC_SCHEMA = "bench_src"
SRC_TABLE = "pay_lines"
REF_TABLE = "bench_copy_ref"
#: The export's columns in a typed table: the psql \copy reference and the PostgreSQL source.
RAW_COLUMNS = (
    "pay_run_id text, pay_date date, period_start date, period_end date, emp_id text, "
    "emp_name text, line_no bigint, earn_code text, type text, hours numeric(19,4), "
    "rate numeric(19,4), amount numeric(19,4), account text, last_modified timestamptz"
)
#: Environment of the tools that might phone home: no telemetry, no downloads.
QUIET_ENV = {"DO_NOT_TRACK": "1", "AIRBYTE_OFFLINE_MODE": "true", "MELTANO_DISABLE_TRACKING": "1"}


# -- measuring a process tree ----------------------------------------------------------------


def _tree_memory(roots: list[int]) -> list[tuple[int, int]]:
    """(PSS, RSS) bytes of each root process with all its descendants, now (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[stat.rfind(b")") + 2 :].split()[1])
    sums = []
    for root in roots:
        members = {root}
        grew = True
        while grew:
            grew = False
            for pid, ppid in parents.items():
                if ppid in members and pid not in members:
                    members.add(pid)
                    grew = True
        pss = rss = 0
        for pid in members:
            pid_pss, pid_rss = _process_memory(pid)
            pss += pid_pss
            rss += pid_rss
        sums.append((pss, rss))
    return sums


def _process_memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) bytes of one process; (0, 0) if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            fields = dict(line.split(b":", 1) for line in handle.read().splitlines()[1:])
    except (OSError, ValueError):
        return 0, 0
    kib = {name: int(fields.get(name, b"0 kB").split()[0]) * 1024 for name in (b"Pss", b"Rss")}
    return kib[b"Pss"], kib[b"Rss"]


class TreeSampler:
    """Samples, every `interval` seconds in a thread, the memory of each started process with
    its descendants: `peak` is the largest sum over all of them at one moment, `peaks` each
    one's; `rss_peak` the same sum in RSS.

    PSS (proportional set size: a page shared by N processes counts 1/N in each), so processes
    forked from one another (Cohub's parts of a read share its loaded code and modules until they
    write to them) are not counted once per process, while separate programs (a Singer tap and
    its target) add up as they should. The RSS sum, which counts every shared page once per
    process, is kept beside it. Sampling, not ``ru_maxrss``: on Linux a child's ru_maxrss carries
    over the high-water mark of the memory it was forked from (the benchmark's own ~50 MiB
    Python), so a small process such as psql or a plain script would read as the parent's size.
    A spike shorter than the interval can be missed.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.roots: list[int] = []
        self.peak = 0
        self.rss_peak = 0
        self.peaks: list[int] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, pid: int) -> None:
        self.roots.append(pid)
        self.peaks.append(0)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        # The first sample after one interval: right after the spawn a child can still be the
        # (v)forked image of this process, not yet the program it execs.
        while not self._stop.wait(self.interval):
            roots = list(self.roots)
            sums = _tree_memory(roots)
            self.samples += 1
            self.peak = max(self.peak, sum(pss for pss, _ in sums))
            self.rss_peak = max(self.rss_peak, sum(rss for _, rss in sums))
            for index, (pss, _) in enumerate(sums):
                self.peaks[index] = max(self.peaks[index], pss)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class RunFailed(Exception):
    pass


@dataclass
class Measured:
    seconds: float
    #: The max over the run of the summed PSS of every process of the contender (sampled).
    peak_bytes: int
    #: The same in RSS (shared pages counted once per process).
    rss_peak_bytes: int
    #: The sampled peak of each process started (tap, target; or the one process), with its
    #: descendants (PyAirbyte's connector subprocess).
    process_peaks: list[int]
    #: ru_maxrss of each process started, from os.wait4 (includes the parent's image at spawn).
    ru_maxrss: list[int]
    samples: int


def run_pipeline(commands: list[list[str]], env: dict[str, str], cwd: Path, logs: Path) -> Measured:
    """Run one command, or several piped stdout → stdin as Singer does; measure all of them."""
    logs.mkdir(parents=True, exist_ok=True)
    sampler = TreeSampler()
    processes: list[subprocess.Popen[bytes]] = []
    files = []
    started = time.perf_counter()
    try:
        previous = None
        for index, command in enumerate(commands):
            last = index == len(commands) - 1
            err = (logs / f"{index}-{Path(command[0]).name}.stderr").open("wb")
            out = (logs / f"{index}-{Path(command[0]).name}.stdout").open("wb") if last else None
            files += [f for f in (err, out) if f is not None]
            process = subprocess.Popen(
                command,
                env=env,
                cwd=cwd,
                stdin=previous.stdout if previous is not None else subprocess.DEVNULL,
                stdout=out if last else subprocess.PIPE,
                stderr=err,
            )
            if previous is not None and previous.stdout is not None:
                previous.stdout.close()  # the tap sees SIGPIPE if the target dies
            processes.append(process)
            sampler.start(process.pid)
            previous = process
        peaks = []
        codes = []
        for process in processes:
            _, status, usage = os.wait4(process.pid, 0)
            codes.append(os.waitstatus_to_exitcode(status))
            process.returncode = codes[-1]
            peaks.append(usage.ru_maxrss * 1024)
        elapsed = time.perf_counter() - started
    finally:
        sampler.stop()
        for process in processes:  # interrupted: leave no tap or target behind
            if process.returncode is None and process.poll() is None:
                process.kill()
                process.wait()
        for handle in files:
            handle.close()
    if any(codes):
        tails = []
        for log in sorted(logs.glob("*.stderr")):
            tails.append(f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}")
        raise RunFailed(
            f"exit codes {codes} of {[Path(c[0]).name for c in commands]}\n" + "\n".join(tails)
        )
    return Measured(elapsed, sampler.peak, sampler.rss_peak, sampler.peaks, peaks, sampler.samples)


# -- PostgreSQL helpers --------------------------------------------------------------------


@dataclass
class Postgres:
    url: str

    def run(self, *statements: str) -> list[Any]:
        import asyncpg

        async def go() -> list[Any]:
            conn = await asyncpg.connect(self.url, timeout=10)
            try:
                return [await conn.fetch(s) for s in statements]
            finally:
                await conn.close()

        return asyncio.run(go())

    def parts(self) -> dict[str, Any]:
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        return {
            "host": url.host or "127.0.0.1",
            "port": url.port or 5432,
            "user": url.username or "postgres",
            "password": url.password or "",
            "database": url.database or "postgres",
        }

    def psql(self, command: str) -> list[str]:
        return ["psql", self.url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command]

    def count_and_cents(self, schema: str, table: str) -> tuple[int, int | None]:
        rows = self.run(
            "SELECT column_name FROM information_schema.columns "
            f"WHERE table_schema = '{schema}' AND table_name = '{table}'"
        )[0]
        if not rows:
            raise RunFailed(f"no table {schema}.{table} after the run")
        amount = next((r[0] for r in rows if r[0].lower() == "amount"), None)
        total = f', SUM("{amount}"::numeric)' if amount else ""
        row = self.run(f'SELECT COUNT(*){total} FROM "{schema}"."{table}"')[0][0]
        cents = int(row[1] * 100) if amount and row[1] is not None else None
        return row[0], cents

    def find_table(self, schema: str, like: str) -> str:
        rows = self.run(
            "SELECT table_name FROM information_schema.tables "
            f"WHERE table_schema = '{schema}' AND table_name LIKE '{like}'"
        )[0]
        if len(rows) != 1:
            raise RunFailed(f"expected one table like {like!r} in {schema}, found {rows}")
        return rows[0][0]


def load_source_table(pg: Postgres, export: Path) -> None:
    """The export as a PostgreSQL table `bench_src.pay_lines` (not timed)."""
    pg.run(
        f"DROP SCHEMA IF EXISTS {SRC_SCHEMA} CASCADE",
        f"CREATE SCHEMA {SRC_SCHEMA}",
        f"CREATE TABLE {SRC_SCHEMA}.{SRC_TABLE} ({RAW_COLUMNS}, "
        "PRIMARY KEY (pay_run_id, emp_id, line_no))",
    )
    subprocess.run(
        pg.psql(f"\\copy {SRC_SCHEMA}.{SRC_TABLE} FROM '{export}' WITH (FORMAT csv, HEADER true)"),
        check=True,
    )
    pg.run(f"ANALYZE {SRC_SCHEMA}.{SRC_TABLE}")


# -- the contenders --------------------------------------------------------------------------


@dataclass
class Context:
    pg: Postgres
    export: Path
    lines: int
    total_cents: int
    batch_size: int
    workdir: Path
    parallel_reads: int


@dataclass
class Contender:
    key: str
    label: str
    destination: str  # "postgresql" or "jsonl"
    source: str  # "csv" or "postgresql"
    venvs: tuple[str, ...]
    #: (ctx, run folder) → commands (piped if several) and env; resets the destination first.
    prepare: Callable[[Context, Path], tuple[list[list[str]], dict[str, str]]]
    #: (ctx, run folder) → (rows, cents or None)
    check: Callable[[Context, Path], tuple[int, int | None]]
    memory_note: str = "one process"
    results: list[Measured] = field(default_factory=list)


def venv_bin(venv: str, name: str) -> str:
    return str(VENVS / venv / "bin" / name)


def base_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COHUB_", "VIRTUAL_ENV")) and k not in NOT_INHERITED
    }
    env.update(QUIET_ENV)
    return env


def jsonl_check(folder: Path) -> tuple[int, int | None]:
    """Lines in every *.jsonl under `folder`, and the sum of their amounts in cents."""
    import msgspec

    decode = msgspec.json.decode
    count = 0
    cents = 0
    for path in sorted(folder.rglob("*.jsonl")):
        with path.open("rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                value = decode(line)
                record = value.get("record", value) if isinstance(value, dict) else {}
                amount = record.get("amount", record.get("Amount"))
                count += 1
                cents += int(Decimal(str(amount)) * 100)
    return count, cents


# Cohub


def cohub(
    jsonl: bool, serial: bool
) -> Callable[[Context, Path], tuple[list[list[str]], dict[str, str]]]:
    """Cohub into PostgreSQL or JSON lines, reading the export in `--parallel-reads` parts or
    serially."""

    def prepare(ctx: Context, base: Path) -> tuple[list[list[str]], dict[str, str]]:
        return cohub_config(ctx, base, jsonl, 1 if serial else ctx.parallel_reads)

    return prepare


def cohub_config(
    ctx: Context, base: Path, jsonl: bool, parallel_reads: int
) -> tuple[list[list[str]], dict[str, str]]:
    """sync_throughput's configuration (flat_file → sql_table), or with the bench-only
    jsonl_file destination; `cohub apply` here (not timed); the timed command is the sync."""
    from sync_throughput import cohub_command, cohub_env, write_config

    config = base / "config"
    write_config(
        config,
        ctx.export,
        ctx.pg.url,
        ctx.batch_size,
        secret=False,
        parallel_reads=parallel_reads,
    )
    if jsonl:
        out = base / "out"
        out.mkdir()
        cooperative = config / "cooperative.toml"
        text = cooperative.read_text()
        line = next(x for x in text.splitlines() if x.startswith("paths ="))
        cooperative.write_text(text.replace(line, f"paths = [{json.dumps(str(PLUGINS))}]"))
        (config / "connections" / "bench-db.toml").write_text(
            f'connector = "jsonl_file"\n\n[options]\nfolder = {json.dumps(str(out))}\n'
        )
    else:
        ctx.pg.run(f"DROP TABLE IF EXISTS {TABLE}", "CHECKPOINT")
    env = cohub_env(base / "home", QUIET_ENV)
    cohub = cohub_command()
    subprocess.run(
        [*cohub, "--config", str(config), "apply"],
        env=env,
        cwd=base,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return [[*cohub, "--config", str(config), "sync", "--all"]], env


# plain Python


def plain_command(ctx: Context, mode: str, dest: str) -> list[list[str]]:
    return [
        [
            venv_bin("plain", "python"),
            str(Path(__file__).resolve()),
            "_plain",
            mode,
            str(ctx.export),
            dest,
            str(ctx.batch_size),
        ]
    ]


def plain_pg(ctx: Context, base: Path) -> tuple[list[list[str]], dict[str, str]]:
    ctx.pg.run(f"DROP TABLE IF EXISTS {TABLE}", "CHECKPOINT")
    return plain_command(ctx, "copy", ctx.pg.url), base_env()


def plain_jsonl(ctx: Context, base: Path) -> tuple[list[list[str]], dict[str, str]]:
    (base / "out").mkdir()
    return plain_command(ctx, "jsonl", str(base / "out" / f"{STREAM}.jsonl")), base_env()


async def plain_copy_main(csv_path: Path, url: str, batch_size: int) -> int:
    """csv reader → the same typed table as Cohub's, asyncpg binary COPY per batch."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(create_statement("postgresql"))
        count = 0
        for batch in parse_rows(csv_path, batch_size):
            await conn.copy_records_to_table(TABLE, records=batch, columns=COLUMN_NAMES)
            count += len(batch)
    finally:
        await conn.close()
    return count


def plain_jsonl_main(csv_path: Path, out: Path, batch_size: int) -> int:
    """csv reader → typed values → orjson lines (decimals as strings)."""
    import orjson

    dumps = orjson.dumps
    names = COLUMN_NAMES
    count = 0
    with out.open("wb") as handle:
        for batch in parse_rows(csv_path, batch_size):
            handle.write(
                b"".join(
                    dumps(dict(zip(names, row, strict=True)), default=str) + b"\n" for row in batch
                )
            )
            count += len(batch)
    return count


def cohub_table_check(ctx: Context, base: Path) -> tuple[int, int | None]:
    return ctx.pg.count_and_cents("public", TABLE)


# psql \copy


def psql_copy(ctx: Context, base: Path) -> tuple[list[list[str]], dict[str, str]]:
    ctx.pg.run(
        f"DROP TABLE IF EXISTS {REF_TABLE}",
        f"CREATE TABLE {REF_TABLE} ({RAW_COLUMNS})",
        "CHECKPOINT",
    )
    command = f"\\copy {REF_TABLE} FROM '{ctx.export}' WITH (FORMAT csv, HEADER true)"
    return [ctx.pg.psql(command)], base_env()


# Singer


SINGER_SCHEMA = "singer_bench"


def singer_target_pg_config(ctx: Context, base: Path, use_copy: bool) -> Path:
    ctx.pg.run(f"DROP SCHEMA IF EXISTS {SINGER_SCHEMA} CASCADE", "CHECKPOINT")
    path = base / "target.json"
    config = {**ctx.pg.parts(), "default_target_schema": SINGER_SCHEMA, "use_copy": use_copy}
    path.write_text(json.dumps(config))
    return path


def tap_spreadsheets(ctx: Context, base: Path) -> list[str]:
    path = base / "tap.json"
    files = {
        "path": str(ctx.export),
        "format": "csv",
        "table_name": STREAM,
        "primary_keys": ["PayRunID", "EmpID", "LineNo"],
    }
    path.write_text(json.dumps({"files": [files]}))
    return [venv_bin("singer-tap-spreadsheets", "tap-spreadsheets"), "--config", str(path)]


def singer_csv_pg(
    use_copy: bool,
) -> Callable[[Context, Path], tuple[list[list[str]], dict[str, str]]]:
    def prepare(ctx: Context, base: Path) -> tuple[list[list[str]], dict[str, str]]:
        target = singer_target_pg_config(ctx, base, use_copy)
        return [
            tap_spreadsheets(ctx, base),
            [venv_bin("singer-target-postgres", "target-postgres"), "--config", str(target)],
        ], base_env()

    return prepare


def singer_pg_pg(ctx: Context, base: Path) -> tuple[list[list[str]], dict[str, str]]:
    target = singer_target_pg_config(ctx, base, use_copy=False)
    tap = base / "tap.json"
    tap.write_text(json.dumps({**ctx.pg.parts(), "filter_schemas": [SRC_SCHEMA]}))
    # Discovery and selection, as `meltano select` would do (not timed).
    executable = venv_bin("singer-tap-postgres", "tap-postgres")
    discovered = subprocess.run(
        [executable, "--config", str(tap), "--discover"],
        check=True,
        capture_output=True,
        env=base_env(),
    )
    catalog = json.loads(discovered.stdout)
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = True
    (base / "catalog.json").write_text(json.dumps(catalog))
    return [
        [executable, "--config", str(tap), "--catalog", str(base / "catalog.json")],
        [venv_bin("singer-target-postgres", "target-postgres"), "--config", str(target)],
    ], base_env()


def singer_table_check(ctx: Context, base: Path) -> tuple[int, int | None]:
    return ctx.pg.count_and_cents(SINGER_SCHEMA, ctx.pg.find_table(SINGER_SCHEMA, "%pay_lines%"))


def singer_csv_jsonl(ctx: Context, base: Path) -> tuple[list[list[str]], dict[str, str]]:
    out = base / "out"
    out.mkdir()
    target = base / "target.json"
    target.write_text(json.dumps({"destination_path": str(out), "do_timestamp_file": False}))
    return [
        tap_spreadsheets(ctx, base),
        [venv_bin("singer-target-jsonl", "target-jsonl"), "--config", str(target)],
    ], base_env()


def out_check(ctx: Context, base: Path) -> tuple[int, int | None]:
    return jsonl_check(base / "out")


# PyAirbyte

AIRBYTE_SCHEMA = "airbyte_bench"


def airbyte_pg(ctx: Context, base: Path) -> tuple[list[list[str]], dict[str, str]]:
    ctx.pg.run(f"DROP SCHEMA IF EXISTS {AIRBYTE_SCHEMA} CASCADE", "CHECKPOINT")
    env = base_env()
    env["HOME"] = str(base / "home")  # PyAirbyte keeps files under ~/.airbyte and ./.cache
    return [
        [
            venv_bin("pyairbyte", "python"),
            str(Path(__file__).resolve()),
            "_airbyte",
            str(ctx.export),
            ctx.pg.url,
            venv_bin("airbyte-source-file", "source-file"),
        ]
    ], env


def airbyte_main(csv_path: str, url: str, executable: str) -> int:
    import airbyte as ab
    from airbyte.caches import PostgresCache

    parts = Postgres(url).parts()
    source = ab.get_source(
        "source-file",
        config={
            "dataset_name": STREAM,
            "format": "csv",
            "url": csv_path,
            "provider": {"storage": "local"},
        },
        local_executable=executable,
    )
    source.select_all_streams()
    cache = PostgresCache(
        host=parts["host"],
        port=parts["port"],
        username=parts["user"],
        password=parts["password"],
        database=parts["database"],
        schema_name=AIRBYTE_SCHEMA,
    )
    result = source.read(cache=cache, force_full_refresh=True)
    return result.processed_records


def airbyte_check(ctx: Context, base: Path) -> tuple[int, int | None]:
    return ctx.pg.count_and_cents(AIRBYTE_SCHEMA, STREAM)


PIPE_NOTE = "tap + target (sum of the two processes' PSS, sampled)"
CONTENDERS = (
    Contender(
        "cohub_pg",
        "Cohub flat_file → sql_table, parallel reads",
        "postgresql",
        "csv",
        (),
        cohub(jsonl=False, serial=False),
        cohub_table_check,
        "the run's process + its forked parts (PSS)",
    ),
    Contender(
        "cohub_pg_serial",
        "Cohub flat_file → sql_table, serial",
        "postgresql",
        "csv",
        (),
        cohub(jsonl=False, serial=True),
        cohub_table_check,
    ),
    Contender(
        "singer_csv_pg",
        "Singer tap-spreadsheets | target-postgres",
        "postgresql",
        "csv",
        ("singer-tap-spreadsheets", "singer-target-postgres"),
        singer_csv_pg(use_copy=False),
        singer_table_check,
        PIPE_NOTE,
    ),
    Contender(
        "singer_csv_pg_copy",
        "Singer tap-spreadsheets | target-postgres use_copy",
        "postgresql",
        "csv",
        ("singer-tap-spreadsheets", "singer-target-postgres"),
        singer_csv_pg(use_copy=True),
        singer_table_check,
        PIPE_NOTE,
    ),
    Contender(
        "singer_pg_pg",
        "Singer tap-postgres | target-postgres (PG source)",
        "postgresql",
        "postgresql",
        ("singer-tap-postgres", "singer-target-postgres"),
        singer_pg_pg,
        singer_table_check,
        PIPE_NOTE,
    ),
    Contender(
        "airbyte_pg",
        "PyAirbyte source-file → PostgresCache",
        "postgresql",
        "csv",
        ("pyairbyte", "airbyte-source-file"),
        airbyte_pg,
        airbyte_check,
        "PyAirbyte + its source-file subprocess (sum, sampled)",
    ),
    Contender(
        "plain_pg",
        "plain Python csv → asyncpg copy_records_to_table",
        "postgresql",
        "csv",
        ("plain",),
        plain_pg,
        cohub_table_check,
    ),
    Contender(
        "psql_copy",
        "psql \\copy (C reference, untyped load)",
        "postgresql",
        "csv",
        (),
        psql_copy,
        lambda ctx, base: ctx.pg.count_and_cents("public", REF_TABLE),
    ),
    Contender(
        "cohub_jsonl",
        "Cohub flat_file → jsonl_file, parallel reads",
        "jsonl",
        "csv",
        (),
        cohub(jsonl=True, serial=False),
        out_check,
        "the run's process + its forked parts (PSS)",
    ),
    Contender(
        "cohub_jsonl_serial",
        "Cohub flat_file → jsonl_file, serial",
        "jsonl",
        "csv",
        (),
        cohub(jsonl=True, serial=True),
        out_check,
    ),
    Contender(
        "singer_csv_jsonl",
        "Singer tap-spreadsheets | target-jsonl",
        "jsonl",
        "csv",
        ("singer-tap-spreadsheets", "singer-target-jsonl"),
        singer_csv_jsonl,
        out_check,
        PIPE_NOTE,
    ),
    Contender(
        "plain_jsonl",
        "plain Python csv → orjson lines",
        "jsonl",
        "csv",
        ("plain",),
        plain_jsonl,
        out_check,
    ),
)
#: Each destination's Cohub rows the ratios are taken from: (parallel reads, serial).
COHUB_OF = {
    "postgresql": ("cohub_pg", "cohub_pg_serial"),
    "jsonl": ("cohub_jsonl", "cohub_jsonl_serial"),
}


def installed(contender: Contender) -> str | None:
    """None if every venv of `contender` is installed, else why not."""
    if contender.key == "psql_copy" and shutil.which("psql") is None:
        return "psql is not on PATH (apt-get install postgresql-client)"
    for venv in contender.venvs:
        if not (VENVS / venv / "pins.txt").is_file():
            log = VENVS / f"{venv}.install.log"
            if log.is_file():
                errors = [
                    x for x in log.read_text(errors="replace").splitlines() if x.startswith("ERROR")
                ]
                return f"{venv}: install failed: {' | '.join(errors[-2:]) or 'see ' + str(log)}"
            return f"{venv}: not installed (run bash bench/setup_contenders.sh)"
    return None


def versions(contender: Contender) -> dict[str, str]:
    found = {}
    for venv in contender.venvs:
        pins = VENVS / venv / "pins.txt"
        if pins.is_file():
            found[venv] = pins.read_text().strip()
            freeze = (VENVS / venv / "freeze.txt").read_text().splitlines()
            sdk = [x for x in freeze if x.startswith(("singer-sdk==", "airbyte-cdk=="))]
            if sdk:
                found[venv] += " (" + ", ".join(sdk) + ")"
    if contender.key.startswith("cohub"):
        found["cohub"] = "this repository, .venv"
    return found


# -- the benchmark ---------------------------------------------------------------------------


def child_main(argv: list[str]) -> int:
    if argv[0] == "_plain":
        mode, csv_path, dest, batch = argv[1:5]
        if mode == "copy":
            count = asyncio.run(plain_copy_main(Path(csv_path), dest, int(batch)))
        else:
            count = plain_jsonl_main(Path(csv_path), Path(dest), int(batch))
    else:
        count = airbyte_main(*argv[1:4])
    print(json.dumps({"rows": count}))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["_plain"], ["_airbyte"]):
        return child_main(argv)

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lines", default="200000", help="comma-separated sizes, e.g. 200000,1000000"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per contender and size (median)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument(
        "--parallel-reads",
        type=int,
        default=os.cpu_count() or 1,
        help="Cohub's route parallel_reads: parts of the export read at once (default: the CPUs)",
    )
    parser.add_argument("--only", help="comma-separated contender keys (default: all)")
    parser.add_argument("--setup", action="store_true", help="run bench/setup_contenders.sh first")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: 10,000 lines, 1 run, installed contenders only, never installs",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("COHUB_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.lines, args.runs, args.setup = "10000", 1, False
    sizes = [int(x) for x in args.lines.split(",") if x.strip()]

    from rich.console import Console
    from rich.table import Table
    from sync_throughput import (
        code_fingerprint,
        compile_cohub,
        environment_facts,
        export_path,
        generate_export,
    )

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 170)
    # Stopped with SIGTERM: unwind, so run_pipeline's cleanup kills the running contender.
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Two runs at once would drop each other's schemas and skew each other's figures.
    import fcntl

    WORKDIR.mkdir(parents=True, exist_ok=True)
    lock = (WORKDIR / "run.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        console.print("[red]another bench/run.py is running (bench/.work/run/run.lock)")
        return 1
    started = time.perf_counter()
    if args.setup:
        subprocess.run(["bash", str(BENCH_DIR / "setup_contenders.sh")], check=False)

    pg = Postgres(args.postgres_url)
    try:
        pg_version = pg.run("SHOW server_version")[0][0][0]
    except Exception as error:
        console.print(f"[red]PostgreSQL at {args.postgres_url} does not answer: {error}")
        return 1
    chosen = [c for c in CONTENDERS if not args.only or c.key in args.only.split(",")]
    status = {c.key: installed(c) for c in chosen}
    compile_cohub()
    results: dict[str, Any] = {
        "benchmark": "run",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "runs": args.runs,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "parallel_reads": args.parallel_reads,
        "environment": environment_facts(pg_version),
        "code_fingerprint": code_fingerprint(),
        "memory": "peak_mib is the max over the run of the summed PSS (smaps_rollup) of every "
        "process of the contender with its descendants, sampled every 0.1 s from /proc; "
        "peak_rss_mib the same summed RSS, which counts pages shared by forked processes once "
        "per process; process_peaks_mib is "
        "each started process's own sampled peak (tap, target). ru_maxrss_mib (os.wait4) is "
        "kept for reference only: on Linux it includes the image of the benchmark process the "
        "child was forked from, about 50 MiB",
        "sizes": {},
    }
    failed = False
    for lines in sizes:
        workdir = WORKDIR
        export = export_path(BENCH_DIR / ".work" / "sync_throughput", lines, args.seed)
        meta = generate_export(export, lines, args.seed)
        console.print(f"export: {export} ({lines:,} lines)")
        if any(c.source == "postgresql" and status[c.key] is None for c in chosen):
            load_source_table(pg, export)
        ctx = Context(
            pg, export, lines, meta["total_cents"], args.batch_size, workdir, args.parallel_reads
        )
        errors: dict[str, str] = {}
        for contender in chosen:
            contender.results = []
        for run in range(1, args.runs + 1):
            for contender in chosen:
                if status[contender.key] is not None or contender.key in errors:
                    continue
                base = workdir / f"{lines}" / f"{contender.key}-{run}"
                if base.exists():
                    shutil.rmtree(base)
                base.mkdir(parents=True)
                try:
                    commands, env = contender.prepare(ctx, base)
                    measured = run_pipeline(commands, env, base, base / "logs")
                    rows, cents = contender.check(ctx, base)
                    if rows != lines:
                        raise RunFailed(f"destination holds {rows:,} records, the export {lines:,}")
                    if cents is not None and cents != ctx.total_cents:
                        raise RunFailed(
                            f"amounts add up to {cents} cents, the export's to {ctx.total_cents}"
                        )
                except (RunFailed, subprocess.CalledProcessError, OSError) as error:
                    errors[contender.key] = f"run {run}: {error}"
                    console.print(f"[red]{contender.key} FAILED[/]: {str(error)[:2000]}")
                    failed = True
                    continue
                contender.results.append(measured)
                console.print(
                    f"{lines:>9,} {contender.key:<20} run {run}/{args.runs}: {measured.seconds:7.2f}s "
                    f"{lines / measured.seconds:>10,.0f} rec/s {measured.peak_bytes / 2**20:7.1f} MiB"
                )
        summary: dict[str, Any] = {}
        for contender in chosen:
            entry: dict[str, Any] = {
                "label": contender.label,
                "destination": contender.destination,
                "source": contender.source,
                "versions": versions(contender),
                "memory_of": contender.memory_note,
            }
            if status[contender.key] is not None:
                entry.update(status="not installed", reason=status[contender.key])
            elif contender.key in errors:
                entry.update(status="failed", reason=errors[contender.key][:4000])
            else:
                seconds = [m.seconds for m in contender.results]
                entry.update(
                    status="ok",
                    seconds=[round(s, 3) for s in seconds],
                    median_seconds=round(statistics.median(seconds), 3),
                    median_records_per_second=round(lines / statistics.median(seconds), 1),
                    # None: the run was over before the first sample (psql on small files).
                    peak_mib=round(max(m.peak_bytes for m in contender.results) / 2**20, 1) or None,
                    peak_rss_mib=round(max(m.rss_peak_bytes for m in contender.results) / 2**20, 1)
                    or None,
                    process_peaks_mib=[
                        [round(p / 2**20, 1) for p in m.process_peaks] for m in contender.results
                    ],
                    ru_maxrss_mib=[
                        [round(p / 2**20, 1) for p in m.ru_maxrss] for m in contender.results
                    ],
                    samples=[m.samples for m in contender.results],
                )
            summary[contender.key] = entry
        for entry in summary.values():
            for prefix, key in zip(
                ("cohub", "serial"), COHUB_OF[entry["destination"]], strict=True
            ):
                cohub = summary.get(key, {})
                if entry.get("status") != "ok" or cohub.get("status") != "ok":
                    continue
                entry[f"{prefix}_speed_ratio"] = round(
                    cohub["median_records_per_second"] / entry["median_records_per_second"], 3
                )
                if cohub["peak_mib"] and entry["peak_mib"]:
                    entry[f"{prefix}_memory_ratio"] = round(
                        cohub["peak_mib"] / entry["peak_mib"], 3
                    )
        results["sizes"][str(lines)] = summary

        table = Table(
            title=f"{lines:,} lines, median of {args.runs} run(s); ratio = Cohub / contender"
        )
        for column in (
            "dest",
            "contender",
            "status",
            "records/s",
            "s",
            "peak MiB",
            "RSS sum MiB",
            "per process MiB",
            "cohub speed ratio",
            "cohub memory ratio",
            "serial speed ratio",
            "serial memory ratio",
        ):
            table.add_column(
                column, justify="left" if column in ("dest", "contender", "status") else "right"
            )
        for entry in summary.values():
            if entry["status"] != "ok":
                table.add_row(
                    entry["destination"],
                    entry["label"],
                    f"[red]{entry['status']}[/]: {entry['reason'][:120]}",
                )
                continue
            table.add_row(
                entry["destination"],
                entry["label"],
                "ok",
                f"{entry['median_records_per_second']:,.0f}",
                f"{entry['median_seconds']:.2f}",
                f"{entry['peak_mib']:,.1f}" if entry["peak_mib"] else "not sampled",
                f"{entry['peak_rss_mib']:,.1f}" if entry["peak_rss_mib"] else "-",
                " + ".join(f"{p:.0f}" for p in entry["process_peaks_mib"][0]),
                *(
                    f"{entry[key]:.2f}" if key in entry else "-"
                    for key in (
                        "cohub_speed_ratio",
                        "cohub_memory_ratio",
                        "serial_speed_ratio",
                        "serial_memory_ratio",
                    )
                ),
            )
        console.print(table)

    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["code_changed_during_run"] = code_fingerprint() != results["code_fingerprint"]
    output = args.output or RESULTS_DIR / f"run-{datetime.now().strftime('%Y-%m-%dT%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    with contextlib.suppress(Exception):
        pg.run(
            f"DROP TABLE IF EXISTS {TABLE}",
            f"DROP TABLE IF EXISTS {REF_TABLE}",
            f"DROP SCHEMA IF EXISTS {SINGER_SCHEMA} CASCADE",
            f"DROP SCHEMA IF EXISTS {AIRBYTE_SCHEMA} CASCADE",
        )
    console.print(f"results: {output}  (total {time.perf_counter() - started:.0f}s)")
    if failed:
        console.print("[red]at least one installed contender failed or delivered wrong data")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
