"""The X12 004010 connector: documents both ways, separators from the ISA, control numbers that
survive restarts, 997s for every group read (and the partner's read), hostile files refused
with a reason, route runs on every backend and over SFTP.

Every interchange the connector writes is validated by an independent translator's grammars
(`edi_parser`, the Bots EDI parser: X12 4010 850/855/856/810/997 segment order, mandatory
elements, lengths, types, envelope counts and control numbers); the reader is also fed
hand-written spec examples the same validator accepts, not only its own output.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import edi_parser
import msgspec
import pytest
from sqlalchemy import select

from connectors.sql_table import StreamTable
from connectors.x12 import X12Connector
from connectors.x12.envelope import EnvelopeError, parse_interchange
from hub import sdk
from hub.apply import apply
from hub.config import load_config
from hub.engine.run import run_route
from hub.model.purchasing import (
    AcknowledgementLine,
    Invoice,
    InvoiceLine,
    OrderAcknowledgement,
    PurchaseOrder,
    PurchaseOrderLine,
    ShipNotice,
    ShipNoticeLine,
)
from hub.sdk.sql import create_engine

UPDATED = datetime(2026, 10, 15, 18, 30, tzinfo=UTC)
HUB, ACME = "BOCESHUB", "ACMESUPPLY"


def connector(tmp_path: Path, side: str = "buyer", **options) -> X12Connector:
    """The hub's connection to Acme (buyer), or Acme's to the hub (supplier), sharing folders:
    what one writes is what the other reads."""
    for name in ("to_acme", "to_hub", "archive"):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
    ours, theirs = (HUB, ACME) if side == "buyer" else (ACME, HUB)
    raw = {
        "sender_id": ours,
        "receiver_id": theirs,
        "vendor_id": "acme",
        "inbound_folder": "to_hub" if side == "buyer" else "to_acme",
        "outbound_folder": "to_acme" if side == "buyer" else "to_hub",
        "state_file": f"state/{side}.json",
        **options,
    }
    context = sdk.ConnectionContext(connection=side, member="eastview", base_dir=str(tmp_path))
    return X12Connector(X12Connector.parse_options(raw), {}, context)


def order(po_id: str = "PO-1001", **more) -> PurchaseOrder:
    fields = {
        "po_id": po_id,
        "vendor_id": "acme",
        "order_date": date(2026, 10, 15),
        "buyer": "Dana Whitfield",
        "ship_to": "Eastview CSD Central Warehouse",
        "requisition_id": "REQ-77",
        "lines": [
            PurchaseOrderLine(
                line_number=1,
                description="Copy paper, 8.5x11, case of 10 reams",
                supplier_part_id="PAP-8511",
                quantity=Decimal("12"),
                unit_of_measure="CA",
                unit_price=Decimal("38.75"),
                amount=Decimal("465.00"),
                contract_id="NYOGS-PC-2026",
            ),
            PurchaseOrderLine(
                line_number=2,
                description="Ballpoint pens, blue, box of 12",
                supplier_part_id="PEN-B12",
                quantity=Decimal("2.5"),
                unit_of_measure="BX",
                unit_price=Decimal("4.10"),
                amount=Decimal("10.25"),
                contract_id="NYOGS-PC-2026",
            ),
        ],
        "total_amount": Decimal("475.25"),
        "updated_at": UPDATED,
    }
    return PurchaseOrder(**(fields | more))


ACKNOWLEDGEMENT = OrderAcknowledgement(
    acknowledgement_id="SO-5531",
    po_id="PO-1001",
    vendor_id="acme",
    acknowledged_on=date(2026, 10, 16),
    status="changed",
    lines=[
        AcknowledgementLine(po_line_number=1, status="accepted", quantity=Decimal("12")),
        AcknowledgementLine(
            po_line_number=2,
            status="backordered",
            quantity=Decimal("2.5"),
            unit_price=Decimal("4.1"),
            ships_on=date(2026, 10, 30),
        ),
    ],
    updated_at=UPDATED,
)
SHIP_NOTICE = ShipNotice(
    shipment_id="SH-88120",
    po_id="PO-1001",
    vendor_id="acme",
    shipped_on=date(2026, 10, 17),
    expected_on=date(2026, 10, 20),
    carrier="UPSN",
    tracking_number="1Z999AA10123456784",
    lines=[
        ShipNoticeLine(
            po_line_number=1,
            supplier_part_id="PAP-8511",
            quantity=Decimal("12"),
            unit_of_measure="CA",
        ),
        ShipNoticeLine(po_line_number=2, quantity=Decimal("1"), unit_of_measure="BX"),
    ],
    updated_at=UPDATED,
)
INVOICE = Invoice(
    invoice_id="INV-20931",
    vendor_id="acme",
    po_id="PO-1001",
    invoice_date=date(2026, 10, 18),
    due_date=date(2026, 11, 17),
    lines=[
        InvoiceLine(
            line_number=1,
            po_line_number=1,
            description="Copy paper, 8.5x11, case of 10 reams",
            supplier_part_id="PAP-8511",
            quantity=Decimal("12"),
            unit_of_measure="CA",
            unit_price=Decimal("38.75"),
            amount=Decimal("465.00"),
        )
    ],
    total_amount=Decimal("502.20"),
    tax_amount=Decimal("37.20"),
    updated_at=UPDATED,
)


def validate(text: str) -> None:
    """The independent translator accepts `text` as X12 4010: envelope and every set."""
    result = edi_parser.validate_edi(text, "x12", "x12")
    assert result["valid"], [e["message"] for e in result["errors"]]


async def write(conn: X12Connector, stream: str, *records, generation: int = 1) -> sdk.WriteResult:
    return await conn.write(
        stream, sdk.Batch(records=list(records), state={}, generation=generation), "eastview"
    )


async def read_all(conn: X12Connector, stream: str, state: dict | None = None) -> list[sdk.Batch]:
    batches = [b async for b in conn.read(stream, state)]
    for batch in batches:
        await conn.acknowledge(stream, batch.state)
    return batches


def files(folder: Path, prefix: str = "") -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.name.startswith(prefix) and not p.name.startswith(".")
    )


def same(record: sdk.Record, expected: sdk.Record) -> None:
    """`record` equals `expected` but for updated_at (the envelope's time)."""
    assert msgspec.structs.replace(record, updated_at=expected.updated_at) == expected


# --- documents both ways, validated independently ------------------------------------------


async def test_an_order_becomes_an_850_a_translator_accepts_and_the_supplier_reads_back(tmp_path):
    buyer, supplier = connector(tmp_path), connector(tmp_path, "supplier")

    result = await write(buyer, "purchase_orders", order())

    assert (result.written, result.rejects) == (1, [])
    [sent] = files(tmp_path / "to_acme")
    assert sent.name == "850_ACMESUPPLY_000000001.x12"
    text = sent.read_text()
    validate(text)
    assert text.startswith("ISA*00*          *00*          *ZZ*BOCESHUB       *ZZ*ACMESUPPLY     *")
    assert "~BEG*00*NE*PO-1001**20261015~CUR*BY*USD~REF*CT*NYOGS-PC-2026~REF*RQ*REQ-77~" in text
    assert "~PER*BD*Dana Whitfield~N1*ST*Eastview CSD Central Warehouse~" in text
    assert "~PO1*1*12*CA*38.75**VP*PAP-8511~PID*F****Copy paper, 8.5x11, case of 10 reams~" in text
    assert "~CTT*2*14.5~AMT*TT*475.25~SE*14*0001~GE*1*1~IEA*1*000000001~" in text

    [batch] = await read_all(supplier, "purchase_orders")

    assert batch.rejects == []
    [received] = batch.records
    same(received, order())
    assert received.updated_at.tzinfo is not None


@pytest.mark.parametrize(
    ("stream", "record", "expected"),
    [
        ("acknowledgements", ACKNOWLEDGEMENT, "~BAK*00*AC*PO-1001*20261016****SO-5531*20261016~"),
        (
            "ship_notices",
            SHIP_NOTICE,
            "~HL*1**S~TD5*B*2*UPSN~REF*CN*1Z999AA10123456784~HL*2*1*O~PRF*PO-1001~",
        ),
        ("invoices", INVOICE, "~IT1*1*12*CA*38.75**VP*PAP-8511*PL*1~"),
    ],
)
async def test_the_supplier_side_documents_validate_and_read_back_as_the_same_records(
    tmp_path, stream, record, expected
):
    supplier, buyer = connector(tmp_path, "supplier"), connector(tmp_path)

    assert (await write(supplier, stream, record)).written == 1

    [sent] = files(tmp_path / "to_hub")
    validate(sent.read_text())
    assert expected in sent.read_text()
    [batch] = await read_all(buyer, stream)
    assert batch.rejects == []
    same(batch.records[0], record)


async def test_the_invoice_total_is_in_cents_and_the_tax_follows_it(tmp_path):
    supplier = connector(tmp_path, "supplier")
    await write(supplier, "invoices", INVOICE)
    text = files(tmp_path / "to_hub")[0].read_text()
    assert "~TDS*50220~TXI*ST*37.2~CTT*1~" in text
    assert "~ITD*01*3****20261117~" in text


# --- hand-written spec examples: the reader reads what others write ------------------------

SPEC_855 = (
    "ISA*00*          *00*          *ZZ*ACMESUPPLY     *ZZ*BOCESHUB       *261016*0912*U*00401*"
    "000004711*0*P*>~\n"
    "GS*PR*ACMESUPPLY*BOCESHUB*20261016*0912*4711*X*004010~\n"
    "ST*855*0001~\n"
    "BAK*00*AE*PO-2002*20261014****SO-9*20261016~\n"
    "N1*ST*Millbrook High School~\n"
    "PO1*1*10*EA*2.15**VP*MRK-1~\n"
    "ACK*IA*10*EA*068*20261020~\n"
    "PO1*2*4*EA*9.99**VP*TNR-2~\n"
    "ACK*IR*4*EA~\n"
    "CTT*2~\n"
    "SE*9*0001~\n"
    "GE*1*4711~\n"
    "IEA*1*000004711~\n"
)
SPEC_856 = (
    "ISA|00|          |00|          |ZZ|ACMESUPPLY     |ZZ|BOCESHUB       |261017|1400|U|00401|"
    "000004712|0|P|^'"
    "GS|SH|ACMESUPPLY|BOCESHUB|20261017|1400|4712|X|004010'"
    "ST|856|0001'"
    "BSN|00|SH-77|20261017|1400|0001'"
    "DTM|011|20261017'"
    "HL|1||S'"
    "TD5|B|2|FDEG'"
    "REF|CN|7712 3456 9981'"
    "HL|2|1|O'"
    "PRF|PO-2002'"
    "HL|3|2|I'"
    "LIN||VP|MRK-1|PL|1'"
    "SN1||10|EA'"
    "CTT|3|10'"
    "SE|13|0001'"
    "GE|1|4712'"
    "IEA|1|000004712'"
)
SPEC_810 = (
    "ISA!00!          !00!          !ZZ!ACMESUPPLY     !ZZ!BOCESHUB       !261018!0800!U!00401!"
    "000004713!0!T!:\r\n"
    "GS!IN!ACMESUPPLY!BOCESHUB!20261018!0800!4713!X!004010\r\n"
    "ST!810!0001\r\n"
    "BIG!20261018!INV-4!!PO-2002\r\n"
    "N1!RE!Acme Supply Co\r\n"
    "IT1!1!10!EA!2.15!!VP!MRK-1!PL!1\r\n"
    "PID!F!!!!Markers, dry erase\r\n"
    "TDS!2300\r\n"
    "TXI!ST!1.5\r\n"
    "CTT!1\r\n"
    "SE!9!0001\r\n"
    "GE!1!4713\r\n"
    "IEA!1!000004713\r\n"
)


@pytest.mark.parametrize("example", [SPEC_855, SPEC_856, SPEC_810], ids=["855", "856", "810"])
def test_the_hand_written_examples_are_valid_x12(example):
    validate(example)


async def test_hand_written_examples_with_their_own_separators_are_read(tmp_path):
    buyer = connector(tmp_path)
    inbound = tmp_path / "to_hub"
    (inbound / "a855.edi").write_text(SPEC_855)
    (inbound / "b856.edi").write_text(SPEC_856)
    (inbound / "c810.edi").write_bytes(SPEC_810.encode())

    [ack] = (await read_all(buyer, "acknowledgements"))[0].records
    [notice] = (await read_all(buyer, "ship_notices"))[0].records
    [invoice] = (await read_all(buyer, "invoices"))[0].records

    assert (ack.po_id, ack.acknowledgement_id, ack.status) == ("PO-2002", "SO-9", "changed")
    assert [(line.po_line_number, line.status, line.ships_on) for line in ack.lines] == [
        (1, "accepted", date(2026, 10, 20)),
        (2, "rejected", None),
    ]
    assert (notice.shipment_id, notice.carrier, notice.tracking_number) == (
        "SH-77",
        "FDEG",
        "7712 3456 9981",
    )
    assert notice.lines == [
        ShipNoticeLine(po_line_number=1, supplier_part_id="MRK-1", quantity=Decimal(10))
    ]
    assert (invoice.total_amount, invoice.tax_amount, invoice.lines[0].description) == (
        Decimal("23.00"),
        Decimal("1.5"),
        "Markers, dry erase",
    )
    assert invoice.updated_at == datetime(2026, 10, 18, 8, 0, tzinfo=UTC)
    answers = files(tmp_path / "to_acme", "997")
    assert len(answers) == 3
    for answer in answers:
        validate(answer.read_text())
        assert "~AK9*A*1*1*1~" in answer.read_text()


# --- separators come from the ISA ------------------------------------------------------------


@pytest.mark.parametrize(
    ("element", "component", "terminator", "line_breaks"),
    [
        ("*", ">", "~", False),
        ("*", ">", "~", True),
        ("|", "^", "'", False),
        ("!", ":", "\n", False),
        ("^", "\\", "\x1c", True),
    ],
)
async def test_separators_are_taken_from_the_isa_segment(
    tmp_path, element, component, terminator, line_breaks
):
    buyer = connector(
        tmp_path,
        element_separator=element,
        component_separator=component,
        segment_terminator=terminator,
        line_breaks=line_breaks,
    )
    supplier = connector(tmp_path, "supplier")  # configured with the defaults: reads any
    await write(buyer, "purchase_orders", order())
    text = files(tmp_path / "to_acme")[0].read_bytes().decode()
    assert text[3] == element and text[104] == component and text[105] == terminator
    assert text[106:108] == ("\r\n" if line_breaks else "GS")

    [batch] = await read_all(supplier, "purchase_orders")

    assert batch.rejects == []
    same(batch.records[0], order())


# --- control numbers -------------------------------------------------------------------------


def controls(path: Path) -> tuple[str, str, list[str]]:
    interchange = parse_interchange(path.read_bytes(), max_bytes=1 << 20, max_segment=4096)
    [group] = interchange.groups
    return interchange.control, group.control, [s.control for s in group.sets]


async def test_control_numbers_increase_across_restarts_and_a_retried_batch_repeats_its_own(
    tmp_path,
):
    await write(connector(tmp_path), "purchase_orders", order("PO-1"), order("PO-2"))
    await write(connector(tmp_path), "purchase_orders", order("PO-3"))  # a new process
    await write(connector(tmp_path), "purchase_orders", order("PO-3"))  # the same batch again

    sent = files(tmp_path / "to_acme")
    assert [controls(p) for p in sent] == [
        ("000000001", "1", ["0001", "0002"]),
        ("000000002", "2", ["0003"]),
    ]
    state = json.loads((tmp_path / "state/buyer.json").read_text())
    assert (state["interchange"], state["group"], state["set"]) == (2, 2, 3)
    assert state["sent"]["2"]["sets"] == {"0003": "PO-3"}


async def test_a_crash_after_allocating_leaves_a_gap_never_a_repeat(tmp_path, monkeypatch):
    buyer = connector(tmp_path)

    async def power_cut(name: str, data: bytes) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(buyer._folder("outbound"), "publish", power_cut)
    with pytest.raises(OSError):
        await write(buyer, "purchase_orders", order("PO-1"))
    await write(connector(tmp_path), "purchase_orders", order("PO-2"))

    [sent] = files(tmp_path / "to_acme")
    assert controls(sent) == ("000000002", "2", ["0002"])


async def test_an_order_that_x12_cannot_carry_is_refused_with_the_reason(tmp_path):
    buyer = connector(tmp_path)
    too_long = order("PO-" + "9" * 30)
    tilde = order("PO-7", ship_to="Dock 4 ~ rear")
    odd_amount = order(
        "PO-8",
        lines=[msgspec.structs.replace(order().lines[0], amount=Decimal("460.00"))],
    )

    result = await write(buyer, "purchase_orders", too_long, tilde, odd_amount, order("PO-9"))

    assert result.written == 1
    assert [r.reason for r in result.rejects] == [
        "BEG03 'PO-999999999999999999999999999999' is 33 characters; X12 004010 allows 1 to 22",
        "N102 'Dock 4 ~ rear' holds an X12 separator (*>~)",
        "line 1: amount 460.00 is not quantity 12 times unit price 38.75, and an X12 line "
        "carries no amount of its own",
    ]
    assert controls(files(tmp_path / "to_acme")[0]) == ("000000001", "1", ["0001"])


# --- 997s ------------------------------------------------------------------------------------


def interchange_text(
    *sets: str,
    control: str = "000000042",
    group: str = "42",
    fid: str = "PR",
    count: str | None = None,
    iea: str | None = None,
) -> str:
    """An interchange from Acme to the hub holding `sets` (each 'ST...SE~' text)."""
    body = "".join(sets)
    return (
        f"ISA*00*          *00*          *ZZ*ACMESUPPLY     *ZZ*BOCESHUB       *261016*0912*U*"
        f"00401*{control}*0*P*>~GS*{fid}*ACMESUPPLY*BOCESHUB*20261016*0912*{group}*X*004010~"
        f"{body}GE*{count if count is not None else len(sets)}*{group}~IEA*1*{iea or control}~"
    )


def ack_set(control: str, po: str = "PO-1001", se_count: int = 4, bak: str = "AD") -> str:
    return f"ST*855*{control}~BAK*00*{bak}*{po}*20261016~PO1*1~SE*{se_count}*{control}~"


async def test_every_group_read_gets_a_997_once_after_the_checkpoint(tmp_path):
    buyer = connector(tmp_path, archive_folder="archive")
    (tmp_path / "to_hub" / "acks.x12").write_text(
        interchange_text(ack_set("0001"), ack_set("0002", "PO-1002"))
    )

    batches = [b async for b in buyer.read("acknowledgements", None)]
    assert files(tmp_path / "to_acme") == []  # nothing before the checkpoint is committed
    for batch in batches:
        await buyer.acknowledge("acknowledgements", batch.state)
        await buyer.acknowledge("acknowledgements", batch.state)  # again: nothing more

    [answer] = files(tmp_path / "to_acme")
    text = answer.read_text()
    validate(text)
    assert "~GS*FA*BOCESHUB*ACMESUPPLY*" in text
    assert (
        "~ST*997*0001~AK1*PR*42~AK2*855*0001~AK5*A~AK2*855*0002~AK5*A~AK9*A*2*2*2~SE*8*0001~"
        in text
    )
    assert [p.name for p in files(tmp_path / "archive")] == ["acks.x12"]
    assert [r.po_id for b in batches for r in b.records] == ["PO-1001", "PO-1002"]


async def test_a_bad_set_is_a_dead_letter_and_the_997_names_its_segment_and_element(tmp_path):
    buyer = connector(tmp_path)
    bad = "ST*855*0002~BAK*00*AD*PO-1002*2026XX16~PO1*1~SE*4*0002~"
    (tmp_path / "to_hub" / "acks.x12").write_text(interchange_text(ack_set("0001"), bad))

    [batch] = await read_all(buyer, "acknowledgements")

    assert [r.po_id for r in batch.records] == ["PO-1001"]
    [reject] = batch.rejects
    assert reject.position == "acks.x12:42/0002"
    assert reject.reason == "BAK04 (segment 2 of the set): '2026XX16' is not a date CCYYMMDD"
    assert reject.raw["segments"][1] == ["BAK", "00", "AD", "PO-1002", "2026XX16"]
    text = files(tmp_path / "to_acme")[0].read_text()
    validate(text)
    assert "~AK2*855*0002~AK3*BAK*2**8~AK4*4**8*2026XX16~AK5*R*5~AK9*P*2*2*1~" in text
    # the dead letter maps again once the partner's date is corrected
    fixed = reject.raw | {
        "segments": [
            *reject.raw["segments"][:1],
            ["BAK", "00", "AD", "PO-1002", "20261016"],
            *reject.raw["segments"][2:],
        ]
    }
    assert buyer.map_raw("acknowledgements", fixed).po_id == "PO-1002"


@pytest.mark.parametrize(
    ("text", "reason", "ak"),
    [
        (
            interchange_text(ack_set("0001", se_count=5)),
            "SE01 says 5 segments, the set has 4",
            "~AK2*855*0001~AK5*R*4~AK9*R*1*1*0~",
        ),
        (
            interchange_text(ack_set("0001"), count="3"),
            "GE01 says 3 sets, the group has 1",
            "~AK2*855*0001~AK5*R*5~AK9*R*3*1*0*5~",
        ),
        (
            interchange_text(ack_set("0001"), iea="000000043"),
            "IEA02 control number '000000043' is not ISA13's '000000042'",
            "~AK2*855*0001~AK5*R*5~AK9*R*1*1*0~",
        ),
        (
            interchange_text(ack_set("0001"), group="42").replace("GE*1*42", "GE*1*41"),
            "GE02 control number '41' is not GS06's '42'",
            "~AK2*855*0001~AK5*R*5~AK9*R*1*1*0*4~",
        ),
    ],
    ids=["se-count", "ge-count", "iea-control", "ge-control"],
)
async def test_count_and_control_number_mismatches_reject_with_a_997_that_says_so(
    tmp_path, text, reason, ak
):
    buyer = connector(tmp_path)
    (tmp_path / "to_hub" / "acks.x12").write_text(text)

    [batch] = await read_all(buyer, "acknowledgements")

    assert batch.records == []
    assert reason in batch.rejects[0].reason
    answer = files(tmp_path / "to_acme")[0].read_text()
    validate(answer)
    assert ak in answer


async def test_an_interchange_from_someone_else_is_rejected(tmp_path):
    buyer = connector(tmp_path)
    (tmp_path / "to_hub" / "acks.x12").write_text(
        interchange_text(ack_set("0001")).replace("ZZ*ACMESUPPLY     ", "ZZ*SOMEONEELSE    ")
    )

    [batch] = await read_all(buyer, "acknowledgements")

    assert batch.records == []
    assert (
        "ISA05/ISA06 sender ZZ/SOMEONEELSE is not the partner ZZ/ACMESUPPLY"
        in batch.rejects[0].reason
    )


async def test_the_partners_997_rejecting_an_order_is_reported_and_recorded(tmp_path):
    buyer, supplier = connector(tmp_path), connector(tmp_path, "supplier")
    await write(buyer, "purchase_orders", order("PO-1"), order("PO-2"))
    # Acme's translator refuses the second order: it answers with its own 997.
    (tmp_path / "to_hub" / "997.x12").write_text(
        interchange_text(
            "ST*997*0001~AK1*PO*1~AK2*850*0001~AK5*A~AK2*850*0002~AK3*PO1*9**8~AK4*2**6*2.5X~"
            "AK5*R*5~AK9*P*2*2*1~SE*10*0001~",
            fid="FA",
        )
    )

    [batch] = await read_all(buyer, "acknowledgements")

    [reject] = batch.rejects
    assert reject.position == "997.x12:997/1/0002"
    assert reject.reason == (
        "partner ACMESUPPLY rejected our PO group 1, set 0002 (PO-2): AK9 P, AK5 R 5; "
        "AK3*PO1*9**8; AK4*2**6*2.5X"
    )
    state = json.loads((tmp_path / "state/buyer.json").read_text())
    assert state["received_997"]["1"]["rejected"] == ["0002"]
    assert files(tmp_path / "to_acme", "997") == []  # a 997 is never answered
    with pytest.raises(sdk.BadRecord, match="cannot be replayed"):
        buyer.map_raw("acknowledgements", reject.raw)
    del supplier


async def test_a_file_read_once_is_not_read_again_under_another_name(tmp_path):
    buyer = connector(tmp_path, archive_folder="archive")
    text = interchange_text(ack_set("0001"))
    (tmp_path / "to_hub" / "acks.x12").write_text(text)
    first = await read_all(buyer, "acknowledgements")
    (tmp_path / "to_hub" / "acks-again.x12").write_text(text)

    second = await read_all(buyer, "acknowledgements", first[-1].state)

    assert [len(b.records) for b in first] == [1]
    assert [len(b.records) for b in second] == [0]
    assert len(files(tmp_path / "to_acme", "997")) == 1


# --- hostile input ---------------------------------------------------------------------------

GOOD = interchange_text(ack_set("0001")).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "does not start with an ISA segment"),
        (b"\x00\xff\xfe" * 200, "does not start with an ISA segment"),
        (GOOD[:80], "the ISA segment is cut short: 80 characters, it has 106"),
        (
            GOOD.replace(b"*", b"|", 5),
            "ISA is not fixed width: character 35 should be the element separator '|' before ISA06",
        ),
        (GOOD.replace(b"*00*          *00*", b"*00*        *00*", 1), "ISA is not fixed width"),
        (GOOD[:105] + b"*" + GOOD[106:], "ISA declares unusable separators"),
        (
            GOOD[:106] + b"GS*" + b"X" * 5000 + b"~",
            "segment 2 is 5,003 characters long, over the limit of 4,096",
        ),
        (GOOD[:106] + b"GS*P\x00O~", "segment 2 holds control characters"),
        (b"ISA" + b"*" * 2_000_000, "file is 2,000,003 bytes, over the limit of 1,048,576"),
    ],
)
def test_hostile_files_are_refused_with_a_reason(data, reason):
    with pytest.raises(EnvelopeError, match=None) as refused:
        parse_interchange(data, max_bytes=1 << 20, max_segment=4096)
    assert reason in str(refused.value)


