"""The hub's domain meters: what each counts in a batch, what it leaves to other meters, and how
the usage ledger adds them up; the HTTP client's API-call counter; run minutes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hub import meters
from hub.metering import measure, record_usage, usage_totals
from hub.model import AccountCode
from hub.model.accounting import JournalEntry
from hub.model.hr import Employee
from hub.model.payroll import PayLine, PayRun
from hub.model.purchasing import PurchaseOrder, PurchaseOrderLine
from hub.model.ticketing import Ticket
from hub.plugins import PluginHost
from hub.sdk.extensions import BatchContext
from hub.sdk.http import (
    HttpClient,
    ManualClock,
    OAuth2ClientCredentials,
    RetryPolicy,
    close_sessions,
)
from hub.sdk.lifecycle import CURRENT_RUN, RunCounts
from hub.store import migrate
from hub.store.database import create_engine, writing

UPDATED = datetime(2026, 10, 15, 12, 0, tzinfo=UTC)
ACCOUNT = AccountCode(code="A2110.150-00-0000", fund="A", function="2110", object="150")


def context(record: str, api_calls: int = 0) -> BatchContext:
    return BatchContext(
        route="eastview-payroll",
        run_id=7,
        member="eastview",
        service="cbo-payroll",
        source_stream="pay_lines",
        destination_stream="pay_lines",
        record=record,
        api_calls=api_calls,
    )


def pay_line(pay_run: str, employee: str, line: int, amount: str = "100.00") -> PayLine:
    return PayLine(
        updated_at=UPDATED,
        pay_run_id=pay_run,
        employee_id=employee,
        line_number=line,
        pay_date=date(2026, 10, 15),
        code="REG",
        amount=Decimal(amount),
        account=ACCOUNT,
    )


def employee(employee_id: str) -> Employee:
    return Employee(updated_at=UPDATED, employee_id=employee_id, first_name="Ana", last_name="Ruiz")


def journal_line(entry: str, line: int) -> JournalEntry:
    return JournalEntry(
        updated_at=UPDATED,
        entry_id=entry,
        line_number=line,
        posted_on=date(2026, 10, 15),
        account=ACCOUNT,
        debit=Decimal("10.00"),
        credit=Decimal("0.00"),
    )


def ticket(ticket_id: str, status: str = "new", resolved: bool = False) -> Ticket:
    return Ticket(
        updated_at=UPDATED,
        ticket_id=ticket_id,
        requester="jsmith",
        subject="Projector in room 12",
        status=status,
        opened_at=UPDATED - timedelta(days=2),
        resolved_at=UPDATED if resolved else None,
    )


def order_line(number: int, amount: str, contract: str | None = None) -> PurchaseOrderLine:
    return PurchaseOrderLine(
        line_number=number,
        description="item",
        quantity=Decimal(1),
        unit_price=Decimal(amount),
        amount=Decimal(amount),
        contract_id=contract,
    )


def order(
    po_id: str,
    vendor: str,
    total: str,
    *lines: PurchaseOrderLine,
    status: str = "open",
) -> PurchaseOrder:
    return PurchaseOrder(
        updated_at=UPDATED,
        po_id=po_id,
        vendor_id=vendor,
        order_date=date(2026, 10, 1),
        status=status,
        lines=list(lines),
        total_amount=Decimal(total),
    )


# -- payroll and HR ------------------------------------------------------------------------------


def test_paychecks_are_the_distinct_pay_run_and_employee_pairs_of_the_pay_lines():
    # given three lines of E1's paycheck, one of E2's, and E1 again in another pay run
    lines = [
        pay_line("PR-0915", "E1", 1),
        pay_line("PR-0915", "E1", 2),
        pay_line("PR-0915", "E2", 1),
        pay_line("PR-0915", "E1", 3),
        pay_line("PR-0930", "E1", 1),
    ]

    answer = meters.PAYCHECKS_PROCESSED.measure(context("payroll.pay_line"), lines)

    assert answer == {"PR-0915/E1": 1, "PR-0915/E2": 1, "PR-0930/E1": 1}
    assert meters.PAYCHECKS_PROCESSED.aggregation == "unique_count"


def test_employees_served_are_the_distinct_employee_ids_of_pay_lines_and_employee_records():
    lines = [
        pay_line("PR-0915", "E1", 1),
        pay_line("PR-0915", "E1", 2),
        pay_line("PR-0930", "E2", 1),
    ]
    people = [employee("E1"), employee("E3"), employee("E1")]

    assert meters.EMPLOYEES_SERVED.measure(context("payroll.pay_line"), lines) == {"E1": 1, "E2": 1}
    assert meters.EMPLOYEES_SERVED.measure(context("hr.employee"), people) == {"E1": 1, "E3": 1}
    assert meters.EMPLOYEES_SERVED.aggregation == "unique_count"


def test_a_pay_run_record_is_no_paycheck():
    run = PayRun(
        updated_at=UPDATED,
        pay_run_id="PR-0915",
        pay_date=date(2026, 9, 15),
        period_start=date(2026, 9, 1),
        period_end=date(2026, 9, 15),
        check_count=212,
    )

    assert meters.PAYCHECKS_PROCESSED.measure(context("payroll.pay_run"), [run]) is None
    assert meters.EMPLOYEES_SERVED.measure(context("payroll.pay_run"), [run]) is None


# -- accounting ----------------------------------------------------------------------------------


def test_journal_lines_posted_counts_every_journal_line_record():
    lines = [journal_line("JE-1", 1), journal_line("JE-1", 2), journal_line("JE-2", 1)]

    assert meters.JOURNAL_LINES_POSTED.measure(context("accounting.journal_entry"), lines) == 3
    assert meters.JOURNAL_LINES_POSTED.measure(context("accounting.journal_entry"), []) is None


# -- ticketing -----------------------------------------------------------------------------------


def test_every_ticket_delivered_was_opened_and_counts_once_however_often_it_is_delivered():
    tickets = [ticket("INC1"), ticket("INC2", "in_progress"), ticket("INC1", "on_hold")]

    assert meters.TICKETS_OPENED.measure(context("ticketing.ticket"), tickets) == {
        "INC1": 1,
        "INC2": 1,
    }
    assert meters.TICKETS_OPENED.aggregation == "unique_count"


def test_resolved_and_closed_tickets_are_resolved_canceled_and_open_ones_are_not():
    tickets = [
        ticket("INC1", "resolved", resolved=True),
        ticket("INC2", "closed", resolved=True),
        ticket("INC3", "canceled"),
        ticket("INC4", "in_progress"),
        ticket("INC1", "closed", resolved=True),
    ]

    assert meters.TICKETS_RESOLVED.measure(context("ticketing.ticket"), tickets) == {
        "INC1": 1,
        "INC2": 1,
    }
    assert meters.TICKETS_RESOLVED.measure(context("ticketing.ticket"), [ticket("INC4")]) is None


# -- purchasing ----------------------------------------------------------------------------------


def test_orders_are_counted_once_each_under_their_supplier_and_contract():
    orders = [
        order("PO-1", "V-DELL", "1200.00", order_line(1, "1200.00", "NASPO-PC")),
        order("PO-2", "V-DELL", "300.00", order_line(1, "300.00", "NASPO-PC")),
        order("PO-3", "V-STAPLES", "45.10", order_line(1, "45.10")),
        order("PO-4", "V-STAPLES", "80.00"),  # no lines: no contract
        # bought under two contracts: counted under the one carrying most of it
        order(
            "PO-5",
            "V-CDW",
            "500.00",
            order_line(1, "100.00", "OMNIA-IT"),
            order_line(2, "400.00", "NASPO-PC"),
        ),
        order("PO-6", "V-DELL", "999.00", order_line(1, "999.00", "NASPO-PC"), status="canceled"),
    ]

    answer = meters.PURCHASE_ORDERS_PLACED.measure(context("purchasing.purchase_order"), orders)

    assert answer == {
        "V-DELL/NASPO-PC/PO-1": 1,
        "V-DELL/NASPO-PC/PO-2": 1,
        "V-STAPLES//PO-3": 1,
        "V-STAPLES//PO-4": 1,
        "V-CDW/NASPO-PC/PO-5": 1,
    }


def test_order_volume_is_exact_and_adds_up_to_the_order_totals():
    orders = [
        order("PO-1", "V-DELL", "0.10", order_line(1, "0.10", "NASPO-PC")),
        order("PO-2", "V-DELL", "0.20", order_line(1, "0.20", "NASPO-PC")),
        # 19.99 under a contract, 5.01 off contract, 1.75 freight and tax on the order
        order(
            "PO-3",
            "V-CDW",
            "26.75",
            order_line(1, "19.99", "OMNIA-IT"),
            order_line(2, "5.01"),
        ),
        order("PO-4", "V-STAPLES", "80.00"),
        order("PO-5", "V-DELL", "999.00", order_line(1, "999.00", "NASPO-PC"), status="canceled"),
    ]

    volume = meters.PURCHASE_ORDER_VOLUME.measure(context("purchasing.purchase_order"), orders)

    assert volume == {
        "V-DELL/NASPO-PC/PO-1": Decimal("0.10"),
        "V-DELL/NASPO-PC/PO-2": Decimal("0.20"),
        "V-CDW/OMNIA-IT/PO-3": Decimal("19.99"),
        "V-CDW//PO-3": Decimal("6.76"),
        "V-STAPLES//PO-4": Decimal("80.00"),
    }
    assert all(type(amount) is Decimal for amount in volume.values())
    assert str(volume["V-DELL/NASPO-PC/PO-2"]) == "0.20"  # no binary float crept in
    assert meters.PURCHASE_ORDER_VOLUME.unit == "USD"


def test_a_batch_of_only_canceled_orders_measures_nothing():
    canceled = [order("PO-1", "V-DELL", "10.00", status="canceled")]

    assert (
        meters.PURCHASE_ORDERS_PLACED.measure(context("purchasing.purchase_order"), canceled)
        is None
    )
    assert (
        meters.PURCHASE_ORDER_VOLUME.measure(context("purchasing.purchase_order"), canceled) is None
    )


# -- every meter minds its own records -----------------------------------------------------------

BATCHES = {
    "payroll.pay_line": [pay_line("PR-0915", "E1", 1)],
    "hr.employee": [employee("E1")],
    "accounting.journal_entry": [journal_line("JE-1", 1)],
    "ticketing.ticket": [ticket("INC1", "resolved", resolved=True)],
    "purchasing.purchase_order": [order("PO-1", "V-DELL", "10.00")],
}

APPLIES_TO = {
    "paychecks_processed": {"payroll.pay_line"},
    "employees_served": {"payroll.pay_line", "hr.employee"},
    "journal_lines_posted": {"accounting.journal_entry"},
    "tickets_opened": {"ticketing.ticket"},
    "tickets_resolved": {"ticketing.ticket"},
    "purchase_orders_placed": {"purchasing.purchase_order"},
    "purchase_order_volume": {"purchasing.purchase_order"},
    "api_calls": set(),
}


@pytest.mark.parametrize("meter", sorted(APPLIES_TO))
@pytest.mark.parametrize("record", sorted(BATCHES))
def test_a_meter_measures_only_the_records_it_knows(meter, record):
    declared = {m.name: m for m in meters.DOMAIN_METERS}[meter]

    answer = declared.measure(context(record), BATCHES[record])

    assert (answer is not None) == (record in APPLIES_TO[meter])
    assert declared.measure(context(record), []) is None


def test_every_batch_measured_meter_is_checked_above_and_run_minutes_is_posted_by_the_engine():
    measured = {m.name for m in meters.DOMAIN_METERS if m.measure is not None}
    assert measured == set(APPLIES_TO)
    assert meters.RUN_MINUTES.measure is None


def test_a_batch_of_thousands_is_measured_in_one_pass_per_meter():
    # 5,000 pay lines: 500 employees with ten lines each
    lines = [pay_line("PR-0915", f"E{n // 10}", n % 10) for n in range(5000)]

    assert len(meters.PAYCHECKS_PROCESSED.measure(context("payroll.pay_line"), lines)) == 500
    assert len(meters.EMPLOYEES_SERVED.measure(context("payroll.pay_line"), lines)) == 500


# -- through the hub: the built-in plugin and the ledger ---------------------------------------


def test_the_builtin_plugin_measures_a_pay_line_batch_per_subject():
    host = PluginHost([])
    lines = [
        pay_line("PR-0915", "E1", 1),
        pay_line("PR-0915", "E1", 2),
        pay_line("PR-0915", "E2", 1),
    ]

    usage = measure(host, context("payroll.pay_line", api_calls=4), lines)

    assert sorted((u.meter, u.subject, u.quantity) for u in usage) == [
        ("api_calls", "", Decimal(4)),
        ("employees_served", "E1", Decimal(1)),
        ("employees_served", "E2", Decimal(1)),
        ("paychecks_processed", "PR-0915/E1", Decimal(1)),
        ("paychecks_processed", "PR-0915/E2", Decimal(1)),
        ("records_synced", "", Decimal(3)),
    ]
    assert host.failures == []


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    yield engine
    await engine.dispose()


async def test_a_paycheck_split_across_two_batches_is_one_paycheck_in_the_ledger(engine):
    # given E1's paycheck whose lines arrive in two batches, then E1 again in a later run
    host = PluginHost([])
    batches = [
        [pay_line("PR-0915", "E1", 1), pay_line("PR-0915", "E2", 1)],
        [pay_line("PR-0915", "E1", 2)],
        [pay_line("PR-0915", "E1", 1, amount="101.00")],  # a corrected line, delivered again
    ]

    # when each batch is measured and committed
    async with writing(engine) as conn:
        for number, batch in enumerate(batches):
            await record_usage(
                conn,
                measure(host, context("payroll.pay_line"), batch),
                fingerprint=f"batch-{number}",
                service="cbo-payroll",
                occurred_at=UPDATED,
            )

    # then the month holds two paychecks, two employees and four records
    async with engine.connect() as conn:
        totals = {t.meter: t.quantity for t in await usage_totals(conn, host.meters())}
    assert totals == {
        "employees_served": Decimal(2),
        "paychecks_processed": Decimal(2),
        "records_synced": Decimal(4),
    }


# -- API calls -----------------------------------------------------------------------------------

Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a local vendor server from route definitions; returns its base URL."""
    servers: list[TestServer] = []

    async def start(*routes: web.RouteDef) -> str:
        app = web.Application()
        app.add_routes(routes)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/"))

    yield start
    await close_sessions()
    for server in servers:
        await server.close()


