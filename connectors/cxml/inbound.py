"""Documents a supplier sends the hub, read into plain raws and mapped to canonical records.

A supplier POSTs ``ConfirmationRequest``, ``ShipNoticeRequest`` and ``InvoiceDetailRequest``
documents to the hub's inbound URL; a buyer's browser brings back a ``PunchOutOrderMessage``
(the cart) as a form post. `extract` reads one document into a raw: a JSON-able dict of the
document's values as written (amounts and dates as text), or raises `Missing` naming the part a
document of its kind must have. `map_raw` turns a raw into the canonical record, raising
`sdk.BadRecord` with the reason (an amount that is no number, another currency), so a bad value
becomes a dead letter and never fails the document's receipt.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.etree.ElementTree import Element

from hub import sdk

#: The streams documents land in, by the element under ``Request`` or ``Message``.
STREAM_OF = {
    "ConfirmationRequest": "acknowledgements",
    "ShipNoticeRequest": "ship_notices",
    "InvoiceDetailRequest": "invoices",
    "PunchOutOrderMessage": "requisitions",
}

#: ConfirmationHeader ``type`` → acknowledgement status: an order accepted as sent, rejected,
#: or accepted with changes (details, exceptions, backorders, a replacement).
CONFIRMATION_STATUS = {
    "accept": "accepted",
    "reject": "rejected",
    "detail": "changed",
    "allDetail": "changed",
    "except": "changed",
    "backordered": "changed",
    "replace": "changed",
    "requestToPay": "accepted",
}
#: ConfirmationStatus ``type`` → line status.
LINE_STATUS = {
    "accept": "accepted",
    "reject": "rejected",
    "backordered": "backordered",
    "detail": "changed",
    "allDetail": "changed",
}


class Missing(sdk.BadRecord):
    """A document lacks a part its kind requires (answered 400 naming it)."""


# --- reading elements -------------------------------------------------------------------------


def _find(parent: Element, path: str, where: str) -> Element:
    found = parent.find(path)
    if found is None:
        raise Missing(f"{where} has no {path}")
    return found


def _attr(element: Element, name: str, where: str) -> str:
    value = element.get(name)
    if value is None or not value.strip():
        raise Missing(f"{where} has no {name} attribute")
    return value.strip()


def _text(element: Element | None) -> str | None:
    if element is None:
        return None
    text = " ".join("".join(element.itertext()).split())
    return text or None


def _money(element: Element | None) -> dict[str, str | None] | None:
    """A ``Money`` (directly or under `element`) as {"value", "currency"}."""
    if element is None:
        return None
    money = element if element.tag == "Money" else element.find("Money")
    if money is None:
        return None
    return {"value": _text(money), "currency": money.get("currency")}


def _order_id(parent: Element) -> str | None:
    reference = parent.find(".//OrderReference")
    if reference is not None and reference.get("orderID"):
        return reference.get("orderID")
    info = parent.find(".//OrderIDInfo")
    return info.get("orderID") if info is not None else None


# --- documents into raws ----------------------------------------------------------------------


def confirmation(body: Element, common: dict[str, Any]) -> dict[str, Any]:
    """A ``ConfirmationRequest``: the header's type and notice date, the order it confirms,
    each ``ConfirmationItem`` with its ``ConfirmationStatus`` parts."""
    header = _find(body, "ConfirmationHeader", "ConfirmationRequest")
    order = _find(body, "OrderReference", "ConfirmationRequest")
    items = []
    for item in body.findall("ConfirmationItem"):
        statuses = [
            {
                "type": status.get("type"),
                "quantity": status.get("quantity"),
                "shipment_date": status.get("shipmentDate"),
                "delivery_date": status.get("deliveryDate"),
                "unit_price": _money(status.find("UnitPrice")),
                "comments": _text(status.find("Comments")),
            }
            for status in item.findall("ConfirmationStatus")
        ]
        items.append(
            {
                "line_number": _attr(item, "lineNumber", "ConfirmationItem"),
                "quantity": item.get("quantity"),
                "statuses": statuses,
            }
        )
    return {
        **common,
        "confirm_id": header.get("confirmID"),
        "type": _attr(header, "type", "ConfirmationHeader"),
        "operation": header.get("operation", "new"),
        "notice_date": _attr(header, "noticeDate", "ConfirmationHeader"),
        "order_id": _attr(order, "orderID", "OrderReference"),
        "comments": _text(header.find("Comments")),
        "items": items,
    }


def ship_notice(body: Element, common: dict[str, Any]) -> dict[str, Any]:
    """A ``ShipNoticeRequest``: the shipment's ID and dates, carrier and tracking number
    (``ShipControl``), and per order (``ShipNoticePortion``) the items shipped."""
    header = _find(body, "ShipNoticeHeader", "ShipNoticeRequest")
    control = body.find("ShipControl")
    carriers = control.findall("CarrierIdentifier") if control is not None else []
    named = [c for c in carriers if c.get("domain") == "companyName"] or carriers
    portions = []
    for portion in body.findall("ShipNoticePortion"):
        reference = _find(portion, "OrderReference", "ShipNoticePortion")
        portions.append(
            {
                "order_id": _attr(reference, "orderID", "OrderReference"),
                "items": [
                    {
                        "line_number": _attr(item, "lineNumber", "ShipNoticeItem"),
                        "quantity": _attr(item, "quantity", "ShipNoticeItem"),
                        "unit_of_measure": _text(item.find("UnitOfMeasure")),
                        "supplier_part_id": _text(item.find("ItemID/SupplierPartID")),
                    }
                    for item in portion.findall("ShipNoticeItem")
                ],
            }
        )
    if not portions:
        raise Missing("ShipNoticeRequest has no ShipNoticePortion")
    return {
        **common,
        "shipment_id": _attr(header, "shipmentID", "ShipNoticeHeader"),
        "operation": header.get("operation", "new"),
        "notice_date": header.get("noticeDate"),
        "shipment_date": header.get("shipmentDate"),
        "delivery_date": header.get("deliveryDate"),
        "carrier": _text(named[0]) if named else None,
        "tracking_number": _text(control.find("ShipmentIdentifier"))
        if control is not None
        else None,
        "portions": portions,
    }


def invoice(body: Element, common: dict[str, Any]) -> dict[str, Any]:
    """An ``InvoiceDetailRequest``: header (ID, date, purpose, payment term), the orders it
    bills (``InvoiceDetailOrder``) with their ``InvoiceDetailItem`` lines, and the summary's
    subtotal, tax and gross, net and due amounts."""
    header = _find(body, "InvoiceDetailRequestHeader", "InvoiceDetailRequest")
    summary = _find(body, "InvoiceDetailSummary", "InvoiceDetailRequest")
    orders = body.findall("InvoiceDetailOrder")
    lines = []
    for order in orders:
        for item in order.findall("InvoiceDetailItem"):
            reference = item.find("InvoiceDetailItemReference")
            lines.append(
                {
                    "line_number": _attr(item, "invoiceLineNumber", "InvoiceDetailItem"),
                    "quantity": _attr(item, "quantity", "InvoiceDetailItem"),
                    "unit_of_measure": _text(item.find("UnitOfMeasure")),
                    "unit_price": _money(_find(item, "UnitPrice", "InvoiceDetailItem")),
                    "amount": _money(item.find("SubtotalAmount")),
                    "po_line_number": reference.get("lineNumber")
                    if reference is not None
                    else None,
                    "description": _text(reference.find("Description"))
                    if reference is not None
                    else None,
                    "supplier_part_id": _text(reference.find("ItemID/SupplierPartID"))
                    if reference is not None
                    else None,
                }
            )
    term = header.find("PaymentTerm")
    return {
        **common,
        "invoice_id": _attr(header, "invoiceID", "InvoiceDetailRequestHeader"),
        "invoice_date": _attr(header, "invoiceDate", "InvoiceDetailRequestHeader"),
        "purpose": header.get("purpose", "standard"),
        "operation": header.get("operation", "new"),
        "pay_in_days": term.get("payInNumberOfDays") if term is not None else None,
        "order_ids": sorted({o for o in map(_order_id, orders) if o}),
        "lines": lines,
        "subtotal": _money(summary.find("SubtotalAmount")),
        "tax": _money(summary.find("Tax")),
        "gross": _money(summary.find("GrossAmount")),
        "net": _money(summary.find("NetAmount")),
        "due": _money(summary.find("DueAmount")),
    }


def cart(body: Element, common: dict[str, Any]) -> dict[str, Any]:
    """A ``PunchOutOrderMessage``: the cart's total and its ``ItemIn`` lines."""
    header = _find(body, "PunchOutOrderMessageHeader", "PunchOutOrderMessage")
    items = []
    for number, item in enumerate(body.findall("ItemIn"), start=1):
        detail = _find(item, "ItemDetail", "ItemIn")
        items.append(
            {
                "line_number": item.get("lineNumber") or str(number),
                "quantity": _attr(item, "quantity", "ItemIn"),
                "supplier_part_id": _text(_find(item, "ItemID/SupplierPartID", "ItemIn")),
                "auxiliary_id": _text(item.find("ItemID/SupplierPartAuxiliaryID")),
                "unit_price": _money(_find(detail, "UnitPrice", "ItemDetail")),
                "description": _text(detail.find("Description")),
                "unit_of_measure": _text(detail.find("UnitOfMeasure")),
            }
        )
    return {
        **common,
        "total": _money(_find(header, "Total", "PunchOutOrderMessageHeader")),
        "operation": header.get("operationAllowed"),
        "items": items,
    }


