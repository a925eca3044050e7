"""The example vendor plugin package, installed as a vendor's would be, and the site plugin folder.

The vendor tests need ``pip install -e plugins/cohub-example-vendor`` (the CI script does it) and
skip, saying so, without it. The site plugin tests need nothing installed.
"""

from __future__ import annotations

import hashlib
import importlib
from datetime import UTC, date, datetime, timedelta, timezone
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

import msgspec
import pytest

from hub import sdk
from hub.model.hr import Employee
from hub.plugins import PluginFailure, PluginHost, PluginInfo

VENDOR_INSTALLED = any(ep.name == "example_vendor" for ep in entry_points(group="cohub"))
NOT_INSTALLED = (
    "cohub-example-vendor is not installed (no 'example_vendor' in the 'cohub' entry-point "
    "group): run `pip install -e plugins/cohub-example-vendor`"
)

#: An Example Vendor roster export: three good lines and two bad ones (2: truncated JSON,
#: 4: a status the vendor does not document).
ROSTER = [
    '{"staffId": "E1001", "givenName": "MARIA", "familyName": "LOPEZ", "hireDate": "2019-08-26",'
    ' "status": "A", "email": "mlopez@eastview.example.org", "modified": "2024-05-01T12:00:00Z"}',
    '{"staffId": "E1002", "givenName": "Tom", "familyName": "Reyes"',
    '{"staffId": "E1003", "givenName": "james", "familyName": "o\'brien", "hireDate": "2021-01-04",'
    ' "status": "L", "email": null, "modified": "2024-05-02T08:30:00Z", "badgeColor": "blue"}',
    '{"staffId": "E1004", "givenName": "Ana", "familyName": "Silva", "hireDate": "2020-09-01",'
    ' "status": "X", "email": "asilva@eastview.example.org", "modified": "2024-05-02T09:00:00Z"}',
    '{"staffId": "E1005", "givenName": "Dwayne", "middleName": "K", "familyName": "McDonald",'
    ' "hireDate": "2015-07-01", "terminationDate": "2024-04-30", "status": "T",'
    ' "modified": "2024-05-03T16:45:00-04:00"}',
]

MARIA = Employee(
    employee_id="E1001",
    first_name="MARIA",
    last_name="LOPEZ",
    status="active",
    hire_date=date(2019, 8, 26),
    work_email="mlopez@eastview.example.org",
    updated_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
)
JAMES = Employee(
    employee_id="E1003",
    first_name="james",
    last_name="o'brien",
    status="on_leave",
    hire_date=date(2021, 1, 4),
    work_email=None,
    updated_at=datetime(2024, 5, 2, 8, 30, tzinfo=UTC),
)
DWAYNE = Employee(
    employee_id="E1005",
    first_name="Dwayne",
    middle_name="K",
    last_name="McDonald",
    status="terminated",
    hire_date=date(2015, 7, 1),
    termination_date=date(2024, 4, 30),
    updated_at=datetime(2024, 5, 3, 16, 45, tzinfo=timezone(timedelta(hours=-4))),
)


@pytest.fixture
def vendor() -> ModuleType:
    if not VENDOR_INSTALLED:
        pytest.skip(NOT_INSTALLED)
    return importlib.import_module("cohub_example_vendor")


def write_export(folder: Path, name: str, lines: list[str]) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    content = ("\n".join(lines) + "\n").encode()
    (folder / name).write_bytes(content)
    return content


def open_roster(vendor: ModuleType, base_dir: Path, **options: str) -> sdk.Connector:
    cls = vendor.RosterJsonlSource
    return cls(
        cls.parse_options({"folder": "roster", **options}),
        {},
        sdk.ConnectionContext(connection="t", member="eastview", base_dir=str(base_dir)),
    )


async def read_all(connector: sdk.Connector, state: sdk.State | None = None) -> list[sdk.Batch]:
    return [batch async for batch in connector.read("employees", state)]


def batch_context(record: str) -> sdk.BatchContext:
    return sdk.BatchContext(
        route="eastview-roster",
        run_id=1,
        member="eastview",
        service="cbo-hr",
        source_stream="employees",
        destination_stream="employees",
        record=record,
    )


def plugin_named(host: PluginHost, name: str) -> PluginInfo:
    return next(info for info in host.plugins() if info.name == name)


# -- installed as a vendor's package -------------------------------------------------------------


