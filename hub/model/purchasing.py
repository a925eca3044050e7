"""Purchasing records: vendors, requisitions, purchase orders, cooperative contracts, order
acknowledgements, ship notices, invoices.

Orders and invoices follow the segments of ANSI X12 850 (purchase order) and 810 (invoice) and the
elements of cXML ``OrderRequest`` and ``InvoiceDetailRequest``, so a supplier that speaks either
maps field for field: an order line is an X12 ``PO1`` / cXML ``ItemOut``, an invoice line an X12
``IT1`` / cXML ``InvoiceDetailItem``. Every reference to a supplier is the `vendor_id` of its
`Vendor` record.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, ClassVar

import msgspec

from hub.model.accounting import AccountCode
from hub.model.base import Money, Pii, Record

RequisitionStatus = Annotated[
    str, msgspec.Meta(pattern="^(draft|submitted|approved|rejected|ordered|canceled)$")
]
OrderStatus = Annotated[
    str, msgspec.Meta(pattern="^(open|sent|acknowledged|received|closed|canceled)$")
]
InvoiceStatus = Annotated[str, msgspec.Meta(pattern="^(received|approved|disputed|paid|void)$")]

#: A rate as a decimal fraction: 0.02 is 2 percent.
Rate = Annotated[Decimal, msgspec.Meta(description="decimal fraction, 0.02 is 2 percent")]


class PurchaseOrderLine(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One line of a requisition or purchase order, an X12 850 ``PO1`` segment / cXML ``ItemOut``.

    `quantity` (``PO102``) is in `unit_of_measure` (``PO103``, an X12 unit code such as ``EA``);
    `unit_price` is ``PO104``; `supplier_part_id` is the vendor's part number (``PO107`` with
    qualifier ``VP``, cXML ``SupplierPartID``). `amount` is the extended line amount as the
    source wrote it. `contract_id` names the cooperative contract the line is bought under
    (cXML ``MasterAgreementIDInfo``).
    """

    line_number: int
    description: str
    supplier_part_id: str | None = None
    quantity: Decimal
    unit_of_measure: str = "EA"
    unit_price: Money
    amount: Money
    account_code: str | None = None
    contract_id: str | None = None


