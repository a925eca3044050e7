"""The four documents, between X12 004010 segments and canonical purchasing records.

| set | record | group |
|---|---|---|
| 850 purchase order | purchasing.purchase_order | PO |
| 855 order acknowledgement | purchasing.order_acknowledgement | PR |
| 856 ship notice | purchasing.ship_notice | SH |
| 810 invoice | purchasing.invoice | IN |

Each direction is one function per set: `build_*` makes a set's body (without ST/SE, which the
envelope adds) from a record, `parse_*` makes the record's fields from a set's segments. A
segment that cannot be read raises `SegmentError`, which names the segment, its position in the
set and the element, so the 997 can say exactly where (AK3/AK4) and the dead letter why.
docs/connectors/x12.md has the mapping tables.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.x12.envelope import Segment, Separators
from hub import sdk
from hub.model.purchasing import Invoice, OrderAcknowledgement, PurchaseOrder, ShipNotice

CENT = Decimal("0.01")


class SegmentError(sdk.BadRecord):
    """A set's segment that cannot be read: where (segment id and its 1-based position in the
    set, ST being 1), which element, and the 997 codes (AK304, AK403) for it."""

    def __init__(
        self,
        segment: str,
        position: int,
        reason: str,
        *,
        element: int | None = None,
        value: str = "",
        segment_code: str = "8",
        element_code: str = "7",
    ) -> None:
        where = f"{segment}{element:02d}" if element else segment
        super().__init__(f"{where} (segment {position} of the set): {reason}")
        self.segment = segment
        self.segment_position = position
        self.element = element
        self.value = value
        self.segment_code = segment_code
        self.element_code = element_code


class SetReader:
    """A set's segments with the helpers every parser needs: typed elements that raise a
    `SegmentError` naming where they are."""

    def __init__(self, segments: list[Segment]) -> None:
        self.segments = segments

    def each(self) -> list[tuple[int, Segment]]:
        """(position in the set, segment) of the body: ST and SE left out."""
        return list(enumerate(self.segments, start=1))[1:-1]

    def first(self, sid: str, *, required: bool = True) -> tuple[int, Segment] | None:
        for position, segment in self.each():
            if segment[0] == sid:
                return position, segment
        if required:
            raise SegmentError(sid, 0, "mandatory segment missing", segment_code="3")
        return None

    @staticmethod
    def text(pos: int, seg: Segment, index: int, *, required: bool = False) -> str | None:
        value = seg[index].strip() if index < len(seg) else ""
        if not value:
            if required:
                raise SegmentError(
                    seg[0], pos, "mandatory element missing", element=index, element_code="1"
                )
            return None
        return value

    def decimal(self, pos: int, seg: Segment, index: int, *, required: bool = False) -> Decimal:
        value = self.text(pos, seg, index, required=required)
        if value is None:
            return Decimal(0)
        try:
            number = Decimal(value)
        except InvalidOperation:
            number = Decimal("NaN")
        if not number.is_finite() or len(value) > 20:
            raise SegmentError(
                seg[0],
                pos,
                f"{value!r} is not a number",
                element=index,
                value=value,
                element_code="6",
            )
        return number

    def integer(self, pos: int, seg: Segment, index: int) -> int:
        value = self.text(pos, seg, index, required=True)
        assert value is not None
        if not value.isdigit() or len(value) > 9:
            raise SegmentError(
                seg[0], pos, f"{value!r} is not a line number", element=index, value=value
            )
        return int(value)

    def date(self, pos: int, seg: Segment, index: int, *, required: bool = False) -> date | None:
        value = self.text(pos, seg, index, required=required)
        if value is None:
            return None
        try:
            if len(value) != 8:
                raise ValueError
            return datetime.strptime(value, "%Y%m%d").date()
        except ValueError:
            raise SegmentError(
                seg[0],
                pos,
                f"{value!r} is not a date CCYYMMDD",
                element=index,
                value=value,
                element_code="8",
            ) from None


#: (segment, element) → (min, max) length of the 004010 elements the builders fill with
#: record values; codes and dates are ours and always fit.
LENGTHS = {
    ("BEG", 3): (1, 22),
    ("REF", 2): (1, 30),
    ("PER", 2): (1, 60),
    ("N1", 2): (1, 60),
    ("PO1", 1): (1, 20),
    ("PO1", 2): (1, 15),
    ("PO1", 3): (2, 2),
    ("PO1", 4): (1, 17),
    ("PO1", 7): (1, 48),
    ("PID", 5): (1, 80),
    ("BAK", 3): (1, 22),
    ("BAK", 8): (1, 30),
    ("ACK", 2): (1, 15),
    ("BSN", 2): (2, 30),
    ("TD5", 3): (2, 80),
    ("PRF", 1): (1, 22),
    ("LIN", 5): (1, 48),
    ("SN1", 2): (1, 10),
    ("SN1", 3): (2, 2),
    ("BIG", 2): (1, 22),
    ("BIG", 4): (1, 22),
    ("IT1", 1): (1, 20),
    ("IT1", 2): (1, 10),
    ("IT1", 3): (2, 2),
    ("IT1", 4): (1, 17),
    ("IT1", 7): (1, 48),
    ("TDS", 1): (1, 15),
    ("TXI", 2): (1, 18),
    ("CUR", 2): (3, 3),
}
#: Elements of type R (numbers), whose length counts digits only.
NUMERIC = {("PO1", 2), ("PO1", 4), ("ACK", 2), ("SN1", 2), ("IT1", 2), ("IT1", 4), ("TXI", 2)}


def check_lengths(body: list[Segment], separators: Separators) -> None:
    """ValueError naming the first element a partner's translator would refuse: too long or
    short for 004010, or holding one of the separators."""
    used = (separators.element, separators.component, separators.segment)
    for segment in body:
        for index, value in enumerate(segment[1:], start=1):
            if any(char in value for char in used):
                raise ValueError(
                    f"{segment[0]}{index:02d} {value!r} holds an X12 separator ({''.join(used)})"
                )
            if not value or (segment[0], index) not in LENGTHS:
                continue
            low, high = LENGTHS[segment[0], index]
            size = (
                len(value.replace("-", "").replace(".", ""))
                if ((segment[0], index) in NUMERIC)
                else len(value)
            )
            if not low <= size <= high:
                raise ValueError(
                    f"{segment[0]}{index:02d} {value!r} is {size} characters; X12 004010 "
                    f"allows {low} to {high}"
                )


def number_text(value: Decimal) -> str:
    """A decimal as X12 writes an R element: no exponent, no trailing zeros after the point."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _date(value: date) -> str:
    return value.strftime("%Y%m%d")


