"""Fault injection (issue #3 item 8): a real sync from a vendor API that throttles, fails, hangs,
cuts bodies short and sends malformed JSON still delivers every valid record exactly once,
dead-letters every invalid one with its reason, and bills each record once."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from connectors.sql_table import StreamTable
from hub.apply import apply
from hub.config import check_against_plugins, load_config
from hub.engine.run import run_route
from hub.model.hr import Employee
from hub.plugins import PluginHost
from hub.runtime import Runtime
from hub.sdk.http import close_sessions
from hub.store.database import create_engine
from hub.store.tables import dead_letters, usage_events
from tests.vendor.fault_server import FaultyRosterApi

API_KEY = "rk-Canary-6620"

#: Pages of 100 for 2,000 employees, plus the empty page that ends the walk.
REQUESTS_PER_FULL_SYNC = 21
#: The connection below allows 4 attempts per request, so at most 3 retries each.
RETRIES_PER_REQUEST = 3


@pytest.fixture
async def roster_api() -> AsyncIterator[FaultyRosterApi]:
    api = FaultyRosterApi(api_key=API_KEY, employees=2000, fault_rate=0.2, seed=7)
    await api.start()
    yield api
    await close_sessions()
    await api.close()


async def configure_roster_route(
    runtime: Runtime, config_dir: Path, base_url: str, tmp_path: Path
) -> None:
    """Eastview's roster API connection, routed into the CBO database's ``employees`` table."""
    with (config_dir / "cooperative.toml").open("a") as cooperative:
        cooperative.write(
            '\n[services.cbo-hr]\nname = "Central Business Office: HR records"\n'
            'description = "Employee roster kept by the CBO for component districts"\n'
        )
    (config_dir / "connections" / "eastview-roster.toml").write_text(
        f"""connector = "roster_api"
member = "eastview"
description = "Eastview HR roster API"

[options]
base_url = "{base_url}"
page_size = 100
timeout_seconds = 0.2
retry_attempts = 4
retry_base_seconds = 0.01
retry_cap_seconds = 0.05
max_retry_after_seconds = 0.05

[secrets]
api_key = "env:ROSTER_API_KEY"
"""
    )
    with (config_dir / "routes.toml").open("a") as routes:
        routes.write(
            '\n[routes.eastview-roster]\nsource = "eastview-roster"\nsource_stream = "employees"\n'
            'destination = "cbo-payroll-db"\ndestination_stream = "employees"\n'
            'service = "cbo-hr"\n'
        )
    plugins = tmp_path / "roster-plugins"
    plugins.mkdir()
    (plugins / "roster_api_plugin.py").write_text(
        "from tests.vendor.roster_api import cohub_register_connectors  # noqa: F401\n"
    )
    runtime.plugins = PluginHost([plugins])
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)


async def employee_rows(database_url: str) -> list[dict]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            table = StreamTable("employees", Employee).table
            result = await conn.execute(select(table).order_by(table.c.record_key))
            return [dict(row) for row in result.mappings()]
    finally:
        await engine.dispose()


async def records_synced(runtime: Runtime) -> Decimal | None:
    async with runtime.engine.connect() as conn:
        return await conn.scalar(
            select(func.sum(usage_events.c.quantity)).where(
                usage_events.c.member == "eastview", usage_events.c.meter == "records_synced"
            )
        )


async def dead_lettered(runtime: Runtime) -> list[tuple[str, str, str]]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            select(dead_letters.c.position, dead_letters.c.reason, dead_letters.c.raw)
            .where(dead_letters.c.route == "eastview-roster")
            .order_by(dead_letters.c.id)
        )
        return [(position, reason, raw["id"]) for position, reason, raw in rows]


INVALID_DATE = "Invalid RFC3339 encoded date - at `$.hire_date`"
EXPECTED_DEAD_LETTERS = [
    ("start:4", INVALID_DATE, "E00005"),
    ("E00100:36", INVALID_DATE, "E00137"),
    (
        "E00500:11",
        "Expected `str` matching regex '^(active|on_leave|terminated|retired)$' - at `$.status`",
        "E00512",
    ),
    ("E01000:23", INVALID_DATE, "E01024"),
    ("E01900:98", INVALID_DATE, "E01999"),
]
VALID_IDS = [f"E{n:05d}" for n in range(1, 2001) if n not in {5, 137, 512, 1024, 1999}]


async def test_a_sync_through_a_faulty_vendor_api_delivers_every_valid_record_once(
    runtime, config_dir, database_url, roster_api, tmp_path, monkeypatch
):
    # Given Eastview's roster API, which misbehaves on about a fifth of requests
    monkeypatch.setenv("ROSTER_API_KEY", API_KEY)
    await configure_roster_route(runtime, config_dir, roster_api.base_url, tmp_path)

    # When the route runs
    summary = await run_route(runtime.engine, runtime.plugins, "eastview-roster")

    # Then it succeeds, having retried each injected fault once and within the policy's bound
    assert summary.status == "succeeded", summary.error
    assert (summary.counts.read, summary.counts.written, summary.counts.rejected) == (
        2000,
        1995,
        5,
    )
    assert roster_api.faults == Counter(
        throttled=3, server_error=2, hang=2, truncated=2, malformed=2
    )
    assert summary.counts.retried == sum(roster_api.faults.values())
    assert 0 < summary.counts.retried <= REQUESTS_PER_FULL_SYNC * RETRIES_PER_REQUEST

    # And every valid employee is in the CBO database exactly once, as the vendor sent it
    rows = await employee_rows(database_url)
    assert [r["record_key"] for r in rows] == VALID_IDS
    assert {r["member"] for r in rows} == {"eastview"}
    first = rows[0]
    assert (first["employee_id"], first["first_name"], first["last_name"]) == (
        "E00001",
        "Ben",
        "Baptiste",
    )
    assert first["hire_date"] == date(2001, 2, 2)

    # And every invalid one is a dead letter with its position and reason
    assert await dead_lettered(runtime) == EXPECTED_DEAD_LETTERS

    # And Eastview is billed for the records delivered
    assert await records_synced(runtime) == Decimal(1995)


async def test_a_second_sync_from_the_faulty_api_adds_and_bills_nothing(
    runtime, config_dir, database_url, roster_api, tmp_path, monkeypatch
):
    monkeypatch.setenv("ROSTER_API_KEY", API_KEY)
    await configure_roster_route(runtime, config_dir, roster_api.base_url, tmp_path)
    await run_route(runtime.engine, runtime.plugins, "eastview-roster")
    rows_before = await employee_rows(database_url)

    again = await run_route(runtime.engine, runtime.plugins, "eastview-roster")

    assert again.status == "succeeded", again.error
    assert (again.counts.read, again.counts.written, again.counts.rejected) == (0, 0, 0)
    assert await employee_rows(database_url) == rows_before
    assert await records_synced(runtime) == Decimal(1995)
    assert await dead_lettered(runtime) == EXPECTED_DEAD_LETTERS
