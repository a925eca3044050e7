"""End to end: district export files routed into the CBO's shared payroll database, metered;
and every route of the example cooperative (payroll, personnel, accounting) in one sync."""

from __future__ import annotations

import csv
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from connectors.sql_table import StreamTable
from hub.apply import apply
from hub.config import check_against_plugins, load_config
from hub.engine.claims import WORKER, RouteRefused
from hub.engine.connections import route_names
from hub.engine.run import RunSummary, run_route
from hub.model.payroll import PayLine
from hub.plugins import PluginHost
from hub.runtime import Runtime
from hub.store.database import create_engine
from hub.store.tables import dead_letters, runs, stream_states, usage_events

ROUTES = ["eastview-payroll", "harbor-falls-payroll", "millbrook-payroll"]


async def apply_and_sync(
    runtime: Runtime, config_dir: Path, only: list[str] | None = ROUTES
) -> list[RunSummary]:
    """Apply the example configuration and run its payroll routes (`only`; None: every
    enabled route)."""
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)
    async with runtime.engine.connect() as conn:
        names = await route_names(conn)
    names = [name for name in names if only is None or name in only]
    return [await run_route(runtime.engine, runtime.plugins, name) for name in names]


async def destination_rows(database_url: str) -> list[dict]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            table = StreamTable("pay_lines", PayLine).table
            result = await conn.execute(select(table).order_by(table.c.member, table.c.record_key))
            return [dict(row) for row in result.mappings()]
    finally:
        await engine.dispose()


async def usage_total(runtime: Runtime, meter: str = "records_synced") -> dict[str, Decimal]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            select(usage_events.c.member, func.sum(usage_events.c.quantity))
            .where(usage_events.c.meter == meter)
            .group_by(usage_events.c.member)
        )
        return {member: quantity for member, quantity in rows}


def read_export(path: Path, encoding: str, delimiter: str = ",") -> list[dict[str, str]]:
    with path.open(newline="", encoding=encoding) as handle:
        return list(csv.DictReader(handle, delimiter=delimiter))


async def test_every_run_succeeds_and_reports_counts(runtime, config_dir):
    summaries = await apply_and_sync(runtime, config_dir, only=None)

    assert [
        (s.route, s.status, s.counts.read, s.counts.written, s.counts.rejected) for s in summaries
    ] == [
        ("eastview-assignments", "succeeded", 10, 10, 0),
        ("eastview-budget", "succeeded", 10, 10, 0),
        ("eastview-employees", "succeeded", 9, 9, 0),
        ("eastview-orders", "succeeded", 5, 3, 2),  # two held off contract
        ("eastview-payroll", "succeeded", 51, 51, 0),
        ("harbor-falls-assignments", "succeeded", 8, 8, 0),
        ("harbor-falls-budget", "succeeded", 7, 7, 0),
        ("harbor-falls-employees", "succeeded", 8, 8, 0),
        ("harbor-falls-journal", "succeeded", 10, 10, 0),
        ("harbor-falls-payroll", "succeeded", 44, 42, 2),
        ("millbrook-assignments", "succeeded", 7, 7, 0),
        ("millbrook-employees", "succeeded", 7, 7, 0),
        ("millbrook-journal", "succeeded", 10, 10, 0),
        ("millbrook-payroll", "succeeded", 39, 39, 0),
        ("millbrook-tickets", "succeeded", 8, 8, 0),
        ("techsource-acknowledgements", "succeeded", 2, 2, 0),
        ("techsource-invoices", "succeeded", 1, 1, 0),
    ]