def _check_amount(line_number: int, quantity: Decimal, price: Decimal, amount: Decimal) -> None:
    """X12 lines carry no extended amount: it is quantity times unit price, so a line whose amount
    is something else would change on the way; refuse it rather than alter it."""
    if (quantity * price).quantize(CENT) != amount.quantize(CENT):
        raise ValueError(
            f"line {line_number}: amount {amount} is not quantity {quantity} times unit price "
            f"{price}, and an X12 line carries no amount of its own"
        )


def _part_ids(seg: Segment, start: int) -> dict[str, str]:
    """Qualifier → id of a PO1/IT1/LIN segment's product id pairs from `start`."""
    pairs: dict[str, str] = {}
    for index in range(start, len(seg) - 1, 2):
        if seg[index].strip() and seg[index + 1].strip():
            pairs.setdefault(seg[index].strip(), seg[index + 1].strip())
    return pairs


def _description(reader: SetReader, items: list[tuple[int, Segment]], start: int) -> str | None:
    """PID05 of the first PID after position `start` in the same line loop."""
    for pos, seg in items:
        if pos <= start:
            continue
        if seg[0] in ("PO1", "IT1", "CTT", "ACK", "TDS"):
            return None
        if seg[0] == "PID":
            return reader.text(pos, seg, 5)
    return None


# --- 850 purchase order ----------------------------------------------------------------------