async def test_truncated_and_junk_files_become_dead_letters_not_failures(tmp_path):
    buyer = connector(tmp_path, max_file_bytes=10_000)
    inbound = tmp_path / "to_hub"
    (inbound / "a-truncated.x12").write_bytes(GOOD[: GOOD.index(b"GE*")])
    (inbound / "b-junk.bin").write_bytes(bytes(range(256)) * 4)
    (inbound / "c-huge.x12").write_bytes(b"ISA" + b"x" * 20_000)

    batches = await read_all(buyer, "acknowledgements")

    reasons = sorted(r.reason for b in batches for r in b.rejects)
    assert reasons == [
        "IEA missing: the interchange is truncated; GE missing: the file ends inside the group",
        "file is 20,003 bytes, over max_file_bytes 10,000: not read (it stays in the inbound folder)",
        "not an X12 interchange: does not start with an ISA segment (starts '\\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07')",
    ]
    assert [b.records for b in batches if b.records] == []
    assert (inbound / "c-huge.x12").exists()


async def test_many_repeated_loops_are_read_in_bounded_time(tmp_path):
    items = "".join(f"HL*{n}*2*I~LIN**PL*{n}~SN1**1*EA~" for n in range(3, 30_003))
    body = f"ST*856*0001~BSN*00*SH-1*20261017*1400~HL*1**S~HL*2*1*O~PRF*PO-1~{items}SE*{6 + 90_000}*0001~"
    (tmp_path / "to_hub").mkdir()
    buyer = connector(tmp_path)
    (tmp_path / "to_hub" / "big.x12").write_text(interchange_text(body, fid="SH"))

    started = time.monotonic()
    [batch] = await read_all(buyer, "ship_notices")

    assert time.monotonic() - started < 10
    assert len(batch.records[0].lines) == 30_000