def test_installed_vendor_package_is_an_entry_point_plugin_providing_its_three_extensions(vendor):
    # given the package installed, when the hub loads its plugins
    host = PluginHost([])

    # then it is listed under its entry-point name, with everything it registers
    info = plugin_named(host, "example_vendor")
    assert info.source.startswith("entry point")
    assert info.status == "loaded"
    assert info.version == "0.1.0"
    assert sorted(info.provides) == [
        "connector:roster_jsonl",
        "meter:roster_employees",
        "transform:title_case_names",
    ]
    assert host.connector("roster_jsonl") is vendor.RosterJsonlSource
    assert host.connector("roster_jsonl").title == "Example Vendor roster export"
    assert host.meters()["roster_employees"].unit == "employee"
    assert host.meters()["roster_employees"].aggregation == "unique_count"
    assert [f for f in host.failures if f.plugin == "example_vendor"] == []


def test_vendor_plugin_disabled_by_name_is_listed_as_disabled_and_provides_nothing(vendor):
    # given the plugin named in [plugins] disabled
    host = PluginHost([], disabled=["example_vendor"])

    # then it is still listed, as disabled, and none of its extensions exist
    info = plugin_named(host, "example_vendor")
    assert info.status == "disabled"
    assert info.provides == []
    assert "roster_jsonl" not in host.connectors()
    assert "title_case_names" not in host.transforms()
    assert "roster_employees" not in host.meters()
    # the built-ins are unaffected
    assert "flat_file" in host.connectors()


# -- the roster_jsonl connector ------------------------------------------------------------------


async def test_roster_export_yields_good_lines_as_employees_and_bad_lines_as_positioned_rejects(
    vendor, tmp_path
):
    # given an export with three good lines and two bad ones
    write_export(tmp_path / "roster", "roster.jsonl", ROSTER)
    connector = open_roster(vendor, tmp_path)

    # when the whole folder is read
    batches = await read_all(connector)

    # then the good lines are hr.employee records, mapped field by field
    records = [record for batch in batches for record in batch.records]
    assert records == [MARIA, JAMES, DWAYNE]
    # and each bad line is a reject at file:line, with why
    rejects = [reject for batch in batches for reject in batch.rejects]
    assert [reject.position for reject in rejects] == ["roster.jsonl:2", "roster.jsonl:4"]
    assert rejects[0].reason.startswith("line is not a JSON object: ")
    assert rejects[0].raw == {
        "unparsed_line": '{"staffId": "E1002", "givenName": "Tom", "familyName": "Reyes"'
    }
    assert rejects[1].reason == (
        "status 'X' is not one of A (active), L (on_leave), T (terminated)"
    )
    assert rejects[1].raw["staffId"] == "E1004"


async def test_schema_failures_name_the_vendor_field_not_the_canonical_one(vendor, tmp_path):
    # given an impossible hire date (line 2) and a line without staffId (line 3)
    write_export(
        tmp_path / "roster",
        "roster.jsonl",
        [
            ROSTER[0],
            '{"staffId": "E1006", "givenName": "Lee", "familyName": "Park",'
            ' "hireDate": "2019-02-30", "status": "A", "modified": "2024-05-01T12:00:00Z"}',
            '{"givenName": "Sam", "familyName": "Ortiz", "status": "A",'
            ' "modified": "2024-05-01T12:00:00Z"}',
        ],
    )

    # when it is read
    batches = await read_all(open_roster(vendor, tmp_path))

    # then only the good line is a record, and the reasons say hireDate and staffId
    assert [r.employee_id for b in batches for r in b.records] == ["E1001"]
    assert [(r.position, r.reason) for b in batches for r in b.rejects] == [
        ("roster.jsonl:2", "Invalid RFC3339 encoded date - at `hireDate`"),
        ("roster.jsonl:3", "Object missing required field `staffId`"),
    ]


async def test_second_read_from_the_final_state_yields_nothing(vendor, tmp_path):
    # given a folder read once to the end
    content = write_export(tmp_path / "roster", "roster.jsonl", ROSTER)
    first = await read_all(open_roster(vendor, tmp_path))
    final_state = first[-1].state
    assert final_state == {
        "files": {
            "roster.jsonl": {
                "sha256": hashlib.sha256(content).hexdigest(),
                "rows": 5,
                "complete": True,
            }
        }
    }

    # when it is read again from that state
    second = await read_all(open_roster(vendor, tmp_path), final_state)

    # then nothing is read twice
    assert second == []


