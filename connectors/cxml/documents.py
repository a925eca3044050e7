"""cXML 1.2 documents the hub sends, and the synchronous ``Response`` it reads back.

Every document is a ``cXML`` envelope (``payloadID``, ``timestamp``, ``xml:lang``) preceded by
the DOCTYPE naming the cXML DTD, holding a ``Header`` (``From``, ``To``, ``Sender`` with the
shared secret and ``UserAgent``) and one ``Request``, or a ``Response`` answering one. Elements
are written in the order the DTD declares them, so a validating supplier takes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple
from xml.etree.ElementTree import Element, SubElement, tostring
from zoneinfo import ZoneInfo

from connectors.cxml.options import Address, Credential
from hub import sdk

if TYPE_CHECKING:
    from hub.model.purchasing import PurchaseOrder


DTD = "http://xml.cxml.org/schemas/cXML/1.2.014/cXML.dtd"
PROLOGUE = f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE cXML SYSTEM "{DTD}">\n'.encode()
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

#: cXML status codes (cXML Reference Guide, "Status") and their texts. 2xx: done; 4xx: a
#: permanent refusal, the same document must not be sent again unchanged; 5xx: transient.
STATUS_TEXTS = {
    200: "OK",
    201: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    406: "Not Acceptable",
    409: "Conflict",
    412: "Precondition Failed",
    500: "Internal Server Error",
}


@dataclass(frozen=True)
class Parties:
    """Who a document is from, to and sent by, and the shared secret proving the sender."""

    buyer: Credential
    supplier: Credential
    sender: Credential
    shared_secret: str
    user_agent: str
    language: str


class NotCxml(sdk.ConnectorError):
    """An answer that is not a cXML ``Response`` document; the reason says what it is."""


class Status(NamedTuple):
    """A ``Status``: its code, its text attribute and the explanation it holds, if any."""

    code: int
    text: str
    detail: str

    def describe(self) -> str:
        """``cXML 400 Bad Request: unknown part`` (the explanation only when there is one)."""
        said = f"cXML {self.code} {self.text}".rstrip()
        return f"{said}: {self.detail}" if self.detail else said


# --- building ---------------------------------------------------------------------------------


def payload_id(connection: str, host: str, *parts: str) -> str:
    """A payloadID that is the same whenever `parts` are: a supplier that has seen it knows
    the document again (cXML: "used to detect duplicate documents")."""
    digest = hashlib.sha256("\0".join((connection, *parts)).encode()).hexdigest()[:32]
    return f"{digest}@{host}"


def timestamp(moment: datetime | None = None) -> str:
    """A cXML timestamp: ISO 8601 with its offset, to the second."""
    return (moment or datetime.now(UTC)).isoformat(timespec="seconds")


def envelope(payload: str, parties: Parties, *, when: datetime | None = None) -> Element:
    """A ``cXML`` element with its ``Header``."""
    root = Element(
        "cXML", {"payloadID": payload, "timestamp": timestamp(when), XML_LANG: parties.language}
    )
    header = SubElement(root, "Header")
    _credential(SubElement(header, "From"), parties.buyer)
    _credential(SubElement(header, "To"), parties.supplier)
    sender = SubElement(header, "Sender")
    _credential(sender, parties.sender, parties.shared_secret)
    SubElement(sender, "UserAgent").text = parties.user_agent
    return root


def _credential(parent: Element, credential: Credential, secret: str | None = None) -> None:
    element = SubElement(parent, "Credential", domain=credential.domain)
    SubElement(element, "Identity").text = credential.identity
    if secret is not None:
        SubElement(element, "SharedSecret").text = secret


def serialize(root: Element) -> bytes:
    """The document as sent: XML declaration, DOCTYPE, UTF-8."""
    return PROLOGUE + tostring(root, encoding="unicode").encode()


def _text(parent: Element, tag: str, value: str, lang: str | None = None) -> Element:
    element = SubElement(parent, tag, {XML_LANG: lang} if lang else {})
    element.text = value
    return element


def _money(parent: Element, tag: str, amount: Decimal, currency: str) -> None:
    _text(SubElement(parent, tag), "Money", format(amount, "f")).set("currency", currency)


def _address(parent: Element, tag: str, address: Address, lang: str) -> None:
    element = SubElement(SubElement(parent, tag), "Address")
    if address.address_id:
        element.set("addressID", address.address_id)
    _text(element, "Name", address.name, lang)
    postal = SubElement(element, "PostalAddress")
    for line in address.deliver_to:
        _text(postal, "DeliverTo", line)
    for line in address.street:
        _text(postal, "Street", line)
    _text(postal, "City", address.city)
    _text(postal, "State", address.state)
    _text(postal, "PostalCode", address.postal_code)
    _text(postal, "Country", address.country).set("isoCountryCode", address.country)
    if address.email:
        _text(element, "Email", address.email)


@dataclass(frozen=True)
class OrderTerms:
    """How orders are written for one supplier: currency, addresses, zone of order dates,
    the line Classification the DTD requires, and the deployment mode."""

    currency: str
    timezone: ZoneInfo
    classification_domain: str
    classification: str
    deployment_mode: str


def order_request(
    order: PurchaseOrder,
    parties: Parties,
    terms: OrderTerms,
    *,
    payload: str,
    order_type: str,
    reference: str | None,
    ship_to: Address | None,
    bill_to: Address,
) -> bytes:
    """An ``OrderRequest`` for `order`: type ``new``, ``update`` or ``delete`` (the last two
    with a ``DocumentReference`` to the order's first request, `reference`)."""
    root = envelope(payload, parties)
    request = SubElement(root, "Request", deploymentMode=terms.deployment_mode)
    body = SubElement(request, "OrderRequest")
    ordered = datetime.combine(order.order_date, time(0), terms.timezone)
    header = SubElement(
        body,
        "OrderRequestHeader",
        orderID=order.po_id,
        orderDate=timestamp(ordered),
        type=order_type,
    )
    _money(header, "Total", order.total_amount, terms.currency)
    if ship_to is not None:
        _address(header, "ShipTo", ship_to, parties.language)
    _address(header, "BillTo", bill_to, parties.language)
    if reference is not None:
        SubElement(header, "DocumentReference", payloadID=reference)
    for line in order.lines:
        item = SubElement(
            body,
            "ItemOut",
            quantity=format(line.quantity, "f"),
            lineNumber=str(line.line_number),
        )
        _text(SubElement(item, "ItemID"), "SupplierPartID", line.supplier_part_id or "")
        detail = SubElement(item, "ItemDetail")
        _money(detail, "UnitPrice", line.unit_price, terms.currency)
        _text(detail, "Description", line.description, parties.language)
        _text(detail, "UnitOfMeasure", line.unit_of_measure)
        _text(detail, "Classification", terms.classification).set(
            "domain", terms.classification_domain
        )
        if line.contract_id:
            SubElement(item, "MasterAgreementIDInfo", agreementID=line.contract_id)
    return serialize(root)


def profile_request(parties: Parties, payload: str) -> bytes:
    """A ``ProfileRequest``: which transactions does the supplier take, and where."""
    root = envelope(payload, parties)
    SubElement(SubElement(root, "Request"), "ProfileRequest")
    return serialize(root)


def punchout_setup_request(
    parties: Parties,
    payload: str,
    *,
    deployment_mode: str,
    buyer_cookie: str,
    return_url: str,
    supplier_url: str,
    extrinsics: Iterable[tuple[str, str]],
) -> bytes:
    """A ``PunchOutSetupRequest`` (operation create): the user's session at the supplier's
    store, whose cart comes back as a form post to `return_url` carrying `buyer_cookie`."""
    root = envelope(payload, parties)
    request = SubElement(root, "Request", deploymentMode=deployment_mode)
    setup = SubElement(request, "PunchOutSetupRequest", operation="create")
    _text(setup, "BuyerCookie", buyer_cookie)
    for name, value in extrinsics:
        _text(setup, "Extrinsic", value).set("name", name)
    _text(SubElement(setup, "BrowserFormPost"), "URL", return_url)
    _text(SubElement(setup, "SupplierSetup"), "URL", supplier_url)
    return serialize(root)


def response(code: int, payload: str, language: str, detail: str = "") -> bytes:
    """A ``Response`` document with one ``Status``; `detail` explains a refusal."""
    root = Element("cXML", {"payloadID": payload, "timestamp": timestamp(), XML_LANG: language})
    status = SubElement(
        SubElement(root, "Response"),
        "Status",
        code=str(code),
        text=STATUS_TEXTS.get(code, "Error"),
    )
    if detail:
        status.text = detail
        status.set(XML_LANG, "en")
    return serialize(root)


# --- reading the synchronous answer -----------------------------------------------------------


def read_response(body: bytes, max_bytes: int) -> tuple[Status, Element]:
    """The ``Status`` of a ``Response`` document and the ``Response`` element; NotCxml if the
    body is something else (an HTML error page, JSON, a truncated document)."""
    try:
        root = sdk.xml.parse(body, max_bytes=max_bytes)
    except sdk.BadRecord as error:
        raise NotCxml(f"the answer is not a cXML document ({error.reason})") from None
    if root.tag != "cXML":
        raise NotCxml(f"the answer is an XML document <{root.tag[:40]}>, not <cXML>")
    answer = root.find("Response")
    status = answer.find("Status") if answer is not None else None
    if answer is None or status is None:
        raise NotCxml("the cXML answer holds no Response/Status")
    try:
        code = int(status.get("code", ""))
    except ValueError:
        raise NotCxml("the cXML answer's Status has no numeric code") from None
    detail = " ".join((status.text or "").split())
    return Status(code, status.get("text", ""), detail), answer
