"""The Skyward Qmlativ HR connector against a local Qmlativ API (tests/vendor/qmlativ_api.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from connectors.skyward_qmlativ import SkywardQmlativ
from connectors.sql_table import StreamTable
from hub import sdk
from hub.apply import apply
from hub.config import check_against_plugins, load_config
from hub.engine.run import run_route
from hub.model.hr import Assignment, Employee
from hub.plugins import PluginHost
from hub.sdk.http import close_sessions
from hub.store.database import create_engine
from tests.vendor.qmlativ_api import QmlativApi

SECRET = "s3cret"
FAST = {
    "retry_attempts": 4,
    "retry_base_seconds": 0.01,
    "retry_cap_seconds": 0.02,
    "max_retry_after_seconds": 0.05,
    "timeout_seconds": 5,
}


def employee(n: int, **extra) -> dict:
    return {
        "EmployeeID": n,
        "EmployeeNumber": f"{1000 + n}",
        "Name": {"FirstName": "Katherine", "MiddleName": None, "LastName": f"Johnson{n}"},
        "HireDate": "2019-08-26",
        "TerminationDate": None,
        "IsTerminated": False,
        "WorkEmailAddress": f"k{n}@harbor.example.org",
        "ModifiedTime": "2026-05-01T12:00:00",
        **extra,
    }


@pytest.fixture
async def api() -> AsyncIterator[QmlativApi]:
    server = QmlativApi(client_secret=SECRET)
    await server.start()
    yield server
    await close_sessions()
    await server.close()


def connector(api: QmlativApi, secret: str = SECRET, **options) -> SkywardQmlativ:
    parsed = SkywardQmlativ.parse_options(
        {"base_url": api.base_url, "client_id": "cohub", **FAST, **options}
    )
    context = sdk.ConnectionContext(connection="harbor-skyward", member="harbor-falls")
    return SkywardQmlativ(parsed, {"client_secret": secret}, context)


async def read_all(sky: SkywardQmlativ, stream: str, state=None) -> list[sdk.Batch]:
    return [batch async for batch in sky.read(stream, state)]


def ids(batches: list[sdk.Batch]) -> list[str]:
    return [r.employee_id for b in batches for r in b.records]


@pytest.mark.parametrize(
    ("count", "requests"),
    [(0, 1), (3, 1), (7, 3)],
    ids=["empty", "exactly-one-page", "last-page-partial"],
)
async def test_a_read_follows_next_page_urls_to_the_last_page(api, count, requests):
    api.objects["Employee/Employee"] = [employee(n) for n in range(1, count + 1)]

    batches = await read_all(connector(api, page_size=3), "employees")

    assert ids(batches) == [f"{1000 + n}" for n in range(1, count + 1)]
    assert len(api.requests) == requests
    assert api.requests[0].startswith("/api/Generic/1/Employee/Employee/1/3?searchFields=")
    assert batches[-1].state == {"next": None}


async def test_the_employee_mapping(api):
    api.objects["Employee/Employee"] = [
        employee(1, TerminationDate="2026-04-30", IsTerminated=True)
    ]
    [record] = [r for b in await read_all(connector(api), "employees") for r in b.records]
    assert record == Employee(
        employee_id="1001",
        first_name="Katherine",
        last_name="Johnson1",
        status="terminated",
        hire_date=date(2019, 8, 26),
        termination_date=date(2026, 4, 30),
        work_email="k1@harbor.example.org",
        updated_at=datetime(2026, 5, 1, 12, tzinfo=UTC),
    )


async def test_positions_map_to_assignments(api):
    api.objects["Employee/EmployeePosition"] = [
        {
            "EmployeePositionID": 7,
            "Employee": {"EmployeeNumber": "1001"},
            "Position": {"Code": "TCH-MATH", "JobClass": "Teacher", "Description": "Math teacher"},
            "Building": {"Code": "HS"},
            "FTE": 0.75,
            "Step": "MA step 4",
            "StartDate": "2026-08-20",
            "EndDate": None,
            "ModifiedTime": "2026-08-01T09:30:00",
        }
    ]
    [record] = [r for b in await read_all(connector(api), "assignments") for r in b.records]
    assert record == Assignment(
        employee_id="1001",
        position_id="TCH-MATH",
        job_class="Teacher",
        title="Math teacher",
        fte=Decimal("0.75"),
        location="HS",
        salary_step="MA step 4",
        start_date=date(2026, 8, 20),
        updated_at=datetime(2026, 8, 1, 9, 30, tzinfo=UTC),
    )


async def test_a_read_resumes_from_the_stored_next_page(api):
    api.objects["Employee/Employee"] = [employee(n) for n in range(1, 6)]
    first = await read_all(connector(api, page_size=2), "employees")
    resumed = await read_all(connector(api, page_size=2), "employees", first[0].state)
    assert ids(resumed) == ["1003", "1004", "1005"]


async def test_429_with_retry_after_and_5xx_are_retried(api):
    api.objects["Employee/Employee"] = [employee(n) for n in range(1, 5)]
    api.fail_next("Employee/Employee", 429, retry_after="1")
    api.fail_next("Employee/Employee", 502)
    sky = connector(api, page_size=2)

    assert ids(await read_all(sky, "employees")) == ["1001", "1002", "1003", "1004"]
    assert sky.client.counts.retries == 2


async def test_an_expired_token_is_fetched_again(api):
    api.token_uses = 1
    api.objects["Employee/Employee"] = [employee(n) for n in range(1, 6)]

    batches = await read_all(connector(api, page_size=2), "employees")

    assert len(ids(batches)) == 5
    assert api.tokens_issued == 3


async def test_malformed_objects_become_rejects_with_reasons(api):
    api.objects["Employee/Employee"] = [
        employee(1),
        ["not", "an", "object"],
        employee(3, HireDate="26/08/2019"),
    ]
    sky = connector(api)

    batches = await read_all(sky, "employees")

    assert ids(batches) == ["1001"]
    assert [(r.position, r.reason) for r in batches[0].rejects] == [
        ("page 1:1", "a Qmlativ object is a JSON object, not list"),
        ("page 1:2 EmployeeID 3", "Invalid RFC3339 encoded date - at `$.hire_date`"),
    ]
    fixed = {**batches[0].rejects[1].raw, "HireDate": "2019-08-26"}
    assert sky.map_raw("employees", fixed).hire_date == date(2019, 8, 26)


async def test_an_answer_without_objects_fails_the_read(api):
    api.fail_next("Employee/Employee", 200)
    with pytest.raises(sdk.ConnectorError, match="the answer has no Objects list"):
        await read_all(connector(api), "employees")


async def test_check_passes_and_lists_streams(api):
    sky = connector(api)
    await sky.check()
    assert [(s.name, s.record) for s in await sky.streams()] == [
        ("employees", "hr.employee"),
        ("assignments", "hr.assignment"),
    ]


async def test_check_says_a_wrong_url_has_no_token_endpoint(api):
    with pytest.raises(sdk.ConnectorConfigError, match="has no Qmlativ token endpoint"):
        await connector(api, base_url=api.base_url + "wrong/").check()


async def test_check_says_the_credentials_were_refused(api):
    with pytest.raises(sdk.AuthError, match=r"refused the API key 'cohub'.*HTTP 401"):
        await connector(api, secret="wrong").check()


async def test_check_names_the_object_the_user_may_not_read(api):
    api.forbidden.add("Employee/EmployeePosition")
    with pytest.raises(
        sdk.AuthError,
        match=re.escape("may not read Generic/1/Employee/EmployeePosition/1/1 (HTTP 403)"),
    ):
        await connector(api).check()


async def test_check_says_the_host_cannot_be_reached():
    sky = SkywardQmlativ(
        SkywardQmlativ.parse_options(
            {"base_url": "http://127.0.0.1:9/api", "client_id": "x", **FAST, "retry_attempts": 1}
        ),
        {"client_secret": "x"},
        sdk.ConnectionContext(connection="c", member=None),
    )
    with pytest.raises(
        sdk.TransientError, match=re.escape("cannot reach Qmlativ at http://127.0.0.1:9/api/")
    ):
        await sky.check()
    await close_sessions()


async def test_a_full_refresh_sync_through_the_engine(
    runtime, config_dir, database_url, api, monkeypatch
):
    # given Harbor Falls' Qmlativ with three employees, one malformed
    monkeypatch.setenv("QMLATIV_SECRET", SECRET)
    api.objects["Employee/Employee"] = [employee(1), employee(2), employee(3, Name=None)]
    with (config_dir / "cooperative.toml").open("a") as cooperative:
        cooperative.write('\n[services.cbo-hr]\nname = "Central Business Office: HR records"\n')
    (config_dir / "connections" / "harbor-skyward.toml").write_text(
        f'connector = "skyward_qmlativ"\nmember = "harbor-falls"\n\n[options]\n'
        f'base_url = "{api.base_url}"\nclient_id = "cohub"\npage_size = 2\n\n'
        '[secrets]\nclient_secret = "env:QMLATIV_SECRET"\n'
    )
    with (config_dir / "routes.toml").open("a") as routes:
        routes.write(
            '\n[routes.harbor-staff]\nsource = "harbor-skyward"\nsource_stream = "employees"\n'
            'destination = "cbo-payroll-db"\ndestination_stream = "employees"\n'
            'service = "cbo-hr"\nmode = "full_refresh"\n'
        )
    runtime.plugins = PluginHost([config_dir.parent / "plugins"])
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)

    # when the route runs twice
    first = await run_route(runtime.engine, runtime.plugins, "harbor-staff")
    second = await run_route(runtime.engine, runtime.plugins, "harbor-staff")

    # then both runs read everything, and the database holds each good employee once
    assert first.status == "succeeded", first.error
    assert (first.counts.read, first.counts.written, first.counts.rejected) == (3, 2, 1)
    assert second.status == "succeeded", second.error
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            table = StreamTable("employees", Employee).table
            keys = (
                await conn.execute(select(table.c.record_key).order_by(table.c.record_key))
            ).all()
    finally:
        await engine.dispose()
    assert [k for (k,) in keys] == ["1001", "1002"]


def test_options_schema_and_secrets():
    schema = SkywardQmlativ.options_schema()["$defs"]["QmlativOptions"]
    assert {"base_url", "client_id", "ca_bundle", "entity_id"} <= set(schema["properties"])
    assert SkywardQmlativ.secrets == ("client_secret",)