class InvoiceLine(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One line of an invoice, an X12 810 ``IT1`` segment / cXML ``InvoiceDetailItem``.

    `po_line_number` is the order line it bills; `quantity` is the quantity invoiced.
    """

    line_number: int
    po_line_number: int | None = None
    description: str | None = None
    supplier_part_id: str | None = None
    quantity: Decimal
    unit_of_measure: str = "EA"
    unit_price: Money
    amount: Money


class Vendor(Record, frozen=True, kw_only=True):
    """One supplier in the district's vendor file, an X12 ``N1`` party / cXML ``Supplier``.

    `tax_id` is the taxpayer ID for 1099 reporting; a sole proprietor's is an SSN, so it is PII,
    as is the remittance bank account. `uei` is the SAM.gov Unique Entity ID.
    """

    record_name: ClassVar[str] = "purchasing.vendor"
    key_fields: ClassVar[tuple[str, ...]] = ("vendor_id",)

    vendor_id: str
    name: str
    active: bool = True
    remit_address: str | None = None
    email: str | None = None
    phone: str | None = None
    uei: str | None = None
    tax_id: Annotated[str, Pii] | None = None
    bank_account: Annotated[str, Pii] | None = None


class Requisition(Record, frozen=True, kw_only=True):
    """One internal request to buy, before it becomes a purchase order.

    Lines have the shape of purchase order lines (X12 850 ``PO1``) since an approved requisition
    is converted line for line; `po_id` is set once it is.
    """

    record_name: ClassVar[str] = "purchasing.requisition"
    key_fields: ClassVar[tuple[str, ...]] = ("requisition_id",)

    requisition_id: str
    requested_by: str
    requested_on: date
    status: RequisitionStatus = "submitted"
    location: str | None = None
    description: str | None = None
    vendor_id: str | None = None
    lines: list[PurchaseOrderLine] = msgspec.field(default_factory=list)
    total_amount: Money | None = None
    account: AccountCode | None = None
    po_id: str | None = None


class PurchaseOrder(Record, frozen=True, kw_only=True):
    """One purchase order to one vendor, an X12 850 / cXML ``OrderRequest``.

    `po_id` and `order_date` are ``BEG03`` and ``BEG05`` (cXML ``orderID``, ``orderDate``);
    `lines` are the ``PO1`` loops and `total_amount` the order total (cXML ``Total``).
    """

    record_name: ClassVar[str] = "purchasing.purchase_order"
    key_fields: ClassVar[tuple[str, ...]] = ("po_id",)

    po_id: str
    vendor_id: str
    order_date: date
    status: OrderStatus = "open"
    requisition_id: str | None = None
    buyer: str | None = None
    ship_to: str | None = None
    lines: list[PurchaseOrderLine] = msgspec.field(default_factory=list)
    total_amount: Money
    account: AccountCode | None = None


AcknowledgementStatus = Annotated[str, msgspec.Meta(pattern="^(accepted|changed|rejected)$")]
LineAcknowledgement = Annotated[
    str, msgspec.Meta(pattern="^(accepted|changed|backordered|rejected)$")
]


class ContractPrice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One item of a contract's price list: what members pay the awarded supplier for it."""

    supplier_part_id: str
    description: str | None = None
    unit_of_measure: str = "EA"
    unit_price: Money


class Contract(Record, frozen=True, kw_only=True):
    """One cooperative purchasing contract that members may buy under without their own bid.

    `lead_agency` awarded it (a BOCES, an ESA, a national cooperative); `admin_fee_rate` is the
    fee the cooperative earns on spend under it, as a decimal fraction (0.02 is 2 percent).
    Order lines name it by `contract_id` (cXML ``MasterAgreementIDInfo``).
    """

    record_name: ClassVar[str] = "purchasing.contract"
    key_fields: ClassVar[tuple[str, ...]] = ("contract_id",)

    contract_id: str
    vendor_id: str
    title: str
    category: str | None = None
    lead_agency: str | None = None
    starts_on: date
    ends_on: date | None = None
    admin_fee_rate: Rate | None = None
    #: The awarded prices; a line under the contract must cite one of these parts at its price.
    prices: list[ContractPrice] = msgspec.field(default_factory=list)


class AcknowledgementLine(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The supplier's answer for one order line, an X12 855 ``ACK`` / cXML ``ConfirmationItem``."""

    po_line_number: int
    status: LineAcknowledgement = "accepted"
    quantity: Decimal | None = None
    unit_price: Money | None = None
    ships_on: date | None = None
    note: str | None = None


class OrderAcknowledgement(Record, frozen=True, kw_only=True):
    """A supplier's acknowledgement of a purchase order, an X12 855 / cXML
    ``ConfirmationRequest``: accepted as ordered, accepted with changes, or rejected
    (``BAK02`` AC, AD/AE, RJ; cXML ``accept``, ``detail``, ``reject``)."""

    record_name: ClassVar[str] = "purchasing.order_acknowledgement"
    key_fields: ClassVar[tuple[str, ...]] = ("vendor_id", "acknowledgement_id")

    acknowledgement_id: str
    po_id: str
    vendor_id: str
    acknowledged_on: date
    status: AcknowledgementStatus = "accepted"
    lines: list[AcknowledgementLine] = msgspec.field(default_factory=list)
    note: str | None = None


class ShipNoticeLine(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One shipped item, an X12 856 item-level ``LIN``/``SN1`` / cXML ``ShipNoticeItem``."""

    po_line_number: int
    supplier_part_id: str | None = None
    quantity: Decimal
    unit_of_measure: str = "EA"


class ShipNotice(Record, frozen=True, kw_only=True):
    """An advance ship notice, an X12 856 / cXML ``ShipNoticeRequest``: what left the
    supplier's dock for which order, how, and when it should arrive."""

    record_name: ClassVar[str] = "purchasing.ship_notice"
    key_fields: ClassVar[tuple[str, ...]] = ("vendor_id", "shipment_id")

    shipment_id: str
    po_id: str
    vendor_id: str
    shipped_on: date
    expected_on: date | None = None
    carrier: str | None = None
    tracking_number: str | None = None
    lines: list[ShipNoticeLine] = msgspec.field(default_factory=list)


class Invoice(Record, frozen=True, kw_only=True):
    """One vendor invoice, an X12 810 / cXML ``InvoiceDetailRequest``.

    `invoice_date`, `invoice_id` and `po_id` are ``BIG01``, ``BIG02`` and ``BIG04``; `lines` are
    the ``IT1`` loops; `total_amount` is the amount due including tax (``TDS01``), `tax_amount`
    the tax in it (``TXI02``). Invoice numbers are unique per vendor only, so the key has both.
    """

    record_name: ClassVar[str] = "purchasing.invoice"
    key_fields: ClassVar[tuple[str, ...]] = ("vendor_id", "invoice_id")

    invoice_id: str
    vendor_id: str
    po_id: str | None = None
    invoice_date: date
    due_date: date | None = None
    status: InvoiceStatus = "received"
    lines: list[InvoiceLine] = msgspec.field(default_factory=list)
    total_amount: Money
    tax_amount: Money | None = None