EXTRACT: dict[str, Callable[[Element, dict[str, Any]], dict[str, Any]]] = {
    "ConfirmationRequest": confirmation,
    "ShipNoticeRequest": ship_notice,
    "InvoiceDetailRequest": invoice,
    "PunchOutOrderMessage": cart,
}


# --- raws into records ------------------------------------------------------------------------


class Values:
    """Converts a raw's texts to typed values; a bad one is a BadRecord naming the field."""

    def __init__(self, currency: str) -> None:
        self.currency = currency

    def decimal(self, value: Any, what: str) -> Decimal:
        try:
            number = Decimal(str(value).strip().replace(",", ""))
        except (InvalidOperation, ValueError):
            raise sdk.BadRecord(f"{what} is not a number: {str(value)[:40]!r}") from None
        if not number.is_finite():
            raise sdk.BadRecord(f"{what} is not a finite number")
        return number

    def money(self, value: Any, what: str) -> Decimal:
        if not isinstance(value, dict) or value.get("value") is None:
            raise sdk.BadRecord(f"{what} has no Money")
        currency = value.get("currency")
        if currency != self.currency:
            raise sdk.BadRecord(
                f"{what} is in {str(currency)[:8]!r}; this connection takes {self.currency} only"
            )
        return self.decimal(value["value"], what)

    def optional_money(self, value: Any, what: str) -> Decimal | None:
        return None if value is None else self.money(value, what)

    @staticmethod
    def integer(value: Any, what: str) -> int:
        try:
            return int(str(value).strip())
        except ValueError:
            raise sdk.BadRecord(f"{what} is not a whole number: {str(value)[:40]!r}") from None

    @staticmethod
    def moment(value: Any, what: str) -> datetime:
        """A cXML datetime (ISO 8601 with offset); one without an offset is refused."""
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise sdk.BadRecord(
                f"{what} is not an ISO 8601 date and time: {str(value)[:40]!r}"
            ) from None
        if moment.tzinfo is None:
            raise sdk.BadRecord(f"{what} has no time zone offset: {str(value)[:40]!r}")
        return moment

    @staticmethod
    def day(value: Any, what: str) -> date:
        """The date of a cXML date or datetime, as the supplier wrote it (its own offset)."""
        text = str(value).strip()
        try:
            return datetime.fromisoformat(text).date() if "T" in text else date.fromisoformat(text)
        except ValueError:
            raise sdk.BadRecord(f"{what} is not an ISO 8601 date: {text[:40]!r}") from None

    def optional_day(self, value: Any, what: str) -> date | None:
        return None if value in (None, "") else self.day(value, what)