# --- check -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"sender_id": "A-NAME-LONGER-THAN-15"},
            "sender_id 'A-NAME-LONGER-THAN-15' must be 1 to 15 characters",
        ),
        ({"receiver_qualifier": "Z"}, "receiver_qualifier 'Z' must be 2 letters or digits"),
        ({"receiver_id": "ACME*1"}, "receiver id 'ACME*1' holds a separator"),
        ({"segment_terminator": "*"}, "separators: separators ('*', '>', '*') must differ"),
        ({"inbound_folder": "nowhere"}, "inbound folder"),
        ({"fallback_stream": "orders"}, "fallback_stream 'orders' is not a stream"),
        ({"timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus' is not an IANA zone"),
    ],
)
async def test_check_names_what_is_wrong(tmp_path, options, message):
    with pytest.raises(sdk.ConnectorConfigError) as refused:
        await connector(tmp_path, **options).check()
    assert message in str(refused.value)


async def test_check_passes_on_a_sound_connection(tmp_path):
    await connector(tmp_path, archive_folder="archive").check()


# --- routes ----------------------------------------------------------------------------------


def add_connection(config_dir: Path, name: str, side: str, **options) -> None:
    ours, theirs = (HUB, ACME) if side == "buyer" else (ACME, HUB)
    values = {
        "sender_id": ours,
        "receiver_id": theirs,
        "vendor_id": "acme",
        "state_file": f".cohub/{name}.json",
        **options,
    }
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
    (config_dir / "connections" / f"{name}.toml").write_text(
        f'connector = "x12"\nmember = "eastview"\n\n[options]\n{lines}\n'
    )


