"""The domain meters the hub ships: what a member's payroll, HR, accounting, helpdesk and
purchasing traffic used, measured from each committed batch.

Each measure looks only at the record kind it knows (the batch's `BatchContext.record`) and
answers None for any other batch, in one pass over the records: measures run on every batch.

A record is delivered again whenever it changes (a ticket on each update, an order on each status
change). Where a count must not grow with re-deliveries, the meter counts distinct subjects
(``unique_count``): each paycheck, employee or ticket once per billing bucket, however many
batches carry it. The purchasing meters count each order once ever (``once_per_subject``, their
subjects are ``vendor/contract/order``): the first delivery of an order places it, at the amount
it had then.

`run_minutes` is not measured from batches: the engine posts it when a run ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import cast

from hub.model import Record
from hub.model.accounting import JournalEntry
from hub.model.hr import Employee
from hub.model.payroll import PayLine
from hub.model.purchasing import PurchaseOrder
from hub.model.ticketing import Ticket
from hub.sdk.extensions import BatchContext, Meter

PAY_LINE = PayLine.record_name
EMPLOYEE = Employee.record_name
JOURNAL_LINE = JournalEntry.record_name
TICKET = Ticket.record_name
PURCHASE_ORDER = PurchaseOrder.record_name

#: Ticket statuses that mean the requester's issue was dealt with (ITIL: resolved, then closed).
#: A canceled ticket was never resolved.
RESOLVED_STATUSES = frozenset({"resolved", "closed"})

ZERO = Decimal(0)


# -- payroll and HR --------------------------------------------------------------------------------


def paychecks_processed(context: BatchContext, records: Sequence[Record]) -> dict[str, int] | None:
    """The paychecks in a batch of pay lines, one subject ``pay_run_id/employee_id`` each.

    A paycheck is every line of one employee in one pay run. Its lines may arrive in several
    batches, so each paycheck is a subject the ledger counts once, not a per-batch count
    that would count a paycheck split across two batches twice.
    """
    if context.record != PAY_LINE or not records:
        return None
    lines = cast("Sequence[PayLine]", records)
    return dict.fromkeys((f"{line.pay_run_id}/{line.employee_id}" for line in lines), 1)


PAYCHECKS_PROCESSED = Meter(
    name="paychecks_processed",
    unit="paycheck",
    aggregation="unique_count",
    description="distinct paychecks (pay run and employee) in the pay lines delivered",
    measure=paychecks_processed,
)


def employees_served(context: BatchContext, records: Sequence[Record]) -> dict[str, int] | None:
    """The employees in a batch of pay lines or employee records, one subject per employee ID."""
    if context.record not in (PAY_LINE, EMPLOYEE) or not records:
        return None
    people = cast("Sequence[PayLine | Employee]", records)
    return dict.fromkeys((record.employee_id for record in people), 1)


EMPLOYEES_SERVED = Meter(
    name="employees_served",
    unit="employee",
    aggregation="unique_count",
    description="distinct employees in the pay lines and employee records delivered",
    measure=employees_served,
)


# -- accounting ------------------------------------------------------------------------------------


def journal_lines_posted(context: BatchContext, records: Sequence[Record]) -> int | None:
    """The journal lines in a batch (each `accounting.journal_entry` record is one line)."""
    if context.record != JOURNAL_LINE or not records:
        return None
    return len(records)


JOURNAL_LINES_POSTED = Meter(
    name="journal_lines_posted",
    unit="line",
    aggregation="sum",
    description="general-ledger journal lines delivered",
    measure=journal_lines_posted,
)


# -- ticketing -------------------------------------------------------------------------------------


def tickets_opened(context: BatchContext, records: Sequence[Record]) -> dict[str, int] | None:
    """The tickets in a batch, one subject per ticket ID: every ticket has been opened.

    A ticket is delivered again on each update; as a subject it still counts once.
    """
    if context.record != TICKET or not records:
        return None
    return dict.fromkeys((ticket.ticket_id for ticket in cast("Sequence[Ticket]", records)), 1)


TICKETS_OPENED = Meter(
    name="tickets_opened",
    unit="ticket",
    aggregation="unique_count",
    description="distinct helpdesk tickets delivered (each has been opened)",
    measure=tickets_opened,
)


def tickets_resolved(context: BatchContext, records: Sequence[Record]) -> dict[str, int] | None:
    """The tickets of a batch whose status is resolved or closed, one subject per ticket ID."""
    if context.record != TICKET:
        return None
    tickets = cast("Sequence[Ticket]", records)
    resolved = {ticket.ticket_id: 1 for ticket in tickets if ticket.status in RESOLVED_STATUSES}
    return resolved or None


TICKETS_RESOLVED = Meter(
    name="tickets_resolved",
    unit="ticket",
    aggregation="unique_count",
    description="distinct helpdesk tickets delivered resolved or closed",
    measure=tickets_resolved,
)


# -- purchasing ------------------------------------------------------------------------------------


def order_volumes(order: PurchaseOrder) -> dict[str, Decimal]:
    """An order's total split by ``vendor_id/contract_id/po_id``: what its lines bought under
    each cooperative contract, and the rest (lines under no contract, tax, freight, an
    order-level discount) under ``vendor_id//po_id`` so the parts add up to `total_amount`."""
    vendor = order.vendor_id
    volumes: dict[str, Decimal] = {}
    outside = order.total_amount
    for line in order.lines:
        if line.contract_id:
            subject = f"{vendor}/{line.contract_id}/{order.po_id}"
            volumes[subject] = volumes.get(subject, ZERO) + line.amount
            outside -= line.amount
    if outside or not volumes:
        volumes[f"{vendor}//{order.po_id}"] = outside
    return volumes