def build_850(order: PurchaseOrder, *, currency: str, bill_to: str | None) -> list[Segment]:
    """The body of an 850 for `order`; ValueError if the order cannot be said in X12."""
    if not order.lines:
        raise ValueError("an 850 needs at least one line (PO1)")
    body: list[Segment] = [["BEG", "00", "NE", order.po_id, "", _date(order.order_date)]]
    body.append(["CUR", "BY", currency])
    contracts = {line.contract_id for line in order.lines}
    shared = contracts.pop() if len(contracts) == 1 else None
    if shared:
        body.append(["REF", "CT", shared])
    if order.requisition_id:
        body.append(["REF", "RQ", order.requisition_id])
    if order.buyer:
        body.append(["PER", "BD", order.buyer])
    if bill_to:
        body.append(["N1", "BT", bill_to])
    if order.ship_to:
        body.append(["N1", "ST", order.ship_to])
    hash_total = Decimal(0)
    for line in order.lines:
        _check_amount(line.line_number, line.quantity, line.unit_price, line.amount)
        po1 = [
            "PO1",
            str(line.line_number),
            number_text(line.quantity),
            line.unit_of_measure,
            number_text(line.unit_price),
            "",
        ]
        if line.supplier_part_id:
            po1 += ["VP", line.supplier_part_id]
        body.append(po1)
        if line.description:
            body.append(["PID", "F", "", "", "", line.description])
        if line.contract_id and not shared:
            body.append(["REF", "CT", line.contract_id])
        hash_total += line.quantity
    ctt = ["CTT", str(len(order.lines))]
    if len(number_text(hash_total).replace(".", "").replace("-", "")) <= 10:
        ctt.append(number_text(hash_total))
    body.append(ctt)
    body.append(["AMT", "TT", number_text(order.total_amount)])
    return body


def parse_850(segments: list[Segment]) -> dict[str, Any]:
    """The purchase order fields of an 850 (vendor and updated_at come from the envelope)."""
    reader = SetReader(segments)
    pos, beg = reader.first("BEG")  # type: ignore[misc]
    fields: dict[str, Any] = {
        "po_id": reader.text(pos, beg, 3, required=True),
        "order_date": reader.date(pos, beg, 5, required=True),
    }
    items = reader.each()
    header_contract = None
    lines: list[dict[str, Any]] = []
    total = None
    in_lines = False
    for pos, seg in items:
        sid = seg[0]
        if sid == "REF" and reader.text(pos, seg, 1) == "CT":
            if in_lines and lines:
                lines[-1]["contract_id"] = reader.text(pos, seg, 2, required=True)
            else:
                header_contract = reader.text(pos, seg, 2, required=True)
        elif sid == "REF" and reader.text(pos, seg, 1) == "RQ" and not in_lines:
            fields["requisition_id"] = reader.text(pos, seg, 2)
        elif sid == "PER" and reader.text(pos, seg, 1) == "BD":
            fields["buyer"] = reader.text(pos, seg, 2)
        elif sid == "N1" and reader.text(pos, seg, 1) == "ST":
            fields["ship_to"] = reader.text(pos, seg, 2) or reader.text(pos, seg, 4)
        elif sid == "N1" and reader.text(pos, seg, 1) == "BY" and "buyer" not in fields:
            fields["buyer"] = reader.text(pos, seg, 2)
        elif sid == "PO1":
            in_lines = True
            quantity = reader.decimal(pos, seg, 2, required=True)
            price = reader.decimal(pos, seg, 4, required=True)
            parts = _part_ids(seg, 6)
            lines.append(
                {
                    "line_number": reader.integer(pos, seg, 1),
                    "description": _description(reader, items, pos) or "",
                    "supplier_part_id": parts.get("VP"),
                    "quantity": quantity,
                    "unit_of_measure": reader.text(pos, seg, 3) or "EA",
                    "unit_price": price,
                    "amount": (quantity * price).quantize(CENT),
                }
            )
        elif sid == "AMT" and reader.text(pos, seg, 1) == "TT":
            total = reader.decimal(pos, seg, 2, required=True)
    if not lines:
        raise SegmentError("PO1", 0, "an 850 needs at least one PO1 line", segment_code="3")
    _check_ctt(reader, len(lines))
    for line in lines:
        line.setdefault("contract_id", header_contract)
    fields["lines"] = lines
    fields["total_amount"] = total if total is not None else sum(line["amount"] for line in lines)
    return fields