def add_route(config_dir: Path, name: str, source: str, stream: str, destination: str) -> None:
    routes = config_dir / "routes.toml"
    routes.write_text(
        routes.read_text() + f'\n[routes.{name}]\nsource = "{source}"\nsource_stream = "{stream}"\n'
        f'destination = "{destination}"\ndestination_stream = "{stream}"\nservice = "cbo-payroll"\n'
    )


async def test_routes_send_850s_and_store_the_suppliers_documents(
    runtime, config_dir, database_url
):
    # A cooperative relays its members' orders as 850s (relay-in); the hub sends them on to
    # Acme; Acme's 855, 856 and 810 come back into the CBO database.
    for folder in ("relay", "relay_answers", "to_acme", "to_hub", "done"):
        (config_dir / folder).mkdir()
    add_connection(
        config_dir,
        "relay-in",
        "supplier",
        receiver_id="COOPRELAY",
        inbound_folder="relay",
        outbound_folder="relay_answers",
        sender_id=HUB,
        archive_folder="done",
        fallback_stream="purchase_orders",
    )
    add_connection(
        config_dir,
        "acme",
        "buyer",
        inbound_folder="to_hub",
        outbound_folder="to_acme",
        archive_folder="done",
    )
    add_route(config_dir, "orders-to-acme", "relay-in", "purchase_orders", "acme")
    for stream in ("acknowledgements", "ship_notices", "invoices"):
        add_route(config_dir, f"acme-{stream}", "acme", stream, "cbo-payroll-db")
    await apply(runtime.engine, load_config(config_dir))
    relay = X12Connector(
        X12Connector.parse_options(
            {
                "sender_id": "COOPRELAY",
                "receiver_id": HUB,
                "inbound_folder": "x",
                "outbound_folder": "relay",
                "state_file": "relay-sender.json",
            }
        ),
        {},
        sdk.ConnectionContext(connection="coop", member=None, base_dir=str(config_dir)),
    )
    await write(relay, "purchase_orders", order("PO-1"), order("PO-2"))
    acme = X12Connector(
        X12Connector.parse_options(
            {
                "sender_id": ACME,
                "receiver_id": HUB,
                "inbound_folder": "to_acme",
                "outbound_folder": "to_hub",
                "state_file": "acme.json",
            }
        ),
        {},
        sdk.ConnectionContext(connection="acme-side", member=None, base_dir=str(config_dir)),
    )
    for stream, record in (
        ("acknowledgements", ACKNOWLEDGEMENT),
        ("ship_notices", SHIP_NOTICE),
        ("invoices", INVOICE),
    ):
        await write(acme, stream, record)

    sent = await run_route(runtime.engine, runtime.plugins, "orders-to-acme")
    again = await run_route(runtime.engine, runtime.plugins, "orders-to-acme")
    stored = [
        await run_route(runtime.engine, runtime.plugins, f"acme-{s}")
        for s in ("acknowledgements", "ship_notices", "invoices")
    ]

    assert (sent.status, sent.counts.written, again.counts.written) == ("succeeded", 2, 0)
    [orders] = files(config_dir / "to_acme", "850")
    validate(orders.read_text())
    assert [
        o.po_id for o in (await read_all(connector_at(config_dir), "purchase_orders"))[0].records
    ] == ["PO-1", "PO-2"]
    assert [(r.status, r.counts.written) for r in stored] == [("succeeded", 1)] * 3
    assert len(files(config_dir / "relay_answers", "997")) == 1  # the relay's group answered
    assert len(files(config_dir / "to_acme", "997")) == 3  # each of Acme's groups answered
    assert sorted(p.name[:3] for p in files(config_dir / "done")) == ["810", "850", "855", "856"]
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            table = StreamTable("invoices", Invoice).table
            rows = [dict(row) for row in (await conn.execute(select(table))).mappings()]
    finally:
        await engine.dispose()
    assert [(r["invoice_id"], r["po_id"], r["total_amount"]) for r in rows] == [
        ("INV-20931", "PO-1001", Decimal("502.20"))
    ]


