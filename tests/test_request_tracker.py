"""The Request Tracker connector against a real RT 5 (Debian's packages), started once a session.

The instance runs in America/New_York, so a TicketSQL time sent in UTC would be five hours off:
the incremental reads prove the `timezone` option. Each test works in a queue of its own.
Skipped only where RT is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors.request_tracker import RequestTracker, priority_from_rt, priority_to_rt
from connectors.sql_table import StreamTable
from hub import sdk
from hub.apply import apply
from hub.config import check_against_plugins, load_config
from hub.engine.run import run_route
from hub.model.ticketing import Ticket
from hub.plugins import PluginHost
from hub.sdk.http import close_sessions
from hub.store.database import create_engine
from tests import rt_server
from tests.rt_server import RtServer

pytestmark = pytest.mark.asyncio

ZONE = "America/New_York"
_queues = itertools.count(1)


@pytest.fixture(scope="session")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtServer]:
    if not rt_server.installed():
        pytest.skip("Request Tracker 5 is not installed (apt-get install request-tracker5 "
                    "rt5-db-sqlite; .ci/run does it)")  # fmt: skip
    server = RtServer(tmp_path_factory.mktemp("rt"), timezone=ZONE)
    yield server
    server.stop()


@pytest.fixture
def queue(rt: RtServer) -> str:
    """A fresh queue for one test."""
    name = f"Desk {next(_queues)}"
    rt.call("POST", "queue", {"Name": name})
    return name


@pytest.fixture(autouse=True)
async def sessions() -> AsyncIterator[None]:
    yield
    await close_sessions()


def connector(
    rt: RtServer, queue: str, *, user: str = "cohub", token: str | None = None, **options
) -> RequestTracker:
    parsed = RequestTracker.parse_options(
        {"url": rt.url, "queue": queue, "timezone": ZONE, "retry_base_seconds": 0.01, **options}
    )
    context = sdk.ConnectionContext(connection="helpdesk-rt", member=None)
    return RequestTracker(parsed, {"token": token or rt.tokens[user]}, context)


def new_ticket(rt: RtServer, queue: str, subject: str, **fields) -> str:
    body = {"Queue": queue, "Subject": subject, "Content": f"{subject}, please", **fields}
    return rt.call("POST", "ticket", body)["id"]


async def read_all(source: RequestTracker, stream: str, state=None) -> list[sdk.Batch]:
    return [batch async for batch in source.read(stream, state)]


def records(batches: list[sdk.Batch]) -> list[sdk.Record]:
    return [record for batch in batches for record in batch.records]


def ticket(number: str, **fields) -> Ticket:
    values = {
        "ticket_id": number,
        "requester": "Pat Lee",
        "requester_email": "pat.lee@eastview.example",
        "subject": f"Chromebook cart {number} will not charge",
        "description": "Cart in room 12",
        "priority": 2,
        "status": "new",
        "opened_at": datetime(2026, 11, 2, 8, tzinfo=UTC),
        "updated_at": datetime(2026, 11, 2, 9, tzinfo=UTC),
        **fields,
    }
    return Ticket(**values)


def comment(number: str, comment_id: str, body: str, public: bool) -> sdk.Record:
    kind = sdk.record_type("ticketing.comment")
    moment = datetime(2026, 11, 2, 10, tzinfo=UTC)
    return kind(ticket_id=number, comment_id=comment_id, author="tech@eastview.example",
                body=body, public=public, created_at=moment, updated_at=moment)  # fmt: skip


def in_queue(rt: RtServer, queue: str) -> list[dict]:
    """The queue's tickets as RT has them, by id."""
    answer = rt.call(
        "GET",
        f"tickets?query=Queue%3D'{queue.replace(' ', '%20')}'&orderby=id"
        "&fields=Subject,Status,Priority,CustomFields",
    )
    return answer["items"]


async def test_priority_bands_round_trip():
    assert [priority_from_rt(p) for p in (0, 19, 20, 50, 79, 80, 99, 150)] == [
        5,
        5,
        4,
        3,
        2,
        1,
        1,
        1,
    ]
    assert [priority_to_rt(p) for p in (1, 2, 3, 4, 5)] == [90, 70, 50, 30, 10]
    assert [priority_from_rt(priority_to_rt(p)) for p in (1, 2, 3, 4, 5)] == [1, 2, 3, 4, 5]


# --- reading -----------------------------------------------------------------------------------