def _check_ctt(reader: SetReader, count: int) -> None:
    """CTT01, when present, must count the line items read."""
    found = reader.first("CTT", required=False)
    if found is None:
        return
    pos, ctt = found
    stated = reader.text(pos, ctt, 1)
    if stated != str(count):
        raise SegmentError(
            "CTT",
            pos,
            f"says {stated} line items, the set has {count}",
            element=1,
            value=stated or "",
        )


# --- 855 order acknowledgement ---------------------------------------------------------------

#: BAK02 (acknowledgment type) → the acknowledgement's status, and the code written for each.
BAK_STATUS = {
    "AD": "accepted",
    "AK": "accepted",
    "AT": "accepted",
    "AC": "changed",
    "AE": "changed",
    "RD": "rejected",
    "RF": "rejected",
    "RJ": "rejected",
    "RN": "rejected",
    "RO": "rejected",
    "RV": "rejected",
}
BAK_CODE = {"accepted": "AD", "changed": "AC", "rejected": "RD"}
#: ACK01 (line item status) → the line's status, and the code written for each.
ACK_STATUS = {
    "IA": "accepted",
    "IB": "backordered",
    "IR": "rejected",
    "R1": "rejected",
    "R2": "rejected",
    "R3": "rejected",
    "R4": "rejected",
    "R5": "rejected",
    "IC": "changed",
    "IQ": "changed",
    "IP": "changed",
    "DR": "changed",
    "IS": "changed",
}
ACK_CODE = {"accepted": "IA", "changed": "IC", "backordered": "IB", "rejected": "IR"}


def build_855(ack: OrderAcknowledgement) -> list[Segment]:
    """The body of an 855 for `ack`. BAK04 is the acknowledgement date (the record has no
    order date), BAK08 the acknowledgement id."""
    day = _date(ack.acknowledged_on)
    body: list[Segment] = [
        ["BAK", "00", BAK_CODE[ack.status], ack.po_id, day, "", "", "", ack.acknowledgement_id, day]
    ]
    for line in ack.lines:
        po1 = ["PO1", str(line.po_line_number)]
        if line.unit_price is not None:
            po1 += ["", "", number_text(line.unit_price)]
        body.append(po1)
        quantity = number_text(line.quantity) if line.quantity is not None else ""
        segment = ["ACK", ACK_CODE[line.status], quantity, "EA" if quantity else ""]
        if line.ships_on:
            segment += ["068", _date(line.ships_on)]
        body.append(segment)
    body.append(["CTT", str(len(ack.lines))])
    return body


def parse_855(segments: list[Segment]) -> dict[str, Any]:
    reader = SetReader(segments)
    pos, bak = reader.first("BAK")  # type: ignore[misc]
    code = reader.text(pos, bak, 2, required=True)
    if code not in BAK_STATUS:
        raise SegmentError("BAK", pos, f"unknown acknowledgment type {code!r}", element=2)
    acknowledged = reader.date(pos, bak, 9) or reader.date(pos, bak, 4, required=True)
    fields: dict[str, Any] = {
        "po_id": reader.text(pos, bak, 3, required=True),
        "status": BAK_STATUS[code],
        "acknowledged_on": acknowledged,
        "acknowledgement_id": reader.text(pos, bak, 8),
    }
    lines: list[dict[str, Any]] = []
    for pos, seg in reader.each():
        if seg[0] == "PO1":
            line: dict[str, Any] = {"po_line_number": reader.integer(pos, seg, 1)}
            if reader.text(pos, seg, 4):
                line["unit_price"] = reader.decimal(pos, seg, 4)
            lines.append(line)
        elif seg[0] == "ACK":
            if not lines:
                raise SegmentError("ACK", pos, "ACK before any PO1 line", segment_code="7")
            status = reader.text(pos, seg, 1, required=True)
            if status not in ACK_STATUS:
                raise SegmentError("ACK", pos, f"unknown line status {status!r}", element=1)
            lines[-1]["status"] = ACK_STATUS[status]
            if reader.text(pos, seg, 2):
                lines[-1]["quantity"] = reader.decimal(pos, seg, 2)
            if reader.text(pos, seg, 4) in ("067", "068", "017", "011"):
                lines[-1]["ships_on"] = reader.date(pos, seg, 5)
    _check_ctt(reader, len(lines))
    fields["lines"] = lines
    return fields


