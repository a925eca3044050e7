"""Partitioned reads (`parallel_reads`): a file read in parts by forked processes arrives, is
dead-lettered and is billed exactly as a serial read, and a part that fails, is killed or is
stopped resumes from its own checkpoints without duplicating or double billing anything."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import signal
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from connectors.flat_file import FlatFileSource, split_rows
from hub.apply import apply
from hub.config import load_config
from hub.engine.partitions import PARTS
from hub.plugins import PluginHost
from hub.sdk import ConnectionContext
from hub.store.database import create_engine
from hub.store.tables import dead_letters, runs, stream_states, usage_events
from tests.test_crash_safety import ROUTE, cohub, start_sync, worker_environment
from tests.test_end_to_end import destination_rows, usage_total
from tests.test_sync_modes import EASTVIEW, set_route, sync_eastview

HEADER = (
    "PayRunID,PayDate,PeriodStart,PeriodEnd,EmpID,EmpName,LineNo,EarnCode,Type,Hours,Rate,"
    "Amount,Account,LastModified"
)


def write_export(config_dir: Path, rows: int) -> list[str]:
    """Eastview's export replaced by `rows` pay lines: row 7 has an amount that is not one, row
    12 a name with a line break inside its quotes. Returns the record keys that should arrive."""
    lines, keys = [HEADER], []
    for number in range(1, rows + 1):
        employee = f"E{2000 + number // 4}"
        name = '"Ortiz\nJr., Ana"' if number == 12 else f'"Doe, Sam {number}"'
        amount = "ten dollars" if number == 7 else f"{number}.25"
        lines.append(
            f"EA-2026-20,2026-10-15,2026-10-01,2026-10-14,{employee},{name},{number},SAL,"
            f"earning,,,{amount},A2110.150-00-0000,2026-10-15T18:30:00Z"
        )
        if number != 7:
            keys.append(f"EA-2026-20|{employee}|{number}")
    (config_dir / EASTVIEW).write_text("\r\n".join(lines) + "\r\n", encoding="utf-8-sig")
    return sorted(keys)


def use_part_faults(runtime, config_dir: Path, orders: str) -> Path:
    """The `part_faults` test plugin in a site plugin folder, with its orders."""
    plugins = config_dir.parent / "plugins"
    plugins.mkdir(exist_ok=True)
    shutil.copy(Path(__file__).parent / "plugins" / "part_faults.py", plugins)
    (plugins / "part_faults.on").write_text(orders)
    runtime.plugins = PluginHost([plugins])
    return plugins / "part_faults.on"


async def stored_state(runtime) -> dict:
    async with runtime.engine.connect() as conn:
        return await conn.scalar(
            select(stream_states.c.state).where(stream_states.c.route == "eastview-payroll")
        )


async def open_dead_letters(runtime) -> list[tuple[str, str]]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            select(dead_letters.c.position, dead_letters.c.reason).order_by(dead_letters.c.id)
        )
        return [tuple(row) for row in rows]


async def test_a_partitioned_read_delivers_dead_letters_and_bills_like_a_serial_one(
    runtime, config_dir, database_url
):
    keys = write_export(config_dir, 120)
    set_route(config_dir, batch_size=10, parallel_reads=3)
    await apply(runtime.engine, load_config(config_dir))

    summary = await sync_eastview(runtime)

    assert summary.status == "succeeded", summary.error
    counts = summary.counts
    assert (counts.read, counts.written, counts.rejected) == (120, 119, 1)
    rows = await destination_rows(database_url)
    assert sorted(r["record_key"] for r in rows) == keys
    assert next(r for r in rows if r["line_number"] == 12)["employee_name"] == "Ortiz\nJr., Ana"
    assert sum(r["amount"] for r in rows) == sum(Decimal(f"{n}.25") for n in range(1, 121)) - (
        Decimal("7.25")
    )
    [(position, reason)] = await open_dead_letters(runtime)
    assert position == "payroll_2026-10.csv:7"
    assert "ten dollars" in reason
    assert await usage_total(runtime) == {"eastview": Decimal(119)}
    state = await stored_state(runtime)
    assert PARTS not in state
    assert state["files"]["payroll_2026-10.csv"]["rows"] == 120
    assert state["files"]["payroll_2026-10.csv"]["complete"] is True


async def test_the_run_after_a_partitioned_read_reads_nothing(runtime, config_dir):
    write_export(config_dir, 60)
    set_route(config_dir, batch_size=10, parallel_reads=2)
    await apply(runtime.engine, load_config(config_dir))
    await sync_eastview(runtime)

    again = await sync_eastview(runtime)

    assert (again.status, again.counts.read) == ("succeeded", 0)
    assert await usage_total(runtime) == {"eastview": Decimal(59)}


async def test_a_failed_part_fails_the_run_and_the_next_run_resumes_every_part_once(
    runtime, config_dir, database_url
):
    keys = write_export(config_dir, 90)
    set_route(config_dir, batch_size=10, parallel_reads=3, transforms=["part_faults"])
    orders = use_part_faults(runtime, config_dir, "fail 75")  # in the third part
    await apply(runtime.engine, load_config(config_dir))

    failed = await sync_eastview(runtime)
    state = await stored_state(runtime)
    orders.unlink()
    resumed = await sync_eastview(runtime)

    assert failed.status == "failed"
    assert "transform part_faults" in failed.error
    assert "refused line 75" in failed.error
    assert [part["done"] for part in state[PARTS]].count(False) >= 1
    assert resumed.status == "succeeded", resumed.error
    assert failed.counts.read + resumed.counts.read == 90
    assert sorted(r["record_key"] for r in await destination_rows(database_url)) == keys
    assert await usage_total(runtime) == {"eastview": Decimal(89)}
    assert len(await open_dead_letters(runtime)) == 1


async def test_a_killed_part_process_fails_the_run_and_loses_nothing(
    runtime, config_dir, database_url
):
    keys = write_export(config_dir, 90)
    set_route(config_dir, batch_size=10, parallel_reads=2, transforms=["part_faults"])
    # in the second part, which a forked process reads
    orders = use_part_faults(runtime, config_dir, "kill 70")
    await apply(runtime.engine, load_config(config_dir))

    killed = await sync_eastview(runtime)
    orders.unlink()
    resumed = await sync_eastview(runtime)

    assert killed.status == "failed"
    assert f"exited with code {-signal.SIGKILL}" in killed.error
    assert resumed.status == "succeeded", resumed.error
    assert sorted(r["record_key"] for r in await destination_rows(database_url)) == keys
    assert await usage_total(runtime) == {"eastview": Decimal(89)}


async def test_a_stop_request_ends_every_part_after_its_batch_in_hand_and_the_next_run_resumes(
    runtime, config_dir, database_url
):
    keys = write_export(config_dir, 100)
    set_route(config_dir, batch_size=10, parallel_reads=2, transforms=["part_faults"])
    use_part_faults(runtime, config_dir, "slow")
    await apply(runtime.engine, load_config(config_dir))
    stop = asyncio.Event()

    stopped = await sync_eastview(runtime, stop=stop, progress=lambda route, counts: stop.set())
    resumed = await sync_eastview(runtime)

    assert stopped.status == "cancelled"
    assert 0 < stopped.counts.read < 100
    assert resumed.status == "succeeded", resumed.error
    assert stopped.counts.read + resumed.counts.read == 100
    assert sorted(r["record_key"] for r in await destination_rows(database_url)) == keys
    assert await usage_total(runtime) == {"eastview": Decimal(99)}


async def test_a_route_that_reads_serially_finishes_a_partitioned_read_in_progress(
    runtime, config_dir, database_url
):
    keys = write_export(config_dir, 60)
    set_route(config_dir, batch_size=10, parallel_reads=3, transforms=["part_faults"])
    orders = use_part_faults(runtime, config_dir, "fail 5")
    await apply(runtime.engine, load_config(config_dir))
    await sync_eastview(runtime)
    orders.unlink()
    routes = config_dir / "routes.toml"
    routes.write_text(routes.read_text().replace("parallel_reads = 3", "parallel_reads = 1"))
    await apply(runtime.engine, load_config(config_dir))

    resumed = await sync_eastview(runtime)

    assert resumed.status == "succeeded", resumed.error
    assert sorted(r["record_key"] for r in await destination_rows(database_url)) == keys
    assert await usage_total(runtime) == {"eastview": Decimal(59)}
    assert PARTS not in await stored_state(runtime)


def flat_file_source(folder: Path, encoding: str = "utf-8") -> FlatFileSource:
    """A flat-file source of pay lines with just a pay run and an amount."""
    options = {
        "folder": str(folder),
        "encoding": encoding,
        "streams": {
            "pay_lines": {
                "record": "payroll.pay_line",
                "pattern": "*.csv",
                "columns": {"pay_run_id": "PayRunID", "amount": "Amount"},
            }
        },
    }
    source = FlatFileSource(
        FlatFileSource.parse_options(options),
        {},
        ConnectionContext(connection="test", member="eastview"),
    )
    source.batch_size = 10
    return source


async def test_a_file_changed_after_it_was_split_is_read_again_whole_by_the_next_run(tmp_path):
    export = tmp_path / "pay.csv"
    export.write_text("PayRunID,Amount\n" + "".join(f"R{n},{n}.00\n" for n in range(40)))
    source = flat_file_source(tmp_path)
    parts = await source.partitions("pay_lines", None, 2)
    export.write_text("PayRunID,Amount\n" + "".join(f"R{n},{n}.50\n" for n in range(40)))
    os.utime(export, ns=(0, 10**18))

    batches = [b async for b in source.read("pay_lines", parts[0])]
    joined = source.join_partitions("pay_lines", [b.state for b in batches[-1:]] + parts[1:])
    again = [b async for b in source.read("pay_lines", joined)]

    assert [len(b.records) + len(b.rejects) for b in batches] == [0]
    assert sum(len(b.records) + len(b.rejects) for b in again) == 40


async def test_a_file_in_an_encoding_that_cannot_be_split_is_read_serially(tmp_path):
    (tmp_path / "pay.csv").write_text(
        "PayRunID,Amount\n" + "".join(f"R{n},{n}.00\n" for n in range(40)), encoding="utf-16"
    )
    source = flat_file_source(tmp_path, encoding="utf-16")

    assert await source.partitions("pay_lines", None, 2) is None


cells = st.one_of(
    st.text(alphabet='ab ,"\n\r', max_size=6), st.sampled_from(["", "x", '"', "\n", "a,b"])
)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(cells, min_size=3, max_size=3), max_size=40),
    line_end=st.sampled_from(["\r\n", "\n", "\r"]),
    last_line_end=st.booleans(),
    parts=st.integers(1, 6),
    min_rows=st.integers(1, 12),
    block=st.integers(1, 64),
)
def test_split_rows_cuts_only_between_rows_and_numbers_them(
    tmp_path_factory, rows, line_end, last_line_end, parts, min_rows, block
):
    written = io.StringIO(newline="")
    csv.writer(written, lineterminator=line_end).writerows([["h1", "h2", "h3"], *rows])
    text = written.getvalue()
    if not last_line_end:
        text = text[: -len(line_end)]
    path = tmp_path_factory.mktemp("split") / "export.csv"
    data = text.encode()
    path.write_bytes(data)

    _, ranges = split_rows(path, parts, min_rows, block_size=block)

    read_back: list[list[str]] = []
    for begin, end, first_row in ranges:
        assert first_row == len(read_back) + 1
        part = list(csv.reader(io.StringIO(data[begin:end].decode(), newline="")))
        assert len(part) >= min_rows or len(ranges) == 1
        read_back += part
    assert read_back == list(csv.reader(io.StringIO(text, newline="")))[1:]
    assert len(ranges) <= parts


def part_processes(pid: int) -> set[int]:
    """The processes `pid` forked (its parts), from /proc."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                children.add(int(entry.name))
    return children


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2] != "Z"


