"""The cXML connector against a local supplier (tests/vendor/cxml_supplier.py): orders sent
and refused, retries the supplier recognizes, documents received and answered, PunchOut, check
messages, and a route sending a district's purchase orders, on every backend."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from sqlalchemy import select

from connectors.cxml import Cxml, documents
from hub import sdk
from hub.apply import apply
from hub.config import check_against_plugins, load_config
from hub.engine.run import run_route
from hub.model.purchasing import (
    Invoice,
    OrderAcknowledgement,
    PurchaseOrder,
    Requisition,
    ShipNotice,
)
from hub.plugins import PluginHost
from hub.runtime import key_file
from hub.sdk.http import close_sessions
from hub.store.tables import dead_letters
from hub.vault import create_key_file
from tests.canaries import plant
from tests.fuzz_targets import fuzz_target
from tests.vendor.cxml_supplier import CxmlSupplier

SECRET = plant("cxml-shared-secret-canary-5b1e")
FAST = {
    "retry_attempts": 3,
    "retry_base_seconds": 0.01,
    "retry_cap_seconds": 0.02,
    "timeout_seconds": 5,
}
UPDATED = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
ADDRESSES = {
    "eastview": {
        "address_id": "EV-DO",
        "name": "Eastview CSD District Office",
        "deliver_to": ["Receiving, Door 2"],
        "street": ["100 School Street"],
        "city": "Eastview",
        "state": "NY",
        "postal_code": "13000",
    },
    "boces-ap": {
        "name": "Mid-State BOCES Accounts Payable",
        "street": ["1 Cooperative Way"],
        "city": "Syracuse",
        "state": "NY",
        "postal_code": "13202",
        "email": "ap@midstate-boces.example.org",
    },
}


@pytest.fixture
async def supplier() -> AsyncIterator[CxmlSupplier]:
    server = CxmlSupplier(shared_secret=SECRET)
    await server.start()
    yield server
    await close_sessions()
    await server.close()


def options(supplier: CxmlSupplier, **extra: Any) -> dict[str, Any]:
    return {
        "order_url": supplier.order_url,
        "punchout_url": supplier.punchout_url,
        "buyer": {"domain": "NetworkID", "identity": supplier.buyer_identity},
        "supplier": {"domain": "NetworkID", "identity": supplier.identity},
        "vendor_id": "V-OFFICEPRO",
        "addresses": ADDRESSES,
        "bill_to": "boces-ap",
        **FAST,
        **extra,
    }


def connector(supplier: CxmlSupplier, secret: str = SECRET, **extra: Any) -> Cxml:
    context = sdk.ConnectionContext(connection="officepro", member=None)
    parsed = Cxml.parse_options(options(supplier, **extra))
    return Cxml(parsed, {"shared_secret": secret}, context)


def order(
    po_id: str = "PO-2026-0142", *lines: tuple[str, str, str], **fields: Any
) -> PurchaseOrder:
    lines = lines or (("TN-4410", "4", "12.49"), ("PPR-8511", "10", "41.90"))
    items = [
        {
            "line_number": number,
            "description": f"Part {part}",
            "supplier_part_id": part,
            "quantity": quantity,
            "unit_price": price,
            "amount": str(Decimal(quantity) * Decimal(price)),
            "contract_id": "NYOGS-PC-2026",
        }
        for number, (part, quantity, price) in enumerate(lines, start=1)
    ]
    values = {
        "po_id": po_id,
        "vendor_id": "V-OFFICEPRO",
        "order_date": "2026-11-28",
        "lines": items,
        "total_amount": str(sum(Decimal(i["amount"]) for i in items)),
        "updated_at": UPDATED.isoformat(),
        **fields,
    }
    return msgspec.convert(values, PurchaseOrder, strict=False)


def batch(*orders: PurchaseOrder) -> sdk.Batch:
    return sdk.Batch(records=list(orders), state={})


def inbound(body: bytes, content_type: str = "text/xml") -> sdk.Inbound:
    return sdk.Inbound(body=body, headers={"content-type": content_type}, content_type=content_type)


def status_of(received: sdk.Received) -> tuple[int, str, str]:
    root = sdk.xml.parse(received.reply)
    status = root.find("Response/Status")
    return int(status.get("code")), status.get("text"), status.text or ""


# --- orders -----------------------------------------------------------------------------------


async def test_an_order_is_sent_as_an_order_request_and_taken(supplier):
    # given an order of two lines under a cooperative contract, for Eastview
    cxml = connector(supplier)

    # when it is written
    result = await cxml.write("purchase_orders", batch(order()), member="eastview")

    # then the supplier took one new order, as the document said it
    assert (result.written, result.rejects) == (1, [])
    [taken] = supplier.orders
    assert (taken.order_id, taken.type, taken.total) == ("PO-2026-0142", "new", Decimal("468.96"))
    assert taken.lines == [
        {
            "line": 1,
            "part": "TN-4410",
            "quantity": Decimal("4"),
            "price": Decimal("12.49"),
            "uom": "EA",
            "contract": "NYOGS-PC-2026",
        },
        {
            "line": 2,
            "part": "PPR-8511",
            "quantity": Decimal("10"),
            "price": Decimal("41.90"),
            "uom": "EA",
            "contract": "NYOGS-PC-2026",
        },
    ]
    assert (taken.ship_to, taken.bill_to) == (
        "Eastview CSD District Office",
        "Mid-State BOCES Accounts Payable",
    )
    assert taken.payload_id.endswith("@officepro.cohub")


def test_the_order_request_document_follows_the_dtd_order_and_dates_orders_in_the_zone():
    # given a connection and an order
    context = sdk.ConnectionContext(connection="officepro", member=None)
    cxml = Cxml(
        Cxml.parse_options(
            {
                "order_url": "https://supplier.example/cxml",
                "buyer": {"domain": "NetworkID", "identity": "COOP"},
                "supplier": {"domain": "DUNS", "identity": "123456789"},
                "sender": {"domain": "NetworkID", "identity": "COOP-HUB"},
                "vendor_id": "V-OFFICEPRO",
                "addresses": ADDRESSES,
                "bill_to": "boces-ap",
            }
        ),
        {"shared_secret": SECRET},
        context,
    )
    kind, payload, reference = cxml.order_payloads(order())
    document = documents.order_request(
        order(),
        cxml.parties(),
        cxml.terms,
        payload=payload,
        order_type=kind,
        reference=reference,
        ship_to=None,
        bill_to=cxml.config.addresses["boces-ap"],
    )

    # then it starts with the cXML DOCTYPE and reads as the reference guide lays it out
    assert document.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.014/cXML.dtd">'
    )
    root = sdk.xml.parse(document)
    assert [e.tag for e in root] == ["Header", "Request"]
    assert [e.tag for e in root.find("Header")] == ["From", "To", "Sender"]
    assert root.findtext("Header/Sender/Credential/Identity") == "COOP-HUB"
    assert root.findtext("Header/Sender/Credential/SharedSecret") == SECRET
    assert root.find("Header/To/Credential").get("domain") == "DUNS"
    header = root.find("Request/OrderRequest/OrderRequestHeader")
    assert header.attrib == {
        "orderID": "PO-2026-0142",
        "orderDate": "2026-11-28T00:00:00-05:00",
        "type": "new",
    }
    assert [e.tag for e in header] == ["Total", "BillTo"]
    assert header.find("Total/Money").attrib == {"currency": "USD"}
    item = root.find("Request/OrderRequest/ItemOut")
    assert item.attrib == {"quantity": "4", "lineNumber": "1"}
    assert [e.tag for e in item] == ["ItemID", "ItemDetail", "MasterAgreementIDInfo"]
    assert [e.tag for e in item.find("ItemDetail")] == [
        "UnitPrice",
        "Description",
        "UnitOfMeasure",
        "Classification",
    ]


async def test_a_line_the_supplier_refuses_rejects_that_order_with_its_words(supplier):
    # given two orders, the second with a part the supplier does not carry
    cxml = connector(supplier)
    good, bad = order("PO-1"), order("PO-2", ("ZZ-0000", "1", "5.00"))

    # when both are written
    result = await cxml.write("purchase_orders", batch(good, bad), member="eastview")

    # then the first is taken and the second rejected with the supplier's status text
    assert result.written == 1
    [reject] = result.rejects
    assert reject.position == "order PO-2"
    assert reject.reason == (
        "the supplier refused order PO-2 (cXML 400 Bad Request: line 1: unknown SupplierPartID ZZ-0000)"
    )
    assert reject.raw == msgspec.to_builtins(bad)
    assert [o.order_id for o in supplier.orders] == ["PO-1"]


async def test_orders_that_cannot_be_cxml_or_are_for_another_vendor_are_rejected_unsent(supplier):
    cxml = connector(supplier)
    orders = [
        order("PO-3", vendor_id="V-OTHER"),
        order("PO-4", lines=[]),
        order("PO-5", ship_to="nowhere"),
    ]

    result = await cxml.write("purchase_orders", batch(*orders), member="eastview")

    assert result.written == 0
    assert [r.reason for r in result.rejects] == [
        "order PO-3 is for vendor 'V-OTHER'; this connection's supplier is 'V-OFFICEPRO'",
        "order PO-4 has no lines; cXML orders need at least one ItemOut",
        "order PO-5 ships to 'nowhere', no address in options.addresses",
    ]
    assert supplier.requests == []


async def test_the_same_order_written_twice_has_one_payload_id_and_is_taken_once(supplier):
    cxml = connector(supplier)

    await cxml.write("purchase_orders", batch(order()), member="eastview")
    again = await connector(supplier).write("purchase_orders", batch(order()), member="eastview")

    assert again.written == 1
    assert supplier.requests == ["OrderRequest", "OrderRequest"]
    assert len(supplier.orders) == 1


async def test_a_lost_answer_is_retried_with_the_same_payload_id_and_not_ordered_twice(supplier):
    # given a supplier that takes the order but whose answer is lost (HTTP 502)
    supplier.fail_next("taken_then_http502")
    cxml = connector(supplier)

    # when the order is written
    result = await cxml.write("purchase_orders", batch(order()), member="eastview")

    # then it was sent again, recognized by its payloadID, and taken once
    assert result.written == 1
    assert supplier.requests == ["OrderRequest", "OrderRequest"]
    assert len(supplier.orders) == 1


async def test_5xx_and_cxml_500_are_retried(supplier):
    supplier.fail_next("http503", "cxml500")
    cxml = connector(supplier)

    result = await cxml.write("purchase_orders", batch(order()), member="eastview")

    assert result.written == 1
    assert supplier.requests == ["failed", "failed", "OrderRequest"]


async def test_a_supplier_down_past_the_retries_fails_the_write_clearly(supplier):
    supplier.fail_next("http503", "cxml500", "http503")
    cxml = connector(supplier)

    with pytest.raises(sdk.TransientError) as failed:
        await cxml.write("purchase_orders", batch(order()), member="eastview")

    assert str(failed.value) == (
        f"the supplier's cXML endpoint {supplier.order_url} did not take the OrderRequest "
        f"PO-2026-0142: POST {supplier.order_url} failed after 3 attempts: HTTP 503 Service Unavailable"
    )
    assert supplier.orders == []


async def test_an_answer_that_is_not_cxml_is_a_clear_error(supplier):
    supplier.fail_next("html")
    cxml = connector(supplier)

    with pytest.raises(sdk.ConnectorError) as failed:
        await cxml.write("purchase_orders", batch(order()), member="eastview")

    assert str(failed.value).startswith(
        f"{supplier.order_url} answered the OrderRequest PO-2026-0142 with no cXML Response, "
        "HTTP 404 (text/html): the answer is not a cXML document (not well-formed XML"
    )
    assert str(failed.value).endswith("is it the supplier's cXML endpoint?")


async def test_a_refused_shared_secret_fails_the_write_and_never_shows_the_secret(supplier, caplog):
    wrong = plant("wrong-cxml-secret-canary-77aa")
    cxml = connector(supplier, secret=wrong)

    with caplog.at_level(logging.DEBUG), pytest.raises(sdk.AuthError) as refused:
        await cxml.write("purchase_orders", batch(order()), member="eastview")

    assert str(refused.value) == (
        "the supplier refused the credentials (cXML 401 Unauthorized: SharedSecret mismatch) "
        "for OrderRequest PO-2026-0142"
    )
    assert wrong not in caplog.text and SECRET not in caplog.text


async def test_a_change_and_a_cancellation_reference_the_first_order_request(supplier):
    cxml = connector(supplier)
    await cxml.write("purchase_orders", batch(order()), member="eastview")
    first = supplier.orders[0].payload_id

    changed = order(
        "PO-2026-0142",
        ("TN-4410", "6", "12.49"),
        status="sent",
        updated_at="2026-11-29T08:00:00+00:00",
    )
    canceled = order(status="canceled", updated_at="2026-11-30T08:00:00+00:00")
    await cxml.write("purchase_orders", batch(changed), member="eastview")
    await cxml.write("purchase_orders", batch(canceled), member="eastview")

    assert [(o.type, o.reference) for o in supplier.orders] == [
        ("new", None),
        ("update", first),
        ("delete", first),
    ]
    assert len({o.payload_id for o in supplier.orders}) == 3


async def test_writing_without_a_bill_to_is_a_configuration_error(supplier):
    cxml = connector(supplier, bill_to=None)
    with pytest.raises(sdk.ConnectorConfigError, match=r"options\.bill_to must name an address"):
        await cxml.write("purchase_orders", batch(order()), member="eastview")


# --- documents the supplier sends -------------------------------------------------------------


async def test_a_confirmation_becomes_an_acknowledgement(supplier):
    cxml = connector(supplier)
    document = supplier.confirmation(
        "PO-2026-0142",
        "detail",
        [(1, "accept", "4", "2026-12-01T00:00:00-05:00"), (2, "backordered", "10", None)],
    )

    received = await cxml.receive(inbound(document))

    assert (received.status, received.stream, received.reply_type) == (
        200,
        "acknowledgements",
        "text/xml; charset=UTF-8",
    )
    assert status_of(received) == (200, "OK", "")
    assert received.reply.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE cXML')
    [raw] = received.raws
    assert json.loads(json.dumps(raw)) == raw  # plain JSON, as the hub keeps it
    record = cxml.map_raw("acknowledgements", raw)
    assert isinstance(record, OrderAcknowledgement)
    assert (record.po_id, record.vendor_id, record.acknowledged_on, record.status) == (
        "PO-2026-0142",
        "V-OFFICEPRO",
        date(2026, 11, 30),
        "changed",
    )
    assert [
        (line.po_line_number, line.status, line.quantity, line.ships_on) for line in record.lines
    ] == [
        (1, "accepted", Decimal(4), date(2026, 12, 1)),
        (2, "backordered", Decimal(10), None),
    ]
    assert record.note == "Thank you for your order"
    assert record.updated_at == datetime.fromisoformat("2026-11-30T10:15:00-05:00")


async def test_a_ship_notice_becomes_a_ship_notice(supplier):
    cxml = connector(supplier)
    document = supplier.ship_notice(
        "SH-88123", "PO-2026-0142", [(1, "TN-4410", "4"), (2, "PPR-8511", "6")]
    )

    received = await cxml.receive(inbound(document))

    assert (received.status, received.stream) == (200, "ship_notices")
    record = cxml.map_raw("ship_notices", received.raws[0])
    assert isinstance(record, ShipNotice)
    assert (record.shipment_id, record.po_id, record.shipped_on, record.expected_on) == (
        "SH-88123",
        "PO-2026-0142",
        date(2026, 11, 30),
        date(2026, 12, 2),
    )
    assert (record.carrier, record.tracking_number) == ("UPS", "1Z999AA10123456784")
    assert [
        (line.po_line_number, line.supplier_part_id, line.quantity) for line in record.lines
    ] == [
        (1, "TN-4410", Decimal(4)),
        (2, "PPR-8511", Decimal(6)),
    ]


async def test_an_invoice_becomes_an_invoice_with_decimal_amounts(supplier):
    cxml = connector(supplier)
    document = supplier.invoice(
        "INV-55120",
        "PO-2026-0142",
        [(1, "TN-4410", "4", "12.49"), (2, "PPR-8511", "10", "41.90")],
        tax="37.52",
    )

    received = await cxml.receive(inbound(document))

    assert (received.status, received.stream) == (200, "invoices")
    record = cxml.map_raw("invoices", received.raws[0])
    assert isinstance(record, Invoice)
    assert (record.invoice_id, record.vendor_id, record.po_id) == (
        "INV-55120",
        "V-OFFICEPRO",
        "PO-2026-0142",
    )
    assert (record.invoice_date, record.due_date) == (date(2026, 12, 1), date(2026, 12, 31))
    assert (record.total_amount, record.tax_amount) == (Decimal("506.48"), Decimal("37.52"))
    assert [
        (
            line.line_number,
            line.po_line_number,
            line.supplier_part_id,
            line.quantity,
            line.unit_price,
            line.amount,
        )
        for line in record.lines
    ] == [
        (1, 1, "TN-4410", Decimal(4), Decimal("12.49"), Decimal("49.96")),
        (2, 2, "PPR-8511", Decimal(10), Decimal("41.90"), Decimal("419.00")),
    ]


async def test_an_amount_in_another_currency_is_a_bad_record_not_a_refused_document(supplier):
    cxml = connector(supplier)
    document = supplier.invoice("INV-9", "PO-1", [(1, "TN-4410", "1", "12.49")], tax="0.00")
    document = document.replace(b'currency="USD"', b'currency="CAD"')

    received = await cxml.receive(inbound(document))

    assert received.status == 200
    with pytest.raises(
        sdk.BadRecord, match="UnitPrice is in 'CAD'; this connection takes USD only"
    ):
        cxml.map_raw("invoices", received.raws[0])


@pytest.mark.parametrize(
    ("document", "code", "detail"),
    [
        (
            b"<cXML payloadID='1' timestamp='2026-11-30T10:00:00Z'><Request deploymentMode='production'><ConfirmationRequest>",
            400,
            "not well-formed XML: no element found: line 1, column 111",
        ),
        (b"<Invoice/>", 400, "the document is <Invoice>, not <cXML>"),
        (
            b"<cXML payloadID='1' timestamp='t'><Header/></cXML>",
            400,
            "the cXML document holds no Request or Message",
        ),
        (
            b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><cXML>&lol2;</cXML>',
            400,
            "refused: DTDForbidden (entities, internal DTD subsets and external references are not accepted)",
        ),
        (
            b'<!DOCTYPE cXML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><cXML>&xxe;</cXML>',
            400,
            "refused: DTDForbidden (entities, internal DTD subsets and external references are not accepted)",
        ),
        (
            b'<!DOCTYPE cXML SYSTEM "http://127.0.0.1:9/cXML.dtd"><cXML>&xxe;</cXML>',
            400,
            "not well-formed XML: undefined entity &xxe;: line 1, column 58",
        ),
    ],
    ids=["truncated", "not cxml", "no request", "entity bomb", "xxe file", "xxe external dtd"],
)
async def test_unreadable_or_hostile_documents_are_answered_400_with_the_reason(
    supplier, document, code, detail
):
    received = await connector(supplier).receive(inbound(document))

    assert (received.status, received.stream, received.raws) == (code, None, [])
    assert status_of(received) == (code, "Bad Request", detail)
    assert b"passwd" not in received.reply


async def test_a_document_missing_a_required_part_is_answered_400_naming_it(supplier):
    document = supplier.ship_notice("SH-1", "PO-1", [(1, "TN-4410", "1")]).replace(
        b' shipmentID="SH-1"', b""
    )

    received = await connector(supplier).receive(inbound(document))

    assert status_of(received) == (
        400,
        "Bad Request",
        "ShipNoticeHeader has no shipmentID attribute",
    )


async def test_an_oversized_request_is_refused_before_parsing(supplier):
    received = await connector(supplier, max_document_bytes=4096).receive(
        inbound(b"<cXML>" + b" " * 5000 + b"</cXML>")
    )

    assert status_of(received) == (400, "Bad Request", "the request is 5,013 bytes, over 4,096")


@pytest.mark.parametrize("who", ["wrong secret", "no secret", "another supplier"])
async def test_wrong_credentials_are_answered_401_without_the_secret(supplier, who):
    wrong = plant("forged-secret-canary-1c9d")
    document = supplier.confirmation("PO-1", "accept", [(1, "accept", "1", None)], secret=wrong)
    if who == "no secret":
        document = document.replace(f"<SharedSecret>{wrong}</SharedSecret>".encode(), b"")
    if who == "another supplier":
        document = supplier.confirmation("PO-1", "accept", [(1, "accept", "1", None)]).replace(
            supplier.identity.encode(), b"AN0999"
        )

    received = await connector(supplier).receive(inbound(document))

    assert (received.status, received.raws) == (401, [])
    code, text, detail = status_of(received)
    assert (code, text) == (401, "Unauthorized")
    assert detail in (
        "the Sender credential's SharedSecret is not the agreed one",
        "the From credential is not this connection's supplier",
    )
    assert SECRET.encode() not in received.reply and wrong.encode() not in received.reply


async def test_a_document_type_it_does_not_take_is_answered_406(supplier):
    document = supplier.confirmation("PO-1", "accept", [(1, "accept", "1", None)])
    document = document.replace(b"ConfirmationRequest", b"StatusUpdateRequest")

    received = await connector(supplier).receive(inbound(document))

    code, text, detail = status_of(received)
    assert (received.status, code, text) == (406, 406, "Not Acceptable")
    assert detail.startswith(
        "StatusUpdateRequest is not taken here; this connection takes ConfirmationRequest"
    )


async def test_map_raw_refuses_a_raw_of_another_stream_or_shape(supplier):
    cxml = connector(supplier)
    received = await cxml.receive(
        inbound(supplier.ship_notice("SH-1", "PO-1", [(1, "TN-4410", "1")]))
    )

    with pytest.raises(sdk.BadRecord, match="does not belong in invoices"):
        cxml.map_raw("invoices", received.raws[0])
    with pytest.raises(sdk.BadRecord, match="not a ShipNoticeRequest as read"):
        cxml.map_raw("ship_notices", {**received.raws[0], "portions": "x"})


# --- PunchOut ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["urlencoded", "base64"])
async def test_a_punchout_session_round_trip_brings_the_cart_back_as_a_requisition(
    supplier, encoding
):
    # given the console opening a PunchOut session for a user
    cxml = connector(supplier)
    start = await cxml.punchout_setup(
        "console-session-31",
        "https://hub.example/inbound/officepro",
        "jrivera",
        email="jrivera@eastview.example.org",
    )

    # then the store's start page comes back and the store knows where to post the cart
    [(session, values)] = supplier.sessions.items()
    assert start == f"{supplier.base_url}/shop/{session}"
    assert values["return_url"] == "https://hub.example/inbound/officepro"
    assert (values["User"], values["UserEmail"]) == ("jrivera", "jrivera@eastview.example.org")
    assert "console-session-31" not in values["cookie"]  # sealed, not the console's cookie

    # when the user checks out and the browser posts the cart to the hub
    body, media = supplier.checkout_form(
        supplier.cart(session, [("TN-4410", "2"), ("CHR-200", "1")]), encoding
    )
    received = await cxml.receive(inbound(body, media))

    # then it is a draft requisition keyed by the console's session, priced by the supplier
    assert (received.status, received.stream) == (200, "requisitions")
    record = cxml.map_raw("requisitions", received.raws[0])
    assert isinstance(record, Requisition)
    assert (record.requisition_id, record.requested_by, record.status, record.vendor_id) == (
        "console-session-31",
        "jrivera",
        "draft",
        "V-OFFICEPRO",
    )
    assert record.total_amount == Decimal("213.98")
    assert [
        (line.line_number, line.supplier_part_id, line.quantity, line.unit_price, line.amount)
        for line in record.lines
    ] == [
        (1, "TN-4410", Decimal(2), Decimal("12.49"), Decimal("24.98")),
        (2, "CHR-200", Decimal(1), Decimal("189.00"), Decimal("189.00")),
    ]


async def test_a_cart_with_a_forged_buyer_cookie_is_refused(supplier):
    cxml = connector(supplier)
    await cxml.punchout_setup("s-1", "https://hub.example/inbound/officepro", "jrivera")
    [session] = supplier.sessions
    sealed = supplier.sessions[session]["cookie"]
    body, _ = sealed.rsplit(".", 1)
    forged = (
        base64.urlsafe_b64encode(json.dumps(["s-1", "admin"]).encode()).decode()
        + "."
        + sealed.rsplit(".", 1)[1]
    )

    for cookie in (forged, body + ".0000", "anything"):
        received = await cxml.receive(
            inbound(
                *supplier.checkout_form(supplier.cart(session, [("TN-4410", "1")], cookie=cookie))
            )
        )
        assert status_of(received) == (
            401,
            "Unauthorized",
            "the BuyerCookie is not one this hub issued",
        )


async def test_a_form_post_without_the_cart_field_is_400(supplier):
    received = await connector(supplier).receive(
        inbound(b"cxml=abc&x=1", "application/x-www-form-urlencoded")
    )
    assert status_of(received) == (
        400,
        "Bad Request",
        "the form has no cxml-urlencoded or cxml-base64 field",
    )


# --- check ------------------------------------------------------------------------------------


async def test_check_passes_against_a_supplier_that_takes_orders_and_punchout(supplier):
    await connector(supplier).check()
    assert supplier.requests == ["ProfileRequest"]


async def test_check_says_the_supplier_cannot_be_reached():
    context = sdk.ConnectionContext(connection="officepro", member=None)
    unreachable = Cxml(
        Cxml.parse_options(
            {
                "order_url": "http://127.0.0.1:9/cxml",
                "buyer": {"domain": "NetworkID", "identity": "COOP"},
                "supplier": {"domain": "NetworkID", "identity": "S"},
                **FAST,
            }
        ),
        {"shared_secret": SECRET},
        context,
    )
    with pytest.raises(sdk.TransientError) as failed:
        await unreachable.check()
    assert str(failed.value).startswith(
        "cannot reach the supplier: the supplier's cXML endpoint http://127.0.0.1:9/cxml did not "
        "take the ProfileRequest: POST http://127.0.0.1:9/cxml failed after 3 attempts: cannot connect to 127.0.0.1:9"
    )
    await close_sessions()


async def test_check_says_an_endpoint_is_not_cxml(supplier):
    with pytest.raises(sdk.ConnectorConfigError) as failed:
        await connector(supplier, order_url=f"{supplier.base_url}/html").check()
    assert str(failed.value).startswith(
        f"not a cXML endpoint: {supplier.base_url}/html answered the ProfileRequest with no cXML "
        "Response, HTTP 200 (text/html): the answer is an XML document <html>, not <cXML>"
    )


async def test_check_says_the_shared_secret_was_refused(supplier):
    with pytest.raises(sdk.AuthError) as refused:
        await connector(supplier, secret=plant("stale-secret-canary-0e0e")).check()
    assert str(refused.value) == (
        "the supplier refused the credentials (cXML 401 Unauthorized: SharedSecret mismatch): "
        "check buyer, sender and the shared secret (connection.officepro.shared_secret) with the supplier"
    )


async def test_check_says_the_supplier_does_not_take_orders(supplier):
    supplier.supports = ("ProfileRequest", "PunchOutSetupRequest")
    with pytest.raises(sdk.ConnectorConfigError) as failed:
        await connector(supplier).check()
    assert str(failed.value) == (
        "the supplier does not support OrderRequest: its ProfileResponse lists "
        "ProfileRequest, PunchOutSetupRequest"
    )


def test_options_schema_and_streams():
    schema = Cxml.options_schema()["$defs"]["CxmlOptions"]
    assert {"order_url", "buyer", "supplier"} <= set(schema["required"])
    assert Cxml.secrets == ("shared_secret",) and Cxml.inbound_auth == "connector"


# --- a route sending a district's purchase orders, on every backend --------------------------

ORDER_BOOK = '''"""The test's purchase-order source, loaded from a plugin folder like a site plugin."""