async def test_destination_rows_equal_source_rows_field_by_field(runtime, config_dir, database_url):
    await apply_and_sync(runtime, config_dir)
    rows = {(r["member"], r["record_key"]): r for r in await destination_rows(database_url)}

    eastview = read_export(config_dir / "sample-data/eastview/payroll_2026-10.csv", "utf-8-sig")
    assert len(eastview) == 51
    for line in eastview:
        row = rows.pop(("eastview", f"{line['PayRunID']}|{line['EmpID']}|{line['LineNo']}"))
        assert row["pay_run_id"] == line["PayRunID"]
        assert row["employee_id"] == line["EmpID"]
        assert row["employee_name"] == line["EmpName"]
        assert row["line_number"] == int(line["LineNo"])
        assert row["pay_date"] == date.fromisoformat(line["PayDate"])
        assert row["period_start"] == date.fromisoformat(line["PeriodStart"])
        assert row["period_end"] == date.fromisoformat(line["PeriodEnd"])
        assert row["code"] == line["EarnCode"]
        assert row["kind"] == line["Type"]
        assert row["hours"] == (Decimal(line["Hours"]) if line["Hours"] else None)
        assert row["rate"] == (Decimal(line["Rate"]) if line["Rate"] else None)
        assert row["amount"] == Decimal(line["Amount"])
        assert row["account_code"] == line["Account"]
        fund, rest = line["Account"][0], line["Account"][1:]
        assert (row["account_fund"], row["account_function"], row["account_object"]) == (
            fund,
            rest[:4],
            rest[5:8],
        )
        assert row["updated_at"] == datetime.fromisoformat(line["LastModified"])

    millbrook = read_export(config_dir / "sample-data/millbrook/PAYEXP_202610.txt", "cp1252", "|")
    assert len(millbrook) == 39
    for line in millbrook:
        row = rows.pop(("millbrook", f"{line['RUN_NO']}|{line['EMPLOYEE']}|{line['SEQ']}"))
        assert row["employee_name"] == line["NAME"]
        assert row["pay_date"] == datetime.strptime(line["CHECK_DATE"], "%m/%d/%Y").date()
        assert row["amount"] == Decimal(line["AMT"])
        assert row["account_code"] == line["GL_ACCOUNT"]

    harbor = read_export(config_dir / "sample-data/harbor-falls/hf_payroll_oct2026.csv", "utf-8")
    for line in harbor:
        key = ("harbor-falls", f"{line['Pay Run']}|{line['Employee Number']}|{line['Line']}")
        if line["GL Account"] == "A2110-150" or line["Amount"] == "n/a":
            assert key not in rows
            continue
        row = rows.pop(key)
        amount = line["Amount"].replace(",", "")
        expected = -Decimal(amount[1:-1]) if amount.startswith("(") else Decimal(amount)
        assert row["amount"] == expected

    assert rows == {}, "the destination holds rows no source line explains"


async def test_values_arrive_exactly_as_the_districts_wrote_them(runtime, config_dir, database_url):
    await apply_and_sync(runtime, config_dir)
    rows = {(r["member"], r["record_key"]): r for r in await destination_rows(database_url)}

    first = rows[("harbor-falls", "HA-2026-20|HF-201|1")]
    assert first["amount"] == Decimal("2702.15")
    assert first["updated_at"] == datetime(2026, 10, 15, 16, 0, tzinfo=UTC)
    assert rows[("harbor-falls", "HA-2026-20|HF-201|2")]["amount"] == Decimal("-88.40")
    assert rows[("millbrook", "MI-2026-20|004417|1")]["employee_name"] == "Peña, José"
    assert rows[("eastview", "EA-2026-20|E1001|1")]["account_location"] == "00"


async def test_second_run_writes_no_duplicate_rows_and_no_duplicate_usage(
    runtime, config_dir, database_url
):
    await apply_and_sync(runtime, config_dir)
    first_rows = await destination_rows(database_url)
    first_usage = await usage_total(runtime)

    summaries = await apply_and_sync(runtime, config_dir)

    assert [(s.status, s.counts.read) for s in summaries] == [("succeeded", 0)] * 3
    assert await destination_rows(database_url) == first_rows
    assert await usage_total(runtime) == first_usage
    assert first_usage == {
        "eastview": Decimal(51),
        "harbor-falls": Decimal(42),
        "millbrook": Decimal(39),
    }


async def test_malformed_rows_land_in_dead_letters_and_the_others_arrive(runtime, config_dir):
    await apply_and_sync(runtime, config_dir)

    async with runtime.engine.connect() as conn:
        letters = (
            (await conn.execute(select(dead_letters).order_by(dead_letters.c.id))).mappings().all()
        )

    assert [(d["route"], d["member"], d["position"], d["reason"]) for d in letters] == [
        (
            "harbor-falls-payroll",
            "harbor-falls",
            "hf_payroll_oct2026.csv:6",
            "account code 'A2110-150' does not fit the nys layout",
        ),
        (
            "harbor-falls-payroll",
            "harbor-falls",
            "hf_payroll_oct2026.csv:12",
            "'n/a' is not an amount",
        ),
    ]
    assert letters[0]["raw"]["Employee Number"] == "HF-202"
    assert letters[0]["raw"]["GL Account"] == "A2110-150"


async def test_a_new_export_file_is_the_only_thing_the_next_run_reads(
    runtime, config_dir, database_url
):
    await apply_and_sync(runtime, config_dir)
    folder = config_dir / "sample-data/eastview"
    source = (folder / "payroll_2026-10.csv").read_text(encoding="utf-8-sig").splitlines()
    november = [source[0]] + [line.replace("EA-2026-20", "EA-2026-22") for line in source[1:4]]
    (folder / "payroll_2026-11.csv").write_text("\n".join(november) + "\n", encoding="utf-8")

    summaries = await apply_and_sync(runtime, config_dir)

    assert [(s.route, s.counts.read) for s in summaries] == [
        ("eastview-payroll", 3),
        ("harbor-falls-payroll", 0),
        ("millbrook-payroll", 0),
    ]
    assert (await usage_total(runtime))["eastview"] == Decimal(54)
    assert len([r for r in await destination_rows(database_url) if r["member"] == "eastview"]) == 54