async def test_read_resumes_mid_file_at_the_first_undelivered_line(vendor, tmp_path):
    # given five lines read two at a time
    write_export(tmp_path / "roster", "roster.jsonl", ROSTER)
    connector = open_roster(vendor, tmp_path)
    connector.batch_size = 2
    batches = await read_all(connector)
    progress = [batch.state["files"]["roster.jsonl"] for batch in batches]
    assert [(p["rows"], p["complete"]) for p in progress] == [(2, False), (4, False), (5, True)]

    # when a new run starts from the checkpoint after the first batch (a crash after line 2)
    resumed_connector = open_roster(vendor, tmp_path)
    resumed_connector.batch_size = 2
    resumed = await read_all(resumed_connector, batches[0].state)

    # then it reads lines 3 to 5 only
    assert [r for b in resumed for r in b.records] == [JAMES, DWAYNE]
    assert [r.position for b in resumed for r in b.rejects] == ["roster.jsonl:4"]
    assert resumed[-1].state == batches[-1].state


async def test_file_rewritten_under_the_same_name_is_read_again_from_its_first_line(
    vendor, tmp_path
):
    # given a file read to the end, then replaced by a new export with the same name
    write_export(tmp_path / "roster", "roster.jsonl", ROSTER[:1])
    first = await read_all(open_roster(vendor, tmp_path))
    write_export(tmp_path / "roster", "roster.jsonl", [ROSTER[0], ROSTER[2]])

    # when the folder is read from the old final state
    second = await read_all(open_roster(vendor, tmp_path), first[-1].state)

    # then the whole new file is read (destinations upsert, so E1001 does not duplicate)
    assert [r.employee_id for b in second for r in b.records] == ["E1001", "E1003"]


async def test_byte_order_mark_and_blank_lines_are_not_rejects_but_still_count_as_lines(
    vendor, tmp_path
):
    # given a Windows export: a byte-order mark, then a blank line between two staff members
    folder = tmp_path / "roster"
    folder.mkdir()
    content = b"\xef\xbb\xbf" + f"{ROSTER[0]}\r\n\r\n{ROSTER[2]}\r\n".encode()
    (folder / "roster.jsonl").write_bytes(content)

    # when it is read
    batches = await read_all(open_roster(vendor, tmp_path))

    # then both staff members arrive, nothing is rejected, and three lines were consumed
    assert [r for b in batches for r in b.records] == [MARIA, JAMES]
    assert [r for b in batches for r in b.rejects] == []
    assert batches[-1].state["files"]["roster.jsonl"]["rows"] == 3


async def test_only_files_matching_the_pattern_are_read_in_name_order(vendor, tmp_path):
    # given two exports and an unrelated file
    write_export(tmp_path / "roster", "2024-05-02.jsonl", [ROSTER[2]])
    write_export(tmp_path / "roster", "2024-05-01.jsonl", [ROSTER[0]])
    write_export(tmp_path / "roster", "notes.txt", ["not an export"])

    # when the folder is read
    batches = await read_all(open_roster(vendor, tmp_path))

    # then the exports are read oldest name first, and the notes not at all
    assert [r.employee_id for b in batches for r in b.records] == ["E1001", "E1003"]
    assert sorted(batches[-1].state["files"]) == ["2024-05-01.jsonl", "2024-05-02.jsonl"]


async def test_check_and_read_name_a_missing_export_folder(vendor, tmp_path):
    # given a connection whose folder does not exist
    connector = open_roster(vendor, tmp_path, folder="nowhere")

    # then both check and read say which folder is missing
    with pytest.raises(sdk.ConnectorConfigError, match="nowhere does not exist"):
        await connector.check()
    with pytest.raises(sdk.ConnectorConfigError, match="nowhere does not exist"):
        await read_all(connector)


async def test_streams_offer_employees_as_hr_employee(vendor, tmp_path):
    assert await open_roster(vendor, tmp_path).streams() == [
        sdk.StreamSpec(
            name="employees",
            record="hr.employee",
            description="staff members in files matching *.jsonl",
        )
    ]


def test_unknown_option_is_an_error_naming_the_key(vendor):
    with pytest.raises(msgspec.ValidationError, match="settle_seconds"):
        vendor.RosterJsonlSource.parse_options({"folder": "roster", "settle_seconds": 5})