class Answers:
    """A handler giving `statuses` in turn (the last repeats), each 2xx with a JSON body."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = statuses
        self.received = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.received += 1
        status = self.statuses[min(self.received, len(self.statuses)) - 1]
        if 200 <= status < 300:
            return web.json_response({"ok": True}, status=status)
        return web.Response(status=status)


def quick(attempts: int = 5) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, base=1.0, cap=8.0)


async def in_run(work: Awaitable[Any]) -> RunCounts:
    """Await `work` as part of a run; the run's counters afterwards."""
    counts = RunCounts()
    token = CURRENT_RUN.set(counts)
    try:
        await work
    finally:
        CURRENT_RUN.reset(token)
    return counts


async def test_every_attempt_a_run_sends_is_an_api_call_retries_included(serve):
    # given a roster endpoint that fails twice before it answers, and a page that answers at once
    roster, page = Answers(503, 502, 200), Answers(200)
    base = await serve(web.get("/roster", roster.handle), web.get("/page", page.handle))
    client = HttpClient(base, retry=quick(), clock=ManualClock())

    async def calls() -> None:
        await client.get_json("roster")
        await client.get_json("page")

    counts = await in_run(calls())

    assert (roster.received, page.received) == (3, 1)
    assert counts.api_calls == 4
    assert counts.retried == 2