def connector_at(config_dir: Path) -> X12Connector:
    """Acme's side reading what the hub sent it."""
    return X12Connector(
        X12Connector.parse_options(
            {
                "sender_id": ACME,
                "receiver_id": HUB,
                "inbound_folder": "to_acme",
                "outbound_folder": "to_hub",
                "state_file": "acme-reader.json",
                "fallback_stream": "purchase_orders",
                "inbound_pattern": "850*",
            }
        ),
        {},
        sdk.ConnectionContext(connection="acme-reader", member=None, base_dir=str(config_dir)),
    )


# --- SFTP ------------------------------------------------------------------------------------


async def test_over_sftp_an_850_is_published_and_a_997_answers_the_suppliers_invoice(tmp_path):
    from tests.sshd import running_sshd

    remote = tmp_path / "remote"
    with running_sshd(tmp_path / "sshd") as server:
        for name in ("out", "in", "done"):
            (remote / name).mkdir(parents=True)
        buyer = X12Connector(
            X12Connector.parse_options(
                {
                    "sender_id": HUB,
                    "receiver_id": ACME,
                    "transport": "sftp",
                    "host": server.host,
                    "port": server.port,
                    "username": server.user,
                    "known_hosts": server.fingerprint,
                    "inbound_folder": str(remote / "in"),
                    "outbound_folder": str(remote / "out"),
                    "archive_folder": str(remote / "done"),
                    "state_file": "state.json",
                }
            ),
            {"private_key": server.client_key},
            sdk.ConnectionContext(connection="sftp", member=None, base_dir=str(tmp_path)),
        )
        try:
            await buyer.check()
            await write(buyer, "purchase_orders", order())
            supplier = connector(tmp_path / "acme", "supplier")
            await write(supplier, "invoices", INVOICE)
            (remote / "in" / "inv.x12").write_bytes(
                files(tmp_path / "acme" / "to_hub")[0].read_bytes()
            )

            [batch] = await read_all(buyer, "invoices")
        finally:
            await buyer.close()

        validate(files(remote / "out", "850")[0].read_text())
        assert [r.invoice_id for r in batch.records] == ["INV-20931"]
        answer = files(remote / "out", "997")[0].read_text()
        assert "~AK1*IN*1~AK2*810*0001~AK5*A~AK9*A*1*1*1~" in answer
        assert [p.name for p in files(remote / "done")] == ["inv.x12"]