async def start_partitioned_cli_sync(config_dir: Path, database_url: str, tmp_path: Path):
    """A 6,000-line export, `cohub db upgrade` and `apply` done, and `cohub sync` started with
    two parts; returns the worker once its parts are forked and a batch is committed."""
    keys = write_export(config_dir, 6_000)
    set_route(config_dir, batch_size=100, parallel_reads=2, transforms=["part_faults"])
    plugins = config_dir.parent / "plugins"
    plugins.mkdir(exist_ok=True)
    shutil.copy(Path(__file__).parent / "plugins" / "part_faults.py", plugins)
    (plugins / "part_faults.on").write_text("slow")  # the example's plugin folder
    env = worker_environment(tmp_path / "home")
    for step in (["db", "upgrade"], ["apply", str(config_dir)]):
        done = cohub(*step, config=config_dir, database=database_url, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
    engine = create_engine(database_url)
    log = (tmp_path / "worker.log").open("w")
    worker = start_sync(config_dir, database_url, tmp_path, env, log)
    try:
        for _ in range(600):
            parts = part_processes(worker.pid)
            async with engine.connect() as conn:
                batches = await conn.scalar(select(func.coalesce(func.max(runs.c.batches), 0)))
            if parts and batches:
                return worker, parts, keys, env, engine
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            await asyncio.sleep(0.05)
        raise AssertionError("the sync forked no part or committed no batch in 30 s")
    except BaseException:
        worker.kill()
        await engine.dispose()
        raise


async def test_sigterm_to_a_partitioned_cli_sync_stops_every_part_and_the_next_sync_resumes(
    config_dir, database_url, tmp_path
):
    worker, parts, keys, env, engine = await start_partitioned_cli_sync(
        config_dir, database_url, tmp_path
    )
    try:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        async with engine.connect() as conn:
            stopped = (await conn.execute(select(runs.c.status, runs.c.records_read))).one()
    finally:
        await engine.dispose()
    resumed = cohub("sync", ROUTE, config=config_dir, database=database_url, cwd=tmp_path, env=env)

    assert code == 1
    assert not [pid for pid in parts if alive(pid)]
    assert stopped.status == "cancelled"
    assert 0 < stopped.records_read < 6_000
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(r["record_key"] for r in await destination_rows(database_url)) == keys
    assert await usage_total_at(database_url) == Decimal(5_999)


async def test_parts_of_a_killed_cli_sync_end_on_their_own_and_the_next_sync_loses_nothing(
    config_dir, database_url, tmp_path
):
    worker, parts, keys, env, engine = await start_partitioned_cli_sync(
        config_dir, database_url, tmp_path
    )
    await engine.dispose()
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=60)
    for _ in range(300):  # a part notices at its next batch that the run is gone
        if not [pid for pid in parts if alive(pid)]:
            break
        await asyncio.sleep(0.1)
    resumed = cohub("sync", ROUTE, config=config_dir, database=database_url, cwd=tmp_path, env=env)

    assert not [pid for pid in parts if alive(pid)]
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(r["record_key"] for r in await destination_rows(database_url)) == keys
    assert await usage_total_at(database_url) == Decimal(5_999)


async def usage_total_at(database_url: str) -> Decimal:
    """records_synced billed to Eastview, read from the hub database at `database_url`."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(
                select(func.sum(usage_events.c.quantity)).where(
                    usage_events.c.member == "eastview", usage_events.c.meter == "records_synced"
                )
            )
    finally:
        await engine.dispose()