def acknowledgement_fields(raw: dict[str, Any], values: Values) -> dict[str, Any]:
    """A confirmation as `purchasing.order_acknowledgement` fields."""
    kind = raw.get("type")
    if kind not in CONFIRMATION_STATUS:
        raise sdk.BadRecord(f"ConfirmationHeader type {str(kind)[:20]!r} is not a cXML type")
    lines = []
    for item in raw.get("items") or []:
        where = f"ConfirmationItem line {item.get('line_number')}"
        statuses = item.get("statuses") or []
        kinds = {LINE_STATUS.get(s.get("type"), "changed") for s in statuses}
        status = kinds.pop() if len(kinds) == 1 else "changed"
        kept = [s for s in statuses if s.get("type") != "reject" and s.get("quantity")]
        first = statuses[0] if statuses else {}
        price = next((s["unit_price"] for s in statuses if s.get("unit_price")), None)
        lines.append(
            {
                "po_line_number": values.integer(item.get("line_number"), where),
                "status": status if statuses else CONFIRMATION_STATUS[kind],
                "quantity": sum(
                    (values.decimal(s["quantity"], f"{where} quantity") for s in kept),
                    Decimal(0),
                )
                if kept
                else None,
                "unit_price": values.optional_money(price, f"{where} UnitPrice"),
                "ships_on": values.optional_day(
                    first.get("shipment_date"), f"{where} shipmentDate"
                ),
                "note": first.get("comments"),
            }
        )
    return {
        "acknowledgement_id": raw.get("confirm_id") or raw.get("payload_id"),
        "po_id": raw.get("order_id"),
        "vendor_id": raw.get("vendor_id"),
        "acknowledged_on": values.day(raw.get("notice_date"), "ConfirmationHeader noticeDate"),
        "status": CONFIRMATION_STATUS[kind],
        "lines": lines,
        "note": raw.get("comments"),
        "updated_at": values.moment(raw.get("timestamp"), "cXML timestamp"),
    }