async def test_tickets_are_read_mapped_and_one_without_requester_is_a_reject(rt, queue):
    first = new_ticket(rt, queue, "Projector dead", Requestor="pat.lee@eastview.example",
                       Priority=85, Status="open",
                       CustomFields={"Category": "hardware"})  # fmt: skip
    second = new_ticket(rt, queue, "Password reset", Requestor="kim@eastview.example")
    rt.call("PUT", f"ticket/{second}", {"Status": "resolved"})
    orphan = new_ticket(rt, queue, "No one asked")

    batches = await read_all(connector(rt, queue), "tickets")

    tickets = {t.ticket_id: t for t in records(batches)}
    assert sorted(tickets) == sorted([first, second])
    projector = tickets[first]
    assert (projector.subject, projector.status, projector.priority, projector.category) == (
        "Projector dead", "in_progress", 1, "hardware",
    )  # fmt: skip
    assert (projector.requester_email, projector.description) == (
        "pat.lee@eastview.example", "Projector dead, please",
    )  # fmt: skip
    assert (projector.assigned_group, projector.external_ids) == (queue, {"rt": first})
    reset = tickets[second]
    assert (reset.status, reset.priority) == ("resolved", 5)
    assert reset.resolved_at is not None and reset.resolved_at.tzinfo is not None
    [reject] = [r for b in batches for r in b.rejects]
    assert reject.position == f"RT ticket {orphan}"
    assert "$.requester" in reject.reason


async def test_a_read_from_the_last_state_delivers_changes_and_deletions_once(rt, queue):
    kept = new_ticket(rt, queue, "Wi-Fi in gym", Requestor="coach@eastview.example")
    gone = new_ticket(rt, queue, "Duplicate of Wi-Fi", Requestor="coach@eastview.example")
    source = connector(rt, queue)
    first = await read_all(source, "tickets")
    assert len(records(first)) == 2
    time.sleep(1.1)  # LastUpdated has one-second resolution
    rt.call("PUT", f"ticket/{kept}", {"Subject": "Wi-Fi in gym and library"})
    rt.call("DELETE", f"ticket/{gone}")

    again = await read_all(source, "tickets", first[-1].state)

    assert [(t.ticket_id, t.subject) for t in records(again)] == [
        (kept, "Wi-Fi in gym and library")
    ]
    assert [key for batch in again for key in batch.deletes] == [gone]
    third = await read_all(source, "tickets", again[-1].state)
    assert records(third) == [] and [k for b in third for k in b.deletes] == []


async def test_paging_delivers_every_ticket_once_across_pages(rt, queue):
    made = [new_ticket(rt, queue, f"Bulb {n}", Requestor="ops@eastview.example") for n in range(5)]
    source = connector(rt, queue, page_size=2)

    batches = await read_all(source, "tickets")

    assert sorted(t.ticket_id for t in records(batches)) == sorted(made)
    assert all(len(batch.records) <= 2 for batch in batches)


async def test_comments_and_replies_are_read_with_their_text(rt, queue):
    number = new_ticket(rt, queue, "Laptop screen", Requestor="pat.lee@eastview.example")
    rt.call(
        "POST",
        f"ticket/{number}/comment",
        {"Content": "Ordered a panel", "ContentType": "text/plain"},
    )
    rt.call("POST", f"ticket/{number}/correspond",
            {"Content": "<p>Fixed, <b>please</b> check</p>", "ContentType": "text/html"})  # fmt: skip
    source = connector(rt, queue)

    batches = await read_all(source, "comments")

    assert [(c.ticket_id, c.author, c.body, c.public) for c in records(batches)] == [
        (number, "root", "Ordered a panel", False),
        (number, "root", "Fixed, please check", True),
    ]
    time.sleep(1.1)
    rt.call(
        "POST", f"ticket/{number}/comment", {"Content": "Panel fitted", "ContentType": "text/plain"}
    )
    again = await read_all(source, "comments", batches[-1].state)
    assert [c.body for c in records(again)] == ["Panel fitted"]


# --- writing -----------------------------------------------------------------------------------


