"""What a cXML connection says about the supplier: where it answers, who each side is, the
addresses orders ship and bill to. The shared secret is the ``shared_secret`` secret, never an
option."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from hub.sdk.http import ApiOptions


class Credential(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A cXML ``Credential``: an identity in a domain (``NetworkID``, ``DUNS``, a name the
    supplier gave the cooperative)."""

    domain: str
    identity: str


class Address(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A cXML ``Address`` with its ``PostalAddress``, for ``ShipTo`` and ``BillTo``."""

    address_id: str | None = None
    name: str
    deliver_to: list[str] = []
    street: list[str]
    city: str
    state: str
    postal_code: str
    country: Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}$")] = "US"
    email: str | None = None


class CxmlOptions(ApiOptions, kw_only=True):
    """One supplier reached over cXML, and the cooperative's identities toward it."""

    order_url: Annotated[
        str, msgspec.Meta(description="the supplier's cXML endpoint for OrderRequest")
    ]
    profile_url: Annotated[
        str | None, msgspec.Meta(description="where ProfileRequest goes (default order_url)")
    ] = None
    punchout_url: Annotated[
        str | None,
        msgspec.Meta(description="the supplier's PunchOutSetupRequest endpoint, if it has one"),
    ] = None
    buyer: Annotated[Credential, msgspec.Meta(description="the cooperative: From in what it sends")]
    supplier: Annotated[
        Credential,
        msgspec.Meta(description="the supplier: To in what the hub sends, From in what it sends"),
    ]
    sender: Annotated[
        Credential | None,
        msgspec.Meta(description="Sender in what the hub sends (default: buyer)"),
    ] = None
    vendor_id: Annotated[
        str | None,
        msgspec.Meta(
            description="vendor_id of the supplier in records (default supplier.identity)"
        ),
    ] = None
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] = "USD"
    addresses: Annotated[
        dict[str, Address], msgspec.Meta(description="addresses by code, for ShipTo and BillTo")
    ] = {}
    ship_to: Annotated[
        str | None,
        msgspec.Meta(
            description="address code an order ships to when neither it nor its member names one"
        ),
    ] = None
    bill_to: Annotated[
        str | None, msgspec.Meta(description="address code orders are billed to (required to send)")
    ] = None
    deployment_mode: Literal["production", "test"] = "production"
    language: str = "en-US"
    timezone: Annotated[
        str, msgspec.Meta(description="IANA zone of order dates, sent as midnight there")
    ] = "America/New_York"
    classification_domain: str = "UNSPSC"
    classification: Annotated[
        str, msgspec.Meta(description="Classification sent on lines (the DTD requires one)")
    ] = ""
    user_agent: str = "Cohub"
    payload_host: Annotated[
        str | None,
        msgspec.Meta(description="the @host part of payloadIDs (default <connection>.cohub)"),
    ] = None
    max_document_bytes: Annotated[int, msgspec.Meta(ge=1024, le=50 * 1024 * 1024)] = 5 * 1024 * 1024
