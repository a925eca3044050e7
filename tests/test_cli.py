"""The cohub command as an admin uses it: init, schema, plugins, demo twice, sync, runs."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def cohub(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("COHUB_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_init_writes_a_skeleton_and_a_master_key_only_its_owner_can_read(tmp_path):
    result = cohub("init", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    key = tmp_path / ".cohub" / "master.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / "config" / "cooperative.toml").is_file()
    assert (tmp_path / "config" / "connections").is_dir()
    assert cohub("validate", cwd=tmp_path).returncode == 0

    again = cohub("init", cwd=tmp_path)
    assert again.returncode == 0
    assert f"kept    {Path('.cohub/master.key')}" in again.stdout


def test_schema_prints_a_records_json_schema_with_pii_marks(tmp_path):
    result = cohub("schema", "payroll.pay_line", cwd=tmp_path)

    schema = json.loads(result.stdout)
    body = schema["$defs"]["PayLine"]
    assert body["x-record"] == "payroll.pay_line"
    assert body["x-key"] == ["pay_run_id", "employee_id", "line_number"]
    assert body["properties"]["ssn"]["x-pii"] is True
    assert body["properties"]["amount"]["format"] == "decimal"


def test_schema_of_an_unknown_record_names_the_known_ones(tmp_path):
    result = cohub("schema", "payroll.paycheck", cwd=tmp_path)

    assert result.returncode == 2
    assert "unknown record 'payroll.paycheck'; known: accounting.account" in result.stderr


def test_schema_of_a_connector_prints_its_options_schema(tmp_path):
    result = cohub("schema", "--connector", "flat_file", cwd=tmp_path)

    schema = json.loads(result.stdout)
    assert schema["$defs"]["FlatFileOptions"]["required"] == ["folder", "streams"]


def test_plugins_lists_name_version_source_and_what_each_provides(tmp_path):
    result = cohub("plugins", "--json", cwd=tmp_path)

    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert (
        plugins["flat_file"]["source"]
        == "entry point connectors.flat_file:FlatFileConnector (cohub)"
    )
    assert plugins["flat_file"]["version"] == "0.1.0"
    assert plugins["sql_table"]["provides"] == ["connector:sql_table"]


def test_demo_twice_writes_no_duplicate_rows_and_no_duplicate_usage(tmp_path):
    first = cohub("demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "eastview" in first.stdout and "records_synced" in first.stdout

    second = cohub("demo", cwd=tmp_path)
    assert second.returncode == 0, second.stderr

    usage = cohub("usage", "--meter", "records_synced", "--format", "csv", cwd=tmp_path).stdout
    assert usage.splitlines() == [
        "member,service,meter,quantity,unit,aggregation",
        "eastview,cbo-accounting,records_synced,10,record,sum",  # not 1E+1
        "eastview,cbo-payroll,records_synced,51,record,sum",
        "eastview,cbo-personnel,records_synced,19,record,sum",
        "eastview,cooperative-purchasing,records_synced,3,record,sum",
        "harbor-falls,cbo-accounting,records_synced,17,record,sum",
        "harbor-falls,cbo-payroll,records_synced,42,record,sum",
        "harbor-falls,cbo-personnel,records_synced,16,record,sum",
        "millbrook,cbo-accounting,records_synced,10,record,sum",
        "millbrook,cbo-payroll,records_synced,39,record,sum",
        "millbrook,cbo-personnel,records_synced,14,record,sum",
        "millbrook,shared-helpdesk,records_synced,8,record,sum",
    ]
    import sqlite3

    counts = {
        "cbo_payroll.db": {"pay_lines": 132},
        "cbo_hr.db": {"employees": 24, "assignments": 25},
        "cbo_ledger.db": {"journal_entries": 20, "budget_lines": 17},
        "cbo_helpdesk.db": {"tickets": 8},
        "coop_orders.db": {"acknowledgements": 2, "invoices": 1},  # from TechSource
    }
    for database, tables in counts.items():
        with sqlite3.connect(tmp_path / ".cohub" / database) as db:
            for table, count in tables.items():
                assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (count,), table


def test_sync_of_an_unknown_route_is_refused_and_exits_1(tmp_path):
    assert cohub("apply", str(REPO / "config"), cwd=tmp_path).returncode == 0

    result = cohub("sync", "nowhere", cwd=tmp_path)

    assert result.returncode == 1
    assert "no route 'nowhere'" in result.stderr


def test_sync_then_runs_shows_the_history(tmp_path):
    assert cohub("apply", str(REPO / "config"), cwd=tmp_path).returncode == 0
    assert cohub("sync", "millbrook-payroll", cwd=tmp_path).returncode == 0

    runs = cohub("runs", cwd=tmp_path)

    assert "millbrook-payroll" in runs.stdout
    assert "succeeded" in runs.stdout


def test_apply_dry_run_prints_the_diff_and_changes_nothing(tmp_path):
    result = cohub("apply", "--dry-run", str(REPO / "config"), cwd=tmp_path)

    assert result.returncode == 0
    assert "+ member eastview" in result.stdout
    assert "+ cooperative northern-rivers" in result.stdout
    assert "would apply 42 change(s)" in result.stdout
    assert (
        "no changes" not in cohub("apply", "--dry-run", str(REPO / "config"), cwd=tmp_path).stdout
    )


def test_json_logs_are_one_object_a_line(tmp_path):
    assert cohub("apply", str(REPO / "config"), cwd=tmp_path).returncode == 0

    result = cohub("--json", "--log-level", "info", "sync", "millbrook-payroll", cwd=tmp_path)

    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["run.started", "run.finished"]
    assert events[1]["route"] == "millbrook-payroll"
    assert events[1]["written"] == 39


@pytest.mark.parametrize("command", [["deadletters", "list"], ["usage"], ["runs"]])
def test_read_commands_work_on_an_empty_hub(tmp_path, command):
    assert cohub(*command, cwd=tmp_path).returncode == 0


def test_check_reaches_every_connection_and_lists_its_streams(tmp_path):
    assert cohub("apply", str(REPO / "config"), cwd=tmp_path).returncode == 0

    result = cohub("check", cwd=tmp_path)

    assert result.returncode == 0, result.stdout
    assert "eastview-payroll" in result.stdout
    assert "pay_lines (payroll.pay_line)" in result.stdout


def test_check_of_a_broken_connection_exits_1_with_the_reason(tmp_path):
    config = tmp_path / "config"
    import shutil

    shutil.copytree(REPO / "config", config)
    (config / "sample-data" / "millbrook" / "PAYEXP_202610.txt").unlink()
    shutil.rmtree(config / "sample-data" / "eastview")
    assert cohub("apply", str(config), cwd=tmp_path).returncode == 0

    result = cohub("check", "eastview-payroll", "millbrook-payroll", cwd=tmp_path)

    assert result.returncode == 1
    assert (
        f"ConnectorConfigError: folder {config / 'sample-data/eastview'} does not exist"
        in result.stdout
    )


def test_a_closed_months_statements_go_to_the_accounting_connection_as_invoices(tmp_path):
    import sqlite3

    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    assert cohub("apply", str(config), cwd=tmp_path).returncode == 0
    env = {"COHUB_CONFIG": str(config)}
    posted = cohub(
        *("usage", "post", "--member", "eastview", "--service", "cbo-payroll"),
        *("--meter", "records_synced", "--quantity", "1200", "--key", "oct-lines"),
        *("--at", "2026-10-15T12:00:00-04:00"),
        cwd=tmp_path,
        env=env,
    )
    assert posted.returncode == 0, posted.stderr

    refused = cohub("billing", "send", "2026-10", "--to", "cbo-payroll-db", cwd=tmp_path, env=env)
    closed = cohub("billing", "close", "2026-10", cwd=tmp_path, env=env)
    sent = [
        cohub("billing", "send", "2026-10", "--to", "cbo-payroll-db", cwd=tmp_path, env=env)
        for _ in range(2)
    ]

    assert refused.returncode == 2
    assert "cohub billing close 2026-10` first" in refused.stderr
    assert closed.returncode == 0 and "stored 3 statement(s)" in closed.stdout
    assert all(s.returncode == 0 for s in sent), sent[-1].stderr
    with sqlite3.connect(tmp_path / ".cohub" / "cbo_payroll.db") as db:
        invoices = db.execute(
            "SELECT member, invoice_id, vendor_id, total_amount FROM invoices ORDER BY member"
        ).fetchall()
    # 1,000 pay lines at 0.35 and 200 at 0.28, plus a twelfth of the administration budget
    # split by RWADA (October is the fourth month: 104,166.67 this month).
    assert invoices[0][:3] == ("eastview", "2026-10-eastview", "northern-rivers")
    assert [row[0] for row in invoices] == ["eastview", "harbor-falls", "millbrook"]
    # And the personnel-records service's monthly base fee (no usage yet).
    assert Decimal(invoices[0][3]) == (
        Decimal("350.00") + Decimal("56.00") + Decimal("32975.18") + Decimal("75.00")
    )