from tests.test_cxml import cohub_register_connectors  # noqa: F401
'''


class OrderBookOptions(sdk.Options, kw_only=True):
    orders: str


class OrderBook(sdk.Connector[OrderBookOptions]):
    """A district's purchase orders from a JSON file, read once: a scripted ERP."""

    name = "order_book"
    options = OrderBookOptions

    async def streams(self) -> list[sdk.StreamSpec]:
        return [sdk.StreamSpec(name="purchase_orders", record="purchasing.purchase_order")]

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        if state:
            return
        rows = json.loads(self.context.resolve_path(self.config.orders).read_text())
        yield sdk.Batch(
            records=msgspec.convert(rows, list[PurchaseOrder], strict=False),
            state={"read": len(rows)},
        )


@sdk.hookimpl
def cohub_register_connectors(register):
    register(OrderBook)


async def test_a_route_sends_a_districts_orders_to_the_supplier(runtime, config_dir, supplier):
    # given Eastview's order book with two orders the supplier takes and one it refuses, and
    # the supplier's cXML connection with the shared secret in the vault
    plugins = config_dir.parent / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "order_book.py").write_text(ORDER_BOOK)
    orders = [
        order("PO-1"),
        order("PO-2", ("ZZ-0000", "1", "5.00")),
        order("PO-3", ("CHR-200", "2", "189.00")),
    ]
    (config_dir / "orders.json").write_text(json.dumps(msgspec.to_builtins(orders)))
    (config_dir / "connections" / "eastview-order-book.toml").write_text(
        'connector = "order_book"\nmember = "eastview"\n[options]\norders = "orders.json"\n'
    )
    addresses = "".join(
        f"\n[options.addresses.{code}]\n"
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in address.items())
        for code, address in ADDRESSES.items()
    )
    (config_dir / "connections" / "officepro.toml").write_text(
        'connector = "cxml"\n\n[options]\n'
        f'order_url = "{supplier.order_url}"\nvendor_id = "V-OFFICEPRO"\nbill_to = "boces-ap"\n'
        "retry_base_seconds = 0.01\n"
        f'buyer = {{ domain = "NetworkID", identity = "{supplier.buyer_identity}" }}\n'
        f'supplier = {{ domain = "NetworkID", identity = "{supplier.identity}" }}\n'
        f"{addresses}\n[secrets]\n"
        'shared_secret = "vault:connection.officepro.shared_secret"\n'
    )
    with (config_dir / "routes.toml").open("a") as routes:
        routes.write(
            '\n[routes.eastview-officepro-orders]\nsource = "eastview-order-book"\nsource_stream = "purchase_orders"\n'
            'destination = "officepro"\ndestination_stream = "purchase_orders"\nservice = "administration"\n'
        )
    runtime.plugins = PluginHost([plugins])
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)
    create_key_file(key_file(runtime.home))
    await runtime.unlock_vault()
    await runtime.store_secrets({"connection.officepro.shared_secret": SECRET}, actor="test")

    # when the route runs
    summary = await run_route(runtime.engine, runtime.plugins, "eastview-officepro-orders")

    # then two orders reached the supplier once each, the refused one is a dead letter
    assert summary.status == "succeeded", summary.error
    assert (summary.counts.read, summary.counts.written, summary.counts.rejected) == (3, 2, 1)
    assert [o.order_id for o in supplier.orders] == ["PO-1", "PO-3"]
    assert supplier.orders[0].ship_to == "Eastview CSD District Office"
    async with runtime.engine.connect() as conn:
        letters = (await conn.execute(select(dead_letters.c.position, dead_letters.c.reason))).all()
    assert letters == [
        (
            "order PO-2",
            "refused by destination 'officepro': the supplier refused order PO-2 (cXML 400 Bad Request: line 1: unknown SupplierPartID ZZ-0000)",
        )
    ]


# --- fuzzing what a supplier or a browser can post (registered in tests/fuzz_targets.py) -------

FUZZ_SECRET = "fuzz-shared-secret"
FUZZ_SUPPLIER = CxmlSupplier(shared_secret=FUZZ_SECRET, sessions={"s": {"cookie": ""}})
FUZZ_CXML = Cxml(
    Cxml.parse_options(
        {
            "order_url": "https://supplier.example/cxml",
            "buyer": {"domain": "NetworkID", "identity": FUZZ_SUPPLIER.buyer_identity},
            "supplier": {"domain": "NetworkID", "identity": FUZZ_SUPPLIER.identity},
        }
    ),
    {"shared_secret": FUZZ_SECRET},
    sdk.ConnectionContext(connection="fuzz", member=None),
)
FUZZ_SUPPLIER.sessions["s"]["cookie"] = FUZZ_CXML.seal_cookie("session", "user")
CART = FUZZ_SUPPLIER.cart("s", [("TN-4410", "2"), ("CHR-200", "1")])


@fuzz_target(
    "cxml.receive",
    refusals=(sdk.BadRecord,),
    seeds=[
        FUZZ_SUPPLIER.confirmation("PO-1", "detail", [(1, "accept", "2", "2026-12-01")]),
        FUZZ_SUPPLIER.ship_notice("SH-1", "PO-1", [(1, "TN-4410", "2")]),
        FUZZ_SUPPLIER.invoice("INV-1", "PO-1", [(1, "TN-4410", "2", "12.49")], tax="1.00"),
        CART,
        FUZZ_SUPPLIER.checkout_form(CART)[0],
        FUZZ_SUPPLIER.checkout_form(CART, "base64")[0],
    ],
)
def cxml_receive(data: bytes) -> None:
    """Bytes posted as a document and as a browser's form: always a cXML answer with a
    status the connector means, and raws that map to records or to a BadRecord."""
    for media in ("text/xml", "application/x-www-form-urlencoded"):
        received = asyncio.run(
            FUZZ_CXML.receive(sdk.Inbound(body=data, headers={}, content_type=media))
        )
        assert received.status in (200, 400, 401, 406), received.status
        assert sdk.xml.parse(received.reply).find("Response/Status") is not None
        for raw in received.raws:
            FUZZ_CXML.map_raw(received.stream or "", raw)
