"""The Jira Service Management connector against a local Jira Cloud site (tests/vendor/jira_api.py),
and a district's ServiceNow desk routed into it (tests/vendor/servicenow_api.py)."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import msgspec
import pytest

from connectors import adf
from connectors.jira_sm import JiraServiceManagement
from hub import sdk
from hub.apply import apply
from hub.config import check_against_plugins, load_config
from hub.engine.run import run_route
from hub.model.ticketing import Comment, Ticket
from hub.plugins import PluginHost
from hub.sdk.http import close_sessions
from tests.canaries import plant
from tests.vendor.jira_api import JiraApi
from tests.vendor.servicenow_api import ServiceNowApi

TOKEN = plant("jira-api-token-canary-0c3f")
HOOK_SECRET = plant("jira-webhook-secret-canary-91aa")
FAST = {
    "retry_attempts": 4,
    "retry_base_seconds": 0.01,
    "retry_cap_seconds": 0.02,
    "max_retry_after_seconds": 0.05,
    "timeout_seconds": 5,
}


@pytest.fixture
async def api() -> AsyncIterator[JiraApi]:
    server = JiraApi(token=TOKEN)
    await server.start()
    yield server
    await close_sessions()
    await server.close()


def connector(
    api: JiraApi, *, connection: str = "boces-jira", secrets=None, **options
) -> JiraServiceManagement:
    given = {
        "site_url": api.base_url,
        "email": "cohub@boces.example.org",
        "project_key": "HELP",
        "service_desk_id": "4",
        "request_type_id": "25",
        **FAST,
        **options,
    }
    return JiraServiceManagement(
        JiraServiceManagement.parse_options(given),
        {"api_token": TOKEN, "webhook_secret": HOOK_SECRET} if secrets is None else secrets,
        sdk.ConnectionContext(connection=connection, member="eastview"),
    )


def issues(api: JiraApi, count: int, *, step: float = 60) -> list[dict]:
    rows = []
    for n in range(1, count + 1):
        rows.append(api.issue(f"Laptop {n}"))
        api.tick(step)
    return rows


async def read_all(jira, stream: str = "tickets", state=None) -> list[sdk.Batch]:
    return [batch async for batch in jira.read(stream, state)]


def keys(batches: list[sdk.Batch]) -> list[str]:
    return [r.ticket_id for b in batches for r in b.records]


def searches(api: JiraApi) -> list[dict[str, str]]:
    return [
        {k: v[0] for k, v in parse_qs(urlsplit(r).query).items()}
        for r in api.requests
        if r.startswith("GET /rest/api/3/search?")
    ]


# --- paging and the mapping ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "requests"),
    [(0, 1), (3, 1), (7, 3)],
    ids=["empty", "exactly-one-page", "last-page-short"],
)
async def test_a_search_pages_until_the_total(api, count, requests):
    issues(api, count)
    batches = await read_all(connector(api, page_size=3))

    assert keys(batches) == [f"HELP-{n}" for n in range(1, count + 1)]
    assert len(searches(api)) == requests
    first = searches(api)[0]
    assert first["jql"] == 'project = "HELP" ORDER BY updated ASC, key ASC'
    assert (first["startAt"], first["maxResults"]) == ("0", "3")


async def test_the_issue_mapping_reads_adf_statuses_and_priorities(api):
    description = {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "Screen flickers"}]},
            {
                "type": "bulletList",
                "content": [
                    {
                        "type": "listItem",
                        "content": [
                            {"type": "paragraph", "content": [{"type": "text", "text": "room 114"}]}
                        ],
                    },
                    {
                        "type": "listItem",
                        "content": [
                            {
                                "type": "paragraph",
                                "content": [{"type": "text", "text": "since Monday"}],
                            }
                        ],
                    },
                ],
            },
        ],
    }
    api.issue(
        "Laptop screen",
        status="Waiting for customer",
        description=description,
        priority={"name": "High"},
        labels=["cohub:eastview:INC0010007"],
        resolutiondate=None,
    )

    [ticket] = [r for b in await read_all(connector(api)) for r in b.records]

    assert ticket == Ticket(
        ticket_id="HELP-1",
        requester="Ana Muñoz",
        requester_email="amunoz@eastview.example.org",
        category="IT Help",
        priority=2,
        status="on_hold",
        subject="Laptop screen",
        description="Screen flickers\n\n- room 114\n- since Monday",
        opened_at=datetime(2026, 9, 1, 12, tzinfo=UTC),
        source_system="boces-jira",
        external_ids={"boces-jira": "HELP-1", "eastview": "INC0010007"},
        updated_at=datetime(2026, 9, 1, 12, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("Waiting for support", "new"),
        ("In progress", "in_progress"),
        ("Resolved", "resolved"),
        ("Closed", "closed"),
        ("Canceled", "canceled"),
    ],
)
async def test_statuses_follow_their_category_and_name(api, status, expected):
    api.issue("x", status=status)
    [ticket] = [r for b in await read_all(connector(api)) for r in b.records]
    assert ticket.status == expected


async def test_an_issue_updated_while_paging_is_not_skipped(api):
    rows = issues(api, 5)
    jira = connector(api, page_size=2)
    reading = jira.read("tickets", None)

    first = await anext(reading)
    api.tick(600)
    api.update(rows[2]["key"], summary="Laptop 3, charger")
    rest = [batch async for batch in reading]

    delivered = [(r.ticket_id, r.subject) for b in [first, *rest] for r in b.records]
    assert delivered == [
        ("HELP-1", "Laptop 1"),
        ("HELP-2", "Laptop 2"),
        ("HELP-4", "Laptop 4"),
        ("HELP-5", "Laptop 5"),
        ("HELP-3", "Laptop 3, charger"),
    ]


async def test_more_issues_in_one_minute_than_a_page_holds_are_each_read_once(api):
    issues(api, 5, step=5)  # 12:00:00 to 12:00:20, one JQL minute
    batches = await read_all(connector(api, page_size=2))
    assert keys(batches) == ["HELP-1", "HELP-2", "HELP-3", "HELP-4", "HELP-5"]


# --- incremental -----------------------------------------------------------------------------------


async def test_a_second_read_starts_at_the_minute_before_the_cursor_in_the_accounts_zone(api):
    # given a first read of three issues, and an account whose profile is in New York
    api.user_zone = ZoneInfo("America/New_York")
    rows = issues(api, 3, step=20)  # 12:00:00, 12:00:20, 12:00:40 UTC
    first = await read_all(connector(api, time_zone="America/New_York"))
    assert first[-1].state["cursor"] == "2026-09-01T12:00:40+00:00"

    # when the second changes 30 seconds later and a fourth arrives
    api.tick(30)  # 12:01:30
    api.update(rows[1]["key"], summary="Laptop 2, again")
    api.tick(5)
    api.issue("Dock")
    again = await read_all(connector(api, time_zone="America/New_York"), state=first[-1].state)

    # then JQL asks from the minute of cursor less the one-minute least lookback, in New York
    # time, the issues read before are not delivered again, the change and the new one are
    assert searches(api)[-1]["jql"] == (
        'project = "HELP" AND updated >= "2026/09/01 07:59" ORDER BY updated ASC, key ASC'
    )
    assert [(r.ticket_id, r.subject) for b in again for r in b.records] == [
        ("HELP-2", "Laptop 2, again"),
        ("HELP-4", "Dock"),
    ]
    assert keys(await read_all(connector(api), state=again[-1].state)) == []


# --- retries, auth, malformed payloads -------------------------------------------------------------


async def test_429_with_retry_after_and_5xx_are_retried_then_reported(api):
    issues(api, 3)
    api.fail_next("/rest/api/3/search", 429, retry_after="1")
    api.fail_next("/rest/api/3/search", 503)
    jira = connector(api, page_size=2)
    assert len(keys(await read_all(jira))) == 3
    assert jira.client.counts.retries == 2

    for _ in range(4):
        api.fail_next("/rest/api/3/search", 502)
    with pytest.raises(sdk.TransientError, match="failed after 4 attempts: HTTP 502"):
        await read_all(connector(api))


async def test_a_token_revoked_mid_read_fails_the_read_as_an_auth_error(api):
    issues(api, 5)
    jira = connector(api, page_size=2)
    reading = jira.read("tickets", None)
    await anext(reading)
    api.revoked = True
    with pytest.raises(sdk.AuthError, match="HTTP 401"):
        await anext(reading)


async def test_malformed_issues_become_rejects_once_and_replay_when_fixed(api):
    api.issue("ok")
    api.tick(60)
    api.put_raw("not an issue")
    api.issue("no reporter", reporter=None)
    api.issue("odd priority", priority={"name": "P0"})
    jira = connector(api, page_size=2)

    batches = await read_all(jira)

    assert keys(batches) == ["HELP-1"]
    rejects = [r for b in batches for r in b.rejects]
    assert [(r.position, r.reason) for r in rejects] == [
        ("issue", "an issue is an object, not str"),
        ("issue HELP-2 id 10002", "Expected `str`, got `null` - at `$.requester`"),
        ("issue HELP-3 id 10003", "priority 'P0' has no 1-5 value: map it in options.priority_map"),
    ]
    fixed = connector(api, priority_map={"p0": 1}).map_raw("tickets", rejects[2].raw)
    assert fixed.priority == 1


async def test_an_answer_that_is_not_json_is_retried_then_reported(api):
    for _ in range(4):
        api.fail_next("/rest/api/3/search", 200, body='{"issues": [')
    with pytest.raises(sdk.TransientError, match="not valid JSON"):
        await read_all(connector(api))
    api.fail_next("/rest/api/3/search", 200, body='{"errorMessages": []}')
    with pytest.raises(sdk.ConnectorError, match="the answer has no issues list"):
        await read_all(connector(api))


# --- comments ----------------------------------------------------------------------------------


async def test_comments_of_updated_requests_are_read_page_by_page_once(api):
    [help1, help2] = issues(api, 2)
    for n in range(3):
        api.comment(help1["key"], f"note {n}", public=n != 1)
    first = await read_all(connector(api, page_size=2), "comments")

    comments = [r for b in first for r in b.records]
    assert [(c.ticket_id, c.body, c.public) for c in comments] == [
        ("HELP-1", "note 0", True),
        ("HELP-1", "note 1", False),
        ("HELP-1", "note 2", True),
    ]
    assert comments[0] == Comment(
        ticket_id="HELP-1",
        comment_id="10001",
        author="Ana Muñoz",
        body="note 0",
        created_at=datetime(2026, 9, 1, 12, 2, tzinfo=UTC),
        updated_at=datetime(2026, 9, 1, 12, 2, tzinfo=UTC),
    )
    assert any("start=2&limit=2" in r for r in api.requests)

    api.tick(300)
    api.comment(help2["key"], "new one")
    again = await read_all(connector(api, page_size=2), "comments", first[-1].state)
    assert [(c.ticket_id, c.body) for b in again for c in b.records] == [("HELP-2", "new one")]


# --- the write path -----------------------------------------------------------------------------


def ticket(ticket_id: str = "INC0010001", **fields) -> Ticket:
    return Ticket(
        **{
            "ticket_id": ticket_id,
            "requester": "Ana Muñoz",
            "requester_email": "amunoz@eastview.example.org",
            "priority": 2,
            "subject": "Projector in room 114",
            "description": "No signal\nfrom HDMI",
            "opened_at": datetime(2026, 9, 1, 8, tzinfo=UTC),
            "source_system": "eastview-servicenow",
            "external_ids": {"eastview-servicenow": ticket_id},
            "updated_at": datetime(2026, 9, 1, 9, tzinfo=UTC),
            **fields,
        }
    )


async def test_a_ticket_becomes_a_request_then_is_edited_in_place_and_linked_back(api):
    jira = connector(api)

    first = await jira.write("tickets", sdk.Batch(records=[ticket()], state={}), "eastview")
    again = await jira.write(
        "tickets",
        sdk.Batch(records=[ticket(subject="Still dark", priority=1)], state={}),
        "eastview",
    )

    assert (first.written, first.rejects, again.written, again.rejects) == (1, [], 1, [])
    [issue] = api.issues
    fields = issue["fields"]
    assert (fields["summary"], fields["priority"], fields["labels"]) == (
        "Still dark",
        {"name": "Highest"},
        ["cohub:eastview:INC0010001"],
    )
    assert adf.to_text(fields["description"]) == (
        "Requested by Ana Muñoz <amunoz@eastview.example.org>\n\nNo signal\nfrom HDMI"
    )
    writes = [r.split("?")[0] for r in api.requests if not r.startswith("GET")]
    assert writes == [
        "POST /rest/servicedeskapi/request",
        "PUT /rest/api/3/issue/HELP-1",
        "PUT /rest/api/3/issue/HELP-1",
    ]

    [read] = [r for b in await read_all(jira) for r in b.records]
    assert read.external_ids == {"boces-jira": "HELP-1", "eastview": "INC0010001"}

    # and a ticket naming the request by its own key edits it directly
    back = ticket("HELP-1", subject="Renamed", external_ids={"boces-jira": "HELP-1"})
    await jira.write("tickets", sdk.Batch(records=[back], state={}), "eastview")
    assert [i["fields"]["summary"] for i in api.issues] == ["Renamed"]


async def test_a_create_whose_answer_was_lost_is_found_by_its_label_on_retry(api):
    # the request is created, labelled, then the label edit's answer is lost three times over
    api.fail_next("/rest/api/3/issue/HELP-1", 502, applied=True, method="PUT")
    for _ in range(3):
        api.fail_next("/rest/api/3/issue/HELP-1", 502, method="PUT")
    jira = connector(api)
    batch = sdk.Batch(records=[ticket()], state={})

    with pytest.raises(sdk.TransientError):
        await jira.write("tickets", batch, "eastview")
    assert (await jira.write("tickets", batch, "eastview")).written == 1

    assert [i["key"] for i in api.issues] == ["HELP-1"]
    # and a POST whose answer is lost is not sent again by the client
    api.fail_next("/rest/servicedeskapi/request", 502, applied=True, method="POST")
    with pytest.raises(sdk.TransientError, match="may have been applied"):
        await jira.write("tickets", sdk.Batch(records=[ticket("INC0010002")], state={}), "eastview")
    assert len(api.issues) == 2


async def test_a_request_jira_refuses_is_a_reject_with_its_errors(api):
    batch = sdk.Batch(records=[ticket(subject=""), ticket("INC0010002")], state={})
    result = await connector(api).write("tickets", batch, "eastview")
    assert result.written == 1
    [reject] = result.rejects
    assert (reject.position, reject.reason) == (
        "ticket INC0010001",
        "Jira refused request for eastview:INC0010001: summary: Summary is required.",
    )


async def test_writing_tickets_needs_the_service_desk_and_request_type(api):
    jira = connector(api, service_desk_id=None)
    with pytest.raises(sdk.ConnectorConfigError, match=r"needs options\.service_desk_id"):
        await jira.write("tickets", sdk.Batch(records=[ticket()], state={}), "eastview")


async def test_comments_are_added_once_to_the_linked_request(api):
    jira = connector(api)
    await jira.write("tickets", sdk.Batch(records=[ticket()], state={}), "eastview")
    now = datetime(2026, 9, 1, 10, tzinfo=UTC)
    comments = [
        Comment(
            ticket_id="INC0010001",
            comment_id="c1",
            author="Ana",
            body="Still dark",
            created_at=now,
            updated_at=now,
        ),
        Comment(
            ticket_id="INC0010001",
            comment_id="c2",
            author="Tech",
            body="Cable",
            public=False,
            created_at=now,
            updated_at=now,
        ),
        Comment(
            ticket_id="INC0099999",
            comment_id="c3",
            author="X",
            body="orphan",
            created_at=now,
            updated_at=now,
        ),
    ]
    batch = sdk.Batch(records=comments, state={})

    first = await jira.write("comments", batch, "eastview")
    again = await jira.write("comments", batch, "eastview")

    assert [(c["body"], c["public"]) for c in api.comments["HELP-1"]] == [
        ("Still dark\n\n— Ana on eastview:INC0010001 [cohub eastview:INC0010001#c1]", True),
        ("Cable\n\n— Tech on eastview:INC0010001 [cohub eastview:INC0010001#c2]", False),
    ]
    assert (first.written, again.written) == (2, 2)
    assert [r.reason for r in again.rejects] == [
        "no request is linked to eastview:INC0099999 yet: write its ticket first, then replay "
        "this comment"
    ]


# --- webhooks -----------------------------------------------------------------------------------


def signed(body: bytes, secret: str = HOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"x-hub-signature": f"sha256={digest}"}


async def test_a_signed_issue_webhook_gives_a_raw_ticket_and_a_bad_signature_is_refused(api):
    jira = connector(api)
    issue = api.issue("Wi-Fi down", description="Library AP")  # v2 shape: text description
    body = msgspec.json.encode({"webhookEvent": "jira:issue_updated", "issue": issue})

    received = await jira.receive(sdk.Inbound(body=body, headers=signed(body)))

    assert (received.stream, received.raws) == ("tickets", [issue])
    assert jira.map_raw("tickets", received.raws[0]).description == "Library AP"
    assert JiraServiceManagement.inbound_auth == "connector"
    with pytest.raises(sdk.AuthError, match="does not match"):
        await jira.receive(sdk.Inbound(body=body, headers=signed(body, "wrong")))
    with pytest.raises(sdk.AuthError, match="does not match"):
        await jira.receive(sdk.Inbound(body=body, headers={}))
    with pytest.raises(sdk.AuthError, match="no webhook_secret"):
        await connector(api, secrets={"api_token": TOKEN}).receive(
            sdk.Inbound(body=body, headers=signed(body))
        )


async def test_a_comment_webhook_gives_a_raw_comment_and_other_events_nothing(api):
    jira = connector(api)
    issue = api.issue("Wi-Fi down")
    comment = {
        "id": "10400",
        "body": "Rebooted the AP",
        "jsdPublic": False,
        "author": {"displayName": "Tech One"},
        "created": "2026-09-01T12:05:00.000+0000",
    }
    body = msgspec.json.encode(
        {"webhookEvent": "comment_created", "issue": issue, "comment": comment}
    )
    received = await jira.receive(sdk.Inbound(body=body, headers=signed(body)))
    mapped = jira.map_raw("comments", received.raws[0])
    assert (received.stream, mapped.ticket_id, mapped.public, mapped.body) == (
        "comments",
        "HELP-1",
        False,
        "Rebooted the AP",
    )

    other = msgspec.json.encode({"webhookEvent": "jira:issue_deleted", "issue": issue})
    assert (await jira.receive(sdk.Inbound(body=other, headers=signed(other)))).raws == []
    junk = b"not json"
    with pytest.raises(sdk.BadRecord, match="not JSON"):
        await jira.receive(sdk.Inbound(body=junk, headers=signed(junk)))


# --- ADF ------------------------------------------------------------------------------------------


def test_plain_text_survives_a_round_trip_through_adf():
    text = "First line\nsecond line\n\nNew paragraph"
    document = adf.from_text(text)
    assert document["content"][0]["content"][1] == {"type": "hardBreak"}
    assert adf.to_text(document) == text
    assert adf.to_text("already text") == "already text"
    with pytest.raises(ValueError, match="not list"):
        adf.to_text([1])


# --- check ----------------------------------------------------------------------------------------


async def test_check_passes_and_streams_name_their_records(api):
    jira = connector(api)
    await jira.check()
    assert [(s.name, s.record, s.writable) for s in await jira.streams()] == [
        ("tickets", "ticketing.ticket", True),
        ("comments", "ticketing.comment", True),
    ]


async def test_check_says_a_wrong_url_is_not_a_jira_site(api):
    with pytest.raises(
        sdk.ConnectorConfigError, match="does not answer as a Jira Cloud site: HTTP 404"
    ):
        await connector(api, site_url=api.base_url + "wiki/").check()


async def test_check_says_the_token_was_refused(api):
    with pytest.raises(
        sdk.AuthError,
        match=r"Jira refused 'cohub@boces.example.org' and its API token \(HTTP 401: You are not authenticated",
    ):
        await connector(api, secrets={"api_token": "wrong"}).check()


async def test_check_names_a_project_or_desk_out_of_reach(api):
    with pytest.raises(sdk.AuthError, match=r"project NOPE does not exist or .* may not browse it"):
        await connector(api, project_key="NOPE").check()
    with pytest.raises(
        sdk.AuthError, match=r"service desk 9 does not exist or .* is not one of its agents"
    ):
        await connector(api, service_desk_id="9").check()


async def test_check_says_the_host_cannot_be_reached():
    jira = JiraServiceManagement(
        JiraServiceManagement.parse_options(
            {
                "site_url": "http://127.0.0.1:9/",
                "email": "x@y",
                "project_key": "HELP",
                **FAST,
                "retry_attempts": 1,
            }
        ),
        {"api_token": "x"},
        sdk.ConnectionContext(connection="c", member=None),
    )
    with pytest.raises(
        sdk.TransientError, match=re.escape("cannot reach Jira at http://127.0.0.1:9/")
    ):
        await jira.check()
    await close_sessions()


def test_options_schema_and_a_bad_time_zone():
    schema = JiraServiceManagement.options_schema()["$defs"]["JiraOptions"]
    assert schema["required"] == ["site_url", "email", "project_key"]
    assert JiraServiceManagement.secrets == ("api_token", "webhook_secret")
    with pytest.raises(sdk.ConnectorConfigError, match="not an IANA time zone"):
        connector(JiraApi(), time_zone="Eastern")


# --- a district's ServiceNow desk into the shared Jira desk, through the engine -----------------


@pytest.fixture
async def district() -> AsyncIterator[ServiceNowApi]:
    server = ServiceNowApi(password="sn-pw")
    await server.start()
    yield server
    await server.close()


async def configure_route(runtime, config_dir: Path, sn_url: str, jira_url: str) -> None:
    with (config_dir / "cooperative.toml").open("a") as cooperative:
        cooperative.write(
            '\n[services.helpdesk]\nname = "Shared IT helpdesk"\n'
            'meters = ["tickets_opened", "tickets_resolved"]\n'
        )
    (config_dir / "connections" / "eastview-servicenow.toml").write_text(
        f'connector = "servicenow"\nmember = "eastview"\n\n[options]\ninstance_url = "{sn_url}"\n'
        'username = "cohub.integration"\npage_size = 2\nretry_base_seconds = 0.01\n\n'
        '[secrets]\npassword = "env:SN_PASSWORD"\n'
    )
    (config_dir / "connections" / "boces-jira.toml").write_text(
        f'connector = "jira_service_management"\n\n[options]\nsite_url = "{jira_url}"\n'
        'email = "cohub@boces.example.org"\nproject_key = "HELP"\nservice_desk_id = "4"\n'
        'request_type_id = "25"\nretry_base_seconds = 0.01\nmax_retry_after_seconds = 0.05\n\n'
        '[secrets]\napi_token = "env:JIRA_TOKEN"\n'
    )
    with (config_dir / "routes.toml").open("a") as routes:
        for stream in ("tickets", "comments"):
            routes.write(
                f'\n[routes.eastview-{stream}]\nsource = "eastview-servicenow"\n'
                f'source_stream = "{stream}"\ndestination = "boces-jira"\n'
                f'destination_stream = "{stream}"\nservice = "helpdesk"\nlookback_seconds = 120\n'
            )
    runtime.plugins = PluginHost([config_dir.parent / "plugins"])
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)


async def test_a_district_servicenow_desk_syncs_into_the_shared_jira_desk_without_duplicates(
    runtime, config_dir, api, district, monkeypatch
):
    # given Eastview's ServiceNow with two incidents, one with a comment, and a throttled Jira
    monkeypatch.setenv("SN_PASSWORD", "sn-pw")
    monkeypatch.setenv("JIRA_TOKEN", TOKEN)
    caller = district.user("Ana Muñoz", "ana.munoz", "amunoz@eastview.example.org")
    projector = district.incident(short_description="Projector", caller_id=caller, priority="2")
    district.tick()
    district.incident(short_description="Printer", caller_id=caller)
    district.tick()
    district.journal(projector["sys_id"], "comments", "Room 114")
    district.tick()
    api.fail_next("/rest/servicedeskapi/request", 429, retry_after="1", method="POST")
    await configure_route(runtime, config_dir, district.base_url, api.base_url)

    # when the tickets route, then the comments route run
    tickets = await run_route(runtime.engine, runtime.plugins, "eastview-tickets")
    comments = await run_route(runtime.engine, runtime.plugins, "eastview-comments")

    # then each incident is a request labelled with its link, and the comment is on its request
    assert tickets.status == "succeeded", tickets.error
    assert comments.status == "succeeded", comments.error
    assert (tickets.counts.written, tickets.counts.retried, comments.counts.written) == (2, 1, 1)
    assert [(i["key"], i["fields"]["summary"], i["fields"]["labels"]) for i in api.issues] == [
        ("HELP-1", "Projector", ["cohub:eastview:INC0010001"]),
        ("HELP-2", "Printer", ["cohub:eastview:INC0010002"]),
    ]
    assert api.issues[0]["fields"]["priority"] == {"name": "High"}
    assert [c["body"].split("\n")[0] for c in api.comments["HELP-1"]] == ["Room 114"]

    # when the projector incident is resolved in the district and both routes run again
    district.tick(5)
    district.update(projector["sys_id"], state="6", short_description="Projector (bulb)")
    again = await run_route(runtime.engine, runtime.plugins, "eastview-tickets")
    more = await run_route(runtime.engine, runtime.plugins, "eastview-comments")

    # then its request is edited in place: no second request, no second comment
    assert (again.status, again.counts.read, again.counts.written) == ("succeeded", 1, 1)
    assert (more.status, more.counts.written) == ("succeeded", 0)
    assert [i["fields"]["summary"] for i in api.issues] == ["Projector (bulb)", "Printer"]
    assert len(api.comments["HELP-1"]) == 1
    await close_sessions()
