"""Sync modes, cancellation, and plugins that hang or answer wrongly."""

from __future__ import annotations

import asyncio
import shutil
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, update

from connectors.sql_table import StreamTable
from hub.apply import apply
from hub.config import load_config
from hub.engine.run import run_route
from hub.model.payroll import PayLine
from hub.plugins import PluginHost
from hub.store.database import create_engine
from hub.store.tables import runs, stream_states
from tests.test_end_to_end import destination_rows, usage_total

EASTVIEW = "sample-data/eastview/payroll_2026-10.csv"


def set_route(config_dir: Path, **keys: object) -> None:
    """Add keys to the eastview-payroll route."""
    routes = config_dir / "routes.toml"
    lines = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in keys.items())
    routes.write_text(
        routes.read_text().replace(
            "[routes.eastview-payroll]\n", f"[routes.eastview-payroll]\n{lines}"
        )
    )


def drop_export_lines(config_dir: Path, employee: str) -> int:
    path = config_dir / EASTVIEW
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    kept = [line for line in lines if f",{employee}," not in line]
    path.write_text("\n".join(kept) + "\n", encoding="utf-8-sig")
    return len(lines) - len(kept)


async def sync_eastview(runtime, **options):
    return await run_route(runtime.engine, runtime.plugins, "eastview-payroll", **options)


async def test_a_full_refresh_reads_everything_each_run_and_bills_each_read_once(
    runtime, config_dir, database_url
):
    set_route(config_dir, mode="full_refresh")
    await apply(runtime.engine, load_config(config_dir))

    first = await sync_eastview(runtime)
    second = await sync_eastview(runtime)

    assert (first.counts.read, second.counts.read) == (51, 51)
    assert len(await destination_rows(database_url)) == 51
    assert await usage_total(runtime) == {"eastview": Decimal(102)}


async def test_full_refresh_with_deletes_marks_what_a_complete_read_no_longer_has(
    runtime, config_dir, database_url
):
    set_route(config_dir, mode="full_refresh_deletes")
    await apply(runtime.engine, load_config(config_dir))
    await sync_eastview(runtime)
    removed = drop_export_lines(config_dir, "E1003")

    summary = await sync_eastview(runtime)

    assert removed == 6
    assert (summary.status, summary.counts.read, summary.counts.deleted) == ("succeeded", 45, 6)
    rows = await destination_rows(database_url)
    deleted = sorted(r["record_key"] for r in rows if r["deleted_at"] is not None)
    assert deleted == [f"EA-2026-{run}|E1003|{line}" for run in (20, 21) for line in (1, 2, 3)]
    async with runtime.engine.connect() as conn:
        assert await conn.scalar(select(runs.c.records_deleted).where(runs.c.id == summary.id)) == 6


async def test_a_record_that_comes_back_is_no_longer_marked_deleted(
    runtime, config_dir, database_url
):
    set_route(config_dir, mode="full_refresh_deletes")
    await apply(runtime.engine, load_config(config_dir))
    original = (config_dir / EASTVIEW).read_bytes()
    drop_export_lines(config_dir, "E1003")
    await sync_eastview(runtime)
    (config_dir / EASTVIEW).write_bytes(original)

    summary = await sync_eastview(runtime)

    assert summary.counts.deleted == 0
    assert [r for r in await destination_rows(database_url) if r["deleted_at"] is not None] == []


async def test_an_interrupted_full_refresh_resumes_in_the_same_cycle_without_billing_twice(
    runtime, config_dir
):
    set_route(config_dir, mode="full_refresh_deletes", batch_size=10, transforms=["flaky"])
    plugins = config_dir.parent / "plugins"
    plugins.mkdir()
    shutil.copy(
        Path(__file__).parent / "plugins" / "flaky_transform.py", plugins / "flaky_transform.py"
    )
    (plugins / "flaky.state").write_text("3")
    runtime.plugins = PluginHost([plugins])
    await apply(runtime.engine, load_config(config_dir))

    failed = await sync_eastview(runtime)
    (plugins / "flaky.state").write_text("0")
    resumed = await sync_eastview(runtime)

    assert (failed.status, failed.counts.written) == ("failed", 20)
    assert (resumed.status, resumed.counts.read, resumed.counts.deleted) == ("succeeded", 31, 0)
    assert await usage_total(runtime) == {"eastview": Decimal(51)}


async def test_a_stop_request_ends_the_run_after_the_batches_in_hand_with_their_checkpoints(
    runtime, config_dir, database_url
):
    set_route(config_dir, batch_size=10)
    await apply(runtime.engine, load_config(config_dir))
    stop = asyncio.Event()
    # Batches already handed to the destination: one on SQLite, two where writes overlap.
    in_hand = 2 if database_url.startswith("postgresql") else 1

    cancelled = await sync_eastview(runtime, stop=stop, progress=lambda route, counts: stop.set())
    resumed = await sync_eastview(runtime)

    assert (cancelled.status, cancelled.counts.read) == ("cancelled", 10 * in_hand)
    async with runtime.engine.connect() as conn:
        statuses = (await conn.execute(select(runs.c.status).order_by(runs.c.id))).scalars().all()
    assert statuses == ["cancelled", "succeeded"]
    assert resumed.counts.read == 51 - 10 * in_hand
    assert await usage_total(runtime) == {"eastview": Decimal(51)}