async def test_an_attempt_that_gets_no_answer_is_an_api_call_too(serve):
    # given a request that fails on every attempt
    always_down = Answers(503)
    base = await serve(web.get("/roster", always_down.handle))
    client = HttpClient(base, retry=quick(attempts=3), clock=ManualClock())

    async def call() -> None:
        with pytest.raises(Exception, match="after 3 attempts"):
            await client.get_json("roster")

    counts = await in_run(call())

    assert counts.api_calls == 3


async def test_token_requests_are_api_calls_and_concurrent_calls_all_count(serve):
    # given an OAuth API: one token request, then three calls sent at once
    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "t-1", "expires_in": 3600})

    api = Answers(200)
    base = await serve(web.post("/oauth/token", token), web.get("/api/staff", api.handle))
    clock = ManualClock()
    auth = OAuth2ClientCredentials(
        token_url=base + "oauth/token", client_id="cohub", client_secret="s3cret", clock=clock
    )
    client = HttpClient(base + "api", auth=auth, retry=quick(), clock=clock)

    async def calls() -> None:
        await client.get_json("staff")
        await asyncio.gather(*(client.get_json("staff") for _ in range(3)))

    counts = await in_run(calls())

    assert api.received == 4
    assert counts.api_calls == 5


async def test_calls_outside_a_run_are_counted_nowhere(serve):
    api = Answers(200)
    base = await serve(web.get("/staff", api.handle))

    await HttpClient(base, retry=quick(), clock=ManualClock()).get_json("staff")

    assert CURRENT_RUN.get() is None
    assert api.received == 1


