"""The Zendesk Support connector against a local Zendesk API (tests/vendor/zendesk_api.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import msgspec
import pytest
from sqlalchemy import select

from connectors.sql_table import StreamTable
from connectors.zendesk import Zendesk
from hub import sdk
from hub.apply import apply
from hub.config import check_against_plugins, load_config
from hub.engine.run import run_route
from hub.model.ticketing import Comment, Ticket
from hub.plugins import PluginHost
from hub.sdk.http import ManualClock, close_sessions
from hub.store.database import create_engine
from tests.vendor.zendesk_api import ZendeskApi

EMAIL = "it@boces.example.org"
TOKEN = "zd-token"
SIGNING = "whsec-zendesk"
FAST = {
    "retry_attempts": 4,
    "retry_base_seconds": 0.01,
    "retry_cap_seconds": 0.02,
    "max_retry_after_seconds": 120,
    "timeout_seconds": 5,
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=datetime(2026, 9, 2, 8, tzinfo=UTC))


@pytest.fixture
async def api(clock) -> AsyncIterator[ZendeskApi]:
    server = ZendeskApi(email=EMAIL, api_token=TOKEN, clock=clock.monotonic)
    await server.start()
    yield server
    await close_sessions()
    await server.close()


def connector(
    api: ZendeskApi, clock: ManualClock, secrets: dict | None = None, **options
) -> Zendesk:
    parsed = Zendesk.parse_options({"base_url": api.base_url, "email": EMAIL, **FAST, **options})
    context = sdk.ConnectionContext(connection="shared-desk", member=None)
    zendesk = Zendesk(
        parsed,
        secrets if secrets is not None else {"api_token": TOKEN, "webhook_secret": SIGNING},
        context,
    )
    zendesk.clock = clock
    return zendesk


async def read_all(zendesk: Zendesk, stream: str, state=None) -> list[sdk.Batch]:
    return [batch async for batch in zendesk.read(stream, state)]


def subjects(batches: list[sdk.Batch]) -> list[str]:
    return [r.subject for b in batches for r in b.records]


def exports(api: ZendeskApi) -> list[str]:
    return [r for r in api.requests if r.startswith("GET /api/v2/incremental/")]


# --- the incremental export: paging edges -----------------------------------------------------


@pytest.mark.parametrize(
    ("count", "per_page", "requests"),
    [(0, 3, 1), (2, 3, 1), (3, 3, 1), (7, 3, 3)],
    ids=["empty-export", "end-of-stream-on-first-page", "exactly-one-full-page", "three-pages"],
)
async def test_the_export_follows_after_cursor_until_end_of_stream(
    api, clock, count, per_page, requests
):
    # given `count` tickets and pages of `per_page`
    for n in range(1, count + 1):
        api.put(f"Printer {n} jammed")
    zendesk = connector(api, clock, page_size=per_page)

    # when the tickets are read from the start
    batches = await read_all(zendesk, "tickets")

    # then each arrives once, in order of change, one batch a page, and the walk asked exactly
    # as many pages as end_of_stream allowed: the first from start_time, then by cursor
    assert subjects(batches) == [f"Printer {n} jammed" for n in range(1, count + 1)]
    asked = exports(api)
    assert len(asked) == requests == len(batches)
    assert "start_time=0" in asked[0] and all("cursor=" in r for r in asked[1:])
    if count:
        assert "cursor" in batches[-1].state  # the next export starts where this one ended
    else:
        assert batches[-1].state == {"start_time": 0}


async def test_a_read_resumes_at_the_stored_cursor_after_a_crash_mid_export(api, clock):
    # given seven tickets read in pages of three, and a crash after the first page's checkpoint
    for n in range(1, 8):
        api.put(f"Projector {n}")
    first = await read_all(connector(api, clock, page_size=3), "tickets")
    checkpoint = first[0].state

    # when a new run resumes from it
    api.requests.clear()
    resumed = await read_all(connector(api, clock, page_size=3), "tickets", checkpoint)

    # then it reads the rest, starting at that cursor, never the first page again
    assert subjects(resumed) == [f"Projector {n}" for n in range(4, 8)]
    assert f"cursor={quote(checkpoint['cursor'], safe='')}" in exports(api)[0]

    # and a run after the end reads only what changed since
    api.put("Projector 2 (again)", id=1002)
    again = await read_all(connector(api, clock), "tickets", resumed[-1].state)
    assert subjects(again) == ["Projector 2 (again)"]


async def test_the_ticket_mapping_follows_zendesk_fields(api, clock):
    requester = api.user("Dana Reyes", "dreyes@eastview.example.org")
    api.put(
        "Chromebook cart offline",
        priority="urgent",
        status="pending",
        requester_id=requester,
        group_id=360001,
        external_id="eastview:incident_iq:10423",
    )
    [ticket] = [r for b in await read_all(connector(api, clock), "tickets") for r in b.records]
    assert ticket == Ticket(
        ticket_id="1001",
        requester="Dana Reyes",
        requester_email="dreyes@eastview.example.org",
        category="incident",
        priority=1,
        status="on_hold",
        subject="Chromebook cart offline",
        description="Chromebook cart offline",
        opened_at=datetime(2026, 9, 1, 12, 1, tzinfo=UTC),
        assigned_group="360001",
        source_system="zendesk",
        external_ids={"zendesk": "1001", "incident_iq": "10423"},
        updated_at=datetime(2026, 9, 1, 12, 3, tzinfo=UTC),
    )


async def test_deleted_tickets_are_delivered_as_deletes(api, clock):
    for n in (1, 2, 3):
        api.put(f"Badge reader {n}")
    first = await read_all(connector(api, clock), "tickets")

    api.delete(1002)
    again = await read_all(connector(api, clock), "tickets", first[-1].state)

    assert subjects(again) == []
    assert [key for b in again for key in b.deletes] == ["1002"]


# --- the 10-per-minute limit ------------------------------------------------------------------


async def test_a_long_export_is_paced_to_ten_requests_a_minute_and_never_trips_the_limit(
    api, clock
):
    # given an export of 25 pages (one ticket each) against a server that allows 10 a minute
    for n in range(1, 26):
        api.put(f"Laptop {n}")
    zendesk = connector(api, clock, page_size=1)

    # when it is read
    batches = await read_all(zendesk, "tickets")

    # then all 25 pages arrive, the server never answered 429, and each request after the
    # first waited its 6 seconds: 25 requests take 144 s of the injected clock
    assert len(subjects(batches)) == 25
    assert api.rate_limited == 0
    assert clock.sleeps == [6.0] * 24
    assert clock.elapsed == pytest.approx(144.0)


async def test_a_429_from_the_export_waits_the_retry_after_it_names(api, clock):
    # given another client spent this minute's ten export requests
    api.put("Smartboard calibration")
    api.export_times.extend([clock.monotonic()] * 10)
    zendesk = connector(api, clock)

    # when the export is read
    batches = await read_all(zendesk, "tickets")

    # then the 429's Retry-After (60 s) was waited once, and the read went on
    assert subjects(batches) == ["Smartboard calibration"]
    assert api.rate_limited == 1
    assert clock.sleeps == [60.0]
    assert zendesk.export_client.counts.retries == 1


async def test_5xx_is_retried_and_reported_once_the_attempts_run_out(api, clock):
    api.put("Wi-Fi down in gym")
    api.fail_next("/api/v2/incremental/tickets/cursor.json", 503)
    assert subjects(await read_all(connector(api, clock), "tickets")) == ["Wi-Fi down in gym"]

    for _ in range(4):
        api.fail_next("/api/v2/incremental/tickets/cursor.json", 500)
    with pytest.raises(
        sdk.TransientError,
        match=r"GET http://127\.0\.0\.1:\d+/api/v2/incremental/tickets/cursor\.json failed "
        r"after 4 attempts: HTTP 500",
    ):
        await read_all(connector(api, clock), "tickets")


# --- auth --------------------------------------------------------------------------------------


async def test_an_oauth_token_is_sent_as_bearer_and_an_expired_one_fails_the_read(api, clock):
    api.put("Phone system")
    oauth = connector(api, clock, secrets={"oauth_token": "zd-oauth"})
    assert subjects(await read_all(oauth, "tickets")) == ["Phone system"]

    api.oauth_tokens.clear()  # revoked or expired
    with pytest.raises(sdk.AuthError, match="refused the credentials: HTTP 401"):
        await read_all(connector(api, clock, secrets={"oauth_token": "zd-oauth"}), "tickets")


def test_an_api_token_without_the_agent_email_is_a_configuration_error(api, clock):
    zendesk = connector(api, clock, email=None)
    with pytest.raises(sdk.ConnectorConfigError, match=r"api_token needs options\.email"):
        zendesk.client  # noqa: B018
    with pytest.raises(sdk.ConnectorConfigError, match="neither an api_token nor an oauth_token"):
        connector(api, clock, secrets={}).client  # noqa: B018


# --- malformed payloads -------------------------------------------------------------------------


async def test_malformed_tickets_become_rejects_with_reasons(api, clock):
    api.put("Good one")
    api.raw_export = ["not a ticket", {"id": 9, "subject": None, "created_at": "x"}]
    batches = await read_all(connector(api, clock), "tickets")

    assert subjects(batches) == ["Good one"]
    assert [(r.position, r.reason.split(" - ")[0]) for b in batches for r in b.rejects] == [
        ("ticket None", "a Zendesk ticket is an object, not str"),
        ("ticket 9", "Expected `str`, got `null`"),
    ]


async def test_an_export_page_without_tickets_or_cursor_fails_the_read_clearly(api, clock):
    api.fail_next(
        "/api/v2/incremental/tickets/cursor.json", 200, body={"results": [], "end_of_stream": True}
    )
    with pytest.raises(sdk.ConnectorError, match="the answer has no list of tickets"):
        await read_all(connector(api, clock), "tickets")

    api.fail_next(
        "/api/v2/incremental/tickets/cursor.json",
        200,
        body={"tickets": [], "after_cursor": None, "end_of_stream": False},
    )
    with pytest.raises(sdk.ConnectorError, match="goes on but gives no after_cursor"):
        await read_all(connector(api, clock), "tickets")


async def test_a_truncated_json_page_is_retried(api, clock):
    api.put("Library kiosk")
    api.fail_next("/api/v2/incremental/tickets/cursor.json", 200, body=b'{"tickets": [{"id"')
    assert subjects(await read_all(connector(api, clock), "tickets")) == ["Library kiosk"]


# --- comments ---------------------------------------------------------------------------------


async def test_comments_follow_cursor_pagination_and_a_later_read_brings_only_new_ones(api, clock):
    # given a ticket with 120 comments (two pages of 100) and another with its first only
    long = api.put("Network outage")
    for n in range(119):
        api.comment(long["id"], f"update {n}", public=n % 2 == 0)
    api.put("Toner")
    first = await read_all(connector(api, clock), "comments")
    comments = [r for b in first for r in b.records]
    assert len(comments) == 121
    assert comments[1] == Comment(
        ticket_id="1001",
        comment_id="5002",
        author="Shared Desk Admin",
        body="update 0",
        public=True,
        created_at=comments[1].created_at,
        updated_at=comments[1].created_at,
    )
    assert any("page%5Bafter%5D=" in r or "page[after]=" in r for r in api.requests)

    # when one ticket gets a new comment (which changes the ticket) and comments are read again
    api.comment(1002, "replaced the cartridge")
    api.put("Toner", id=1002)
    again = await read_all(connector(api, clock), "comments", first[-1].state)

    # then only the new comment arrives
    assert [r.body for b in again for r in b.records] == ["replaced the cartridge"]


# --- the destination ---------------------------------------------------------------------------


def district_ticket(ticket_id: str = "10423", **fields) -> Ticket:
    values = {
        "ticket_id": ticket_id,
        "requester": "Dana Reyes",
        "requester_email": "dreyes@eastview.example.org",
        "priority": 2,
        "status": "new",
        "subject": "Chromebook cart offline",
        "description": "Cart 3 in room 114 shows no power",
        "opened_at": datetime(2026, 9, 1, 8, tzinfo=UTC),
        "source_system": "incident_iq",
        "updated_at": datetime(2026, 9, 1, 8, tzinfo=UTC),
    }
    return Ticket(**{**values, **fields})


async def test_writing_creates_then_updates_the_same_ticket_linked_back_by_external_id(api, clock):
    zendesk = connector(api, clock)

    # when a district ticket is written, then written again changed
    created = await zendesk.write(
        "tickets", sdk.Batch(records=[district_ticket()], state={}), "eastview"
    )
    changed = district_ticket(status="resolved", subject="Chromebook cart offline (fixed)")
    updated = await zendesk.write("tickets", sdk.Batch(records=[changed], state={}), "eastview")

    # then one Zendesk ticket carries it, updated, its external id naming the district's
    assert (created.written, updated.written) == (1, 1)
    [ticket] = api.tickets.values()
    assert ticket["external_id"] == "eastview:incident_iq:10423"
    assert (ticket["subject"], ticket["status"], ticket["priority"]) == (
        "Chromebook cart offline (fixed)",
        "solved",
        "high",
    )
    assert api.users[ticket["requester_id"]]["email"] == "dreyes@eastview.example.org"
    assert api.comments[ticket["id"]][0]["public"] is False  # the description is internal
    # and reading the shared desk links back to the district's ticket
    [read] = [r for b in await read_all(zendesk, "tickets") for r in b.records]
    assert read.external_ids == {"zendesk": str(ticket["id"]), "incident_iq": "10423"}
    # and the same ticket number from another district is another ticket
    await zendesk.write("tickets", sdk.Batch(records=[district_ticket()], state={}), "millbrook")
    assert sorted(t["external_id"] for t in api.tickets.values()) == [
        "eastview:incident_iq:10423",
        "millbrook:incident_iq:10423",
    ]


async def test_a_creation_whose_answer_was_lost_is_retried_without_a_duplicate(api, clock):
    # given Zendesk creates the ticket but the answer is lost (HTTP 500 after applying)
    api.fail_after("POST /api/v2/tickets", 500)
    zendesk = connector(api, clock)

    result = await zendesk.write(
        "tickets", sdk.Batch(records=[district_ticket()], state={}), "eastview"
    )

    # then the retry carried the same Idempotency-Key and got the first ticket back
    assert result.written == 1
    assert len(api.tickets) == 1
    assert len(api.idempotency) == 1
    assert [r for r in api.requests if r == "POST /api/v2/tickets"] == ["POST /api/v2/tickets"] * 2


async def test_a_ticket_zendesk_refuses_is_a_reject_with_its_reasons(api, clock):
    zendesk = connector(api, clock)
    batch = sdk.Batch(records=[district_ticket(subject=""), district_ticket("10424")], state={})

    result = await zendesk.write("tickets", batch, "eastview")

    assert result.written == 1
    [reject] = result.rejects
    assert reject.position == "tickets 10423"
    assert (
        reject.reason
        == "Zendesk refused it: Record validation errors; subject: Subject: cannot be blank"
    )
    assert reject.raw["ticket_id"] == "10423"


async def test_comments_are_written_once_to_the_linked_ticket(api, clock):
    zendesk = connector(api, clock, source_system="incident_iq")
    await zendesk.write("tickets", sdk.Batch(records=[district_ticket()], state={}), "eastview")
    comment = Comment(
        ticket_id="10423",
        comment_id="77",
        author="Sam Ortiz",
        body="Swapped the power strip",
        public=True,
        created_at=datetime(2026, 9, 1, 9, tzinfo=UTC),
        updated_at=datetime(2026, 9, 1, 9, tzinfo=UTC),
    )
    batch = sdk.Batch(records=[comment], state={})

    assert (await zendesk.write("comments", batch, "eastview")).written == 1
    assert (await zendesk.write("comments", batch, "eastview")).written == 1

    [ticket] = api.tickets.values()
    bodies = [c["body"] for c in api.comments[ticket["id"]]]
    assert bodies == ["Cart 3 in room 114 shows no power", "Sam Ortiz: Swapped the power strip"]
    # a comment for a ticket not written yet is a reject, replayable later
    orphan = sdk.Batch(records=[msgspec.structs.replace(comment, ticket_id="999")], state={})
    [reject] = (await zendesk.write("comments", orphan, "eastview")).rejects
    assert "no Zendesk ticket has external_id 'eastview:incident_iq:999' yet" in reject.reason


async def test_a_district_ticket_deleted_at_its_source_is_solved_and_tagged(api, clock):
    zendesk = connector(api, clock, source_system="incident_iq")
    await zendesk.write("tickets", sdk.Batch(records=[district_ticket()], state={}), "eastview")

    assert await zendesk.delete("tickets", ["10423", "55555"], "eastview") == 1
    assert await zendesk.delete("tickets", ["10423"], "eastview") == 0

    [ticket] = api.tickets.values()
    assert ticket["status"] == "solved" and "deleted_at_source" in ticket["tags"]


# --- webhooks -------------------------------------------------------------------------------


def signed(body: bytes, timestamp: str, secret: str = SIGNING) -> sdk.Inbound:
    signature = base64.b64encode(
        hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    ).decode()
    return sdk.Inbound(
        body=body,
        headers={
            "x-zendesk-webhook-signature": signature,
            "x-zendesk-webhook-signature-timestamp": timestamp,
        },
        content_type="application/json",
    )


async def test_a_signed_webhook_gives_its_ticket_for_the_tickets_stream(api, clock):
    zendesk = connector(api, clock)
    body = (
        b'{"type": "zen:event-type:ticket.status_changed", "detail": {"id": "35436", '
        b'"subject": "Bus GPS", "status": "SOLVED", "priority": "HIGH", "requester_id": "7", '
        b'"created_at": "2026-09-02T07:00:00Z", "updated_at": "2026-09-02T07:58:00Z"}}'
    )

    received = await zendesk.receive(signed(body, "2026-09-02T07:59:00Z"))

    assert received.stream == "tickets"
    [ticket] = [zendesk.map_raw("tickets", raw) for raw in received.raws]
    assert (ticket.ticket_id, ticket.status, ticket.priority, ticket.requester) == (
        "35436",
        "resolved",
        2,
        "7",
    )
    trigger = await zendesk.receive(signed(b'{"ticket": {"id": 5}}', "2026-09-02T08:01:00Z"))
    assert trigger.raws == [{"id": 5}]


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda r: signed(r.body + b" ", "2026-09-02T07:59:00Z"), None),
        (lambda r: signed(r.body, "2026-09-02T07:59:00Z", secret="other"), "does not match"),
        (lambda r: signed(r.body, "2026-09-02T07:50:00Z"), "stale: signed 600 s from now"),
        (lambda r: sdk.Inbound(body=r.body, headers={}), "carries no Zendesk webhook signature"),
        (
            lambda r: sdk.Inbound(
                body=r.body,
                headers={**r.headers, "x-zendesk-webhook-signature": "AAAA"},
            ),
            "does not match",
        ),
    ],
    ids=["re-signed-other-body", "wrong-secret", "stale", "unsigned", "forged"],
)
async def test_a_webhook_not_signed_by_zendesk_now_is_refused(api, clock, mangle, message):
    zendesk = connector(api, clock)
    good = signed(b'{"ticket": {"id": 1}}', "2026-09-02T07:59:00Z")
    request = mangle(good)
    if message is None:  # a body signed correctly but different is still genuine
        assert (await zendesk.receive(request)).raws == [{"id": 1}]
        tampered = sdk.Inbound(body=good.body + b" ", headers=good.headers)
        with pytest.raises(sdk.AuthError, match="does not match the body"):
            await zendesk.receive(tampered)
        return
    with pytest.raises(sdk.AuthError, match=re.escape(message)):
        await zendesk.receive(request)


async def test_a_genuine_webhook_that_is_not_json_is_a_bad_record(api, clock):
    with pytest.raises(sdk.BadRecord, match="not JSON"):
        await connector(api, clock).receive(signed(b"<xml/>", "2026-09-02T08:00:00Z"))


# --- check -------------------------------------------------------------------------------------


async def test_check_passes_and_streams_name_their_records(api, clock):
    zendesk = connector(api, clock)
    await zendesk.check()
    assert [(s.name, s.record, s.writable) for s in await zendesk.streams()] == [
        ("tickets", "ticketing.ticket", True),
        ("comments", "ticketing.comment", True),
    ]


async def test_check_names_what_is_wrong(api, clock):
    with pytest.raises(
        sdk.ConnectorConfigError, match="is not a Zendesk Support API: users/me answered HTTP 404"
    ):
        await connector(api, clock, base_url=api.base_url + "nowhere/").check()
    with pytest.raises(
        sdk.AuthError,
        match=f"refused the credentials of {EMAIL} \\(HTTP 401: Couldn't authenticate you\\)",
    ):
        await connector(api, clock, secrets={"api_token": "wrong"}).check()
    api.role = "agent"
    with pytest.raises(
        sdk.AuthError, match="is agent, not admin: the incremental exports are for admins only"
    ):
        await connector(api, clock).check()


async def test_check_says_the_host_cannot_be_reached(clock):
    zendesk = Zendesk(
        Zendesk.parse_options(
            {"base_url": "http://127.0.0.1:9/", "email": EMAIL, **FAST, "retry_attempts": 1}
        ),
        {"api_token": TOKEN},
        sdk.ConnectionContext(connection="c", member=None),
    )
    with pytest.raises(
        sdk.TransientError, match=re.escape("cannot reach Zendesk at http://127.0.0.1:9/")
    ):
        await zendesk.check()
    await close_sessions()


def test_options_have_a_json_schema_and_secrets_are_named():
    schema = Zendesk.options_schema()["$defs"]["ZendeskOptions"]
    assert {"subdomain", "email", "page_size", "export_requests_per_minute"} <= set(
        schema["properties"]
    )
    assert schema["properties"]["export_requests_per_minute"]["maximum"] == 10
    assert Zendesk.secrets == ("api_token", "oauth_token", "webhook_secret")
    assert Zendesk.inbound_auth == "connector"
    with pytest.raises(sdk.ConnectorConfigError, match=r"needs options\.subdomain"):
        Zendesk(Zendesk.parse_options({}), {}, sdk.ConnectionContext(connection="c", member=None))


# --- through the engine, on every backend ------------------------------------------------------


async def configure_route(runtime, config_dir: Path, base_url: str) -> None:
    with (config_dir / "cooperative.toml").open("a") as cooperative:
        cooperative.write(
            '\n[services.it-helpdesk]\nname = "Shared IT helpdesk"\n'
            'meters = ["tickets_opened", "tickets_resolved"]\n'
        )
    (config_dir / "connections" / "shared-desk.toml").write_text(
        f'connector = "zendesk"\nmember = "eastview"\n\n[options]\nbase_url = "{base_url}"\n'
        f'email = "{EMAIL}"\npage_size = 2\nretry_base_seconds = 0.01\n'
        'max_retry_after_seconds = 0.05\n\n[secrets]\napi_token = "env:ZENDESK_TOKEN"\n'
    )
    with (config_dir / "routes.toml").open("a") as routes:
        routes.write(
            '\n[routes.eastview-helpdesk]\nsource = "shared-desk"\nsource_stream = "tickets"\n'
            'destination = "cbo-payroll-db"\ndestination_stream = "tickets"\n'
            'service = "it-helpdesk"\n'
        )
    runtime.plugins = PluginHost([config_dir.parent / "plugins"])
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)


async def stored_tickets(database_url: str) -> list[tuple[str, str, bool]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            table = StreamTable("tickets", Ticket).table
            rows = await conn.execute(
                select(table.c.record_key, table.c.status, table.c.deleted_at).order_by(
                    table.c.record_key
                )
            )
            return [(key, status, deleted is not None) for key, status, deleted in rows]
    finally:
        await engine.dispose()


async def test_a_sync_delivers_tickets_dead_letters_bad_ones_and_marks_deletes(
    runtime, config_dir, database_url, api, monkeypatch
):
    # given a desk with three tickets, one solved, and a malformed one
    monkeypatch.setenv("ZENDESK_TOKEN", TOKEN)
    api.put("Printer jam")
    api.put("Projector bulb", status="solved")
    api.put("Wi-Fi")
    api.raw_export = [{"id": 77, "subject": None}]
    await configure_route(runtime, config_dir, api.base_url)

    # when the route runs
    summary = await run_route(runtime.engine, runtime.plugins, "eastview-helpdesk")

    # then three tickets arrive, the malformed one is a dead letter
    assert summary.status == "succeeded", summary.error
    assert (summary.counts.read, summary.counts.written, summary.counts.rejected) == (4, 3, 1)
    assert await stored_tickets(database_url) == [
        ("1001", "new", False),
        ("1002", "resolved", False),
        ("1003", "new", False),
    ]

    # when a ticket is deleted and another changes, the next run brings only that
    api.delete(1001)
    api.put("Wi-Fi", id=1003, status="open")
    again = await run_route(runtime.engine, runtime.plugins, "eastview-helpdesk")
    assert again.status == "succeeded", again.error
    assert (again.counts.read, again.counts.written, again.counts.deleted) == (1, 1, 1)
    assert await stored_tickets(database_url) == [
        ("1001", "new", True),
        ("1002", "resolved", False),
        ("1003", "in_progress", False),
    ]