async def test_cohub_runs_cancel_stops_a_run_at_its_next_batch(runtime, config_dir):
    set_route(config_dir, batch_size=10)
    await apply(runtime.engine, load_config(config_dir))

    def ask_to_cancel(route, counts):
        if counts.batches == 1:
            asyncio.get_running_loop().create_task(mark())

    async def mark():
        async with runtime.engine.begin() as conn:
            await conn.execute(
                update(runs).where(runs.c.status == "running").values(cancel_requested=True)
            )

    summary = await sync_eastview(runtime, progress=ask_to_cancel)

    assert summary.status == "cancelled"
    assert 10 < summary.counts.read < 51
    async with runtime.engine.connect() as conn:
        state = await conn.scalar(select(stream_states.c.state))
    assert state["files"]["payroll_2026-10.csv"]["rows"] == summary.counts.read


def write_plugin(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(
        "import asyncio\n\nfrom hub import sdk\n\n" + textwrap.dedent(body)
    )


@pytest.fixture
def vendor(config_dir: Path, runtime) -> Path:
    """A plugin folder and the eastview route reading from connector `stuck` in it."""
    folder = config_dir.parent / "plugins"
    (config_dir / "connections" / "eastview-payroll.toml").write_text(
        'connector = "stuck"\nmember = "eastview"\n'
    )
    set_route(config_dir, call_timeout_seconds=0.2)
    return folder


STUCK = """
class Stuck(sdk.Connector):
    name = "stuck"

    async def read(self, stream, state):
        {read}

@sdk.hookimpl
def cohub_register_connectors(register):
    register(Stuck)
"""


@pytest.mark.parametrize(
    ("read", "error"),
    [
        (
            "await asyncio.sleep(30)\n        yield None",
            "connection 'eastview-payroll' (stuck, plugin 'vendor') failed to read: "
            "TimeoutError: read took longer than 0.2 s",
        ),
        (
            "yield [1, 2, 3]",
            "connection 'eastview-payroll' (stuck, plugin 'vendor') failed to read: "
            "TypeError: read returned list, not Batch or NoneType",
        ),
        (
            "yield sdk.Batch(records=['not a record'], state={})",
            "connection 'eastview-payroll' (stuck, plugin 'vendor') failed to read: "
            "TypeError: a batch must hold one record type, got str",
        ),
    ],
)
async def test_a_connector_that_hangs_or_answers_wrongly_fails_its_run_naming_it(
    runtime, config_dir, vendor, read, error
):
    write_plugin(vendor, "vendor", STUCK.format(read=read))
    runtime.plugins = PluginHost([vendor])
    await apply(runtime.engine, load_config(config_dir))

    failed = await sync_eastview(runtime)
    other = await run_route(runtime.engine, runtime.plugins, "millbrook-payroll")

    assert (failed.status, failed.error) == ("failed", error)
    assert other.status == "succeeded"


async def test_a_destination_answering_wrongly_fails_the_run_naming_it(runtime, config_dir):
    folder = config_dir.parent / "plugins"
    write_plugin(
        folder,
        "sink",
        """
        class Sink(sdk.Connector):
            name = "sink"

            async def write(self, stream, batch, member):
                return {"written": len(batch.records)}

        @sdk.hookimpl
        def cohub_register_connectors(register):
            register(Sink)
        """,
    )
    (config_dir / "connections" / "cbo-payroll-db.toml").write_text('connector = "sink"\n')
    runtime.plugins = PluginHost([folder])
    await apply(runtime.engine, load_config(config_dir))

    failed = await sync_eastview(runtime)

    assert failed.error == (
        "connection 'cbo-payroll-db' (sink, plugin 'sink') failed to write: "
        "TypeError: write returned dict, not WriteResult"
    )


async def test_a_hook_that_hangs_is_reported_and_the_run_goes_on(runtime, config_dir):
    folder = config_dir.parent / "plugins"
    write_plugin(
        folder,
        "pager",
        """
        @sdk.hookimpl
        async def cohub_run_started(run):
            await asyncio.sleep(30)
        """,
    )
    set_route(config_dir, call_timeout_seconds=2)
    runtime.plugins = PluginHost([folder])
    await apply(runtime.engine, load_config(config_dir))

    summary = await sync_eastview(runtime)

    assert summary.status == "succeeded"
    assert [(f.plugin, f.stage, f.error) for f in runtime.plugins.failures] == [
        ("pager", "cohub_run_started", "TimeoutError: took longer than 2 s")
    ]


async def test_a_field_new_in_the_record_becomes_a_column_without_touching_the_rest(
    runtime, config_dir, database_url
):
    await apply(runtime.engine, load_config(config_dir))
    await run_route(runtime.engine, runtime.plugins, "millbrook-payroll")
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE pay_lines DROP COLUMN bank_account")

    summary = await sync_eastview(runtime)

    async with engine.connect() as conn:
        columns = await conn.run_sync(
            lambda sync: [
                c["name"] for c in __import__("sqlalchemy").inspect(sync).get_columns("pay_lines")
            ]
        )
    await engine.dispose()
    assert summary.status == "succeeded"
    assert "bank_account" in columns
    assert len(await destination_rows(database_url)) == 90
    assert StreamTable("pay_lines", PayLine).names[-2:] == ["sync_generation", "deleted_at"]
