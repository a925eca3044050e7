"""Destinations that take several batches at once (`concurrent_writes`): checkpoints still
commit in order, and a failure on either side leaves nothing running and nothing lost."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from hub.apply import apply
from hub.config import load_config
from hub.plugins import PluginHost
from hub.store.tables import stream_states
from tests.test_end_to_end import usage_total
from tests.test_sync_modes import set_route, sync_eastview, write_plugin

SINK = """
import msgspec


class SinkOptions(sdk.Options, kw_only=True):
    log: str
    concurrent: int = 2
    fail_on: int = 0
    delays: dict[str, float] = msgspec.field(default_factory=dict)


class Sink(sdk.Connector[SinkOptions]):
    '''Logs when each write starts and ends; write N waits delays["N"] and fails if fail_on.'''

    name = "sink"
    options = SinkOptions
    calls = 0

    @property
    def concurrent_writes(self):
        return self.config.concurrent

    def note(self, text):
        with open(self.config.log, "a") as log:
            log.write(text + "\\n")

    async def write(self, stream, batch, member):
        self.calls += 1
        number = self.calls
        self.note(f"start {number}")
        await asyncio.sleep(self.config.delays.get(str(number), 0))
        if number == self.config.fail_on:
            raise RuntimeError(f"sink refused batch {number}")
        self.note(f"end {number}")
        return sdk.WriteResult(written=len(batch.records))


class FeedOptions(sdk.Options, kw_only=True):
    log: str = ""


class Feed(sdk.Connector[FeedOptions]):
    '''Three batches of ten pay lines, then a failure; logs reading each.'''

    name = "feed"
    options = FeedOptions

    async def read(self, stream, state):
        record = sdk.record_type("payroll.pay_line")
        start = (state or {}).get("sent", 0)
        for first in range(start, 30, 10):
            lines = [
                {
                    "pay_run_id": "PR-1", "employee_id": "E1", "line_number": n,
                    "pay_date": "2026-10-15", "code": "REG", "amount": "10.00",
                    "updated_at": "2026-10-15T12:00:00Z",
                    "account": {"code": "A2110.120", "fund": "A", "function": "2110",
                                "object": "120"},
                }
                for n in range(first, first + 10)
            ]
            records, _ = sdk.convert_rows(record, lines)
            if self.config.log:
                with open(self.config.log, "a") as log:
                    log.write(f"read {first // 10 + 1}\\n")
            yield sdk.Batch(records=records, state={"sent": first + 10})
        raise RuntimeError("feed broke")


@sdk.hookimpl
def cohub_register_connectors(register):
    register(Sink)
    register(Feed)
"""


async def route_into_sink(runtime, config_dir: Path, **options: object) -> Path:
    """Point the eastview route (batches of 10) at the sink; return the sink's log file."""
    folder = config_dir.parent / "plugins"
    write_plugin(folder, "sink", SINK)
    log = config_dir.parent / "sink.log"
    log.unlink(missing_ok=True)
    settings = {"log": str(log), **options}
    delays = settings.pop("delays", {})
    text = 'connector = "sink"\n\n[options]\n' + "".join(
        f"{key} = {value!r}\n".replace("'", '"') for key, value in settings.items()
    )
    text += "\n[options.delays]\n" + "".join(f'"{n}" = {s}\n' for n, s in delays.items())
    (config_dir / "connections" / "cbo-payroll-db.toml").write_text(text)
    runtime.plugins = PluginHost([folder])
    await apply(runtime.engine, load_config(config_dir))
    return log


async def test_a_later_batch_written_first_is_still_checkpointed_after_the_earlier_one(
    runtime, config_dir
):
    set_route(config_dir, batch_size=10)
    # Batch 5 (ten lines) is slow, batch 6 (the last line) finishes while it is still written.
    log = await route_into_sink(runtime, config_dir, delays={5: 0.3})
    committed: list[int] = []

    summary = await sync_eastview(runtime, progress=lambda route, c: committed.append(c.read))

    lines = log.read_text().splitlines()
    assert lines.index("end 6") < lines.index("end 5")
    assert committed == [10, 20, 30, 40, 50, 51, 51]
    assert (summary.status, summary.counts.written) == ("succeeded", 51)
    assert await usage_total(runtime) == {"eastview": Decimal(51)}


async def test_a_failed_write_keeps_the_earlier_checkpoints_and_stops_the_one_in_flight(
    runtime, config_dir
):
    set_route(config_dir, batch_size=10)
    log = await route_into_sink(runtime, config_dir, fail_on=3, delays={3: 0.05, 4: 30})

    failed = await sync_eastview(runtime)

    assert failed.status == "failed"
    assert failed.error == (
        "connection 'cbo-payroll-db' (sink, plugin 'sink') failed to write: "
        "RuntimeError: sink refused batch 3"
    )
    assert failed.counts.written == 20
    assert "start 4" in log.read_text() and "end 4" not in log.read_text()
    assert asyncio.all_tasks() == {asyncio.current_task()}  # the slow write was cancelled

    await route_into_sink(runtime, config_dir)
    resumed = await sync_eastview(runtime)
    assert (resumed.status, resumed.counts.read) == ("succeeded", 31)
    assert await usage_total(runtime) == {"eastview": Decimal(51)}


async def test_a_source_failure_keeps_the_checkpoints_of_the_writes_in_flight(runtime, config_dir):
    await route_into_sink(runtime, config_dir, delays={3: 0.2})
    (config_dir / "connections" / "eastview-payroll.toml").write_text(
        'connector = "feed"\nmember = "eastview"\n'
    )
    await apply(runtime.engine, load_config(config_dir))

    failed = await sync_eastview(runtime)

    assert failed.status == "failed"
    assert failed.error.endswith("failed to read: RuntimeError: feed broke")
    assert failed.counts.written == 30
    async with runtime.engine.connect() as conn:
        assert await conn.scalar(select(stream_states.c.state)) == {"sent": 30}
    assert await usage_total(runtime) == {"eastview": Decimal(30)}


async def test_a_destination_declaring_no_write_slots_fails_the_run_naming_it(runtime, config_dir):
    await route_into_sink(runtime, config_dir, concurrent=0)

    failed = await sync_eastview(runtime)

    assert (failed.status, failed.error) == (
        "failed",
        "connection 'cbo-payroll-db' (sink, plugin 'sink') failed to write: "
        "ValueError: concurrent_writes is 0, not a positive integer",
    )


async def test_the_source_reads_one_batch_ahead_of_the_writes_and_no_more(runtime, config_dir):
    log = await route_into_sink(runtime, config_dir, concurrent=1, delays={1: 0.3})
    (config_dir / "connections" / "eastview-payroll.toml").write_text(
        f'connector = "feed"\nmember = "eastview"\n\n[options]\nlog = "{log}"\n'
    )
    await apply(runtime.engine, load_config(config_dir))

    await sync_eastview(runtime)

    lines = log.read_text().splitlines()
    # While batch 1 is written, batch 2 is read, and batch 3 waits (batches in memory are 2).
    assert sorted(lines[: lines.index("end 1")]) == ["read 1", "read 2", "start 1"]
    assert lines.index("read 3") > lines.index("end 1")
