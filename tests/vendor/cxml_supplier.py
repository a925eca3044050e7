"""A supplier's cXML service as the cXML User's Guide describes one, on a local port.

``POST /cxml`` takes ``ProfileRequest`` (answers a ``ProfileResponse`` listing the transactions
in `supports`) and ``OrderRequest``; ``POST /punchout`` takes ``PunchOutSetupRequest`` and answers
the store's ``StartPage``. Every request's ``Header`` is checked: ``From`` the buyer, ``To`` the
supplier, ``Sender`` with the agreed ``SharedSecret`` (else cXML 401). Orders are checked as the
DTD and the guide require (header attributes, ``Total`` equal to the lines, ``BillTo``, each
``ItemOut`` with its ``ItemID`` and ``ItemDetail``, parts from the `catalog`), and a payloadID seen
before is answered as it was the first time, without taking the order again: the duplicate
detection payloadIDs exist for.

The supplier also writes the documents it sends the buyer: ``ConfirmationRequest``,
``ShipNoticeRequest``, ``InvoiceDetailRequest``, and a cart (``PunchOutOrderMessage``) as the
store's page posts it through the user's browser (``cxml-urlencoded`` or ``cxml-base64``).

`fail_next` makes the next requests fail: ``http503`` (nothing taken), ``cxml500`` (a cXML 500
Response), ``taken_then_http502`` (the order is taken, the answer lost on the way), ``html``
(an HTML error page, as a web server in front of a broken service answers).
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import quote_plus
from xml.etree.ElementTree import Element, SubElement, tostring

from aiohttp import web

from hub import sdk

DOCTYPE = b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.014/cXML.dtd">\n'
LANG = "{http://www.w3.org/XML/1998/namespace}lang"
NOW = "2026-11-30T10:15:00-05:00"


@dataclass
class Order:
    """An order as the supplier took it."""

    payload_id: str
    order_id: str
    type: str
    total: Decimal
    lines: list[dict[str, object]]
    ship_to: str | None
    bill_to: str
    reference: str | None


@dataclass
class CxmlSupplier:
    """The supplier (`identity` in `domain`) of a buyer (`buyer_identity` in `buyer_domain`)."""

    shared_secret: str
    identity: str = "AN01000000099"
    domain: str = "NetworkID"
    buyer_identity: str = "NY-BOCES-COOP"
    buyer_domain: str = "NetworkID"
    catalog: dict[str, Decimal] = field(
        default_factory=lambda: {
            "TN-4410": Decimal("12.49"),
            "PPR-8511": Decimal("41.90"),
            "CHR-200": Decimal("189.00"),
        }
    )
    supports: tuple[str, ...] = ("ProfileRequest", "OrderRequest", "PunchOutSetupRequest")
    orders: list[Order] = field(default_factory=list)
    answered: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    sessions: dict[str, dict[str, str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/cxml", self.cxml)
        app.router.add_post("/punchout", self.cxml)
        app.router.add_post("/html", self.html)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        await self.runner.cleanup()

    @property
    def order_url(self) -> str:
        return f"{self.base_url}/cxml"

    @property
    def punchout_url(self) -> str:
        return f"{self.base_url}/punchout"

    def fail_next(self, *hows: str) -> None:
        self.failures.extend(hows)

    # --- answering ------------------------------------------------------------------------

    def response(self, code: int, text: str, detail: str = "") -> Element:
        root = Element("cXML", {"payloadID": f"{uuid.uuid4()}@supplier", "timestamp": NOW})
        status = SubElement(SubElement(root, "Response"), "Status", code=str(code), text=text)
        status.text = detail or None
        return root

    def reply(self, root: Element, http: int = 200) -> web.Response:
        return web.Response(
            status=http, body=DOCTYPE + tostring(root), content_type="text/xml", charset="utf-8"
        )

    async def html(self, request: web.Request) -> web.Response:
        return web.Response(
            status=200, text="<html><body>Welcome</body></html>", content_type="text/html"
        )

    async def cxml(self, request: web.Request) -> web.Response:
        body = await request.read()
        how = self.failures.pop(0) if self.failures else None
        if how == "http503":
            self.requests.append("failed")
            return web.Response(status=503, text="Service Unavailable")
        if how == "html":
            self.requests.append("failed")
            return web.Response(
                status=404,
                text="<html><body><h1>404 Not Found</h1><hr><p>nginx</p></body></html>",
                content_type="text/html",
            )
        if how == "cxml500":
            self.requests.append("failed")
            return self.reply(self.response(500, "Internal Server Error", "order system down"))
        if not request.content_type.endswith("xml"):
            return self.reply(self.response(400, "Bad Request", "not text/xml"), 400)
        try:
            root = sdk.xml.parse(body)
        except sdk.BadRecord as error:
            return self.reply(self.response(400, "Bad Request", error.reason), 400)
        wrapper = root.find("Request")
        kind = next(iter(wrapper), None) if wrapper is not None else None
        self.requests.append(kind.tag if kind is not None else "?")
        refusal = self.refuse_header(root)
        if refusal:
            return self.reply(self.response(401, "Unauthorized", refusal))
        if kind is None:
            return self.reply(self.response(400, "Bad Request", "no Request"))
        if kind.tag not in self.supports:
            return self.reply(self.response(406, "Not Acceptable", f"{kind.tag} not supported"))
        if kind.tag == "ProfileRequest":
            return self.reply(self.profile())
        if kind.tag == "PunchOutSetupRequest":
            return self.reply(self.punchout(kind))
        payload = root.get("payloadID", "")
        if payload in self.answered:  # a document seen before: the same answer, nothing new
            return web.Response(body=self.answered[payload], content_type="text/xml")
        answer = self.take_order(root, kind)
        self.answered[payload] = DOCTYPE + tostring(answer)
        if how == "taken_then_http502":
            return web.Response(status=502, text="Bad Gateway")
        return self.reply(answer)

    def refuse_header(self, root: Element) -> str | None:
        header = root.find("Header")
        if header is None:
            return "no Header"
        sender = header.find("Sender/Credential")
        if (
            header.findtext("From/Credential/Identity") != self.buyer_identity
            or header.find("From/Credential").get("domain") != self.buyer_domain
            or header.findtext("To/Credential/Identity") != self.identity
            or sender is None
            or not sender.findtext("Identity")
            or not header.findtext("Sender/UserAgent")
        ):
            return "unknown buyer or supplier credential"
        if sender.findtext("SharedSecret") != self.shared_secret:
            return "SharedSecret mismatch"
        return None

    def profile(self) -> Element:
        root = self.response(200, "OK")
        profile = SubElement(root.find("Response"), "ProfileResponse", effectiveDate=NOW)
        for name in self.supports:
            transaction = SubElement(profile, "Transaction", requestName=name)
            SubElement(transaction, "URL").text = self.order_url
        return root

    def take_order(self, root: Element, order: Element) -> Element:
        """Check an OrderRequest as the DTD and the guide say; take it or say what is wrong."""

        def bad(detail: str) -> Element:
            return self.response(400, "Bad Request", detail)

        header = order.find("OrderRequestHeader")
        if header is None or not header.get("orderID") or not header.get("orderDate"):
            return bad("OrderRequestHeader with orderID and orderDate required")
        kind = header.get("type", "new")
        if kind not in ("new", "update", "delete"):
            return bad(f"type {kind}")
        reference = header.find("DocumentReference")
        if kind != "new" and (
            reference is None
            or reference.get("payloadID") not in {o.payload_id for o in self.orders}
        ):
            return bad("an update or delete must reference the order's payloadID")
        if kind == "new" and any(o.order_id == header.get("orderID") for o in self.orders):
            return self.response(409, "Conflict", f"order {header.get('orderID')} exists")
        total = header.find("Total/Money")
        bill_to = header.findtext("BillTo/Address/Name")
        if total is None or total.get("currency") != "USD" or not bill_to:
            return bad("Total in USD and BillTo required")
        lines, total_of_lines = [], Decimal(0)
        for item in order.findall("ItemOut"):
            part = item.findtext("ItemID/SupplierPartID")
            detail = item.find("ItemDetail")
            if (
                detail is None
                or not item.get("lineNumber")
                or detail.find("UnitPrice/Money") is None
                or detail.find("Description") is None
                or not detail.findtext("UnitOfMeasure")
                or detail.find("Classification") is None
            ):
                return bad(
                    "ItemOut needs lineNumber, ItemDetail with UnitPrice, Description, UnitOfMeasure, Classification"
                )
            if part not in self.catalog:
                return bad(f"line {item.get('lineNumber')}: unknown SupplierPartID {part}")
            quantity = Decimal(item.get("quantity", "0"))
            price = Decimal(detail.findtext("UnitPrice/Money"))
            agreement = item.find("MasterAgreementIDInfo")
            lines.append(
                {
                    "line": int(item.get("lineNumber")),
                    "part": part,
                    "quantity": quantity,
                    "price": price,
                    "uom": detail.findtext("UnitOfMeasure"),
                    "contract": agreement.get("agreementID") if agreement is not None else None,
                }
            )
            total_of_lines += quantity * price
        if not lines:
            return bad("ItemOut required")
        if total_of_lines != Decimal(total.text):
            return bad(f"Total {total.text} is not the lines' {total_of_lines}")
        self.orders.append(
            Order(
                payload_id=root.get("payloadID", ""),
                order_id=header.get("orderID", ""),
                type=kind,
                total=Decimal(total.text),
                lines=lines,
                ship_to=header.findtext("ShipTo/Address/Name"),
                bill_to=bill_to,
                reference=reference.get("payloadID") if reference is not None else None,
            )
        )
        return self.response(200, "OK")

    def punchout(self, setup: Element) -> Element:
        cookie = setup.findtext("BuyerCookie")
        back = setup.findtext("BrowserFormPost/URL")
        if setup.get("operation") != "create" or not cookie or not back:
            return self.response(
                400, "Bad Request", "operation, BuyerCookie, BrowserFormPost required"
            )
        session = uuid.uuid4().hex
        extrinsics = {e.get("name"): e.text for e in setup.findall("Extrinsic")}
        self.sessions[session] = {"cookie": cookie, "return_url": back, **extrinsics}
        root = self.response(200, "success")
        page = SubElement(SubElement(root.find("Response"), "PunchOutSetupResponse"), "StartPage")
        SubElement(page, "URL").text = f"{self.base_url}/shop/{session}"
        return root

    # --- documents the supplier sends -------------------------------------------------------

    def envelope(
        self, *, secret: str | None, identity: str | None = None
    ) -> tuple[Element, Element]:
        """A cXML document from this supplier to the buyer, and its Request element."""
        root = Element(
            "cXML",
            {"payloadID": f"{uuid.uuid4().hex}@supplier.example", "timestamp": NOW, LANG: "en-US"},
        )
        header = SubElement(root, "Header")
        for tag, (domain, who) in {
            "From": (self.domain, identity or self.identity),
            "To": (self.buyer_domain, self.buyer_identity),
            "Sender": (self.domain, identity or self.identity),
        }.items():
            credential = SubElement(SubElement(header, tag), "Credential", domain=domain)
            SubElement(credential, "Identity").text = who
            if tag == "Sender" and secret is not None:
                SubElement(credential, "SharedSecret").text = secret
        if secret is not None:
            SubElement(header.find("Sender"), "UserAgent").text = "Supplier OMS 4.2"
        return root, SubElement(root, "Request", deploymentMode="production")

    def document(self, root: Element) -> bytes:
        return DOCTYPE + tostring(root)

    def money(self, parent: Element, tag: str, amount: str) -> None:
        money = SubElement(SubElement(parent, tag), "Money", currency="USD")
        money.text = amount

    def confirmation(
        self,
        order_id: str,
        kind: str,
        items: list[tuple[int, str, str, str | None]],
        *,
        secret: str | None = None,
    ) -> bytes:
        """A ConfirmationRequest for `order_id`: items as (line, status type, quantity,
        shipment date)."""
        root, request = self.envelope(secret=secret or self.shared_secret)
        body = SubElement(request, "ConfirmationRequest")
        header = SubElement(
            body,
            "ConfirmationHeader",
            confirmID=f"CONF-{order_id}",
            operation="new",
            type=kind,
            noticeDate=NOW,
        )
        SubElement(header, "Comments").text = "Thank you for your order"
        reference = SubElement(
            body, "OrderReference", orderID=order_id, orderDate="2026-11-28T00:00:00-05:00"
        )
        SubElement(reference, "DocumentReference", payloadID="order@buyer")
        for line, status, quantity, ships in items:
            item = SubElement(body, "ConfirmationItem", quantity=quantity, lineNumber=str(line))
            SubElement(item, "UnitOfMeasure").text = "EA"
            detail = SubElement(item, "ConfirmationStatus", quantity=quantity, type=status)
            if ships:
                detail.set("shipmentDate", ships)
            SubElement(detail, "UnitOfMeasure").text = "EA"
        return self.document(root)

    def ship_notice(
        self,
        shipment_id: str,
        order_id: str,
        items: list[tuple[int, str, str]],
        *,
        secret: str | None = None,
    ) -> bytes:
        """A ShipNoticeRequest: items as (line, part, quantity), by UPS."""
        root, request = self.envelope(secret=secret or self.shared_secret)
        body = SubElement(request, "ShipNoticeRequest")
        SubElement(
            body,
            "ShipNoticeHeader",
            shipmentID=shipment_id,
            operation="new",
            noticeDate=NOW,
            shipmentDate="2026-11-30T08:00:00-05:00",
            deliveryDate="2026-12-02T17:00:00-05:00",
        )
        control = SubElement(body, "ShipControl")
        SubElement(control, "CarrierIdentifier", domain="SCAC").text = "UPSN"
        SubElement(control, "CarrierIdentifier", domain="companyName").text = "UPS"
        SubElement(control, "ShipmentIdentifier").text = "1Z999AA10123456784"
        portion = SubElement(body, "ShipNoticePortion")
        SubElement(portion, "OrderReference", orderID=order_id)
        for line, part, quantity in items:
            item = SubElement(portion, "ShipNoticeItem", quantity=quantity, lineNumber=str(line))
            SubElement(SubElement(item, "ItemID"), "SupplierPartID").text = part
            SubElement(item, "UnitOfMeasure").text = "EA"
        return self.document(root)

    def invoice(
        self,
        invoice_id: str,
        order_id: str,
        items: list[tuple[int, str, str, str]],
        *,
        tax: str,
        secret: str | None = None,
    ) -> bytes:
        """An InvoiceDetailRequest: items as (line, part, quantity, unit price), net 30."""
        root, request = self.envelope(secret=secret or self.shared_secret)
        body = SubElement(request, "InvoiceDetailRequest")
        header = SubElement(
            body,
            "InvoiceDetailRequestHeader",
            invoiceID=invoice_id,
            purpose="standard",
            operation="new",
            invoiceDate="2026-12-01T00:00:00-05:00",
        )
        SubElement(header, "InvoiceDetailHeaderIndicator")
        SubElement(header, "InvoiceDetailLineIndicator")
        SubElement(header, "PaymentTerm", payInNumberOfDays="30")
        order = SubElement(body, "InvoiceDetailOrder")
        SubElement(SubElement(order, "InvoiceDetailOrderInfo"), "OrderReference", orderID=order_id)
        subtotal = Decimal(0)
        for line, part, quantity, price in items:
            amount = Decimal(quantity) * Decimal(price)
            subtotal += amount
            item = SubElement(
                order, "InvoiceDetailItem", invoiceLineNumber=str(line), quantity=quantity
            )
            SubElement(item, "UnitOfMeasure").text = "EA"
            self.money(item, "UnitPrice", price)
            reference = SubElement(item, "InvoiceDetailItemReference", lineNumber=str(line))
            SubElement(SubElement(reference, "ItemID"), "SupplierPartID").text = part
            SubElement(reference, "Description", {LANG: "en"}).text = f"Part {part}"
            self.money(item, "SubtotalAmount", str(amount))
        summary = SubElement(body, "InvoiceDetailSummary")
        self.money(summary, "SubtotalAmount", str(subtotal))
        tax_element = SubElement(summary, "Tax")
        SubElement(tax_element, "Money", currency="USD").text = tax
        SubElement(tax_element, "Description", {LANG: "en"}).text = "Sales tax"
        due = str(subtotal + Decimal(tax))
        for tag in ("GrossAmount", "NetAmount", "DueAmount"):
            self.money(summary, tag, due)
        return self.document(root)

    def cart(
        self, session: str, items: list[tuple[str, str]], *, cookie: str | None = None
    ) -> bytes:
        """The PunchOutOrderMessage the store's checkout sends: items as (part, quantity)."""
        root, _ = self.envelope(secret=None)
        root.remove(root.find("Request"))
        message = SubElement(SubElement(root, "Message"), "PunchOutOrderMessage")
        SubElement(message, "BuyerCookie").text = cookie or self.sessions[session]["cookie"]
        header = SubElement(message, "PunchOutOrderMessageHeader", operationAllowed="edit")
        total = sum(Decimal(q) * self.catalog[p] for p, q in items)
        self.money(header, "Total", str(total))
        for number, (part, quantity) in enumerate(items, start=1):
            item = SubElement(message, "ItemIn", quantity=quantity, lineNumber=str(number))
            ids = SubElement(item, "ItemID")
            SubElement(ids, "SupplierPartID").text = part
            SubElement(ids, "SupplierPartAuxiliaryID").text = f"{session}/{number}"
            detail = SubElement(item, "ItemDetail")
            self.money(detail, "UnitPrice", str(self.catalog[part]))
            SubElement(detail, "Description", {LANG: "en"}).text = f"Part {part}"
            SubElement(detail, "UnitOfMeasure").text = "EA"
            SubElement(detail, "Classification", domain="UNSPSC").text = "44121600"
        return self.document(root)

    def checkout_form(self, document: bytes, encoding: str = "urlencoded") -> tuple[bytes, str]:
        """The body and media type of the store page's form post of `document`."""
        if encoding == "base64":
            value = quote_plus(base64.b64encode(document).decode())
            return f"cxml-base64={value}".encode(), "application/x-www-form-urlencoded"
        return (
            b"cxml-urlencoded=" + quote_plus(document.decode()).encode(),
            "application/x-www-form-urlencoded",
        )