def test_dead_letter_replay_maps_a_corrected_line_and_refuses_an_unknown_status(vendor, tmp_path):
    connector = open_roster(vendor, tmp_path)

    # a line that was not JSON, corrected by an admin, maps on replay
    corrected = {"unparsed_line": ROSTER[0]}
    assert connector.map_raw("employees", corrected) == MARIA

    # a staff object with an undocumented status still does not
    with pytest.raises(sdk.BadRecord, match="status 'X' is not one of"):
        connector.map_raw("employees", {"staffId": "E1004", "status": "X"})


# -- the title_case_names transform --------------------------------------------------------------


def test_title_case_names_fixes_all_caps_and_all_lower_names_and_keeps_mixed_case(vendor):
    # given employees as exported
    records = [MARIA, JAMES, DWAYNE]

    # when the transform runs on an hr.employee batch
    transform = vendor.TITLE_CASE_NAMES
    result = transform.function(batch_context("hr.employee"), records)

    # then shouting and whispering names are title-cased, mixed case is kept as written
    assert [(r.first_name, r.last_name) for r in result] == [
        ("Maria", "Lopez"),
        ("James", "O'Brien"),
        ("Dwayne", "McDonald"),
    ]
    assert result[0].employee_id == "E1001"
    assert result[0].work_email == "mlopez@eastview.example.org"
    assert result[2] is DWAYNE


def test_title_case_names_leaves_other_records_alone(vendor):
    records = [MARIA]
    assert vendor.title_case_names(batch_context("payroll.pay_line"), records) is records


# -- the roster_employees meter ------------------------------------------------------------------


def test_roster_employees_counts_distinct_employee_ids_in_a_batch(vendor):
    # given a batch where E1001 appears twice
    records = [MARIA, JAMES, MARIA]

    # then two employees were served
    assert vendor.ROSTER_EMPLOYEES.measure(batch_context("hr.employee"), records) == 2


def test_roster_employees_does_not_apply_to_other_records(vendor):
    assert vendor.ROSTER_EMPLOYEES.measure(batch_context("payroll.pay_line"), [MARIA]) is None
    assert vendor.ROSTER_EMPLOYEES.measure(batch_context(""), []) is None


# -- site plugins dropped into a plugins folder --------------------------------------------------

SITE_PLUGIN = """
from hub import sdk


def strip_badge_prefix(context, records):
    return records


@sdk.hookimpl
def cohub_register_transforms(register):
    register(sdk.Transform(name="strip_badge_prefix", function=strip_badge_prefix))
"""

BROKEN_PLUGIN = """
raise RuntimeError("cannot reach the badge server")
"""


def test_site_plugin_file_dropped_in_the_folder_is_loaded(tmp_path):
    # given one .py file in a plugins folder
    (tmp_path / "district_badges.py").write_text(SITE_PLUGIN)

    # when the hub loads that folder
    host = PluginHost([tmp_path])

    # then the file is a plugin named after it, and its transform is available
    info = plugin_named(host, "district_badges")
    assert info.source.startswith("folder")
    assert info.status == "loaded"
    assert info.provides == ["transform:strip_badge_prefix"]
    assert "strip_badge_prefix" in host.transforms()


def test_site_plugin_that_raises_on_import_is_listed_as_failed_and_the_hub_keeps_the_rest(
    tmp_path,
):
    # given a good site plugin and one that raises when imported
    (tmp_path / "district_badges.py").write_text(SITE_PLUGIN)
    (tmp_path / "broken_export.py").write_text(BROKEN_PLUGIN)

    # when the hub loads the folder
    host = PluginHost([tmp_path])

    # then the broken one is listed as failed with its error
    broken = plugin_named(host, "broken_export")
    assert broken.status == "failed"
    assert broken.error == "RuntimeError: cannot reach the badge server"
    assert (
        PluginFailure("broken_export", "import", "RuntimeError: cannot reach the badge server")
        in host.failures
    )
    # and the other site plugin and the bundled connectors are still there
    assert plugin_named(host, "district_badges").status == "loaded"
    assert "strip_badge_prefix" in host.transforms()
    assert "flat_file" in host.connectors()


def test_site_plugin_disabled_by_name_is_not_even_imported(tmp_path):
    # given a plugin file that would fail on import, disabled by name
    (tmp_path / "broken_export.py").write_text(BROKEN_PLUGIN)

    # when the hub loads the folder
    host = PluginHost([tmp_path], disabled=["broken_export"])

    # then it is listed as disabled, not failed
    info = plugin_named(host, "broken_export")
    assert (info.status, info.error) == ("disabled", None)
    assert [f for f in host.failures if f.plugin == "broken_export"] == []
