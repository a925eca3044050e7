"""Cooperative contracts: the catalog in contracts.toml, the check each order line must pass,
and orders held in dead letters by the `contract_check` transform until a replay passes them."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.apply import apply
from hub.config import ConfigError, check_against_plugins, load_config
from hub.contracts import load_catalog, order_problems
from hub.engine.replay import replay
from hub.engine.run import run_route
from hub.model.purchasing import PurchaseOrder, PurchaseOrderLine
from hub.store.tables import dead_letters, usage_events

REPO = Path(__file__).resolve().parent.parent
CATALOG = load_catalog(REPO / "config")


def order(*lines: PurchaseOrderLine, vendor: str = "techsource", on: date = date(2026, 10, 5)):
    return PurchaseOrder(
        updated_at=datetime(2026, 10, 5, tzinfo=UTC),
        po_id="PO-1",
        vendor_id=vendor,
        order_date=on,
        lines=list(lines),
        total_amount=sum((line.amount for line in lines), Decimal(0)),
    )


def line(n: int = 1, part: str | None = "CB-311E", price: str = "289.00", **more):
    quantity = Decimal(more.pop("quantity", "2"))
    return PurchaseOrderLine(
        line_number=n,
        description="Chromebook",
        supplier_part_id=part,
        quantity=quantity,
        unit_price=Decimal(price),
        amount=quantity * Decimal(price),
        contract_id=more.pop("contract_id", "NRB-27-TECH"),
        **more,
    )


def test_the_example_catalog_holds_two_contracts_with_exact_prices():
    tech = CATALOG["NRB-27-TECH"]
    assert (tech.vendor_id, tech.category, tech.admin_fee_rate) == (
        "techsource",
        "technology",
        Decimal("0.02"),
    )
    assert {p.supplier_part_id: p.unit_price for p in tech.prices}["CB-311E"] == Decimal("289.00")
    assert sorted(CATALOG) == ["NRB-27-PAPER", "NRB-27-TECH"]


def test_a_line_at_the_contract_price_passes():
    assert order_problems(order(line(), line(2, "CASE-11", "22.00")), CATALOG) == []


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (line(contract_id=None), "line 1 cites no cooperative contract"),
        (line(contract_id="NRB-99-X"), "line 1: no contract 'NRB-99-X' in the catalog"),
        (
            line(part="TONER-K"),
            "line 1: part TONER-K is not on contract 'NRB-27-TECH''s price list",
        ),
        (line(price="297.95"), "line 1: part CB-311E costs 289.00 under 'NRB-27-TECH', not 297.95"),
        (
            line(unit_of_measure="BX"),
            "line 1: part CB-311E is priced per EA under 'NRB-27-TECH', not per BX",
        ),
    ],
)
def test_a_line_off_contract_is_named_with_its_reason(bad, reason):
    assert order_problems(order(bad), CATALOG) == [reason]


def test_another_supplier_or_a_date_outside_the_term_is_refused():
    assert order_problems(order(line(), vendor="northeast-paper"), CATALOG) == [
        "line 1: contract 'NRB-27-TECH' is awarded to 'techsource', not 'northeast-paper'"
    ]
    assert order_problems(order(line(), on=date(2027, 7, 1)), CATALOG) == [
        "line 1: contract 'NRB-27-TECH' is not in force on 2027-07-01 (2026-07-01 to 2027-06-30)"
    ]


def copy_config(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config, ignore=shutil.ignore_patterns("examples"))
    return config


def test_a_bad_catalog_names_the_file_the_key_and_the_reason(tmp_path):
    config = copy_config(tmp_path)
    catalog = config / "contracts.toml"
    catalog.write_text(
        catalog.read_text()
        .replace("ends_on = 2027-06-30", "ends_on = 2026-06-30", 1)
        .replace('price_list = "contracts/NRB-27-PAPER.csv"', 'price_list = "contracts/nope.csv"')
    )
    (config / "contracts" / "NRB-27-TECH.csv").write_text(
        "supplier_part_id,unit_price\nA,1.00\nA,2.00\nB,free\n"
    )

    with pytest.raises(ConfigError) as raised:
        load_config(config)

    found = {(Path(i.file).name, i.key, i.reason) for i in raised.value.issues}
    assert found == {
        ("contracts.toml", "contracts.NRB-27-TECH.ends_on", "is before starts_on"),
        ("contracts.toml", "contracts.NRB-27-PAPER.price_list", "no file contracts/nope.csv"),
        ("NRB-27-TECH.csv", "line 3", "part 'A' is listed twice"),
        ("NRB-27-TECH.csv", "line 4", "'free' is not a price"),
    }


async def test_orders_off_contract_are_held_then_a_replay_delivers_them_once_fixed(
    runtime, config_dir, tmp_path
):
    # The example's Eastview purchase orders, checked and sent to TechSource as X12 850s.
    config = load_config(config_dir)
    plugins = runtime.plugins
    check_against_plugins(config, plugins.connectors(), plugins.transforms(), plugins.meters())
    await apply(runtime.engine, config)

    summary = await run_route(runtime.engine, plugins, "eastview-orders")

    assert (summary.status, summary.counts.read) == ("succeeded", 5)
    assert (summary.counts.written, summary.counts.rejected) == (3, 2)
    async with runtime.engine.connect() as conn:
        held = (
            await conn.execute(
                select(dead_letters.c.id, dead_letters.c.side, dead_letters.c.reason)
                .where(dead_letters.c.route == "eastview-orders")
                .order_by(dead_letters.c.id)
            )
        ).all()
        volume = (
            await conn.execute(
                select(usage_events.c.subject, usage_events.c.quantity).where(
                    usage_events.c.meter == "purchase_order_volume"
                )
            )
        ).all()
    assert [(side, reason) for _, side, reason in held] == [
        ("hold", "held by transform 'contract_check': line 2 cites no cooperative contract"),
        (
            "hold",
            "held by transform 'contract_check': line 1: part CB-311E costs 289.00 under "
            "'NRB-27-TECH', not 297.95",
        ),
    ]
    # Only what went to the supplier is metered: three orders under the contract.
    assert sorted(volume) == [
        ("techsource/NRB-27-TECH/EV27-0141", Decimal("8752.00")),
        ("techsource/NRB-27-TECH/EV27-0142", Decimal("1157.00")),
        ("techsource/NRB-27-TECH/EV27-0153", Decimal("1445.00")),
    ]
    assert sent_to_the_supplier(runtime.home) == ["EV27-0141", "EV27-0142", "EV27-0153"]

    # The supplier's new price is awarded by amendment: replaying both passes the Chromebook
    # order; the toner line still cites no contract and stays held with its reason.
    prices = config_dir / "contracts" / "NRB-27-TECH.csv"
    prices.write_text(prices.read_text().replace("EA,289.00", "EA,297.95"))
    [outcome] = await replay(runtime.engine, plugins, [held[0][0], held[1][0]])

    assert outcome.run.status == "succeeded"
    assert outcome.replayed == [held[1][0]]
    assert outcome.still_failing == {
        held[0][0]: "held by transform 'contract_check': line 2 cites no cooperative contract"
    }
    assert sent_to_the_supplier(runtime.home) == [
        "EV27-0141",
        "EV27-0142",
        "EV27-0153",
        "EV27-0157",
    ]


def sent_to_the_supplier(home: Path) -> list[str]:
    """The order numbers (BEG03) of the 850s in the demo's outbound drop folder."""
    return sorted(
        segment.split("*")[3]
        for path in (home / "edi" / "techsource" / "outbound").glob("850_*")
        for segment in path.read_text().replace("\n", "").split("~")
        if segment.startswith("BEG*")
    )
