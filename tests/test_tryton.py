"""The Tryton connector against a real Tryton 8.2 server (SQLite), seeded once as a template.

The template holds a company, a fiscal year, a chart of accounts with four NYS-coded accounts
(``A2110.150``, ``A2110.450``, ``A1620.400``, ``A9999.999``), two suppliers (V100, V200), two
posted moves of two lines each, two supplier invoices (INV-1 posted, INV-2 draft) and two
purchases in quotation; see `tests/vendor/tryton_server.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors import tryton
from connectors.tryton import TrytonConnector
from hub import sdk
from hub.sdk.http import close_sessions
from tests.vendor import tryton_server
from tests.vendor.tryton_server import (
    ADMIN_PASSWORD,
    DATABASE,
    NORIGHT_LOGIN,
    NORIGHT_PASSWORD,
    TrytonServer,
    TrytonUnavailable,
)

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="session")
def tryton_install() -> tuple[Path, Path]:
    cache = tryton_server.default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    try:
        python = tryton_server.ensure_venv(cache)
    except TrytonUnavailable as error:
        pytest.skip(f"Tryton cannot be installed here: {error}")
    return python, tryton_server.ensure_template(cache, python)


@pytest.fixture
def server(tryton_install: tuple[Path, Path], tmp_path: Path) -> Iterator[TrytonServer]:
    python, template = tryton_install
    running = TrytonServer(python, template, tmp_path)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
async def sessions() -> AsyncIterator[None]:
    yield
    await close_sessions()


def connector(
    server: TrytonServer,
    *,
    login: str = "admin",
    password: str = ADMIN_PASSWORD,
    database: str = DATABASE,
    url: str | None = None,
    **extra,
) -> TrytonConnector:
    options = TrytonConnector.parse_options(
        {"url": url or server.url, "database": database, "login": login, **extra}
    )
    context = sdk.ConnectionContext(connection="cbo-tryton", member=None, base_dir=".")
    return TrytonConnector(options, {"password": password}, context)


async def read_all(source: TrytonConnector, stream: str, state=None) -> list[sdk.Batch]:
    return [batch async for batch in source.read(stream, state)]


def records(batches: list[sdk.Batch]) -> list[sdk.Record]:
    return [record for batch in batches for record in batch.records]


async def test_accounts_are_read_with_their_codes_split_and_uncoded_layouts_rejected(server):
    batches = await read_all(connector(server), "accounts")

    accounts = {a.code: a for a in records(batches)}
    assert sorted(accounts) == ["A1620.400", "A2110.150", "A2110.450", "A9999.999"]
    salaries = accounts["A2110.150"]
    assert (salaries.title, salaries.account.fund, salaries.account.function) == (
        "Instructional salaries",
        "A",
        "2110",
    )
    assert salaries.account.object == "150"
    # the minimal chart's own accounts ("1.1.1") do not fit the NYS layout: dead letters
    rejects = [reject for batch in batches for reject in batch.rejects]
    assert rejects and all("nys layout" in r.reason for r in rejects if r.raw["code"])


async def test_parties_are_read_as_vendors_with_address_and_email(server):
    vendors = {v.vendor_id: v for v in records(await read_all(connector(server), "parties"))}

    assert {"V100", "V200"} <= set(vendors)
    acme = vendors["V100"]
    assert (acme.name, acme.email, acme.active) == ("Acme School Supply", "ap@v100.example", True)
    assert "1 Main St" in acme.remit_address


#: The seeded NYS codes and the minimal chart's own ("2.1.1", the payable account) both fit.
EITHER_LAYOUT = r"(?P<fund>[A-Z]+|\d+)\.?(?P<function>\d+)\.(?P<object>\d+)"


async def test_posted_moves_are_read_as_journal_lines_with_decimal_amounts(server):
    source = connector(server, account_layout=EITHER_LAYOUT)

    lines = records(await read_all(source, "journal_entries"))

    assert [(line.entry_id, line.line_number, line.account.code) for line in lines] == [
        ("1", 1, "A2110.150"),
        ("1", 2, "2.1.1"),
        ("2", 1, "A2110.450"),
        ("2", 2, "2.1.1"),
        ("3", 1, "A2110.450"),  # the posted supplier invoice INV-1
        ("3", 2, "2.1.1"),
    ]
    first, second = lines[:2]
    assert (first.debit, first.credit, second.debit, second.credit) == (
        Decimal("1200.50"),
        Decimal("0"),
        Decimal("0"),
        Decimal("1200.50"),
    )
    assert (str(first.posted_on), first.account.function, first.fiscal_year) == (
        "2026-10-02",
        "2110",
        2027,
    )


async def test_a_move_with_a_line_outside_the_layout_is_one_dead_letter(server):
    batches = await read_all(connector(server), "journal_entries")

    assert records(batches) == []
    assert [r.position for b in batches for r in b.rejects] == [
        "account.move 1",
        "account.move 2",
        "account.move 3",
    ]


async def test_supplier_invoices_and_purchases_are_read_with_lines(server):
    source = connector(server)

    invoices = {i.invoice_id: i for i in records(await read_all(source, "invoices"))}
    orders = sorted(records(await read_all(source, "purchase_orders")), key=lambda o: o.po_id)

    assert {k: (i.vendor_id, i.status, i.total_amount) for k, i in invoices.items()} == {
        "INV-1": ("V100", "approved", Decimal("299.70")),
        "INV-2": ("V200", "received", Decimal("135.00")),
    }
    line = invoices["INV-1"].lines[0]
    assert (line.quantity, line.unit_price, line.amount) == (
        Decimal("3.0"),
        Decimal("99.90"),
        Decimal("299.70"),
    )
    assert [(o.po_id, o.vendor_id, o.status, o.total_amount) for o in orders] == [
        ("1", "V100", "open", Decimal("50.00")),
        ("2", "V200", "open", Decimal("1600.00")),
    ]
    assert orders[1].lines[0].description == "Toner"


async def test_a_read_from_the_last_state_delivers_only_the_changed_party(server):
    source = connector(server)
    first = await read_all(source, "parties")
    (acme,) = await source.call("model.party.party.search", [["code", "=", "V100"]], 0, None, None)
    await asyncio.sleep(1.1)  # Tryton stamps changes with the server's clock
    await source.call("model.party.party.write", [acme], {"name": "Acme School Supply Co"})

    again = await read_all(source, "parties", first[-1].state)

    assert [(v.vendor_id, v.name) for v in records(again)] == [("V100", "Acme School Supply Co")]
    assert records(await read_all(source, "parties", again[-1].state)) == []


@pytest.mark.parametrize(("batch_size", "stamp_page"), [(1, 1), (3, 3), (2, 1000), (1000, 2)])
async def test_paging_delivers_every_party_once_whatever_the_page_edges(
    server, monkeypatch, batch_size, stamp_page
):
    monkeypatch.setattr(tryton, "STAMP_PAGE", stamp_page)
    source = connector(server)
    source.batch_size = batch_size

    batches = await read_all(source, "parties")

    assert sorted(v.vendor_id for v in records(batches)) == ["1", "V100", "V200"]
    assert all(len(batch.records) <= batch_size for batch in batches)


async def test_a_wrong_password_is_named_as_such(server):
    with pytest.raises(sdk.AuthError, match="refused the login 'admin' on database 'cohub'"):
        await connector(server, password="wrong").check()


async def test_a_wrong_database_is_named(server):
    with pytest.raises(sdk.ConnectorConfigError, match="Tryton has no database 'nosuch'"):
        await connector(server, database="nosuch").check()


async def test_a_user_without_the_access_groups_is_told_which_models_it_may_not_read(server):
    source = connector(server, login=NORIGHT_LOGIN, password=NORIGHT_PASSWORD)

    with pytest.raises(sdk.AuthError) as raised:
        await source.check()

    assert str(raised.value) == (
        "Tryton user 'noright' may not read account.move (journal_entries), account.invoice "
        "(invoices), purchase.purchase (purchase_orders): add it to the access groups "
        "docs/connectors/tryton.md lists"
    )


async def test_check_passes_for_the_admin(server):
    await connector(server).check()


async def test_an_unreachable_host_and_a_server_that_is_not_tryton_are_told_apart(server):
    dead = f"http://127.0.0.1:{tryton_server.free_port()}/"
    with pytest.raises(sdk.TransientError, match="cannot reach Tryton at"):
        await connector(server, url=dead).check()
    with http_server() as other, pytest.raises(sdk.ConnectorConfigError, match="not a Tryton"):
        await connector(server, url=other).check()


@contextlib.contextmanager
def http_server() -> Iterator[str]:
    """A plain web server (Python's own), which answers POST with 501."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_an_expired_session_is_renewed_by_logging_in_again(server):
    source = connector(server)
    await read_all(source, "accounts")
    with sqlite3.connect(server.database_file) as db:  # Tryton forgets every session
        db.execute("DELETE FROM ir_session")

    batches = await read_all(source, "parties")

    assert len(records(batches)) == 3
    assert source._session.logins == 2


async def test_writing_vendors_twice_creates_each_party_once(server):
    destination = connector(server)
    vendor = sdk.record_type("purchasing.vendor")
    now = datetime(2026, 11, 1, tzinfo=UTC)
    batch = sdk.Batch(
        records=[
            vendor(vendor_id="C-EAST", name="Eastview CSD", email="ap@eastview.example",
                   remit_address="9 School Ln", updated_at=now),
            vendor(vendor_id="V100", name="Acme School Supply", updated_at=now),
        ],
        state=None,
    )  # fmt: skip

    first = await destination.write("parties", batch, None)
    second = await destination.write("parties", batch, None)

    parties = await destination.call(
        "model.party.party.search_read", [["code", "in", ["C-EAST", "V100"]]], 0, None, None,
        ["code", "name", "email", "addresses"],
    )  # fmt: skip
    parties.sort(key=lambda p: p["code"])
    assert (first.written, second.written) == (2, 2)
    assert [(p["code"], p["name"], p["email"], len(p["addresses"])) for p in parties] == [
        ("C-EAST", "Eastview CSD", "ap@eastview.example", 1),
        ("V100", "Acme School Supply", "ap@v100.example", 1),
    ]