def ship_notice_fields(raw: dict[str, Any], values: Values) -> dict[str, Any]:
    """A ship notice as `purchasing.ship_notice` fields. A shipment carrying several orders
    has one portion each; only a one-order shipment maps to a record (the record names one)."""
    portions = raw.get("portions") or []
    orders = {p.get("order_id") for p in portions}
    if len(orders) != 1:
        raise sdk.BadRecord(
            f"ShipNoticeRequest {raw.get('shipment_id')} ships {len(orders)} orders; a ship "
            "notice record is for one"
        )
    lines = []
    for portion in portions:
        for item in portion.get("items") or []:
            where = f"ShipNoticeItem line {item.get('line_number')}"
            lines.append(
                {
                    "po_line_number": values.integer(item.get("line_number"), where),
                    "supplier_part_id": item.get("supplier_part_id"),
                    "quantity": values.decimal(item.get("quantity"), f"{where} quantity"),
                    "unit_of_measure": item.get("unit_of_measure") or "EA",
                }
            )
    shipped = raw.get("shipment_date") or raw.get("notice_date")
    return {
        "shipment_id": raw.get("shipment_id"),
        "po_id": orders.pop(),
        "vendor_id": raw.get("vendor_id"),
        "shipped_on": values.day(shipped, "ShipNoticeHeader shipmentDate"),
        "expected_on": values.optional_day(
            raw.get("delivery_date"), "ShipNoticeHeader deliveryDate"
        ),
        "carrier": raw.get("carrier"),
        "tracking_number": raw.get("tracking_number"),
        "lines": lines,
        "updated_at": values.moment(raw.get("timestamp"), "cXML timestamp"),
    }


