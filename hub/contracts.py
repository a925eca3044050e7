"""Cooperative contracts: the catalog members buy under, and the check that holds a purchase
order whose lines do not cite an active contract at its awarded price.

The catalog lives in the configuration folder (``contracts.toml``, each contract's price list a
CSV file beside it), validated by ``cohub validate`` and ``cohub apply`` with the rest of the
folder. A route carrying members' purchase orders to suppliers lists the ``contract_check``
transform: an order with a line that names no contract, a contract that is unknown, awarded to
another supplier or not in force on the order date, a part off its price list, or another price
or unit, is held in dead letters with every such line's reason, and is not sent. Once the
catalog or the order is fixed, replaying the dead letter checks it again.
"""

from __future__ import annotations

import csv
import tomllib
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import msgspec

from hub.model import Record
from hub.model.purchasing import Contract, ContractPrice, PurchaseOrder, PurchaseOrderLine
from hub.sdk.extensions import BatchContext, Transform, Transformed

CATALOG_FILE = "contracts.toml"
PRICE_COLUMNS = ("supplier_part_id", "description", "unit_of_measure", "unit_price")


class ContractEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One contract as ``contracts.toml`` writes it; `price_list` is a CSV file relative to the
    configuration folder, with the columns of `PRICE_COLUMNS`."""

    vendor_id: str
    title: str
    category: str | None = None
    lead_agency: str | None = None
    starts_on: date
    ends_on: date | None = None
    admin_fee_rate: Decimal | None = None
    price_list: str


class CatalogFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    contracts: dict[str, ContractEntry] = msgspec.field(default_factory=dict)


class CatalogError(ValueError):
    """The catalog cannot be read: each problem as (file, key, reason)."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        super().__init__("; ".join(f"{file}: {key}: {reason}" for file, key, reason in problems))
        self.problems = problems


def load_catalog(folder: Path) -> dict[str, Contract]:
    """The contracts of the configuration `folder` by ID ({} without a ``contracts.toml``);
    CatalogError naming every file, key and reason if any of it is wrong."""
    return _read_catalog(folder)[0]


#: A file as last read: (path, size, modification time in ns), or (path, -1, -1) if absent.
Stamp = tuple[Path, int, int]

#: Prices by contract ID, then by the supplier's part number.
PriceIndex = dict[str, dict[str, ContractPrice]]

#: The catalogs `contract_check` read, by folder, with the stamps of the files they came from.
_READ: dict[Path, tuple[tuple[Stamp, ...], dict[str, Contract], PriceIndex]] = {}


def _stamp(path: Path) -> Stamp:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return (path, -1, -1)
    return (path, stat.st_size, stat.st_mtime_ns)


def _checked_catalog(folder: Path) -> tuple[dict[str, Contract], PriceIndex]:
    """The folder's catalog and its prices indexed by part, read again only when
    ``contracts.toml`` or one of its price lists changed: the check runs on every batch."""
    held = _READ.get(folder)
    if held is not None and all(_stamp(stamp[0]) == stamp for stamp in held[0]):
        return held[1], held[2]
    contracts, files = _read_catalog(folder)
    index = price_index(contracts)
    _READ[folder] = (tuple(_stamp(path) for path in files), contracts, index)
    return contracts, index


def price_index(catalog: dict[str, Contract]) -> PriceIndex:
    """Each contract's prices by the supplier's part number."""
    return {cid: {p.supplier_part_id: p for p in c.prices} for cid, c in catalog.items()}


def _read_catalog(folder: Path) -> tuple[dict[str, Contract], list[Path]]:
    """The catalog, and the files it was read from (contracts.toml and its price lists)."""
    path = folder / CATALOG_FILE
    if not path.is_file():
        return {}, [path]
    try:
        parsed = msgspec.convert(
            tomllib.loads(path.read_text(encoding="utf-8")), CatalogFile, strict=False
        )
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise CatalogError([(str(path), "", f"not valid TOML: {error}")]) from None
    except msgspec.ValidationError as error:
        raise CatalogError([(str(path), _key_of(error), str(error))]) from None
    problems: list[tuple[str, str, str]] = []
    contracts: dict[str, Contract] = {}
    files = [path, *(folder / entry.price_list for entry in parsed.contracts.values())]
    for contract_id, entry in parsed.contracts.items():
        key = f"contracts.{contract_id}"
        if entry.ends_on is not None and entry.ends_on < entry.starts_on:
            problems.append((str(path), f"{key}.ends_on", "is before starts_on"))
        rate = entry.admin_fee_rate
        if rate is not None and not (rate.is_finite() and 0 <= rate < 1):
            problems.append((str(path), f"{key}.admin_fee_rate", "must be a fraction: 0.02 is 2 %"))
        prices, price_problems = _price_list(folder / entry.price_list)
        if not (folder / entry.price_list).is_file():
            problems.append((str(path), f"{key}.price_list", f"no file {entry.price_list}"))
        problems += price_problems
        contracts[contract_id] = Contract(
            updated_at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
            contract_id=contract_id,
            vendor_id=entry.vendor_id,
            title=entry.title,
            category=entry.category,
            lead_agency=entry.lead_agency,
            starts_on=entry.starts_on,
            ends_on=entry.ends_on,
            admin_fee_rate=entry.admin_fee_rate,
            prices=prices,
        )
    if problems:
        raise CatalogError(problems)
    return contracts, files