def test_the_api_calls_meter_reports_the_calls_since_the_last_batch():
    assert meters.API_CALLS.measure(context("payroll.pay_line", api_calls=12), []) == 12
    assert meters.API_CALLS.measure(context("payroll.pay_line", api_calls=0), []) is None


# -- run minutes ---------------------------------------------------------------------------------

START = datetime(2026, 10, 15, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("elapsed", "minutes"),
    [
        (timedelta(minutes=1), "1.00"),
        (timedelta(seconds=90), "1.50"),
        (timedelta(seconds=60.6), "1.01"),  # exactly 1.01 minutes
        (timedelta(seconds=60.6, microseconds=1), "1.02"),  # a microsecond more rounds up
        (timedelta(seconds=61), "1.02"),  # 1.01666…
        (timedelta(seconds=1), "0.02"),  # 0.01666…
        (timedelta(microseconds=1), "0.01"),
        (timedelta(hours=2, minutes=3, seconds=4), "123.07"),  # 123.0666…
        (timedelta(0), "0.01"),  # a run that ran is never free
        (timedelta(seconds=-3), "0.01"),  # nor one whose clock stepped back
    ],
)
def test_run_minutes_round_up_to_the_next_hundredth(elapsed, minutes):
    answer = meters.run_minutes(START, START + elapsed)

    assert str(answer) == minutes
    assert answer.as_tuple().exponent == -2