async def test_writing_tickets_twice_creates_each_once_and_then_updates_by_link(rt, queue):
    destination = connector(rt, queue)
    batch = sdk.Batch(records=[ticket("INC001"), ticket("INC002", status="on_hold")], state={})

    first = await destination.write("tickets", batch, "eastview")
    second = await destination.write("tickets", batch, "eastview")
    changed = sdk.Batch(
        records=[ticket("INC001", subject="Cart fixed", status="resolved")], state={}
    )
    third = await destination.write("tickets", changed, "eastview")

    assert (first.written, second.written, third.written) == (2, 2, 1)
    tickets = in_queue(rt, queue)
    assert [(t["Subject"], t["Status"], t["Priority"]) for t in tickets] == [
        ("Cart fixed", "resolved", "70"),
        ("Chromebook cart INC002 will not charge", "stalled", "70"),
    ]
    # read back, each carries the district's ticket id beside RT's own
    read = {t.subject: t for t in records(await read_all(destination, "tickets"))}
    assert read["Cart fixed"].external_ids == {"rt": tickets[0]["id"], "eastview": "INC001"}
    assert read["Cart fixed"].requester_email == "pat.lee@eastview.example"


async def test_a_ticket_rt_refuses_is_a_reject_with_rts_message(rt, queue):
    destination = connector(rt, queue, queues={"Facilities": "No Such Queue"})
    batch = sdk.Batch(
        records=[ticket("INC010"), ticket("INC011", assigned_group="Facilities")], state={}
    )

    result = await destination.write("tickets", batch, "eastview")

    assert result.written == 1
    [reject] = result.rejects
    assert reject.position == "ticket eastview:INC011"
    assert reject.reason == (
        "RT refused the ticket (HTTP 403): No permission to create tickets in the queue "
        "'No Such Queue'"
    )
    assert reject.raw["ticket_id"] == "INC011"
    assert [t["Subject"] for t in in_queue(rt, queue)] == ["Chromebook cart INC010 will not charge"]


async def test_comments_are_posted_once_and_one_without_its_ticket_is_a_reject(rt, queue):
    destination = connector(rt, queue)
    await destination.write("tickets", sdk.Batch(records=[ticket("INC020")], state={}), "eastview")
    batch = sdk.Batch(
        records=[
            comment("INC020", "1", "Swapped the charger", public=True),
            comment("INC020", "2", "Charger was under warranty", public=False),
            comment("INC099", "3", "Orphan", public=False),
        ],
        state={},
    )

    first = await destination.write("comments", batch, "eastview")
    second = await destination.write("comments", batch, "eastview")

    assert (first.written, second.written) == (2, 2)
    assert [r.position for r in first.rejects] == ["comment eastview:INC099#3"]
    assert "no RT ticket carries District Ticket 'eastview:INC099'" in first.rejects[0].reason
    read = records(await read_all(destination, "comments"))
    assert [(c.body, c.public) for c in read] == [
        ("Swapped the charger", True),
        ("Charger was under warranty", False),
    ]


async def test_a_refused_token_fails_the_write(rt, queue):
    destination = connector(rt, queue, token="1-99-0123456789abcdef")

    with pytest.raises(sdk.AuthError, match="HTTP 401") as raised:
        await destination.write("tickets", sdk.Batch(records=[ticket("INC030")], state={}), None)

    assert "0123456789abcdef" not in str(raised.value)


# --- check ---------------------------------------------------------------------------------------


async def test_check_passes_with_a_token_and_with_basic_auth(rt, queue):
    await connector(rt, queue).check()
    options = RequestTracker.parse_options({"url": rt.url, "queue": queue, "user": "cohub"})
    context = sdk.ConnectionContext(connection="helpdesk-rt", member=None)
    await RequestTracker(options, {"password": "cohub-password-1"}, context).check()


async def test_check_names_a_bad_token_missing_rights_and_an_unknown_queue(rt, queue):
    with pytest.raises(sdk.AuthError) as bad_token:
        await connector(rt, queue, token="1-99-0123456789abcdef").check()
    with pytest.raises(sdk.AuthError) as no_rights:
        await connector(rt, queue, user="noright").check()
    with pytest.raises(sdk.ConnectorConfigError) as unknown:
        await connector(rt, "Nowhere").check()

    assert str(bad_token.value) == (
        f"RT at {rt.url} refused the credentials (HTTP 401): the auth token is wrong or revoked"
    )
    assert str(no_rights.value) == (
        f"the RT user may not see queue {queue!r} (HTTP 403): grant it SeeQueue and ShowTicket "
        "there (docs/connectors/request-tracker.md lists every right)"
    )
    assert str(unknown.value) == "RT has no queue 'Nowhere'"