async def test_a_997_echoes_only_safe_characters_of_what_the_partner_sent(tmp_path):
    buyer = connector(tmp_path)
    # Acme separates elements with | and a date holds our separator *.
    sets = "ST*855*0001~BAK*00*AD*PO-1*2026@10@16~PO1*1~SE*4*0001~"
    text = interchange_text(sets).replace("*", "|").replace("@", "*")
    (tmp_path / "to_hub" / "acks.x12").write_text(text)

    [batch] = await read_all(buyer, "acknowledgements")

    assert batch.rejects[0].reason.startswith("BAK04 (segment 2 of the set): '2026*10*16'")
    answer = files(tmp_path / "to_acme")[0].read_text()
    validate(answer)
    assert "~AK4*4**8*20261016~AK5*R*5~" in answer


async def test_two_copies_in_one_read_are_answered_once_and_both_archived(tmp_path):
    buyer = connector(tmp_path, archive_folder="archive")
    text = interchange_text(ack_set("0001"))
    (tmp_path / "to_hub" / "b-copy.x12").write_text(text)
    (tmp_path / "to_hub" / "a-original.x12").write_text(text)

    batches = [b async for b in buyer.read("acknowledgements", None)]
    await buyer.acknowledge("acknowledgements", batches[-1].state)

    assert [len(b.records) for b in batches] == [1, 0]
    assert len(files(tmp_path / "to_acme", "997")) == 1
    assert [p.name for p in files(tmp_path / "archive")] == ["a-original.x12", "b-copy.x12"]