def test_run_minutes_is_declared_for_the_engine_to_post():
    assert (meters.RUN_MINUTES.name, meters.RUN_MINUTES.unit, meters.RUN_MINUTES.aggregation) == (
        "run_minutes",
        "minute",
        "sum",
    )


async def test_a_run_measures_its_services_meters_and_posts_its_minutes_when_it_ends(
    runtime, config_dir
):
    from sqlalchemy import select

    from hub.apply import apply
    from hub.config import load_config
    from hub.engine.run import run_route
    from hub.store.tables import usage_events

    # The example's payroll service lists paychecks_processed and employees_served.
    await apply(runtime.engine, load_config(config_dir))
    first = await run_route(runtime.engine, runtime.plugins, "eastview-payroll")
    coop = config_dir / "cooperative.toml"
    coop.write_text(
        coop.read_text().replace(
            'meters = ["paychecks_processed", "employees_served"]', "meters = []"
        )
    )
    await apply(runtime.engine, load_config(config_dir))
    second = await run_route(runtime.engine, runtime.plugins, "millbrook-payroll")

    async with runtime.engine.connect() as conn:
        rows = (
            await conn.execute(select(usage_events.c.run_id, usage_events.c.meter).distinct())
        ).all()
        minutes = await conn.scalar(
            select(usage_events.c.quantity).where(
                usage_events.c.idempotency_key == f"run:{first.id}:run_minutes"
            )
        )
    measured = {run: sorted(m for r, m in rows if r == run) for run in (first.id, second.id)}
    assert measured == {
        first.id: ["employees_served", "paychecks_processed", "records_synced", "run_minutes"],
        second.id: ["records_synced", "run_minutes"],
    }
    assert Decimal("0.01") <= minutes < Decimal(5)


async def test_an_order_delivered_again_after_a_status_change_is_placed_once(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/hub.db")
    await migrate.upgrade(engine)
    host = PluginHost([])
    placed = order("PO-1", "V-DELL", "1200.00", order_line(1, "1200.00", "NASPO-PC"))
    approved = order(
        "PO-1", "V-DELL", "1200.00", order_line(1, "1200.00", "NASPO-PC"), status="approved"
    )
    try:
        for number, batch in enumerate([[placed], [approved]]):
            usage = measure(host, context("purchasing.purchase_order"), batch)
            async with writing(engine) as conn:
                await record_usage(
                    conn,
                    usage,
                    fingerprint=f"batch-{number}",
                    service="purchasing",
                    occurred_at=datetime(2026, 10, 1, 16, tzinfo=UTC),
                )
        async with engine.connect() as conn:
            totals = {t.meter: t.quantity for t in await usage_totals(conn, host.meters())}
    finally:
        await engine.dispose()

    assert totals["purchase_orders_placed"] == 1
    assert totals["purchase_order_volume"] == Decimal("1200.00")