def _key_of(error: msgspec.ValidationError) -> str:
    """The dotted key a msgspec error names (``at `$.contracts.X.starts_on```)."""
    text = str(error)
    return text.split("`$.", 1)[1].split("`", 1)[0] if "`$." in text else ""


def _price_list(path: Path) -> tuple[list[ContractPrice], list[tuple[str, str, str]]]:
    """A price list's items, and its problems as (file, line, reason)."""
    if not path.is_file():
        return [], []
    prices: list[ContractPrice] = []
    problems: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [
            c for c in ("supplier_part_id", "unit_price") if c not in (reader.fieldnames or [])
        ]
        if missing:
            return [], [(str(path), "header", f"missing column {missing[0]!r}")]
        for line, row in enumerate(reader, start=2):
            part = (row.get("supplier_part_id") or "").strip()
            try:
                price = Decimal((row.get("unit_price") or "").strip())
            except InvalidOperation:
                price = Decimal("NaN")
            if not part:
                problems.append((str(path), f"line {line}", "no supplier_part_id"))
            elif part in seen:
                problems.append((str(path), f"line {line}", f"part {part!r} is listed twice"))
            elif not price.is_finite() or price < 0:
                problems.append(
                    (str(path), f"line {line}", f"{row.get('unit_price')!r} is not a price")
                )
            else:
                seen.add(part)
                prices.append(
                    ContractPrice(
                        supplier_part_id=part,
                        description=(row.get("description") or "").strip() or None,
                        unit_of_measure=(row.get("unit_of_measure") or "").strip() or "EA",
                        unit_price=price,
                    )
                )
    return prices, problems


def order_problems(
    order: PurchaseOrder, catalog: dict[str, Contract], prices: PriceIndex | None = None
) -> list[str]:
    """Why each line of `order` may not be sent under the catalog; [] when every line cites a
    contract awarded to the order's supplier, in force on the order date, at its price.
    `prices` is `price_index(catalog)`, if the caller has it already."""
    prices = price_index(catalog) if prices is None else prices
    problems: list[str] = []
    for line in order.lines:
        label = f"line {line.line_number}"
        contract = catalog.get(line.contract_id or "")
        if not line.contract_id:
            problems.append(f"{label} cites no cooperative contract")
        elif contract is None:
            problems.append(f"{label}: no contract {line.contract_id!r} in the catalog")
        elif contract.vendor_id != order.vendor_id:
            problems.append(
                f"{label}: contract {contract.contract_id!r} is awarded to "
                f"{contract.vendor_id!r}, not {order.vendor_id!r}"
            )
        elif order.order_date < contract.starts_on or (
            contract.ends_on is not None and order.order_date > contract.ends_on
        ):
            term = f"{contract.starts_on} to {contract.ends_on or 'open'}"
            problems.append(
                f"{label}: contract {contract.contract_id!r} is not in force on "
                f"{order.order_date} ({term})"
            )
        else:
            problems += _price_problems(label, line, contract, prices[contract.contract_id])
    return problems


def _price_problems(
    label: str, line: PurchaseOrderLine, contract: Contract, listed: dict[str, ContractPrice]
) -> list[str]:
    price = listed.get(line.supplier_part_id or "")
    if price is None:
        part = line.supplier_part_id or "(none)"
        return [f"{label}: part {part} is not on contract {contract.contract_id!r}'s price list"]
    if price.unit_of_measure != line.unit_of_measure:
        return [
            f"{label}: part {price.supplier_part_id} is priced per {price.unit_of_measure} "
            f"under {contract.contract_id!r}, not per {line.unit_of_measure}"
        ]
    if price.unit_price != line.unit_price:
        return [
            f"{label}: part {price.supplier_part_id} costs {price.unit_price} under "
            f"{contract.contract_id!r}, not {line.unit_price}"
        ]
    return []


def contract_check(context: BatchContext, records: list[Record]) -> list[Record] | Transformed:
    """Hold the purchase orders that may not go to the supplier as they are; pass the rest."""
    if not records or not isinstance(records[0], PurchaseOrder):
        return records
    catalog, prices = _checked_catalog(Path(context.config_dir))
    passed: list[Record] = []
    held: list[tuple[Record, str]] = []
    for order in records:
        assert isinstance(order, PurchaseOrder)  # a batch holds one record type
        problems = order_problems(order, catalog, prices)
        if problems:
            held.append((order, "; ".join(problems)))
        else:
            passed.append(order)
    return Transformed(records=passed, held=held) if held else records


CONTRACT_CHECK = Transform(
    name="contract_check",
    function=contract_check,
    description="hold purchase orders whose lines do not cite an active cooperative contract "
    "at its awarded price (contracts.toml)",
)