def order_subject(order: PurchaseOrder) -> str:
    """``vendor_id/contract_id/po_id`` for the contract an order was placed under: the one its
    lines spend the most under (ties go to the first in contract ID order), an empty contract
    when no line names one."""
    spent: dict[str, Decimal] = {}
    for line in order.lines:
        if line.contract_id:
            spent[line.contract_id] = spent.get(line.contract_id, ZERO) + line.amount
    contract = min(spent, key=lambda c: (-spent[c], c)) if spent else ""
    return f"{order.vendor_id}/{contract}/{order.po_id}"


def purchase_orders_placed(
    context: BatchContext, records: Sequence[Record]
) -> dict[str, int] | None:
    """The purchase orders in a batch per ``vendor_id/contract_id`` (see `order_subject`); each
    order counts once, so the subjects add up to the orders. Canceled orders were not placed."""
    if context.record != PURCHASE_ORDER:
        return None
    placed: dict[str, int] = {}
    for order in cast("Sequence[PurchaseOrder]", records):
        if order.status != "canceled":
            subject = order_subject(order)
            placed[subject] = placed.get(subject, 0) + 1
    return placed or None


PURCHASE_ORDERS_PLACED = Meter(
    name="purchase_orders_placed",
    unit="order",
    aggregation="sum",
    description="purchase orders delivered, not canceled, per supplier and contract",
    measure=purchase_orders_placed,
    once_per_subject=True,
)


def purchase_order_volume(
    context: BatchContext, records: Sequence[Record]
) -> dict[str, Decimal] | None:
    """The dollar total of a batch's purchase orders per ``vendor_id/contract_id`` (see
    `order_volumes`), exact Decimal. Canceled orders spent nothing."""
    if context.record != PURCHASE_ORDER:
        return None
    volume: dict[str, Decimal] = {}
    for order in cast("Sequence[PurchaseOrder]", records):
        if order.status != "canceled":
            for subject, amount in order_volumes(order).items():
                volume[subject] = volume.get(subject, ZERO) + amount
    return volume or None


PURCHASE_ORDER_VOLUME = Meter(
    name="purchase_order_volume",
    unit="USD",
    aggregation="sum",
    description="dollar total of purchase orders delivered, not canceled, per supplier and contract",
    measure=purchase_order_volume,
    once_per_subject=True,
)


# -- the run itself --------------------------------------------------------------------------------


def api_calls(context: BatchContext, records: Sequence[Record]) -> int | None:
    """The HTTP requests the run sent since the batch measured before this one."""
    return context.api_calls or None


API_CALLS = Meter(
    name="api_calls",
    unit="call",
    aggregation="sum",
    description="HTTP requests sent to vendor systems (every attempt and token request)",
    measure=api_calls,
)

_HUNDREDTH_OF_A_MINUTE = timedelta(minutes=1) / 100


def run_minutes(started: datetime, finished: datetime) -> Decimal:
    """A run's wall-clock minutes with two decimal places, rounded up to the next hundredth (0.6
    seconds), and at least 0.01: a run that ran is never free, even one whose clock stepped
    back while it ran."""
    hundredths = -((started - finished) // _HUNDREDTH_OF_A_MINUTE)  # ceiling division
    return Decimal(max(hundredths, 1)).scaleb(-2)


RUN_MINUTES = Meter(
    name="run_minutes",
    unit="minute",
    aggregation="sum",
    description="wall-clock minutes of each run, rounded up to the hundredth; posted at run end",
)


#: The domain meters, in the order `cohub plugins` lists them.
DOMAIN_METERS = (
    PAYCHECKS_PROCESSED,
    EMPLOYEES_SERVED,
    JOURNAL_LINES_POSTED,
    TICKETS_OPENED,
    TICKETS_RESOLVED,
    PURCHASE_ORDERS_PLACED,
    PURCHASE_ORDER_VOLUME,
    API_CALLS,
    RUN_MINUTES,
)