def invoice_fields(raw: dict[str, Any], values: Values) -> dict[str, Any]:
    """An invoice as `purchasing.invoice` fields: the total is the amount due (else net, else
    gross), the tax the summary's; the due date the invoice date plus the payment term."""
    issued = values.day(raw.get("invoice_date"), "InvoiceDetailRequestHeader invoiceDate")
    total = raw.get("due") or raw.get("net") or raw.get("gross")
    if total is None:
        raise sdk.BadRecord("InvoiceDetailSummary has no DueAmount, NetAmount or GrossAmount")
    lines = []
    for item in raw.get("lines") or []:
        where = f"InvoiceDetailItem line {item.get('line_number')}"
        quantity = values.decimal(item.get("quantity"), f"{where} quantity")
        price = values.money(item.get("unit_price"), f"{where} UnitPrice")
        amount = item.get("amount")
        lines.append(
            {
                "line_number": values.integer(item.get("line_number"), where),
                "po_line_number": None
                if item.get("po_line_number") is None
                else values.integer(item["po_line_number"], f"{where} reference lineNumber"),
                "description": item.get("description"),
                "supplier_part_id": item.get("supplier_part_id"),
                "quantity": quantity,
                "unit_of_measure": item.get("unit_of_measure") or "EA",
                "unit_price": price,
                "amount": quantity * price
                if amount is None
                else values.money(amount, f"{where} SubtotalAmount"),
            }
        )
    orders = raw.get("order_ids") or []
    days = raw.get("pay_in_days")
    return {
        "invoice_id": raw.get("invoice_id"),
        "vendor_id": raw.get("vendor_id"),
        "po_id": orders[0] if len(orders) == 1 else None,
        "invoice_date": issued,
        "due_date": None
        if days is None
        else date.fromordinal(
            issued.toordinal() + values.integer(days, "PaymentTerm payInNumberOfDays")
        ),
        "status": "received",
        "lines": lines,
        "total_amount": values.money(total, "InvoiceDetailSummary DueAmount"),
        "tax_amount": values.optional_money(raw.get("tax"), "InvoiceDetailSummary Tax"),
        "updated_at": values.moment(raw.get("timestamp"), "cXML timestamp"),
    }


def requisition_fields(raw: dict[str, Any], values: Values) -> dict[str, Any]:
    """A returned cart as a draft `purchasing.requisition`, keyed by the buyer cookie the
    console gave (a cart returned again in the same session replaces the first)."""
    lines = []
    for item in raw.get("items") or []:
        where = f"ItemIn line {item.get('line_number')}"
        quantity = values.decimal(item.get("quantity"), f"{where} quantity")
        price = values.money(item.get("unit_price"), f"{where} UnitPrice")
        lines.append(
            {
                "line_number": values.integer(item.get("line_number"), where),
                "description": item.get("description") or item.get("supplier_part_id"),
                "supplier_part_id": item.get("supplier_part_id"),
                "quantity": quantity,
                "unit_of_measure": item.get("unit_of_measure") or "EA",
                "unit_price": price,
                "amount": quantity * price,
            }
        )
    return {
        "requisition_id": raw.get("buyer_cookie"),
        "requested_by": raw.get("user"),
        "requested_on": values.day(raw.get("timestamp"), "cXML timestamp"),
        "status": "draft",
        "vendor_id": raw.get("vendor_id"),
        "lines": lines,
        "total_amount": values.money(raw.get("total"), "PunchOutOrderMessageHeader Total"),
        "updated_at": values.moment(raw.get("timestamp"), "cXML timestamp"),
    }


MAPPINGS: dict[str, tuple[str, Callable[[dict[str, Any], Values], dict[str, Any]]]] = {
    "acknowledgements": ("purchasing.order_acknowledgement", acknowledgement_fields),
    "ship_notices": ("purchasing.ship_notice", ship_notice_fields),
    "invoices": ("purchasing.invoice", invoice_fields),
    "requisitions": ("purchasing.requisition", requisition_fields),
}