# --- 856 ship notice -------------------------------------------------------------------------


def build_856(notice: ShipNotice) -> list[Segment]:
    """The body of an 856 for `notice`: one shipment, one order, one item level per line
    (hierarchical structure 0004, shipment/order/item)."""
    body: list[Segment] = [
        ["BSN", "00", notice.shipment_id, _date(notice.shipped_on), "0000", "0004"],
        ["DTM", "011", _date(notice.shipped_on)],
    ]
    if notice.expected_on:
        body.append(["DTM", "017", _date(notice.expected_on)])
    body.append(["HL", "1", "", "S"])
    if notice.carrier:
        body.append(["TD5", "B", "2", notice.carrier])
    if notice.tracking_number:
        body.append(["REF", "CN", notice.tracking_number])
    body.append(["HL", "2", "1", "O"])
    body.append(["PRF", notice.po_id])
    hash_total = Decimal(0)
    for number, line in enumerate(notice.lines, start=3):
        body.append(["HL", str(number), "2", "I"])
        lin = ["LIN", "", "PL", str(line.po_line_number)]
        if line.supplier_part_id:
            lin += ["VP", line.supplier_part_id]
        body.append(lin)
        body.append(["SN1", "", number_text(line.quantity), line.unit_of_measure])
        hash_total += line.quantity
    body.append(["CTT", str(2 + len(notice.lines)), number_text(hash_total)])
    return body


def parse_856(segments: list[Segment]) -> dict[str, Any]:
    reader = SetReader(segments)
    pos, bsn = reader.first("BSN")  # type: ignore[misc]
    fields: dict[str, Any] = {
        "shipment_id": reader.text(pos, bsn, 2, required=True),
        "shipped_on": reader.date(pos, bsn, 3, required=True),
    }
    lines: list[dict[str, Any]] = []
    hl_count = 0
    level = ""
    for pos, seg in reader.each():
        sid = seg[0]
        if sid == "HL":
            hl_count += 1
            level = reader.text(pos, seg, 3, required=True) or ""
        elif sid == "DTM":
            qualifier = reader.text(pos, seg, 1)
            if qualifier == "011":
                fields["shipped_on"] = reader.date(pos, seg, 2, required=True)
            elif qualifier in ("017", "067"):
                fields["expected_on"] = reader.date(pos, seg, 2)
        elif sid == "TD5" and "carrier" not in fields:
            fields["carrier"] = reader.text(pos, seg, 3) or reader.text(pos, seg, 5)
        elif sid == "REF" and reader.text(pos, seg, 1) == "CN":
            fields["tracking_number"] = reader.text(pos, seg, 2)
        elif sid == "PRF" and "po_id" not in fields:
            fields["po_id"] = reader.text(pos, seg, 1, required=True)
        elif sid == "LIN":
            if level != "I":
                raise SegmentError("LIN", pos, f"LIN outside an item level (HL03 {level!r})")
            parts = _part_ids(seg, 2)
            number = parts.get("PL") or reader.text(pos, seg, 1)
            if number is None or not number.isdigit() or len(number) > 9:
                raise SegmentError("LIN", pos, "no order line number (LIN01 or PL)", element=1)
            lines.append({"po_line_number": int(number), "supplier_part_id": parts.get("VP")})
        elif sid == "SN1":
            if not lines or "quantity" in lines[-1]:
                raise SegmentError("SN1", pos, "SN1 without its LIN", segment_code="7")
            lines[-1]["quantity"] = reader.decimal(pos, seg, 2, required=True)
            lines[-1]["unit_of_measure"] = reader.text(pos, seg, 3, required=True)
    if "po_id" not in fields:
        raise SegmentError("PRF", 0, "no order level with a PRF segment", segment_code="3")
    for line in lines:
        if "quantity" not in line:
            raise SegmentError("SN1", 0, f"item {line['po_line_number']} has no SN1 quantity")
    _check_ctt(reader, hl_count)
    fields["lines"] = lines
    return fields


