"""The Ed-Fi ODS/API connector against a local Ed-Fi API (tests/vendor/edfi_api.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors.edfi import EdFi
from connectors.sql_table import StreamTable
from hub import sdk
from hub.apply import apply
from hub.config import check_against_plugins, load_config
from hub.engine.run import run_route
from hub.model.hr import Assignment, Employee
from hub.plugins import PluginHost
from hub.sdk.http import close_sessions
from hub.store.database import create_engine
from hub.store.tables import dead_letters
from tests.vendor.edfi_api import EdFiApi

SECRET = "s3cret"
FAST = {
    "retry_attempts": 4,
    "retry_base_seconds": 0.01,
    "retry_cap_seconds": 0.02,
    "max_retry_after_seconds": 0.05,
    "timeout_seconds": 5,
}


def staff(n: int, **extra) -> dict:
    return {
        "staffUniqueId": f"S{n:04d}",
        "firstName": "Ada",
        "lastSurname": f"Lovelace{n}",
        "electronicMails": [
            {
                "electronicMailAddress": f"s{n}@eastview.example.org",
                "electronicMailTypeDescriptor": "uri://ed-fi.org/ElectronicMailTypeDescriptor#Work",
            }
        ],
        **extra,
    }


@pytest.fixture
async def api() -> AsyncIterator[EdFiApi]:
    server = EdFiApi(client_secret=SECRET)
    await server.start()
    yield server
    await close_sessions()
    await server.close()


def connector(api: EdFiApi, secret: str = SECRET, **options) -> EdFi:
    parsed = EdFi.parse_options({"base_url": api.base_url, "client_id": "cohub", **FAST, **options})
    context = sdk.ConnectionContext(connection="eastview-edfi", member="eastview")
    return EdFi(parsed, {"client_secret": secret}, context)


async def read_all(edfi: EdFi, stream: str, state=None) -> list[sdk.Batch]:
    return [batch async for batch in edfi.read(stream, state)]


def ids(batches: list[sdk.Batch]) -> list[str]:
    return [r.employee_id for b in batches for r in b.records]


# --- paging ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "pages"),
    [(0, 0), (3, 1), (7, 3)],
    ids=["empty", "exactly-one-page", "last-page-partial"],
)
async def test_a_first_read_walks_offset_pages_until_the_total_count(api, count, pages):
    # given `count` staff and pages of 3
    for n in range(1, count + 1):
        api.put("staffs", staff(n))
    edfi = connector(api, page_size=3)

    # when the employees are read
    batches = await read_all(edfi, "employees")

    # then each is delivered once, one batch per page plus the closing one, and the walk
    # stops at the Total-Count without asking for an empty page (except when there is none)
    assert ids(batches) == [f"S{n:04d}" for n in range(1, count + 1)]
    assert len(batches) == pages + 1
    asked = [r for r in api.requests if r.startswith("GET /data/v3/ed-fi/staffs?")]
    assert len(asked) == max(pages, 1)
    assert "totalCount=true" in asked[0] and "totalCount" not in "".join(asked[1:])
    assert batches[-1].state == {"change_version": count}


async def test_the_employee_mapping_follows_data_standard_5(api):
    api.put("staffs", staff(1, middleName="K", birthDate="1990-12-10"), "2026-09-01T12:00:00Z")
    [employee] = ids_records = [
        r for b in await read_all(connector(api), "employees") for r in b.records
    ]
    assert ids_records[0] == Employee(
        employee_id="S0001",
        first_name="Ada",
        middle_name="K",
        last_name="Lovelace1",
        birth_date=date(1990, 12, 10),
        work_email="s1@eastview.example.org",
        updated_at=datetime(2026, 9, 1, 12, tzinfo=UTC),
    )
    assert employee.key == "S0001"


# --- retries and auth ------------------------------------------------------------------------


async def test_429_with_retry_after_and_5xx_are_retried(api):
    for n in range(1, 5):
        api.put("staffs", staff(n))
    api.fail_next("/data/v3/ed-fi/staffs", 429, retry_after="1")
    api.fail_next("/data/v3/ed-fi/staffs", 503)
    api.fail_next("/changeQueries/v1/availableChangeVersions", 500)
    edfi = connector(api, page_size=2)

    batches = await read_all(edfi, "employees")

    assert ids(batches) == ["S0001", "S0002", "S0003", "S0004"]
    assert edfi.client.counts.retries == 3


async def test_an_expired_token_is_fetched_again_and_the_read_goes_on(api):
    api.token_uses = 2  # the server refuses a token after two uses, as after its expiry
    for n in range(1, 8):
        api.put("staffs", staff(n))
    edfi = connector(api, page_size=2)

    batches = await read_all(edfi, "employees")

    assert len(ids(batches)) == 7
    assert api.tokens_issued >= 2


# --- malformed payloads -----------------------------------------------------------------------


async def test_malformed_resources_become_rejects_with_reasons(api):
    api.put("staffs", staff(1))
    api.put_raw("staffs", "not an object")
    api.put("staffs", {**staff(3), "firstName": None})
    api.put("staffs", staff(4))
    edfi = connector(api)

    batches = await read_all(edfi, "employees")

    assert ids(batches) == ["S0001", "S0004"]
    rejects = [r for b in batches for r in b.rejects]
    assert [(r.position.split(" id ")[0], r.reason) for r in rejects] == [
        ("staffs #1", "an Ed-Fi resource is an object, not str"),
        ("staffs #2", "Expected `str`, got `null` - at `$.first_name`"),
    ]
    # and a dead letter maps again through map_raw once corrected
    fixed = {**rejects[1].raw, "firstName": "Grace"}
    assert edfi.map_raw("employees", fixed).first_name == "Grace"


async def test_a_page_that_is_not_a_list_fails_the_read_naming_the_resource(api):
    api.fail_next("/data/v3/ed-fi/staffs", 200)  # answers {"message": "fault"}
    with pytest.raises(sdk.ConnectorError, match="staffs: the answer is dict"):
        await read_all(connector(api), "employees")


# --- change queries ---------------------------------------------------------------------------


async def test_a_second_read_asks_only_for_changes_and_deletes_after_the_last_version(api):
    # given a first complete read of three staff
    for n in (1, 2, 3):
        api.put("staffs", staff(n))
    first = await read_all(connector(api), "employees")
    state = first[-1].state
    assert state == {"change_version": 3}

    # when S0002 changes, S0004 arrives and S0001 is deleted
    api.put("staffs", staff(2, firstName="Augusta"))
    api.put("staffs", staff(4))
    api.delete("staffs", {"staffUniqueId": "S0001"})
    edfi = connector(api)
    again = await read_all(edfi, "employees", state)

    # then only the two changes are read, in the window after version 3, and the state moves on
    assert ids(again) == ["S0002", "S0004"]
    assert any(
        "maxChangeVersion=6" in r and "minChangeVersion=4" in r
        for r in api.requests
        if r.startswith("GET /data/v3/ed-fi/staffs?")
    )
    assert again[-1].state == {"change_version": 6}
    # and the deletion is delivered by its natural key
    assert [key for batch in again for key in batch.deletes] == ["S0001"]
    assert await edfi.deleted_keys("employees", 3, 6) == ["S0001"]
    assert any(r.startswith("GET /data/v3/ed-fi/staffs/deletes?") for r in api.requests)

    # and a read with nothing new asks nothing else
    assert await read_all(connector(api), "employees", again[-1].state) == []


async def test_a_read_cut_short_resumes_inside_its_change_window(api):
    for n in range(1, 6):
        api.put("staffs", staff(n))
    edfi = connector(api, page_size=2)
    first = await read_all(edfi, "employees")
    mid = first[0].state
    assert mid == {"change_version": None, "target": 5, "phase": "upserts", "offset": 2}

    api.put("staffs", staff(9))  # newer than the window being resumed: not read yet
    resumed = await read_all(connector(api, page_size=2), "employees", mid)

    assert ids(resumed) == ["S0003", "S0004", "S0005"]
    assert resumed[-1].state == {"change_version": 5}


async def test_assignment_deletes_map_to_the_canonical_key(api):
    row = {
        "educationOrganizationReference": {"educationOrganizationId": 255901},
        "staffReference": {"staffUniqueId": "S0001"},
        "staffClassificationDescriptor": "uri://ed-fi.org/StaffClassificationDescriptor#Teacher",
        "beginDate": "2026-08-15",
        "positionTitle": "Math teacher",
        "fullTimeEquivalency": 0.5,
    }
    api.put("staffEducationOrganizationAssignmentAssociations", row)
    [assignment] = [r for b in await read_all(connector(api), "assignments") for r in b.records]
    assert (assignment.position_id, assignment.fte, assignment.location) == (
        "255901:Teacher",
        Decimal("0.5"),
        "255901",
    )
    keys = {
        k: v
        for k, v in {
            "educationOrganizationId": 255901,
            "staffClassificationDescriptor": row["staffClassificationDescriptor"],
            "beginDate": "2026-08-15",
            "staffUniqueId": "S0001",
        }.items()
    }
    api.delete("staffEducationOrganizationAssignmentAssociations", keys)
    assert await connector(api).deleted_keys("assignments", 1, 2) == [assignment.key]


async def test_finance_resources_map_to_accounting_records(api):
    account = {
        "accountIdentifier": "10-1000-100",
        "fiscalYear": 2026,
        "educationOrganizationId": 255901,
    }
    api.put(
        "localBudgets",
        {"localAccountReference": account, "asOfDate": "2026-07-01", "amount": 125000.10},
    )
    api.put(
        "localActuals",
        {"localAccountReference": account, "asOfDate": "2026-09-30", "amount": -42.5},
    )
    api.put(
        "chartOfAccounts",
        {
            "accountIdentifier": "10-1000-100",
            "accountName": "Instruction salaries",
            "fundDimensionReference": {"code": "10", "fiscalYear": 2026},
            "functionDimensionReference": {"code": "1000", "fiscalYear": 2026},
            "objectDimensionReference": {"code": "100", "fiscalYear": 2026},
        },
    )
    edfi = connector(api)
    [budget] = [r for b in await read_all(edfi, "budget_lines") for r in b.records]
    [actual] = [r for b in await read_all(edfi, "actuals") for r in b.records]
    [chart] = [r for b in await read_all(edfi, "accounts") for r in b.records]
    assert (budget.amount, budget.account.function, budget.budget_version) == (
        Decimal("125000.10"),
        "1000",
        "2026-07-01",
    )
    assert (actual.debit, actual.credit, actual.posted_on) == (
        Decimal(0),
        Decimal("42.5"),
        date(2026, 9, 30),
    )
    assert (chart.code, chart.account.fund, chart.title) == (
        "10-1000-100",
        "10",
        "Instruction salaries",
    )


# --- destination ------------------------------------------------------------------------------


async def test_writing_employees_twice_upserts_by_natural_key(api):
    records = [
        Employee(
            employee_id="S0100",
            first_name="Mary",
            last_name="Jackson",
            updated_at=datetime.now(UTC),
        ),
        Employee(
            employee_id="S0101",
            first_name="Dorothy",
            last_name="Vaughan",
            updated_at=datetime.now(UTC),
        ),
    ]
    edfi = connector(api)
    batch = sdk.Batch(records=records, state={})

    assert (await edfi.write("employees", batch, "eastview")).written == 2
    await edfi.write("employees", batch, "eastview")

    assert sorted(r["staffUniqueId"] for r in api.rows["staffs"]) == ["S0100", "S0101"]
    assert api.rows["staffs"][0]["lastSurname"] == "Jackson"
    with pytest.raises(sdk.ConnectorConfigError, match="cannot be written"):
        await edfi.write("budget_lines", batch, "eastview")


async def test_deleting_finds_each_resource_by_natural_key_and_deletes_it_by_id(api):
    edfi = connector(api)
    now = datetime.now(UTC)
    staff_records = [
        Employee(employee_id=n, first_name="Mary", last_name="Jackson", updated_at=now)
        for n in ("S0100", "S0101")
    ]
    assignment = Assignment(
        employee_id="S0100",
        position_id="255901:Teacher",
        job_class="Teacher",
        fte=Decimal("0.5"),
        location="255901",
        start_date=date(2026, 8, 15),
        updated_at=now,
    )
    await edfi.write("employees", sdk.Batch(records=staff_records, state={}), "eastview")
    await edfi.write("assignments", sdk.Batch(records=[assignment], state={}), "eastview")
    [staff_id] = [r["id"] for r in api.rows["staffs"] if r["staffUniqueId"] == "S0100"]

    assert await edfi.delete("assignments", [assignment.key], "eastview") == 1
    assert await edfi.delete("employees", ["S0100", "S9999"], "eastview") == 1
    assert await edfi.delete("employees", ["S0100"], "eastview") == 0

    assert [r["staffUniqueId"] for r in api.rows["staffs"]] == ["S0101"]
    assert api.rows["staffEducationOrganizationAssignmentAssociations"] == []
    assert f"DELETE /data/v3/ed-fi/staffs/{staff_id}" in api.requests
    with pytest.raises(sdk.ConnectorConfigError, match="cannot be written"):
        await edfi.delete("budget_lines", ["x"], "eastview")


# --- check ------------------------------------------------------------------------------------


async def test_check_passes_and_streams_name_their_records(api):
    edfi = connector(api)
    await edfi.check()
    assert [(s.name, s.record, s.writable) for s in await edfi.streams()] == [
        ("employees", "hr.employee", True),
        ("assignments", "hr.assignment", True),
        ("accounts", "accounting.account", False),
        ("budget_lines", "accounting.budget_line", False),
        ("actuals", "accounting.journal_entry", False),
    ]


async def test_check_says_a_wrong_url_is_not_an_ed_fi_api(api):
    with pytest.raises(sdk.ConnectorConfigError, match="is not an Ed-Fi ODS/API root: HTTP 404"):
        await connector(api, base_url=api.base_url + "nowhere/").check()


async def test_check_says_the_credentials_were_refused(api):
    with pytest.raises(
        sdk.AuthError, match=r"refused client_id 'cohub'.*HTTP 401 \(invalid_client\)"
    ):
        await connector(api, secret="wrong").check()


async def test_check_names_the_resource_the_client_may_not_read(api):
    api.forbidden.add("localBudgets")
    with pytest.raises(
        sdk.AuthError, match="may not read data/v3/ed-fi/localBudgets \\(HTTP 403\\)"
    ):
        await connector(api).check()


async def test_check_says_the_host_cannot_be_reached():
    edfi = EdFi(
        EdFi.parse_options(
            {"base_url": "http://127.0.0.1:9/", "client_id": "x", **FAST, "retry_attempts": 1}
        ),
        {"client_secret": "x"},
        sdk.ConnectionContext(connection="c", member=None),
    )
    with pytest.raises(
        sdk.TransientError, match=re.escape("cannot reach the Ed-Fi API at http://127.0.0.1:9/")
    ):
        await edfi.check()
    await close_sessions()


def test_options_have_a_json_schema_with_the_ca_bundle():
    schema = EdFi.options_schema()["$defs"]["EdFiOptions"]
    assert {"base_url", "client_id", "ca_bundle", "page_size"} <= set(schema["properties"])
    assert schema["required"] == ["base_url", "client_id"]
    assert EdFi.secrets == ("client_secret",)


# --- through the engine, on every backend ------------------------------------------------------


async def configure_route(runtime, config_dir: Path, base_url: str) -> None:
    with (config_dir / "cooperative.toml").open("a") as cooperative:
        cooperative.write('\n[services.cbo-hr]\nname = "Central Business Office: HR records"\n')
    (config_dir / "connections" / "eastview-edfi.toml").write_text(
        f'connector = "edfi"\nmember = "eastview"\n\n[options]\nbase_url = "{base_url}"\n'
        'client_id = "cohub"\npage_size = 2\nretry_base_seconds = 0.01\n'
        'max_retry_after_seconds = 0.05\n\n[secrets]\nclient_secret = "env:EDFI_SECRET"\n'
    )
    with (config_dir / "routes.toml").open("a") as routes:
        routes.write(
            '\n[routes.eastview-staff]\nsource = "eastview-edfi"\nsource_stream = "employees"\n'
            'destination = "cbo-payroll-db"\ndestination_stream = "employees"\nservice = "cbo-hr"\n'
        )
    runtime.plugins = PluginHost([config_dir.parent / "plugins"])
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)


async def stored_employees(database_url: str) -> list[tuple[str, str]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            table = StreamTable("employees", Employee).table
            rows = await conn.execute(
                select(table.c.record_key, table.c.first_name).order_by(table.c.record_key)
            )
            return [tuple(row) for row in rows]
    finally:
        await engine.dispose()


async def test_a_sync_delivers_staff_dead_letters_bad_ones_and_then_only_changes(
    runtime, config_dir, database_url, api, monkeypatch
):
    # given Eastview's Ed-Fi API with four staff, one malformed, behind a throttled first page
    monkeypatch.setenv("EDFI_SECRET", SECRET)
    for n in (1, 2, 3):
        api.put("staffs", staff(n))
    api.put("staffs", {**staff(4), "lastSurname": None})
    api.fail_next("/data/v3/ed-fi/staffs", 429, retry_after="1")
    await configure_route(runtime, config_dir, api.base_url)

    # when the route runs
    summary = await run_route(runtime.engine, runtime.plugins, "eastview-staff")

    # then three employees arrive, the fourth is a dead letter with its reason
    assert summary.status == "succeeded", summary.error
    assert (summary.counts.read, summary.counts.written, summary.counts.rejected) == (4, 3, 1)
    assert summary.counts.retried == 1
    assert await stored_employees(database_url) == [
        ("S0001", "Ada"),
        ("S0002", "Ada"),
        ("S0003", "Ada"),
    ]
    async with runtime.engine.connect() as conn:
        letters = (await conn.execute(select(dead_letters.c.position, dead_letters.c.reason))).all()
    assert [(p.split(" id ")[0], r) for p, r in letters] == [
        ("staffs #3", "Expected `str`, got `null` - at `$.last_name`")
    ]

    # when S0002 changes and the route runs again, only it is read
    api.put("staffs", staff(2, firstName="Augusta"))
    again = await run_route(runtime.engine, runtime.plugins, "eastview-staff")
    assert again.status == "succeeded", again.error
    assert (again.counts.read, again.counts.written) == (1, 1)
    assert ("S0002", "Augusta") in await stored_employees(database_url)


async def test_a_staff_deleted_in_ed_fi_is_marked_deleted_in_the_destination(
    runtime, config_dir, database_url, api, monkeypatch
):
    # given three staff synced to the CBO database
    monkeypatch.setenv("EDFI_SECRET", SECRET)
    for n in (1, 2, 3):
        api.put("staffs", staff(n))
    await configure_route(runtime, config_dir, api.base_url)
    first = await run_route(runtime.engine, runtime.plugins, "eastview-staff")
    assert first.status == "succeeded", first.error

    # when S0002 is deleted in Ed-Fi and the route runs again
    api.delete("staffs", {"staffUniqueId": "S0002"})
    again = await run_route(runtime.engine, runtime.plugins, "eastview-staff")

    # then its row is marked deleted, the others are not, and the run counts it
    assert (again.status, again.counts.read, again.counts.deleted) == ("succeeded", 0, 1)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            table = StreamTable("employees", Employee).table
            rows = await conn.execute(
                select(table.c.record_key, table.c.deleted_at).order_by(table.c.record_key)
            )
            marked = [(key, deleted is not None) for key, deleted in rows]
    finally:
        await engine.dispose()
    assert marked == [("S0001", False), ("S0002", True), ("S0003", False)]
