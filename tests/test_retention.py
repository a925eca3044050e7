"""Retention: `cohub data purge` destroys copies older than their periods, per stream, audited."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import func, select

from hub import audit
from hub.config import ConfigError, Retention, StreamRetention, load_config
from hub.retention import periods_for, purge
from hub.store.tables import dead_letters, runs, state_changes
from tests.test_cli import cohub
from tests.test_end_to_end import apply_and_sync

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)

RETENTION = Retention(
    dead_letters_days=90,
    resolved_dead_letters_days=10,
    runs_days=400,
    state_changes_days=400,
    streams={"pay_lines": StreamRetention(dead_letters_days=30)},
)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


async def seed(runtime, config_dir: Path) -> int:
    """The example synced, then history of known ages: dead letters of two streams, open and
    resolved, a run finished long ago with its snapshots, and two state changes."""
    summaries = await apply_and_sync(runtime, config_dir)
    run_id = summaries[0].id
    async with runtime.engine.begin() as conn:
        await conn.execute(dead_letters.delete())  # the sync's own: ages set below instead
        base = {
            "run_id": run_id,
            "position": "p",
            "reason": "bad",
            "raw": {"ssn": "x"},
            "resolved_at": None,
        }
        await conn.execute(
            dead_letters.insert(),
            [
                # pay_lines keeps open ones 30 days: the first goes, the second stays.
                {**base, "route": "eastview-payroll", "member": "eastview", "stream": "pay_lines",
                 "status": "open", "created_at": days_ago(31)},
                {**base, "route": "eastview-payroll", "member": "eastview", "stream": "pay_lines",
                 "status": "open", "created_at": days_ago(29)},
                # another stream follows [retention]: 90 days.
                {**base, "route": "millbrook-payroll", "member": "millbrook", "stream": "tickets",
                 "status": "open", "created_at": days_ago(31)},
                {**base, "route": "millbrook-payroll", "member": "millbrook", "stream": "tickets",
                 "status": "open", "created_at": days_ago(91)},
                # resolved 11 days ago goes, 9 days ago stays.
                {**base, "route": "millbrook-payroll", "member": "millbrook", "stream": "pay_lines",
                 "status": "replayed", "created_at": days_ago(50), "resolved_at": days_ago(11)},
                {**base, "route": "millbrook-payroll", "member": "millbrook", "stream": "pay_lines",
                 "status": "discarded", "created_at": days_ago(50), "resolved_at": days_ago(9)},
            ],
        )  # fmt: skip
        await conn.execute(
            runs.update().where(runs.c.id == run_id).values(finished_at=days_ago(401))
        )
        await conn.execute(
            state_changes.insert(),
            [
                {"route": "eastview-payroll", "action": "reset", "state_before": {"f": 1},
                 "state_after": None, "actor": "t", "changed_at": days_ago(401)},
                {"route": "eastview-payroll", "action": "reset", "state_before": {"f": 2},
                 "state_after": None, "actor": "t", "changed_at": days_ago(399)},
            ],
        )  # fmt: skip
    return run_id


async def counts(runtime) -> dict[str, int]:
    async with runtime.engine.connect() as conn:
        return {
            "dead_letters": await conn.scalar(select(func.count()).select_from(dead_letters)),
            "state_changes": await conn.scalar(select(func.count()).select_from(state_changes)),
            "snapshots": await conn.scalar(
                select(func.count()).select_from(runs).where(runs.c.state_after.is_not(None))
            ),
            "audit": await conn.scalar(
                select(func.count())
                .select_from(audit.audit_log)
                .where(audit.audit_log.c.action == "data.purge")
            ),
        }


def test_a_streams_override_wins_and_what_it_leaves_out_follows_retention():
    assert periods_for(RETENTION, "pay_lines").dead_letters_days == 30
    assert periods_for(RETENTION, "pay_lines").resolved_dead_letters_days == 10
    assert periods_for(RETENTION, "tickets").dead_letters_days == 90


async def test_a_dry_run_counts_what_would_go_and_destroys_nothing(runtime, config_dir):
    await seed(runtime, config_dir)
    before = await counts(runtime)

    report = await purge(runtime.engine, RETENTION, actor="t", dry_run=True, now=NOW)

    assert report.totals() == {
        "dead_letters_open": 2,
        "dead_letters_resolved": 1,
        "run_snapshots": 1,
        "state_changes": 1,
        "inbox_rows": 0,
    }
    assert await counts(runtime) == before


async def test_purge_destroys_per_stream_periods_and_records_one_audit_entry(runtime, config_dir):
    run_id = await seed(runtime, config_dir)
    before = await counts(runtime)

    report = await purge(runtime.engine, RETENTION, actor="retention-test", now=NOW)

    lines = {(x.member, x.stream): x for x in report.lines}
    assert lines["eastview", "pay_lines"].dead_letters_open == 1
    assert lines["eastview", "pay_lines"].run_snapshots == 1  # the route's source stream
    assert lines["eastview", "pay_lines"].state_changes == 1
    assert lines["millbrook", "tickets"].dead_letters_open == 1
    assert lines["millbrook", "pay_lines"].dead_letters_resolved == 1
    after = await counts(runtime)
    assert after["dead_letters"] == before["dead_letters"] - 3 == 3
    assert after["state_changes"] == 1
    assert after["snapshots"] == before["snapshots"] - 1
    assert after["audit"] == 1
    async with runtime.engine.connect() as conn:
        run = (await conn.execute(select(runs).where(runs.c.id == run_id))).mappings().one()
        assert run["state_before"] is None and run["state_after"] is None
        assert run["records_read"] > 0  # the run and its counts stay
        entries = [e async for e in audit.entries(conn)]
        _, _, breaks = await audit.verify(conn)
    entry = entries[-1]
    assert (entry.action, entry.actor, entry.target) == (
        "data.purge",
        "retention-test",
        "retention",
    )
    assert entry.details["totals"] == report.totals()
    assert breaks == []

    again = await purge(runtime.engine, RETENTION, actor="t", now=NOW)
    assert again.lines == []


async def test_without_periods_only_resolved_dead_letters_go(runtime, config_dir):
    await seed(runtime, config_dir)

    report = await purge(runtime.engine, Retention(), actor="t", now=NOW)

    assert report.totals() == {
        "dead_letters_open": 0,
        "dead_letters_resolved": 2,
        "run_snapshots": 0,
        "state_changes": 0,
        "inbox_rows": 0,
    }


def test_cohub_data_purge_dry_run_prints_json_and_keeps_everything(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    assert cohub("demo", str(config), cwd=tmp_path).returncode == 0

    result = cohub("--config", str(config), "data", "purge", "--dry-run", "--json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dry_run"] is True
    assert report["lines"] == []  # everything the demo wrote is new


def _write(folder: Path, text: str) -> None:
    path = folder / "cooperative.toml"
    path.write_text(path.read_text() + text)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(REPO / "config", target)
    text = (target / "cooperative.toml").read_text()
    (target / "cooperative.toml").write_text(text.split("\n# How long the hub keeps")[0] + "\n")
    return target


def issues(folder: Path) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as raised:
        load_config(folder)
    return [(Path(i.file).name, i.key, i.reason) for i in raised.value.issues]


def test_an_unknown_retention_key_is_an_error_naming_its_stream(folder):
    _write(folder, "[retention.streams.pay_lines]\ndead_letter_days = 30\n")

    assert issues(folder) == [
        (
            "cooperative.toml",
            "retention.streams.pay_lines.dead_letter_days",
            "Object contains unknown field `dead_letter_days`",
        )
    ]


def test_a_negative_period_and_a_stream_no_route_carries_are_errors(folder):
    _write(folder, "[retention]\nruns_days = -1\n[retention.streams.pay_line]\nruns_days = 5\n")

    assert issues(folder) == [
        ("cooperative.toml", "retention.runs_days", "must not be negative"),
        ("cooperative.toml", "retention.streams.pay_line", "no route reads or writes this stream"),
    ]


def test_the_example_retention_loads(tmp_path):
    retention = load_config(REPO / "config").retention

    assert retention.dead_letters_days == 90
    assert retention.streams["pay_lines"].dead_letters_days == 30


def test_every_retention_key_is_in_the_admin_guide():
    guide = (REPO / "docs" / "admin-guide.md").read_text()
    for struct in (Retention, StreamRetention):
        for field in msgspec.structs.fields(struct):
            assert f"`{field.name}`" in guide, field.name
