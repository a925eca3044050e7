"""The Incident IQ connector against a local iiQ API (tests/vendor/incident_iq_api.py), and a
district's iiQ desk routed into the agency's shared Zendesk desk through the engine."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.incident_iq import IncidentIq
from hub import sdk
from hub.apply import apply
from hub.config import check_against_plugins, load_config
from hub.engine.run import run_route
from hub.model.ticketing import Comment, Ticket
from hub.plugins import PluginHost
from hub.sdk.http import close_sessions
from tests.vendor.incident_iq_api import IncidentIqApi
from tests.vendor.zendesk_api import ZendeskApi

TOKEN = "iiq-token"
LINK_FIELD = str(uuid.UUID(int=21))
ISSUE = str(uuid.UUID(int=11))
REQUESTER = str(uuid.UUID(int=9))
FAST = {
    "retry_attempts": 4,
    "retry_base_seconds": 0.01,
    "retry_cap_seconds": 0.02,
    "max_retry_after_seconds": 0.05,
    "timeout_seconds": 5,
}


@pytest.fixture
async def api() -> AsyncIterator[IncidentIqApi]:
    server = IncidentIqApi(token=TOKEN)
    await server.start()
    yield server
    await close_sessions()
    await server.close()


def connector(api: IncidentIqApi, token: str = TOKEN, **options) -> IncidentIq:
    parsed = IncidentIq.parse_options(
        {"base_url": api.base_url, "site_id": api.site_id, **FAST, **options}
    )
    context = sdk.ConnectionContext(connection="eastview-iiq", member="eastview")
    return IncidentIq(parsed, {"api_token": token}, context)


async def read_all(iiq: IncidentIq, stream: str, state=None) -> list[sdk.Batch]:
    return [batch async for batch in iiq.read(stream, state)]


def subjects(batches: list[sdk.Batch]) -> list[str]:
    return [r.subject for b in batches for r in b.records]


def searches(api: IncidentIqApi) -> list[str]:
    return [r for r in api.requests if r.startswith("POST /api/v1.0/tickets?")]


# --- paging ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "requests"),
    [(0, 1), (2, 1), (3, 2), (7, 4)],
    ids=["empty", "short-first-page", "exactly-one-full-page", "three-pages"],
)
async def test_a_first_read_walks_pages_of_the_ticket_list(api, count, requests):
    for n in range(1, count + 1):
        api.put(f"Chromebook {n} cracked screen")
    iiq = connector(api, page_size=3)

    batches = await read_all(iiq, "tickets")

    assert subjects(batches) == [f"Chromebook {n} cracked screen" for n in range(1, count + 1)]
    asked = searches(api)
    assert len(asked) == requests
    assert all("%24s=3" in r or "$s=3" in r for r in asked)
    body = api.bodies[0]
    assert (body["OnlyShowDeleted"], body["Filters"]) == (False, [])
    if count:
        assert batches[-1].state["cursor"] == f"2026-09-01T12:{count:02d}:00+00:00"


async def test_the_walk_restarts_at_the_last_stamp_so_a_change_mid_walk_skips_nothing(api):
    # given seven tickets, read in pages of three
    for n in range(1, 8):
        api.put(f"Projector {n}")
    iiq = connector(api, page_size=3)
    seen: list[str] = []
    async for batch in iiq.read("tickets", None):
        seen += [r.subject for r in batch.records]
        if len(seen) == 3:  # ticket 1 changes while the walk is between pages
            api.put("Projector 1 (bulb)", TicketNumber=10001)

    # then every ticket arrives, the changed one again at its new stamp, none skipped
    assert seen == [f"Projector {n}" for n in range(1, 8)] + ["Projector 1 (bulb)"]
    # and the second page asked from the first page's last stamp, page 0
    second = api.bodies[1]
    assert second["Filters"] == [{"Facet": "ModifiedDate", "Value": ">=2026-09-01T12:03:00+00:00"}]
    assert "%24p=0" in searches(api)[1] or "$p=0" in searches(api)[1]


async def test_a_saved_view_is_named_in_the_body(api):
    api.put("In the view")
    api.put("Not in the view")
    api.views["Eastview IT"] = {10001}
    batches = await read_all(connector(api, view="Eastview IT"), "tickets")
    assert subjects(batches) == ["In the view"]
    assert api.bodies[0]["Schema"] == "Eastview IT"


async def test_the_ticket_mapping_follows_incident_iq_fields(api):
    api.put("Smartboard dead", IsUrgent=True, WorkflowStep={"StatusName": "Waiting on Requestor"})
    [ticket] = [r for b in await read_all(connector(api), "tickets") for r in b.records]
    assert ticket == Ticket(
        ticket_id="10001",
        requester="Dana Reyes",
        requester_email="dreyes@eastview.example.org",
        category="Chromebook",
        priority=1,
        status="on_hold",
        subject="Smartboard dead",
        description="Smartboard dead",
        opened_at=datetime(2026, 9, 1, 12, 1, tzinfo=UTC),
        assigned_group="Tier 1",
        source_system="incident_iq",
        external_ids={"incident_iq": "10001"},
        updated_at=datetime(2026, 9, 1, 12, 1, tzinfo=UTC),
    )


# --- incremental, lookback, deletes -------------------------------------------------------------


async def test_a_second_read_brings_changes_in_the_lookback_window_once_and_deletes(api):
    for n in (1, 2, 3):
        api.put(f"Badge {n}")
    first = await read_all(connector(api), "tickets")
    state = first[-1].state

    # when ticket 2 changes, ticket 4 arrives and ticket 1 is deleted
    api.put("Badge 2 (reprinted)", TicketNumber=10002)
    api.put("Badge 4")
    api.delete(next(t for t in api.tickets.values() if t["TicketNumber"] == 10001))
    iiq = connector(api)
    iiq.lookback = timedelta(minutes=30)
    asked = len(api.bodies)
    again = await read_all(iiq, "tickets", state)

    # then only the changes arrive (the window re-read the others, delivered before), the
    # filter reached back by the lookback, and the deleted ticket is a delete
    assert subjects(again) == ["Badge 2 (reprinted)", "Badge 4"]
    assert api.bodies[asked]["Filters"] == [
        {"Facet": "ModifiedDate", "Value": ">=2026-09-01T11:33:00+00:00"}
    ]
    assert [k for b in again for k in b.deletes] == ["10001"]
    assert api.bodies[-1]["OnlyShowDeleted"] is True

    # and a read with nothing new delivers nothing, the delete included
    quiet = await read_all(connector(api), "tickets", again[-1].state)
    assert subjects(quiet) == [] and [k for b in quiet for k in b.deletes] == []


async def test_comments_of_changed_tickets_arrive_once(api):
    ticket = api.put("Phone dead")
    api.comment(ticket, "Checked the jack", public=False)
    first = await read_all(connector(api), "comments")
    [comment] = [r for b in first for r in b.records]
    assert comment == Comment(
        ticket_id="10001",
        comment_id=api.activities[ticket["TicketId"]][0]["ActivityId"],
        author="Sam Ortiz",
        body="Checked the jack",
        public=False,
        created_at=datetime(2026, 9, 1, 12, 2, tzinfo=UTC),
        updated_at=datetime(2026, 9, 1, 12, 2, tzinfo=UTC),
    )

    api.comment(ticket, "Replaced the handset")
    again = await read_all(connector(api), "comments", first[-1].state)
    assert [r.body for b in again for r in b.records] == ["Replaced the handset"]


# --- retries, auth, malformed ---------------------------------------------------------------------


async def test_429_with_retry_after_and_5xx_are_retried_then_reported(api):
    api.put("Wi-Fi")
    api.fail_next("/api/v1.0/tickets", 429, retry_after="1")
    api.fail_next("/api/v1.0/tickets", 502)
    iiq = connector(api)
    assert subjects(await read_all(iiq, "tickets")) == ["Wi-Fi"]
    assert iiq.client.counts.retries == 2

    for _ in range(4):
        api.fail_next("/api/v1.0/tickets", 500)
    with pytest.raises(
        sdk.TransientError, match=r"POST .*/api/v1\.0/tickets failed after 4 attempts"
    ):
        await read_all(connector(api), "tickets")


async def test_an_expired_token_fails_the_read_as_an_auth_error(api):
    with pytest.raises(sdk.AuthError, match="refused the credentials: HTTP 401"):
        await read_all(connector(api, token="expired"), "tickets")


async def test_malformed_tickets_become_rejects_and_a_bad_page_a_clear_error(api):
    api.put("Fine")
    api.raw_items = [
        "nope",
        {"TicketNumber": 99, "Subject": None, "CreatedDate": "2026-09-01T00:00:00"},
    ]
    batches = await read_all(connector(api), "tickets")
    assert subjects(batches) == ["Fine"]
    assert [(r.position, r.reason.split(" - ")[0]) for b in batches for r in b.rejects] == [
        ("ticket None", "an Incident IQ ticket is an object, not str"),
        ("ticket 99", "Expected `str`, got `null`"),
    ]

    api.fail_next("/api/v1.0/tickets", 200, body={"Items": []})
    with pytest.raises(sdk.ConnectorError, match="the answer has no Paging"):
        await read_all(connector(api), "tickets")


# --- the destination ---------------------------------------------------------------------------


def zendesk_ticket(**fields) -> Ticket:
    values = {
        "ticket_id": "35436",
        "requester": "BOCES desk",
        "priority": 1,
        "status": "in_progress",
        "subject": "District fiber cut",
        "description": "Carrier ticket 88-1",
        "opened_at": datetime(2026, 9, 1, 8, tzinfo=UTC),
        "source_system": "zendesk",
        "updated_at": datetime(2026, 9, 1, 8, tzinfo=UTC),
    }
    return Ticket(**{**values, **fields})


def writer(api: IncidentIqApi, **options) -> IncidentIq:
    return connector(
        api,
        link_field_id=LINK_FIELD,
        issue_id=ISSUE,
        requester_id=REQUESTER,
        source_system="zendesk",
        **options,
    )


async def test_writing_creates_then_updates_and_closes_the_linked_ticket(api):
    iiq = writer(api)
    assert (
        await iiq.write("tickets", sdk.Batch(records=[zendesk_ticket()], state={}), None)
    ).written == 1
    done = zendesk_ticket(status="resolved", subject="District fiber cut (restored)")
    assert (await iiq.write("tickets", sdk.Batch(records=[done], state={}), None)).written == 1

    [ticket] = api.tickets.values()
    assert ticket["CustomFieldValues"] == [
        {"CustomFieldTypeId": LINK_FIELD, "Value": "cooperative:zendesk:35436"}
    ]
    assert (ticket["Subject"], ticket["IsUrgent"], ticket["IsClosed"]) == (
        "District fiber cut (restored)",
        True,
        True,
    )
    # and reading it back names the linked ticket
    [read] = [r for b in await read_all(iiq, "tickets") for r in b.records]
    assert read.external_ids == {"incident_iq": "10001", "zendesk": "35436"}
    assert read.status == "resolved"


async def test_a_creation_whose_answer_was_lost_fails_the_write_and_the_retry_updates(api):
    api.fail_after("POST /api/v1.0/tickets/new", 500)
    iiq = writer(api)
    batch = sdk.Batch(records=[zendesk_ticket()], state={})

    with pytest.raises(sdk.TransientError, match="not retried \\(it may have been applied\\)"):
        await iiq.write("tickets", batch, None)
    assert (await writer(api).write("tickets", batch, None)).written == 1

    assert len(api.tickets) == 1
    assert [r for r in api.requests if r == "POST /api/v1.0/tickets/new"] == [
        "POST /api/v1.0/tickets/new"
    ]


async def test_a_ticket_iiq_refuses_is_a_reject_and_comments_are_written_once(api):
    iiq = writer(api)
    result = await iiq.write(
        "tickets",
        sdk.Batch(records=[zendesk_ticket(subject=""), zendesk_ticket(ticket_id="2")], state={}),
        None,
    )
    assert result.written == 1
    [reject] = result.rejects
    assert (
        reject.reason
        == "Incident IQ refused it: The request is invalid.; Subject, IssueId and ForId are required"
    )

    comment = Comment(
        ticket_id="2",
        comment_id="c1",
        author="BOCES tech",
        body="Carrier on site",
        created_at=datetime(2026, 9, 1, 9, tzinfo=UTC),
        updated_at=datetime(2026, 9, 1, 9, tzinfo=UTC),
    )
    for _ in range(2):
        assert (
            await iiq.write("comments", sdk.Batch(records=[comment], state={}), None)
        ).written == 1
    [ticket] = api.tickets.values()
    assert [a["Details"] for a in api.activities[ticket["TicketId"]]] == [
        "BOCES tech: Carrier on site\n\n[cohub cooperative:zendesk:2#c1]"
    ]


async def test_writing_without_a_link_field_is_a_configuration_error(api):
    with pytest.raises(sdk.ConnectorConfigError, match=r"needs options\.link_field_id"):
        await connector(api).write("tickets", sdk.Batch(records=[zendesk_ticket()], state={}), None)


# --- check -------------------------------------------------------------------------------------


async def test_check_passes_and_names_what_is_wrong(api):
    iiq = connector(api)
    await iiq.check()
    assert [(s.name, s.record) for s in await iiq.streams()] == [
        ("tickets", "ticketing.ticket"),
        ("comments", "ticketing.comment"),
    ]
    with pytest.raises(
        sdk.ConnectorConfigError,
        match="is not an Incident IQ API root: POST tickets answered HTTP 404",
    ):
        await connector(api, base_url=api.base_url + "nowhere/").check()
    with pytest.raises(
        sdk.AuthError, match="refused the api_token \\(HTTP 401: Authorization has been denied"
    ):
        await connector(api, token="wrong").check()
    with pytest.raises(
        sdk.AuthError, match=f"refused to list tickets of site {uuid.UUID(int=8)} \\(HTTP 403"
    ):
        await connector(api, site_id=str(uuid.UUID(int=8))).check()


async def test_check_says_the_host_cannot_be_reached():
    iiq = IncidentIq(
        IncidentIq.parse_options(
            {
                "base_url": "http://127.0.0.1:9/api/v1.0/",
                "site_id": str(uuid.UUID(int=7)),
                **FAST,
                "retry_attempts": 1,
            }
        ),
        {"api_token": TOKEN},
        sdk.ConnectionContext(connection="c", member=None),
    )
    with pytest.raises(
        sdk.TransientError,
        match=re.escape("cannot reach Incident IQ at http://127.0.0.1:9/api/v1.0/"),
    ):
        await iiq.check()
    await close_sessions()


def test_options_have_a_json_schema():
    schema = IncidentIq.options_schema()["$defs"]["IncidentIqOptions"]
    assert {"district", "site_id", "view", "link_field_id", "page_size"} <= set(
        schema["properties"]
    )
    assert schema["required"] == ["site_id"]
    assert IncidentIq.secrets == ("api_token",)


# --- a district's iiQ desk into the shared Zendesk desk, on every backend --------------------------


@pytest.fixture
async def zendesk() -> AsyncIterator[ZendeskApi]:
    server = ZendeskApi(email="it@boces.example.org", api_token="zd-token")
    await server.start()
    yield server
    await server.close()


async def configure_route(runtime, config_dir: Path, iiq: IncidentIqApi, desk: ZendeskApi) -> None:
    with (config_dir / "cooperative.toml").open("a") as cooperative:
        cooperative.write(
            '\n[services.it-helpdesk]\nname = "Shared IT helpdesk"\n'
            'meters = ["tickets_opened", "tickets_resolved"]\n'
        )
    (config_dir / "connections" / "eastview-iiq.toml").write_text(
        f'connector = "incident_iq"\nmember = "eastview"\n\n[options]\nbase_url = "{iiq.base_url}"\n'
        f'site_id = "{iiq.site_id}"\npage_size = 2\nretry_base_seconds = 0.01\n'
        'max_retry_after_seconds = 0.05\n\n[secrets]\napi_token = "env:IIQ_TOKEN"\n'
    )
    (config_dir / "connections" / "shared-desk.toml").write_text(
        f'connector = "zendesk"\n\n[options]\nbase_url = "{desk.base_url}"\n'
        'email = "it@boces.example.org"\nsource_system = "incident_iq"\n'
        "retry_base_seconds = 0.01\nmax_retry_after_seconds = 0.05\n\n"
        '[secrets]\napi_token = "env:ZENDESK_TOKEN"\n'
    )
    with (config_dir / "routes.toml").open("a") as routes:
        routes.write(
            '\n[routes.eastview-to-shared-desk]\nsource = "eastview-iiq"\nsource_stream = "tickets"\n'
            'destination = "shared-desk"\ndestination_stream = "tickets"\nservice = "it-helpdesk"\n'
        )
    runtime.plugins = PluginHost([config_dir.parent / "plugins"])
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)


async def test_a_districts_tickets_reach_the_shared_desk_once_linked_back_and_deletes_follow(
    runtime, config_dir, database_url, api, zendesk, monkeypatch
):
    # given Eastview's iiQ with three tickets, one resolved, one malformed
    monkeypatch.setenv("IIQ_TOKEN", TOKEN)
    monkeypatch.setenv("ZENDESK_TOKEN", "zd-token")
    api.put("Chromebook cart offline")
    api.put("Printer jam", IsClosed=True, WorkflowStep={"StatusName": "Resolved"})
    api.put("Projector")
    api.raw_items = [{"TicketNumber": 77, "Subject": None}]
    await configure_route(runtime, config_dir, api, zendesk)

    # when the route runs twice (the second time with nothing new)
    summary = await run_route(runtime.engine, runtime.plugins, "eastview-to-shared-desk")
    assert summary.status == "succeeded", summary.error
    assert (summary.counts.read, summary.counts.written, summary.counts.rejected) == (4, 3, 1)
    again = await run_route(runtime.engine, runtime.plugins, "eastview-to-shared-desk")
    assert again.status == "succeeded", again.error

    # then the shared desk holds each district ticket once, linked to it
    assert sorted((t["external_id"], t["status"]) for t in zendesk.tickets.values()) == [
        ("eastview:incident_iq:10001", "new"),
        ("eastview:incident_iq:10002", "solved"),
        ("eastview:incident_iq:10003", "new"),
    ]

    # when the district works one ticket and deletes another, the next run follows both
    api.put(
        "Chromebook cart offline (cart 3)",
        TicketNumber=10001,
        WorkflowStep={"StatusName": "In Progress"},
    )
    api.delete(next(t for t in api.tickets.values() if t["TicketNumber"] == 10003))
    third = await run_route(runtime.engine, runtime.plugins, "eastview-to-shared-desk")
    assert third.status == "succeeded", third.error
    assert (third.counts.read, third.counts.written, third.counts.deleted) == (1, 1, 1)
    by_link = {t["external_id"]: t for t in zendesk.tickets.values()}
    assert len(by_link) == 3
    assert (
        by_link["eastview:incident_iq:10001"]["subject"],
        by_link["eastview:incident_iq:10001"]["status"],
    ) == (
        "Chromebook cart offline (cart 3)",
        "open",
    )
    assert "deleted_at_source" in by_link["eastview:incident_iq:10003"]["tags"]
