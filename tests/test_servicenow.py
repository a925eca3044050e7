"""The ServiceNow connector against a local Table API (tests/vendor/servicenow_api.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
from sqlalchemy import func, select

from connectors.servicenow import ServiceNow
from connectors.sql_table import StreamTable
from hub import sdk
from hub.apply import apply
from hub.config import check_against_plugins, load_config
from hub.engine.run import run_route
from hub.model.ticketing import Comment, Ticket
from hub.plugins import PluginHost
from hub.sdk.http import close_sessions
from hub.store.database import create_engine
from hub.store.tables import dead_letters, usage_events
from tests.canaries import plant
from tests.vendor.servicenow_api import ServiceNowApi

PASSWORD = plant("sn-password-canary-5e1a")
CLIENT_SECRET = plant("sn-client-secret-canary-77b0")
FAST = {
    "retry_attempts": 4,
    "retry_base_seconds": 0.01,
    "retry_cap_seconds": 0.02,
    "max_retry_after_seconds": 0.05,
    "timeout_seconds": 5,
}


@pytest.fixture
async def api() -> AsyncIterator[ServiceNowApi]:
    server = ServiceNowApi(password=PASSWORD, client_secret=CLIENT_SECRET)
    await server.start()
    yield server
    await close_sessions()
    await server.close()


def connector(
    api: ServiceNowApi, *, connection: str = "eastview-servicenow", secrets=None, **options
) -> ServiceNow:
    given = {"instance_url": api.base_url, "username": "cohub.integration", **FAST, **options}
    return ServiceNow(
        ServiceNow.parse_options(given),
        {"password": PASSWORD} if secrets is None else secrets,
        sdk.ConnectionContext(connection=connection, member="eastview"),
    )


def incidents(api: ServiceNowApi, count: int, *, step: float = 1) -> list[dict]:
    """`count` incidents by one caller, each `step` seconds after the last."""
    caller = api.user("Ana Muñoz", "ana.munoz", "amunoz@eastview.example.org")
    rows = []
    for n in range(1, count + 1):
        rows.append(api.incident(short_description=f"Projector {n}", caller_id=caller))
        api.tick(step)
    return rows


async def read_all(sn: ServiceNow, stream: str = "tickets", state=None) -> list[sdk.Batch]:
    return [batch async for batch in sn.read(stream, state)]


def numbers(batches: list[sdk.Batch]) -> list[str]:
    return [r.ticket_id for b in batches for r in b.records]


def listings(api: ServiceNowApi, table: str = "incident") -> list[str]:
    return [r for r in api.requests if r.startswith(f"GET /api/now/table/{table}?")]


def queries(api: ServiceNowApi, table: str = "incident") -> list[str]:
    """The sysparm_query of each listing of `table`, decoded."""
    return [parse_qs(urlsplit(r).query)["sysparm_query"][0] for r in listings(api, table)]


# --- paging ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "requests"),
    [(0, 1), (3, 1), (7, 3)],
    ids=["empty", "exactly-one-page", "last-page-short"],
)
async def test_a_read_pages_until_the_link_header_has_no_next(api, count, requests):
    # given `count` incidents a second apart and pages of 3
    incidents(api, count)
    sn = connector(api, page_size=3)

    # when the tickets are read
    batches = await read_all(sn)

    # then each is delivered once, and the walk stops where the Link header has no next page,
    # without asking for an empty page
    assert numbers(batches) == [f"INC{10001 + n:07d}" for n in range(count)]
    assert len(listings(api)) == requests
    first = listings(api)[0]
    assert queries(api)[0] == "ORDERBYsys_updated_on^ORDERBYsys_id"
    assert "sysparm_display_value=false" in first and "sysparm_exclude_reference_link=true" in first
    assert "caller_id.email" in first


async def test_the_incident_mapping_follows_the_incident_table(api):
    caller = api.user("Ana Muñoz", "ana.munoz", "amunoz@eastview.example.org")
    group = api.group("Eastview IT")
    api.incident(
        short_description="Projector in room 114",
        description="No signal from HDMI",
        caller_id=caller,
        assignment_group=group,
        state="6",
        priority="",
        impact="1",
        urgency="2",
        category="hardware",
        opened_at="2026-08-31 08:15:00",
        resolved_at="2026-09-01 11:59:30",
        sla_due="2026-09-01 08:15:00",
        made_sla="false",
        correlation_id="harbor-falls:HF-12",
    )

    [ticket] = [r for b in await read_all(connector(api)) for r in b.records]

    assert ticket == Ticket(
        ticket_id="INC0010001",
        requester="Ana Muñoz",
        requester_email="amunoz@eastview.example.org",
        category="hardware",
        priority=2,
        status="resolved",
        subject="Projector in room 114",
        description="No signal from HDMI",
        opened_at=datetime(2026, 8, 31, 8, 15, tzinfo=UTC),
        resolved_at=datetime(2026, 9, 1, 11, 59, 30, tzinfo=UTC),
        assigned_group="Eastview IT",
        sla_due_at=datetime(2026, 9, 1, 8, 15, tzinfo=UTC),
        sla_breached=True,
        source_system="eastview-servicenow",
        external_ids={"eastview-servicenow": "INC0010001", "harbor-falls": "HF-12"},
        updated_at=datetime(2026, 9, 1, 12, tzinfo=UTC),
    )


async def test_a_record_updated_while_paging_is_not_skipped(api):
    # given five incidents a second apart, read in pages of two
    rows = incidents(api, 5)
    sn = connector(api, page_size=2)
    reading = sn.read("tickets", None)

    # when the third incident is updated after the first page was read (it moves to the end)
    first = await anext(reading)
    api.tick(10)
    api.update(rows[2]["sys_id"], short_description="Projector 3, bulb")
    rest = [batch async for batch in reading]

    # then every incident is delivered once, the updated one at its new version
    delivered = [(r.ticket_id, r.subject) for b in [first, *rest] for r in b.records]
    assert delivered == [
        ("INC0010001", "Projector 1"),
        ("INC0010002", "Projector 2"),
        ("INC0010004", "Projector 4"),
        ("INC0010005", "Projector 5"),
        ("INC0010003", "Projector 3, bulb"),
    ]


async def test_more_incidents_in_one_second_than_a_page_holds_are_each_read_once(api):
    # given five incidents updated in the same second (sys_updated_on has one-second resolution)
    incidents(api, 5, step=0)

    batches = await read_all(connector(api, page_size=2))

    assert sorted(numbers(batches)) == [f"INC{10001 + n:07d}" for n in range(5)]
    assert len(numbers(batches)) == 5
    # and the walk went on by offset inside that second
    assert any("sysparm_offset=4" in r for r in listings(api))


# --- incremental -------------------------------------------------------------------------------


async def test_a_second_read_resumes_from_the_cursor_less_the_lookback_without_duplicates(api):
    # given a first complete read of three incidents
    rows = incidents(api, 3)
    sn = connector(api)
    sn.lookback = timedelta(seconds=30)
    first = await read_all(sn)
    state = first[-1].state
    assert state["cursor"] == "2026-09-01T12:00:02+00:00"

    # when the third changes, another one arrives, and the route reads back 30 seconds
    api.update(rows[2]["sys_id"], state="2")
    api.tick(20)
    api.incident(short_description="Printer jam", caller_id=rows[0]["caller_id"])
    sn = connector(api)
    sn.lookback = timedelta(seconds=30)
    again = await read_all(sn, state=state)

    # then the query starts 30 seconds before the cursor, the unchanged ones read again in
    # that window are not delivered twice, the changed one and the new one are
    assert queries(api)[-1] == (
        "sys_updated_on>=2026-09-01 11:59:32^ORDERBYsys_updated_on^ORDERBYsys_id"
    )
    assert [(r.ticket_id, r.status) for b in again for r in b.records] == [
        ("INC0010003", "in_progress"),
        ("INC0010004", "new"),
    ]
    # and a read with nothing new delivers nothing
    assert numbers(await read_all(connector(api), state=again[-1].state)) == []


# --- retries and auth ---------------------------------------------------------------------------


async def test_429_with_retry_after_and_a_503_are_retried(api):
    incidents(api, 4)
    api.fail_next("/api/now/table/incident", 429, retry_after="1")
    api.fail_next("/api/now/table/incident", 503)
    sn = connector(api, page_size=2)

    batches = await read_all(sn)

    assert len(numbers(batches)) == 4
    assert sn.client.counts.retries == 2


async def test_5xx_that_persist_are_reported_after_the_attempts(api):
    incidents(api, 1)
    for _ in range(4):
        api.fail_next("/api/now/table/incident", 502)
    with pytest.raises(sdk.TransientError, match="failed after 4 attempts: HTTP 502"):
        await read_all(connector(api))


async def test_an_expired_oauth_token_is_fetched_again_and_the_read_goes_on(api):
    api.token_uses = 2
    incidents(api, 7)
    sn = connector(
        api,
        auth="oauth_client_credentials",
        client_id="cohub-client",
        secrets={"client_secret": CLIENT_SECRET},
        page_size=2,
    )

    batches = await read_all(sn)

    assert len(numbers(batches)) == 7
    assert api.tokens_issued >= 2


async def test_a_refused_password_fails_the_read_as_an_auth_error(api):
    incidents(api, 1)
    with pytest.raises(sdk.AuthError, match="HTTP 401"):
        await read_all(connector(api, secrets={"password": "wrong"}))


# --- malformed payloads -------------------------------------------------------------------------


async def test_malformed_incidents_become_rejects_and_replay_once_fixed(api):
    caller = api.user("Ana Muñoz", "ana.munoz", "amunoz@eastview.example.org")
    api.incident(short_description="ok", caller_id=caller)
    api.tick()
    api.put_raw("incident", "not an object")
    api.tick()
    api.incident(short_description="no caller")
    api.tick()
    api.incident(short_description="odd state", caller_id=caller, state="4")
    sn = connector(api)

    batches = await read_all(sn)

    assert numbers(batches) == ["INC0010001"]
    rejects = [r for b in batches for r in b.rejects]
    assert [(r.position.split(" sys_id")[0], r.reason) for r in rejects] == [
        ("incident", "an incident is an object, not str"),
        ("incident INC0010002", "Expected `str`, got `null` - at `$.requester`"),
        ("incident INC0010003", "incident state '4' has no status: map it in options.state_map"),
    ]
    # and a dead letter maps again once corrected, or with the state mapped
    assert sn.map_raw("tickets", {**rejects[1].raw, "caller_id.name": "Bo"}).requester == "Bo"
    mapped = connector(api, state_map={"4": "on_hold"}).map_raw("tickets", rejects[2].raw)
    assert mapped.status == "on_hold"


async def test_an_answer_that_is_not_json_is_retried_then_reported(api):
    for _ in range(4):
        api.fail_next("/api/now/table/incident", 200, body='{"result": [{"number": "INC')
    with pytest.raises(sdk.TransientError, match="not valid JSON"):
        await read_all(connector(api))


async def test_an_answer_without_a_result_list_fails_naming_the_table(api):
    api.fail_next("/api/now/table/incident", 200, body='{"error": {"message": "odd"}}')
    with pytest.raises(sdk.ConnectorError, match="ServiceNow incident: the answer has no result"):
        await read_all(connector(api))


# --- comments ------------------------------------------------------------------------------------


async def test_journal_entries_are_comments_of_the_incidents_read(api):
    # given two incidents, one outside the connection's incident_query, each with journal entries
    group = api.group("Eastview IT")
    ours = api.incident(short_description="Projector", assignment_group=group)
    theirs = api.incident(short_description="Payroll", assignment_group="")
    api.journal(ours["sys_id"], "comments", "We are on it")
    api.tick()
    api.journal(ours["sys_id"], "work_notes", "Bulb ordered", by="tech.one")
    api.journal(theirs["sys_id"], "comments", "Not ours")
    api.tick()
    api.put_raw("sys_journal_field", ["x"], name="incident", element="comments")
    sn = connector(api, incident_query=f"assignment_group={group}")

    batches = await read_all(sn, "comments")

    comments = [r for b in batches for r in b.records]
    assert [(c.ticket_id, c.author, c.body, c.public) for c in comments] == [
        ("INC0010001", "ana.munoz", "We are on it", True),
        ("INC0010001", "tech.one", "Bulb ordered", False),
    ]
    assert comments[0] == Comment(
        ticket_id="INC0010001",
        comment_id=comments[0].comment_id,
        author="ana.munoz",
        body="We are on it",
        public=True,
        created_at=datetime(2026, 9, 1, 12, tzinfo=UTC),
        updated_at=datetime(2026, 9, 1, 12, tzinfo=UTC),
    )
    assert [r.reason for b in batches for r in b.rejects] == [
        "a journal entry is an object, not list"
    ]
    assert queries(api, "sys_journal_field")[0] == (
        "name=incident^elementINcomments,work_notes^ORDERBYsys_created_on^ORDERBYsys_id"
    )


# --- the write path ------------------------------------------------------------------------------


def ticket(ticket_id: str = "HELP-12", **fields) -> Ticket:
    return Ticket(
        **{
            "ticket_id": ticket_id,
            "requester": "Ana Muñoz",
            "requester_email": "amunoz@eastview.example.org",
            "priority": 2,
            "subject": "Projector in room 114",
            "description": "No signal",
            "opened_at": datetime(2026, 9, 1, 8, tzinfo=UTC),
            "source_system": "eastview-jira",
            "external_ids": {"eastview-jira": ticket_id},
            "updated_at": datetime(2026, 9, 1, 9, tzinfo=UTC),
            **fields,
        }
    )


def shared(api: ServiceNowApi) -> ServiceNow:
    return connector(api, connection="boces-servicenow")


async def test_a_ticket_is_created_then_updated_in_place_and_linked_back(api):
    sn = shared(api)

    # when a district ticket is written, then written again changed
    first = await sn.write("tickets", sdk.Batch(records=[ticket()], state={}), "eastview")
    changed = ticket(subject="Projector in room 114 still dark", priority=1)
    again = await sn.write("tickets", sdk.Batch(records=[changed], state={}), "eastview")

    # then there is one incident, created then patched, linked by correlation_id
    assert (first.written, first.rejects, again.written, again.rejects) == (1, [], 1, [])
    [row] = api.tables["incident"]
    assert (row["short_description"], row["impact"], row["urgency"]) == (
        "Projector in room 114 still dark",
        "1",
        "1",
    )
    assert (row["correlation_id"], row["correlation_display"]) == (
        "eastview:HELP-12",
        "eastview-jira",
    )
    assert row["description"] == "Requested by Ana Muñoz <amunoz@eastview.example.org>\n\nNo signal"
    assert [r.split("?")[0] for r in api.requests if not r.startswith("GET")] == [
        "POST /api/now/table/incident",
        f"PATCH /api/now/table/incident/{row['sys_id']}",
    ]

    # and reading the shared desk names the ticket in both systems
    [read] = [r for b in await read_all(sn) for r in b.records]
    assert read.external_ids == {"boces-servicenow": "INC0010001", "eastview": "HELP-12"}
    assert read.priority == 1

    # and a ticket naming the incident by its own number updates it, whatever its link
    back = ticket("INC0010001", subject="Renamed", external_ids={"boces-servicenow": "INC0010001"})
    await sn.write("tickets", sdk.Batch(records=[back], state={}), "eastview")
    assert [r["short_description"] for r in api.tables["incident"]] == ["Renamed"]


async def test_a_create_whose_answer_was_lost_is_not_duplicated_by_the_retry(api):
    # given a POST the instance applies but whose answer fails (a gateway 502)
    api.fail_next("/api/now/table/incident", 502, applied=True, method="POST")
    sn = shared(api)
    batch = sdk.Batch(records=[ticket()], state={})

    # when the batch is written, fails, and is written again (the engine's retry)
    with pytest.raises(sdk.TransientError, match="may have been applied"):
        await sn.write("tickets", batch, "eastview")
    result = await sn.write("tickets", batch, "eastview")

    # then the retry found the incident by its correlation_id and there is still one
    assert result.written == 1
    assert [r["correlation_id"] for r in api.tables["incident"]] == ["eastview:HELP-12"]


async def test_the_same_ticket_twice_in_a_batch_makes_one_incident(api):
    batch = sdk.Batch(records=[ticket(), ticket(subject="Second version")], state={})
    assert (await shared(api).write("tickets", batch, "eastview")).written == 2
    assert [r["short_description"] for r in api.tables["incident"]] == ["Second version"]


async def test_an_incident_the_instance_refuses_is_a_reject_with_its_message(api):
    batch = sdk.Batch(records=[ticket(subject=""), ticket("HELP-13")], state={})

    result = await shared(api).write("tickets", batch, "eastview")

    assert result.written == 1
    [reject] = result.rejects
    assert reject.position == "ticket HELP-12"
    assert reject.reason == (
        "ServiceNow refused incident for eastview:HELP-12: Operation Failed: "
        "Data Policy Exception: Short description is mandatory"
    )
    assert reject.raw["ticket_id"] == "HELP-12"


async def test_comments_are_added_once_to_the_linked_incident(api):
    sn = shared(api)
    await sn.write("tickets", sdk.Batch(records=[ticket()], state={}), "eastview")
    now = datetime(2026, 9, 1, 10, tzinfo=UTC)
    comments = [
        Comment(
            ticket_id="HELP-12",
            comment_id="10034",
            author="Ana Muñoz",
            body="Still dark",
            created_at=now,
            updated_at=now,
        ),
        Comment(
            ticket_id="HELP-12",
            comment_id="10035",
            author="Tech One",
            body="Checked the cable",
            public=False,
            created_at=now,
            updated_at=now,
        ),
        Comment(
            ticket_id="HELP-99",
            comment_id="1",
            author="X",
            body="orphan",
            created_at=now,
            updated_at=now,
        ),
    ]
    batch = sdk.Batch(records=comments, state={})

    first = await sn.write("comments", batch, "eastview")
    again = await sn.write("comments", batch, "eastview")

    journal = [(e["element"], e["value"]) for e in api.tables["sys_journal_field"]]
    assert journal == [
        (
            "comments",
            "Still dark\n\n— Ana Muñoz on eastview:HELP-12 [cohub eastview:HELP-12#10034]",
        ),
        (
            "work_notes",
            "Checked the cable\n\n— Tech One on eastview:HELP-12 [cohub eastview:HELP-12#10035]",
        ),
    ]
    assert (first.written, again.written) == (2, 2)
    assert [r.reason for r in again.rejects] == [
        "no incident is linked to eastview:HELP-99 yet: write its ticket first, then replay "
        "this comment"
    ]


# --- pushed incidents ----------------------------------------------------------------------------


async def test_a_business_rule_post_is_received_as_raw_tickets(api):
    sn = connector(api)
    incident = {
        "sys_id": "abc",
        "number": "INC0010042",
        "short_description": "Wi-Fi down in the library",
        "state": "2",
        "priority": "2",
        "caller_id.name": "Ana Muñoz",
        "opened_at": "2026-09-01 07:00:00",
        "sys_updated_on": "2026-09-01 07:05:00",
    }

    received = await sn.receive(
        sdk.Inbound(body=msgspec.json.encode({"result": incident}), headers={})
    )

    assert (received.stream, received.raws, received.status) == ("tickets", [incident], 200)
    mapped = sn.map_raw("tickets", received.raws[0])
    assert (mapped.ticket_id, mapped.status, mapped.priority) == ("INC0010042", "in_progress", 2)
    assert ServiceNow.inbound_auth == "hmac"
    with pytest.raises(sdk.BadRecord, match="not JSON"):
        await sn.receive(sdk.Inbound(body=b"<xml/>", headers={}))
    with pytest.raises(sdk.BadRecord, match="not an incident object"):
        await sn.receive(sdk.Inbound(body=b"[1, 2]", headers={}))


# --- check ---------------------------------------------------------------------------------------


async def test_check_passes_and_streams_name_their_records(api):
    sn = connector(api)
    await sn.check()
    assert [(s.name, s.record, s.writable) for s in await sn.streams()] == [
        ("tickets", "ticketing.ticket", True),
        ("comments", "ticketing.comment", True),
    ]
    await connector(
        api,
        auth="oauth_client_credentials",
        client_id="cohub-client",
        secrets={"client_secret": CLIENT_SECRET},
    ).check()


async def test_check_says_a_wrong_url_is_not_a_servicenow_instance(api):
    with pytest.raises(
        sdk.ConnectorConfigError, match="does not answer as a ServiceNow instance: HTTP 404"
    ):
        await connector(api, instance_url=api.base_url + "nowhere/").check()


async def test_check_says_the_password_was_refused(api):
    with pytest.raises(
        sdk.AuthError,
        match=r"refused user 'cohub.integration' and its password \(HTTP 401: User Not "
        r"Authenticated: Required to provide Auth information\)",
    ):
        await connector(api, secrets={"password": "wrong"}).check()


async def test_check_says_the_oauth_client_was_refused(api):
    with pytest.raises(
        sdk.AuthError, match=r"refused OAuth client 'cohub-client'.*HTTP 401 \(access_denied\)"
    ):
        await connector(
            api,
            auth="oauth_client_credentials",
            client_id="cohub-client",
            secrets={"client_secret": "wrong"},
        ).check()


async def test_check_names_the_table_the_user_may_not_read(api):
    api.forbidden.add("sys_journal_field")
    with pytest.raises(
        sdk.AuthError, match=r"may not read sys_journal_field \(HTTP 403: User Not Authorized"
    ):
        await connector(api).check()


async def test_check_says_the_host_cannot_be_reached():
    sn = ServiceNow(
        ServiceNow.parse_options(
            {"instance_url": "http://127.0.0.1:9/", "username": "x", **FAST, "retry_attempts": 1}
        ),
        {"password": "x"},
        sdk.ConnectionContext(connection="c", member=None),
    )
    with pytest.raises(
        sdk.TransientError, match=re.escape("cannot reach ServiceNow at http://127.0.0.1:9/")
    ):
        await sn.check()
    await close_sessions()


def test_options_name_what_each_auth_needs():
    schema = ServiceNow.options_schema()["$defs"]["ServiceNowOptions"]
    assert schema["required"] == ["instance_url"]
    assert schema["properties"]["auth"]["enum"] == ["basic", "oauth_client_credentials"]
    assert ServiceNow.secrets == ("password", "client_secret", "webhook_secret")
    with pytest.raises(sdk.ConnectorConfigError, match=r"needs options\.client_id"):
        connector(ServiceNowApi(), auth="oauth_client_credentials").client  # noqa: B018
    with pytest.raises(sdk.ConnectorConfigError, match="cannot hold \\^NQ"):
        connector(ServiceNowApi(), incident_query="active=true^NQactive=false")


# --- through the engine, on every backend -------------------------------------------------------


async def configure_route(runtime, config_dir: Path, base_url: str) -> None:
    with (config_dir / "cooperative.toml").open("a") as cooperative:
        cooperative.write(
            '\n[services.helpdesk]\nname = "Shared IT helpdesk"\n'
            'meters = ["tickets_opened", "tickets_resolved"]\n'
        )
    (config_dir / "connections" / "eastview-servicenow.toml").write_text(
        f'connector = "servicenow"\nmember = "eastview"\n\n[options]\ninstance_url = "{base_url}"\n'
        'username = "cohub.integration"\npage_size = 2\nretry_base_seconds = 0.01\n'
        'max_retry_after_seconds = 0.05\n\n[secrets]\npassword = "env:SN_PASSWORD"\n'
    )
    with (config_dir / "routes.toml").open("a") as routes:
        routes.write(
            '\n[routes.eastview-tickets]\nsource = "eastview-servicenow"\nsource_stream = "tickets"\n'
            'destination = "cbo-payroll-db"\ndestination_stream = "tickets"\nservice = "helpdesk"\n'
            "lookback_seconds = 60\n"
        )
    runtime.plugins = PluginHost([config_dir.parent / "plugins"])
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)


async def stored_tickets(database_url: str) -> list[tuple[str, str, dict]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            table = StreamTable("tickets", Ticket).table
            rows = await conn.execute(
                select(table.c.record_key, table.c.status, table.c.external_ids).order_by(
                    table.c.record_key
                )
            )
            return [tuple(row) for row in rows]
    finally:
        await engine.dispose()


async def test_a_sync_delivers_incidents_dead_letters_bad_ones_and_meters_tickets(
    runtime, config_dir, database_url, api, monkeypatch
):
    # given Eastview's instance with three incidents, one without a caller, behind a 429
    monkeypatch.setenv("SN_PASSWORD", PASSWORD)
    rows = incidents(api, 2)
    api.incident(short_description="no caller")
    api.fail_next("/api/now/table/incident", 429, retry_after="1")
    await configure_route(runtime, config_dir, api.base_url)

    # when the route runs
    summary = await run_route(runtime.engine, runtime.plugins, "eastview-tickets")

    # then two tickets arrive, the third is a dead letter with its reason
    assert summary.status == "succeeded", summary.error
    assert (summary.counts.read, summary.counts.written, summary.counts.rejected) == (3, 2, 1)
    assert summary.counts.retried == 1
    assert await stored_tickets(database_url) == [
        ("INC0010001", "new", {"eastview-servicenow": "INC0010001"}),
        ("INC0010002", "new", {"eastview-servicenow": "INC0010002"}),
    ]
    async with runtime.engine.connect() as conn:
        letters = (await conn.execute(select(dead_letters.c.reason))).scalars().all()
    assert letters == ["Expected `str`, got `null` - at `$.requester`"]

    # when the first is resolved and the route runs again (reading back 60 seconds)
    api.tick(5)
    api.update(rows[0]["sys_id"], state="6", resolved_at=api.stamp())
    again = await run_route(runtime.engine, runtime.plugins, "eastview-tickets")

    # then only it is delivered, and the helpdesk meters count two opened and one resolved
    assert again.status == "succeeded", again.error
    assert (again.counts.read, again.counts.written) == (1, 1)
    assert (await stored_tickets(database_url))[0][1] == "resolved"
    async with runtime.engine.connect() as conn:
        used = (
            await conn.execute(
                select(usage_events.c.meter, func.count(usage_events.c.subject.distinct()))
                .where(usage_events.c.meter.in_(["tickets_opened", "tickets_resolved"]))
                .group_by(usage_events.c.meter)
                .order_by(usage_events.c.meter)
            )
        ).all()
    assert [tuple(u) for u in used] == [("tickets_opened", 2), ("tickets_resolved", 1)]