async def test_check_tells_an_unreachable_host_from_a_server_that_is_not_rt(rt, queue):
    dead = f"http://127.0.0.1:{rt_server.free_port()}/"
    with pytest.raises(sdk.TransientError, match=f"cannot reach RT at {dead}"):
        await connector(rt, queue, url=dead).check()
    with plain_web_server() as other, pytest.raises(sdk.ConnectorConfigError) as raised:
        await connector(rt, queue, url=other).check()
    assert str(raised.value) == (
        f"{other} is not a Request Tracker: GET /REST/2.0/rt answered HTTP 404"
    )


@contextlib.contextmanager
def plain_web_server() -> Iterator[str]:
    """Python's own file server, which answers 404 for /REST/2.0/rt."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- pushed by a scrip -------------------------------------------------------------------------


async def test_a_scrip_push_gives_the_ticket_as_a_read_would(rt, queue):
    number = new_ticket(rt, queue, "Bus radio", Requestor="transport@eastview.example")
    source = connector(rt, queue)

    received = await source.receive(
        sdk.Inbound(body=b'{"id": "%s", "Type": "Create"}' % number.encode(), headers={})
    )

    assert received.stream == "tickets"
    [raw] = received.raws
    pushed = source.map_raw("tickets", raw)
    assert (pushed.ticket_id, pushed.subject, pushed.description) == (
        number, "Bus radio", "Bus radio, please",
    )  # fmt: skip
    with pytest.raises(sdk.BadRecord, match="carries no ticket id"):
        await source.receive(sdk.Inbound(body=b'{"Subject": "x"}', headers={}))


# --- through the engine, on every backend --------------------------------------------------------


async def test_routes_carry_a_district_desk_into_the_sql_database_and_the_shared_desk(
    rt, runtime, config_dir: Path, database_url, monkeypatch, caplog
):
    # given Eastview's own RT queue with two tickets, and the agency's shared helpdesk queue
    district = f"Eastview {next(_queues)}"
    helpdesk = f"Helpdesk {next(_queues)}"
    for name in (district, helpdesk):
        rt.call("POST", "queue", {"Name": name})
    made = [new_ticket(rt, district, f"Phone {n}", Requestor="office@eastview.example")
            for n in (1, 2)]  # fmt: skip
    connections = config_dir / "connections"
    for name, queue_name, member in (
        ("eastview-rt", district, "eastview"),
        ("helpdesk-rt", helpdesk, None),
    ):
        (connections / f"{name}.toml").write_text(
            'connector = "request_tracker"\n'
            + (f'member = "{member}"\n' if member else "")
            + f'\n[options]\nurl = "{rt.url}"\nqueue = "{queue_name}"\ntimezone = "{ZONE}"\n'
            f'\n[secrets]\ntoken = "env:RT_TOKEN"\n'
        )
    with (config_dir / "routes.toml").open("a") as routes:
        for route, destination in (("eastview-tickets-db", "cbo-payroll-db"),
                                   ("eastview-tickets-desk", "helpdesk-rt")):  # fmt: skip
            routes.write(
                f'\n[routes.{route}]\nsource = "eastview-rt"\nsource_stream = "tickets"\n'
                f'destination = "{destination}"\ndestination_stream = "tickets"\n'
                'service = "cbo-payroll"\n'
            )
    runtime.plugins = PluginHost([config_dir.parent / "plugins"])
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)
    monkeypatch.setenv("RT_TOKEN", rt.tokens["cohub"])

    # when both routes run, twice (the second time from the first run's checkpoint)
    reads = []
    for _ in range(2):
        for route in ("eastview-tickets-db", "eastview-tickets-desk"):
            summary = await run_route(runtime.engine, runtime.plugins, route)
            assert summary.status == "succeeded", summary.error
            reads.append((summary.counts.read, summary.counts.written))

    # then the SQL database holds both tickets, and the shared desk one copy of each, linked
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            table = StreamTable("tickets", Ticket).table
            rows = (
                await conn.execute(select(table.c.record_key).order_by(table.c.record_key))
            ).all()
    finally:
        await engine.dispose()
    assert reads == [(2, 2), (2, 2), (0, 0), (0, 0)]
    assert [row[0] for row in rows] == sorted(made)
    desk = in_queue(rt, helpdesk)
    assert sorted((t["Subject"], _link(t)) for t in desk) == [
        ("Phone 1", f"eastview:{made[0]}"),
        ("Phone 2", f"eastview:{made[1]}"),
    ]
    assert rt.tokens["cohub"] not in caplog.text


def _link(item: dict) -> str:
    return next(f["values"][0] for f in item["CustomFields"] if f["name"] == "District Ticket")