async def test_a_run_that_fails_midway_resumes_from_its_checkpoint_without_double_billing(
    runtime, config_dir, database_url, tmp_path
):
    # Given a route that delivers batches of 10 and a destination that fails on the third batch
    routes = config_dir / "routes.toml"
    routes.write_text(
        routes.read_text().replace(
            'service = "cbo-payroll"', 'service = "cbo-payroll"\nbatch_size = 10'
        )
    )
    plugins = config_dir.parent / "plugins"
    plugins.mkdir()
    shutil.copy(
        Path(__file__).parent / "plugins" / "flaky_transform.py", plugins / "flaky_transform.py"
    )
    (plugins / "flaky.state").write_text("3")
    runtime.plugins = PluginHost([plugins])
    routes_toml = routes.read_text().replace(
        '[routes.eastview-payroll]\nsource = "eastview-payroll"',
        '[routes.eastview-payroll]\ntransforms = ["flaky"]\nsource = "eastview-payroll"',
    )
    routes.write_text(routes_toml)
    config = load_config(config_dir)
    await apply(runtime.engine, config)

    # When the first run fails on its third batch
    failed = await run_route(runtime.engine, runtime.plugins, "eastview-payroll")
    assert failed.status == "failed"
    assert "flaky_transform" in failed.error
    assert failed.counts.written == 20
    assert (await usage_total(runtime)) == {"eastview": Decimal(20)}

    # Then the next run picks up after the last committed batch
    (plugins / "flaky.state").write_text("0")
    resumed = await run_route(runtime.engine, runtime.plugins, "eastview-payroll")
    assert resumed.status == "succeeded"
    assert resumed.counts.read == 31
    assert (await usage_total(runtime)) == {"eastview": Decimal(51)}
    assert len(await destination_rows(database_url)) == 51
    async with runtime.engine.connect() as conn:
        statuses = (await conn.execute(select(runs.c.status).order_by(runs.c.id))).scalars().all()
        state = await conn.scalar(select(stream_states.c.state))
    assert statuses == ["failed", "succeeded"]
    assert state["files"]["payroll_2026-10.csv"]["complete"] is True
    assert state["files"]["payroll_2026-10.csv"]["rows"] == 51


async def test_a_disabled_route_or_connection_is_refused(runtime, config_dir):
    routes = config_dir / "routes.toml"
    routes.write_text(
        routes.read_text().replace(
            "[routes.eastview-payroll]\n", "[routes.eastview-payroll]\nenabled = false\n"
        )
    )
    millbrook = config_dir / "connections" / "millbrook-payroll.toml"
    millbrook.write_text(
        millbrook.read_text().replace(
            'member = "millbrook"', 'member = "millbrook"\nenabled = false'
        )
    )
    await apply(runtime.engine, load_config(config_dir))

    with pytest.raises(RouteRefused, match="route 'eastview-payroll' is disabled"):
        await run_route(runtime.engine, runtime.plugins, "eastview-payroll")
    with pytest.raises(
        RouteRefused, match="route 'millbrook-payroll': connection 'millbrook-payroll' is disabled"
    ):
        await run_route(runtime.engine, runtime.plugins, "millbrook-payroll")
    async with runtime.engine.connect() as conn:
        assert [n for n in await route_names(conn) if n in ROUTES] == ["harbor-falls-payroll"]


async def test_a_re_exported_file_does_not_duplicate_its_dead_letters(runtime, config_dir):
    await apply_and_sync(runtime, config_dir)
    export = config_dir / "sample-data/harbor-falls/hf_payroll_oct2026.csv"
    export.write_text(
        export.read_text() + export.read_text().splitlines()[1].replace(",1,SAL", ",9,SAL") + "\n"
    )

    [_, harbor, _] = await apply_and_sync(runtime, config_dir)

    assert (harbor.counts.read, harbor.counts.rejected) == (45, 2)
    async with runtime.engine.connect() as conn:
        positions = (await conn.execute(select(dead_letters.c.position))).scalars().all()
    assert sorted(positions) == ["hf_payroll_oct2026.csv:12", "hf_payroll_oct2026.csv:6"]


async def test_a_run_left_running_under_this_very_pid_is_taken_over(runtime, config_dir):
    # Given a run row that names this process, as after a container restart that kept pid 1
    await apply(runtime.engine, load_config(config_dir))
    async with runtime.engine.begin() as conn:
        await conn.execute(
            runs.insert().values(
                route="eastview-payroll",
                service="cbo-payroll",
                trigger="schedule",
                status="running",
                worker=WORKER,
                started_at=datetime(2026, 11, 1, tzinfo=UTC),
            )
        )

    summary = await run_route(runtime.engine, runtime.plugins, "eastview-payroll")

    assert summary.status == "succeeded"
    async with runtime.engine.connect() as conn:
        statuses = (await conn.execute(select(runs.c.status).order_by(runs.c.id))).scalars().all()
    assert statuses == ["abandoned", "succeeded"]
