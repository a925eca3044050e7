"""Incremental sync by cursor with a lookback window: late updates arrive, nothing twice."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec

from hub import sdk
from hub.apply import apply
from hub.config import load_config
from hub.engine.run import run_route
from hub.model.hr import Employee
from hub.plugins import PluginHost
from tests.test_end_to_end import usage_total

T0 = datetime(2026, 11, 2, 11, 0, tzinfo=UTC)


def employee(n: int, minutes: int, last: str = "Anderson") -> Employee:
    return Employee(
        employee_id=f"E{n}",
        first_name="Maria",
        last_name=last,
        updated_at=T0 + timedelta(minutes=minutes),
    )


def test_the_cursor_reads_back_by_the_lookback_and_admits_each_version_once():
    cursor = sdk.IncrementalCursor(None, lookback=timedelta(minutes=10))
    assert cursor.since() is None

    assert [r.key for r in cursor.admit([employee(1, 0), employee(2, 5)])] == ["E1", "E2"]
    resumed = sdk.IncrementalCursor(cursor.state(), lookback=timedelta(minutes=10))

    assert resumed.since() == T0 + timedelta(minutes=-5)
    assert resumed.admit([employee(2, 5), employee(3, 4), employee(2, 7, "Brooks")]) == [
        employee(3, 4),
        employee(2, 7, "Brooks"),
    ]
    assert resumed.state()["cursor"] == "2026-11-02T11:07:00+00:00"


def test_records_older_than_the_window_are_forgotten():
    cursor = sdk.IncrementalCursor(None, lookback=timedelta(minutes=10))
    cursor.admit([employee(1, 0), employee(2, 30)])

    assert sorted(cursor.state()["recent"]) == ["E2"]


SOURCE = '''
import json
from pathlib import Path

from hub import sdk
from hub.model.hr import Employee

FEED = Path(__file__).with_name("feed.json")


class Feed(sdk.Connector):
    """A source that answers "updated since" queries, like a vendor API."""

    name = "feed"

    async def read(self, stream, state):
        cursor = sdk.IncrementalCursor(state, self.lookback)
        since = cursor.since()
        rows = [r for r in json.loads(FEED.read_text()) if since is None or r["updated_at"] >= since.isoformat()]
        records, _ = sdk.convert_rows(Employee, rows)
        yield sdk.Batch(records=cursor.admit(records), state=cursor.state())


@sdk.hookimpl
def cohub_register_connectors(register):
    register(Feed)
'''


async def test_a_late_update_inside_the_window_arrives_and_nothing_is_billed_twice(
    runtime, config_dir
):
    plugins = config_dir.parent / "plugins"
    plugins.mkdir()
    (plugins / "feed.py").write_text(textwrap.dedent(SOURCE))
    feed = plugins / "feed.json"
    (config_dir / "connections" / "eastview-payroll.toml").write_text(
        'connector = "feed"\nmember = "eastview"\n'
    )
    routes = config_dir / "routes.toml"
    routes.write_text(
        routes.read_text()
        .replace(
            '[routes.eastview-payroll]\nsource = "eastview-payroll"\nsource_stream = "pay_lines"',
            '[routes.eastview-payroll]\nlookback_seconds = 600\nsource = "eastview-payroll"\nsource_stream = "employees"',
        )
        .replace(
            'destination_stream = "pay_lines"\nservice = "cbo-payroll"\n\n[routes.millbrook',
            'destination_stream = "employees"\nservice = "cbo-payroll"\n\n[routes.millbrook',
            1,
        )
    )
    runtime.plugins = PluginHost([plugins])
    await apply(runtime.engine, load_config(config_dir))

    def publish(*records: Employee) -> None:
        feed.write_text(json.dumps([json.loads(msgspec.json.encode(r)) for r in records]))

    publish(employee(1, 0), employee(2, 5))
    first = await run_route(runtime.engine, runtime.plugins, "eastview-payroll")
    # E3 was committed at 11:04 but only became visible after the first sync: a late update.
    publish(employee(1, 0), employee(2, 5), employee(3, 4))
    second = await run_route(runtime.engine, runtime.plugins, "eastview-payroll")
    third = await run_route(runtime.engine, runtime.plugins, "eastview-payroll")

    assert [r.counts.written for r in (first, second, third)] == [2, 1, 0]
    assert await usage_total(runtime) == {"eastview": Decimal(3)}