# --- 810 invoice -----------------------------------------------------------------------------


def build_810(invoice: Invoice) -> list[Segment]:
    """The body of an 810 for `invoice`; TDS01 is the total in cents (N2)."""
    body: list[Segment] = [
        ["BIG", _date(invoice.invoice_date), invoice.invoice_id, "", invoice.po_id or ""]
    ]
    if invoice.due_date:
        body.append(["ITD", "01", "3", "", "", "", _date(invoice.due_date)])
    for line in invoice.lines:
        _check_amount(line.line_number, line.quantity, line.unit_price, line.amount)
        it1 = [
            "IT1",
            str(line.line_number),
            number_text(line.quantity),
            line.unit_of_measure,
            number_text(line.unit_price),
            "",
        ]
        if line.supplier_part_id:
            it1 += ["VP", line.supplier_part_id]
        if line.po_line_number is not None:
            it1 += ["PL", str(line.po_line_number)]
        body.append(it1)
        if line.description:
            body.append(["PID", "F", "", "", "", line.description])
    cents = invoice.total_amount.quantize(CENT) * 100
    if cents != invoice.total_amount * 100:
        raise ValueError(f"total {invoice.total_amount} has more than 2 decimals (TDS01 is N2)")
    body.append(["TDS", str(int(cents))])
    if invoice.tax_amount is not None:
        body.append(["TXI", "ST", number_text(invoice.tax_amount)])
    body.append(["CTT", str(len(invoice.lines))])
    return body


def parse_810(segments: list[Segment]) -> dict[str, Any]:
    reader = SetReader(segments)
    pos, big = reader.first("BIG")  # type: ignore[misc]
    fields: dict[str, Any] = {
        "invoice_date": reader.date(pos, big, 1, required=True),
        "invoice_id": reader.text(pos, big, 2, required=True),
        "po_id": reader.text(pos, big, 4),
    }
    items = reader.each()
    lines: list[dict[str, Any]] = []
    for pos, seg in items:
        sid = seg[0]
        if sid == "ITD" and reader.text(pos, seg, 6):
            fields["due_date"] = reader.date(pos, seg, 6)
        elif sid == "IT1":
            quantity = reader.decimal(pos, seg, 2, required=True)
            price = reader.decimal(pos, seg, 4, required=True)
            parts = _part_ids(seg, 6)
            po_line = parts.get("PL")
            lines.append(
                {
                    "line_number": reader.integer(pos, seg, 1),
                    "po_line_number": int(po_line) if po_line and po_line.isdigit() else None,
                    "description": _description(reader, items, pos),
                    "supplier_part_id": parts.get("VP"),
                    "quantity": quantity,
                    "unit_of_measure": reader.text(pos, seg, 3) or "EA",
                    "unit_price": price,
                    "amount": (quantity * price).quantize(CENT),
                }
            )
        elif sid == "TDS":
            cents = reader.text(pos, seg, 1, required=True) or ""
            if not cents.lstrip("-").isdigit() or len(cents) > 15:
                raise SegmentError(
                    "TDS", pos, f"{cents!r} is not an amount in cents", element=1, value=cents
                )
            fields["total_amount"] = Decimal(cents).scaleb(-2)
        elif sid == "TXI" and "tax_amount" not in fields and reader.text(pos, seg, 2):
            fields["tax_amount"] = reader.decimal(pos, seg, 2)
    if "total_amount" not in fields:
        raise SegmentError("TDS", 0, "mandatory segment missing", segment_code="3")
    _check_ctt(reader, len(lines))
    fields["lines"] = lines
    return fields


#: Stream → (transaction set, record, parser of a set's fields).
STREAMS: dict[str, tuple[str, type[sdk.Record], Callable[[list[Segment]], dict[str, Any]]]] = {
    "purchase_orders": ("850", PurchaseOrder, parse_850),
    "acknowledgements": ("855", OrderAcknowledgement, parse_855),
    "ship_notices": ("856", ShipNotice, parse_856),
    "invoices": ("810", Invoice, parse_810),
}
