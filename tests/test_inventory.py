"""The data inventory: per member, service and route, which PII flows where and what stays."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from hub.apply import apply
from hub.config import load_config
from hub.inventory import inventory
from tests.test_cli import cohub
from tests.test_end_to_end import apply_and_sync

REPO = Path(__file__).resolve().parent.parent


async def test_each_route_names_its_records_pii_its_destination_and_dead_letters(
    runtime, config_dir
):
    await apply_and_sync(runtime, config_dir)

    flows = {f.route: f for f in await inventory(runtime.engine, runtime.plugins)}

    assert sorted(flows) == [
        "eastview-assignments",
        "eastview-budget",
        "eastview-employees",
        "eastview-orders",
        "eastview-payroll",
        "harbor-falls-assignments",
        "harbor-falls-budget",
        "harbor-falls-employees",
        "harbor-falls-journal",
        "harbor-falls-payroll",
        "millbrook-assignments",
        "millbrook-employees",
        "millbrook-journal",
        "millbrook-payroll",
        "millbrook-tickets",
        "techsource-acknowledgements",
        "techsource-invoices",
    ]
    employees = flows["eastview-employees"]
    assert (employees.source_connector, employees.record) == ("sql_source", "hr.employee")
    assert employees.pii_fields == [
        "birth_date",
        "home_address",
        "personal_email",
        "personal_phone",
        "ssn",
    ]
    assert (employees.destination, employees.service) == ("cbo-hr-db", "cbo-personnel")
    assert flows["harbor-falls-journal"].pii_fields == []
    harbor = flows["harbor-falls-payroll"]
    assert (harbor.member, harbor.service) == ("harbor-falls", "cbo-payroll")
    assert harbor.member_name == "Harbor Falls City School District"
    assert (harbor.source_connector, harbor.source_stream) == ("flat_file", "pay_lines")
    assert harbor.record == "payroll.pay_line"
    assert harbor.pii_fields == ["bank_account", "ssn"]
    assert (harbor.destination, harbor.destination_owner) == ("cbo-payroll-db", "cooperative")
    # The example's two bad Harbor Falls lines, kept in the clear: the test hub has no master key.
    assert (harbor.dead_letters_open, harbor.dead_letters_resolved) == (2, 0)
    assert (harbor.dead_letters_sealed, harbor.dead_letters_unsealed) == (0, 2)
    assert flows["eastview-payroll"].dead_letters_open == 0
    # Without a [retention] table open dead letters are kept; resolved ones go at the next purge.
    assert (harbor.dead_letters_days, harbor.resolved_dead_letters_days) == (None, 0)


async def test_source_columns_holding_pii_and_the_stream_periods_are_listed(runtime, config_dir):
    path = config_dir / "connections" / "eastview-payroll.toml"
    path.write_text(path.read_text() + 'ssn = "SSN"\nbank_account = "DirectDepositAcct"\n')
    config = load_config(config_dir)
    await apply(runtime.engine, config)

    flows = {f.route: f for f in await inventory(runtime.engine, runtime.plugins, config.retention)}

    assert flows["eastview-payroll"].pii_columns == ["DirectDepositAcct", "SSN"]
    assert flows["millbrook-payroll"].pii_columns == []
    assert flows["eastview-payroll"].dead_letters_days == 30  # [retention.streams.pay_lines]
    assert flows["eastview-payroll"].resolved_dead_letters_days == 30


def test_cohub_data_inventory_prints_json_csv_and_a_table(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    assert cohub("demo", str(config), cwd=tmp_path).returncode == 0

    as_json = cohub("--config", str(config), "data", "inventory", "--json", cwd=tmp_path)
    as_csv = cohub("--config", str(config), "data", "inventory", "--csv", cwd=tmp_path)
    table = cohub("--config", str(config), "data", "inventory", cwd=tmp_path)

    assert as_json.returncode == as_csv.returncode == table.returncode == 0, as_json.stderr
    flows = json.loads(as_json.stdout)
    members = ["cooperative"] * 2 + ["eastview"] * 5 + ["harbor-falls"] * 5 + ["millbrook"] * 5
    assert [f["member"] for f in flows] == members
    harbor = next(f for f in flows if f["route"] == "harbor-falls-payroll")
    assert harbor["pii_fields"] == ["bank_account", "ssn"]
    rows = {row["route"]: row for row in csv.DictReader(io.StringIO(as_csv.stdout))}
    assert rows["harbor-falls-payroll"]["pii_fields"] == "bank_account;ssn"
    assert rows["harbor-falls-payroll"]["dead_letters_open"] == "2"
    assert rows["eastview-employees"]["destination"] == "cbo-hr-db"
    assert "Personal data inventory" in table.stdout
    assert "harbor-falls-payroll" in table.stdout
