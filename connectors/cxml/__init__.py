"""cXML 1.2 suppliers of a purchasing cooperative: orders out; confirmations, ship notices,
invoices and PunchOut carts in.

Read as the cXML User's Guide goes:

- **authentication**: every document's ``Header`` names ``From`` (the cooperative), ``To`` (the
  supplier) and ``Sender``, whose ``Credential`` carries the ``SharedSecret`` both sides agreed
  on (the ``shared_secret`` secret). Documents the supplier sends carry the same secret; the hub
  compares it in constant time and answers ``401`` when it differs.
- **Profile**: ``ProfileRequest`` asks which transactions the supplier takes (`check`).
- **orders**: one ``OrderRequest`` per purchase order (type ``new``, ``update`` or ``delete``),
  answered synchronously by a ``Response``: 2xx taken, 4xx refused for good (a reject, with the
  supplier's words), 5xx transient (retried, then the run fails). The payloadID is derived from
  the order, so a document sent again is the same document and the supplier knows it.
- **documents from the supplier** (``ConfirmationRequest``, ``ShipNoticeRequest``,
  ``InvoiceDetailRequest``) are POSTed to the hub's inbound URL for the connection
  (``/inbound/<connection>``) and answered there with a ``Response``: `receive`.
- **PunchOut**: ``PunchOutSetupRequest`` opens a user's session at the supplier's store
  (`punchout_setup`); the cart comes back through the user's browser as a form post of a
  ``PunchOutOrderMessage`` to the same inbound URL, and becomes a draft requisition.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs
from xml.etree.ElementTree import Element
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from yarl import URL

from connectors.cxml import documents, inbound
from connectors.cxml.documents import NotCxml, OrderTerms, Parties, Status
from connectors.cxml.options import Address, Credential, CxmlOptions
from connectors.cxml.supplier import Answer, SupplierClient
from hub import sdk

if TYPE_CHECKING:
    from hub.model.purchasing import PurchaseOrder


__all__ = ["Address", "Credential", "Cxml", "CxmlOptions"]

STREAMS = [
    sdk.StreamSpec(
        name="purchase_orders",
        record="purchasing.purchase_order",
        description="OrderRequest documents sent to the supplier, one per order",
        readable=False,
        writable=True,
    ),
    sdk.StreamSpec(
        name="acknowledgements",
        record="purchasing.order_acknowledgement",
        description="ConfirmationRequest documents the supplier posts to /inbound/<connection>",
    ),
    sdk.StreamSpec(
        name="ship_notices",
        record="purchasing.ship_notice",
        description="ShipNoticeRequest documents the supplier posts to /inbound/<connection>",
    ),
    sdk.StreamSpec(
        name="invoices",
        record="purchasing.invoice",
        description="InvoiceDetailRequest documents the supplier posts to /inbound/<connection>",
    ),
    sdk.StreamSpec(
        name="requisitions",
        record="purchasing.requisition",
        description="PunchOut carts (PunchOutOrderMessage) brought back by the buyer's browser",
    ),
]

#: Order statuses and the OrderRequest type they are sent as: an order not yet placed is new;
#: once placed (sent, acknowledged, received, closed) it goes as a change; canceled cancels it.
ORDER_TYPES = {
    "open": "new",
    "sent": "update",
    "acknowledged": "update",
    "received": "update",
    "closed": "update",
    "canceled": "delete",
}

FORM = "application/x-www-form-urlencoded"
FORM_FIELDS = 10


class Refusal(Exception):
    """A pushed document answered with a cXML error status (`code`) and why."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Cxml(sdk.Connector[CxmlOptions]):
    """One supplier speaking cXML 1.2: purchase orders written as OrderRequests; its
    confirmations, ship notices, invoices and PunchOut carts received."""

    name = "cxml"
    title = "cXML supplier (orders, confirmations, ship notices, invoices, PunchOut)"
    options = CxmlOptions
    secrets = ("shared_secret",)
    inbound_auth = "connector"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:
            zone = ZoneInfo(self.config.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise sdk.ConnectorConfigError(
                f"timezone {self.config.timezone!r} is not an IANA time zone"
            ) from None
        self.terms = OrderTerms(
            currency=self.config.currency,
            timezone=zone,
            classification_domain=self.config.classification_domain,
            classification=self.config.classification,
            deployment_mode=self.config.deployment_mode,
        )
        self.host = self.config.payload_host or f"{self.context.connection}.cohub"
        self._clients: dict[str, SupplierClient] = {}

    # --- identities and the secret --------------------------------------------------------

    @property
    def shared_secret(self) -> str:
        """The shared secret; a connection without one cannot send or take anything."""
        secret = self.secret_values.get("shared_secret")
        if not secret:
            raise sdk.ConnectorConfigError(
                f"connection {self.context.connection!r} has no shared_secret secret: store it "
                f"with `cohub secrets set connection.{self.context.connection}.shared_secret`"
            )
        return secret

    @property
    def vendor_id(self) -> str:
        """The supplier's vendor_id in records."""
        return self.config.vendor_id or self.config.supplier.identity

    def parties(self) -> Parties:
        """From, To and Sender of what the hub sends."""
        return Parties(
            buyer=self.config.buyer,
            supplier=self.config.supplier,
            sender=self.config.sender or self.config.buyer,
            shared_secret=self.shared_secret,
            user_agent=self.config.user_agent,
            language=self.config.language,
        )

    def scrub(self, text: str) -> str:
        """A supplier's text with the shared secret taken out, should it echo it back."""
        secret = self.secret_values.get("shared_secret")
        return text.replace(secret, "[shared secret]") if secret else text

    # --- exchanges ------------------------------------------------------------------------

    def client(self, url: str) -> SupplierClient:
        """The client for one of the supplier's endpoints."""
        if url not in self._clients:
            self._clients[url] = SupplierClient(
                url,
                self.config.client(url, self.context),
                max_bytes=self.config.max_document_bytes,
            )
        return self._clients[url]

    async def exchange(self, url: str, document: bytes, what: str) -> Answer:
        """Send `document` (a `what`) and return the answer. Unreachable, or a transient
        failure that outlived the retries: TransientError; an answer that is no cXML:
        ConnectorError; each naming the endpoint."""
        try:
            return await self.client(url).post_document(document, idempotent=True)
        except sdk.TransientError as error:
            raise sdk.TransientError(
                f"the supplier's cXML endpoint {url} did not take the {what}: "
                f"{self.scrub(str(error))}"
            ) from None
        except NotCxml as error:
            raise sdk.ConnectorError(
                f"{url} answered the {what} with no cXML Response, {self.scrub(str(error))}: "
                "is it the supplier's cXML endpoint?"
            ) from None

    def refused(self, status: Status, what: str) -> str:
        """Why the supplier refused a `what`, in its words (without the shared secret)."""
        return f"the supplier refused {what} ({self.scrub(status.describe())[:500]})"

    # --- check and streams ----------------------------------------------------------------

    async def check(self) -> None:
        """A ProfileRequest: the endpoint answers cXML, takes the credentials, and lists
        OrderRequest (and PunchOutSetupRequest when a punchout_url is set)."""
        url = self.config.profile_url or self.config.order_url
        payload = f"{uuid.uuid4().hex}@{self.host}"
        document = documents.profile_request(self.parties(), payload)
        try:
            answer = await self.exchange(url, document, "ProfileRequest")
        except sdk.TransientError as error:
            raise sdk.TransientError(f"cannot reach the supplier: {error}") from None
        except sdk.ConnectorConfigError:
            raise
        except sdk.ConnectorError as error:
            raise sdk.ConnectorConfigError(f"not a cXML endpoint: {error}") from None
        status = answer.status
        if status.code == 401:
            raise sdk.AuthError(
                f"{self.refused(status, 'the credentials')}: check buyer, sender and the "
                f"shared secret (connection.{self.context.connection}.shared_secret) with the "
                "supplier"
            )
        if not 200 <= status.code < 300:
            raise sdk.ConnectorError(self.refused(status, "the ProfileRequest"))
        taken = {
            t.get("requestName", "") for t in answer.response.findall("ProfileResponse/Transaction")
        }
        wanted = ["OrderRequest"] + (["PunchOutSetupRequest"] if self.config.punchout_url else [])
        missing = [name for name in wanted if name not in taken]
        if missing:
            listed = ", ".join(sorted(n for n in taken if n)) or "none"
            raise sdk.ConnectorConfigError(
                f"the supplier does not support {' or '.join(missing)}: its ProfileResponse "
                f"lists {listed}"
            )

    async def streams(self) -> list[sdk.StreamSpec]:
        return list(STREAMS)

    # --- orders ---------------------------------------------------------------------------

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        """Send each order as an OrderRequest, one after another. An order the supplier
        refuses (cXML 4xx) or that cannot be written as cXML is a reject with the reason; a
        refusal of the credentials (401) fails the run, as does an unreachable supplier."""
        if stream != "purchase_orders":
            raise sdk.ConnectorConfigError(
                f"stream {stream!r} cannot be written; cxml writes purchase_orders"
            )
        bill_to = self.address(self.config.bill_to, "bill_to")
        if bill_to is None:
            raise sdk.ConnectorConfigError(
                "options.bill_to must name an address in options.addresses: cXML orders "
                "require a BillTo"
            )
        written, rejects = 0, []
        for record in batch.records:
            reason = await self.send_order(record, member, bill_to)
            if reason is None:
                written += 1
            else:
                rejects.append(
                    sdk.Reject(
                        position=f"order {record.po_id}",
                        reason=reason,
                        raw=msgspec.to_builtins(record),
                    )
                )
        return sdk.WriteResult(written=written, rejects=rejects)

    def address(self, code: str | None, what: str) -> Address | None:
        """The address with `code` (None for None); a code naming none is a config error."""
        if code is None:
            return None
        if code not in self.config.addresses:
            raise sdk.ConnectorConfigError(
                f"options.{what} {code!r} names no address in options.addresses"
            )
        return self.config.addresses[code]

    def order_payloads(self, order: PurchaseOrder) -> tuple[str, str, str | None]:
        """The order's type, payloadID and referenced payloadID. The first request for an
        order (type new) has a payloadID of the order alone, so every resend of it, whatever
        changed meanwhile, is recognized; a change or cancellation has one of the order's
        version (`updated_at`) and references the first."""
        order_type = ORDER_TYPES[order.status]
        first = documents.payload_id(self.context.connection, self.host, order.po_id)
        if order_type == "new":
            return order_type, first, None
        version = order.updated_at.isoformat()
        return (
            order_type,
            documents.payload_id(
                self.context.connection, self.host, order.po_id, order_type, version
            ),
            first,
        )

    async def send_order(
        self, order: PurchaseOrder, member: str | None, bill_to: Address
    ) -> str | None:
        """Send one order; None when the supplier took it, else why it was not sent or taken."""
        if order.vendor_id != self.vendor_id:
            return (
                f"order {order.po_id} is for vendor {order.vendor_id!r}; this connection's "
                f"supplier is {self.vendor_id!r}"
            )
        if not order.lines:
            return f"order {order.po_id} has no lines; cXML orders need at least one ItemOut"
        unnamed = [line.line_number for line in order.lines if not line.supplier_part_id]
        if unnamed:
            return (
                f"order {order.po_id}: line {', '.join(map(str, unnamed))} has no "
                "supplier_part_id (cXML SupplierPartID)"
            )
        if order.ship_to is not None and order.ship_to not in self.config.addresses:
            return (
                f"order {order.po_id} ships to {order.ship_to!r}, no address in options.addresses"
            )
        ship_to = self.config.addresses.get(order.ship_to or member or "") or self.address(
            self.config.ship_to, "ship_to"
        )
        order_type, payload, reference = self.order_payloads(order)
        document = documents.order_request(
            order,
            self.parties(),
            self.terms,
            payload=payload,
            order_type=order_type,
            reference=reference,
            ship_to=ship_to,
            bill_to=bill_to,
        )
        answer = await self.exchange(self.config.order_url, document, f"OrderRequest {order.po_id}")
        status = answer.status
        if 200 <= status.code < 300:
            return None
        if status.code == 401:
            raise sdk.AuthError(
                f"{self.refused(status, 'the credentials')} for OrderRequest {order.po_id}"
            )
        if 400 <= status.code < 500:
            return self.refused(status, f"order {order.po_id}")
        raise sdk.ConnectorError(
            f"the supplier answered OrderRequest {order.po_id} with {status.describe()[:200]}, "
            "neither taken nor refused"
        )

    # --- PunchOut -------------------------------------------------------------------------

    def seal_cookie(self, buyer_cookie: str, user: str) -> str:
        """The BuyerCookie sent: the console's cookie and the user, with a MAC under a key
        derived from the shared secret, so a cart posted back names a session this hub began
        (the cart travels through the browser without the shared secret)."""
        body = base64.urlsafe_b64encode(json.dumps([buyer_cookie, user]).encode()).decode()
        return f"{body}.{self._cookie_mac(body)}"

    def open_cookie(self, sealed: str) -> tuple[str, str]:
        """The console's cookie and the user of a sealed BuyerCookie; Refusal 401 if forged."""
        body, _, mac = sealed.strip().rpartition(".")
        if not body or not hmac.compare_digest(mac.encode(), self._cookie_mac(body).encode()):
            raise Refusal(401, "the BuyerCookie is not one this hub issued")
        try:
            cookie, user = json.loads(base64.urlsafe_b64decode(body))
        except (ValueError, TypeError, binascii.Error):
            raise Refusal(401, "the BuyerCookie is not one this hub issued") from None
        return str(cookie), str(user)

    def _cookie_mac(self, body: str) -> str:
        key = hashlib.sha256(b"cohub cxml BuyerCookie\0" + self.shared_secret.encode()).digest()
        message = f"{self.context.connection}\0{body}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]

    async def punchout_setup(
        self, buyer_cookie: str, return_url: str, user: str, email: str | None = None
    ) -> str:
        """Open a PunchOut session for `user` at the supplier's store; the URL of its start
        page, where the console sends the user's browser.

        `buyer_cookie` is the console's name for the session: the cart comes back as a
        requisition with it as requisition_id. `return_url` is where the store posts the
        cart, the hub's inbound URL for this connection (``https://hub/inbound/<connection>``).
        """
        punchout = self.config.punchout_url
        if punchout is None:
            raise sdk.ConnectorConfigError("options.punchout_url is not set: no PunchOut")
        target = URL(return_url)
        if not (target.absolute and target.scheme in ("http", "https")):
            raise sdk.ConnectorConfigError(f"return_url {return_url!r} is not an http(s) URL")
        if not buyer_cookie.strip() or not user.strip():
            raise sdk.ConnectorConfigError("a PunchOut session needs a buyer cookie and a user")
        extrinsics = [("User", user)] + ([("UserEmail", email)] if email else [])
        document = documents.punchout_setup_request(
            self.parties(),
            f"{uuid.uuid4().hex}@{self.host}",
            deployment_mode=self.config.deployment_mode,
            buyer_cookie=self.seal_cookie(buyer_cookie, user),
            return_url=return_url,
            supplier_url=punchout,
            extrinsics=extrinsics,
        )
        answer = await self.exchange(punchout, document, "PunchOutSetupRequest")
        if answer.status.code == 401:
            raise sdk.AuthError(self.refused(answer.status, "the credentials"))
        if not 200 <= answer.status.code < 300:
            raise sdk.ConnectorError(self.refused(answer.status, "the PunchOutSetupRequest"))
        start = answer.response.findtext("PunchOutSetupResponse/StartPage/URL", "").strip()
        page = URL(start)
        if not (page.absolute and page.scheme in ("http", "https")):
            raise sdk.ConnectorError(
                "the supplier's PunchOutSetupResponse has no StartPage URL to send the user to"
            )
        return start

    # --- documents the supplier pushes ----------------------------------------------------

    async def receive(self, request: sdk.Inbound) -> sdk.Received:
        """Read, authenticate and answer one pushed document. Always answers with a cXML
        ``Response``: 200 with the raw record for its stream; 400 for a document that is not
        readable or lacks a required part (named); 401 for wrong credentials; 406 for a kind
        of document this connector does not take. Nothing raised, nothing echoed back."""
        try:
            stream, raw = self.read_document(request)
        except Refusal as refusal:
            return self.answer(refusal.code, self.scrub(refusal.detail))
        except sdk.BadRecord as error:
            return self.answer(400, self.scrub(error.reason))
        reply = self.answer(200)
        return sdk.Received(
            stream=stream,
            raws=[raw],
            status=200,
            reply=reply.reply,
            reply_type=reply.reply_type,
        )

    def answer(self, code: int, detail: str = "") -> sdk.Received:
        """A cXML Response with `code` as the HTTP status too (cXML over HTTP answers both)."""
        payload = f"{uuid.uuid4().hex}@{self.host}"
        return sdk.Received(
            status=code,
            reply=documents.response(code, payload, self.config.language, detail),
            reply_type="text/xml; charset=UTF-8",
        )

    def document_bytes(self, request: sdk.Inbound) -> bytes:
        """The cXML document of a request: its body, or for a browser's form post the
        ``cxml-urlencoded`` or ``cxml-base64`` field (PunchOut carts)."""
        limit = self.config.max_document_bytes
        if len(request.body) > limit:
            raise sdk.BadRecord(f"the request is {len(request.body):,} bytes, over {limit:,}")
        media = (request.content_type or request.headers.get("content-type", "")).lower()
        if not media.startswith(FORM):
            return request.body
        try:
            fields = parse_qs(request.body, max_num_fields=FORM_FIELDS)
        except ValueError:
            raise sdk.BadRecord("the form has too many fields for a PunchOut cart") from None
        named = {key.decode("latin-1").lower(): values[0] for key, values in fields.items()}
        if "cxml-urlencoded" in named:
            return named["cxml-urlencoded"]
        if "cxml-base64" in named:
            try:
                return base64.b64decode(b"".join(named["cxml-base64"].split()), validate=True)
            except (binascii.Error, ValueError):
                raise sdk.BadRecord("the cxml-base64 field is not base64") from None
        raise sdk.BadRecord("the form has no cxml-urlencoded or cxml-base64 field")

    def read_document(self, request: sdk.Inbound) -> tuple[str, dict[str, Any]]:
        """The stream and raw of a pushed document, or Refusal / BadRecord saying why not."""
        root = sdk.xml.parse(self.document_bytes(request), max_bytes=self.config.max_document_bytes)
        if root.tag != "cXML":
            raise sdk.BadRecord(f"the document is <{root.tag[:40]}>, not <cXML>")
        wrapper = root.find("Request")
        wrapper = wrapper if wrapper is not None else root.find("Message")
        body = next(iter(wrapper), None) if wrapper is not None else None
        if body is None:
            raise sdk.BadRecord("the cXML document holds no Request or Message")
        # Who sent it is settled first: only the supplier learns what the hub does not take.
        self.authenticate(root, secret_required=body.tag != "PunchOutOrderMessage")
        if body.tag not in inbound.STREAM_OF:
            raise Refusal(
                406,
                f"{body.tag[:60]} is not taken here; this connection takes "
                + ", ".join(inbound.STREAM_OF),
            )
        common: dict[str, Any] = {
            "document": body.tag,
            "payload_id": root.get("payloadID"),
            "timestamp": root.get("timestamp"),
            "vendor_id": self.vendor_id,
        }
        for name in ("payload_id", "timestamp"):
            if not common[name]:
                raise inbound.Missing(f"cXML has no {name.replace('_id', 'ID')} attribute")
        if body.tag == "PunchOutOrderMessage":
            cookie = body.findtext("BuyerCookie")
            if not cookie:
                raise Refusal(401, "the PunchOutOrderMessage has no BuyerCookie")
            common["buyer_cookie"], common["user"] = self.open_cookie(cookie)
        return inbound.STREAM_OF[body.tag], inbound.EXTRACT[body.tag](body, common)

    def authenticate(self, root: Element, *, secret_required: bool) -> None:
        """The document is from this connection's supplier (``From``) and, for a request, its
        ``Sender`` proves it with the shared secret (compared in constant time)."""
        header = root.find("Header")
        if header is None:
            raise Refusal(401, "the document has no Header to authenticate")
        supplier = self.config.supplier
        if not any(
            (credential.get("domain") or "").lower() == supplier.domain.lower()
            and (credential.findtext("Identity") or "").strip() == supplier.identity
            for credential in header.findall("From/Credential")
        ):
            raise Refusal(401, "the From credential is not this connection's supplier")
        if not secret_required:
            return
        given = (header.findtext("Sender/Credential/SharedSecret") or "").strip()
        if not hmac.compare_digest(given.encode(), self.shared_secret.encode()):
            raise Refusal(401, "the Sender credential's SharedSecret is not the agreed one")

    def map_raw(self, stream: str, raw: dict[str, Any]) -> sdk.Record:
        """A received document's raw as its canonical record, or BadRecord naming the value."""
        if stream not in inbound.MAPPINGS:
            raise sdk.BadRecord(f"stream {stream!r} carries no documents from the supplier")
        record, fields = inbound.MAPPINGS[stream]
        if inbound.STREAM_OF.get(raw.get("document", "")) != stream:
            raise sdk.BadRecord(
                f"a {str(raw.get('document'))[:40]} document does not belong in {stream}"
            )
        try:
            mapped = fields(raw, inbound.Values(self.config.currency))
            return msgspec.convert(mapped, sdk.record_type(record), strict=False)
        except msgspec.ValidationError as error:
            raise sdk.BadRecord(str(error)) from None
        except (AttributeError, TypeError, KeyError):
            raise sdk.BadRecord(f"the raw is not a {raw.get('document')} as read") from None

    async def close(self) -> None:
        self._clients.clear()
