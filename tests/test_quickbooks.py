"""The QuickBooks Online connector against a local QuickBooks API (tests/vendor/qbo_api.py)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors.quickbooks import QuickBooks
from connectors.sql_table import StreamTable
from hub import sdk
from hub.apply import apply
from hub.config import check_against_plugins, load_config
from hub.engine.connections import ConnectionRow, open_connector
from hub.engine.run import run_route
from hub.model.purchasing import Invoice, InvoiceLine, Vendor
from hub.plugins import PluginHost
from hub.runtime import key_file
from hub.sdk import secrets as sdk_secrets
from hub.sdk.http import close_sessions
from hub.store.database import create_engine
from hub.store.tables import audit_log, dead_letters
from hub.vault import create_key_file
from tests.canaries import plant
from tests.vendor.qbo_api import QboApi

CLIENT_SECRET = plant("qbo-client-secret-canary-31d7")
FIRST_REFRESH = plant("RT1-canary-first-8c2e")
FAST = {
    "retry_attempts": 4,
    "retry_base_seconds": 0.01,
    "retry_cap_seconds": 0.02,
    "max_retry_after_seconds": 0.05,
    "timeout_seconds": 5,
}


class MemoryKeeper:
    """Where a test keeps a connection's rotated secrets (the engine's is the vault)."""

    def __init__(self, refuse: str | None = None) -> None:
        self.stored: list[tuple[str, str]] = []
        self.refuse = refuse

    def refusal(self, secret: str) -> str | None:
        return self.refuse

    async def store(self, secret: str, value: str) -> None:
        self.stored.append((secret, value))


@pytest.fixture
async def api() -> AsyncIterator[QboApi]:
    server = QboApi(client_secret=CLIENT_SECRET, refresh_token=FIRST_REFRESH)
    await server.start()
    yield server
    await close_sessions()
    await server.close()


def connector(
    api: QboApi, keeper: MemoryKeeper | None = None, secrets: dict | None = None, **options
) -> QuickBooks:
    parsed = QuickBooks.parse_options(
        {
            "realm_id": api.realm,
            "base_url": api.base_url,
            "token_url": api.token_url,
            **FAST,
            **options,
        }
    )
    context = sdk.ConnectionContext(connection="harbor-falls-qbo", member="harbor-falls")
    sdk_secrets.keep(context.connection, keeper or MemoryKeeper())
    values = {
        "client_id": api.client_id,
        "client_secret": CLIENT_SECRET,
        "refresh_token": api.refresh_token,
        **(secrets or {}),
    }
    return QuickBooks(parsed, values, context)


async def read_all(qbo: QuickBooks, stream: str, state=None) -> list[sdk.Batch]:
    return [batch async for batch in qbo.read(stream, state)]


def records(batches: list[sdk.Batch]) -> list:
    return [r for b in batches for r in b.records]


def vendor(n: int, **extra) -> dict:
    return {
        "Id": str(n),
        "DisplayName": f"Vendor {n}",
        "Active": True,
        "PrimaryEmailAddr": {"Address": f"ap{n}@supplier.example.com"},
        **extra,
    }


def ago(**delta) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat(timespec="seconds")


def queries(api: QboApi, entity: str) -> list[str]:
    return [r for r in api.requests if "/query?" in r and f"FROM+{entity}" in r]


# --- query paging -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "requests"),
    [(0, 1), (2, 1), (3, 2), (7, 3)],
    ids=["empty", "one-short-page", "exactly-maxresults", "last-page-short"],
)
async def test_a_first_read_queries_pages_until_a_short_one(api, count, requests):
    # given `count` vendors, each updated a minute after the one before, and pages of 3
    for n in range(1, count + 1):
        api.put("Vendor", vendor(n), ago(minutes=60 - n))
    qbo = connector(api, page_size=3)

    # when the vendors are read
    batches = await read_all(qbo, "vendors")

    # then each is delivered once, in order; a short page ends the walk, a full one asks once
    # more (the empty answer has no Vendor key)
    assert [v.vendor_id for v in records(batches)] == [str(n) for n in range(1, count + 1)]
    asked = queries(api, "Vendor")
    assert len(asked) == requests
    assert "ORDERBY+MetaData.LastUpdatedTime+STARTPOSITION+1+MAXRESULTS+3" in asked[0]
    assert all("minorversion=75" in r for r in asked)
    assert batches[-1].state["cursor"] is not None


async def test_entities_updated_at_the_same_second_are_each_read_once_across_pages(api):
    # given seven vendors of which five share one LastUpdatedTime, and pages of 2
    same = ago(minutes=5)
    api.put("Vendor", vendor(1), ago(minutes=9))
    for n in range(2, 7):
        api.put("Vendor", vendor(n), same)
    api.put("Vendor", vendor(7), ago(minutes=1))

    batches = await read_all(connector(api, page_size=2), "vendors")

    # then the keyset walk neither loops on the tie nor skips past it
    assert sorted(v.vendor_id for v in records(batches)) == [str(n) for n in range(1, 8)]
    assert len(records(batches)) == 7


async def test_the_vendor_mapping(api):
    api.put(
        "Vendor",
        vendor(
            56,
            TaxIdentifier="XXXXXX6789",
            PrimaryPhone={"FreeFormNumber": "(518) 555-0140"},
            BillAddr={
                "Line1": "12 Mill St",
                "City": "Troy",
                "CountrySubDivisionCode": "NY",
                "PostalCode": "12180",
            },
        ),
        "2026-09-01T09:30:00-07:00",
    )
    [supplier] = records(await read_all(connector(api), "vendors"))
    assert supplier == Vendor(
        vendor_id="56",
        name="Vendor 56",
        email="ap56@supplier.example.com",
        phone="(518) 555-0140",
        remit_address="12 Mill St, Troy NY 12180",
        tax_id="XXXXXX6789",
        updated_at=datetime(2026, 9, 1, 16, 30, tzinfo=UTC),
    )


async def test_an_invoice_maps_its_lines_amounts_as_decimals(api):
    api.put(
        "Invoice",
        {
            "Id": "130",
            "DocNumber": "1037",
            "TxnDate": "2026-09-14",
            "DueDate": "2026-10-14",
            "CustomerRef": {"value": "58", "name": "Eastview CSD"},
            "TotalAmt": Decimal("1012.50"),
            "Balance": Decimal("1012.50"),
            "TxnTaxDetail": {"TotalTax": 0},
            "Line": [
                {
                    "Id": "1",
                    "LineNum": 1,
                    "Amount": Decimal("1050.00"),
                    "Description": "Payroll services, September",
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {
                        "ItemRef": {"value": "7", "name": "Payroll"},
                        "Qty": 350,
                        "UnitPrice": 3,
                    },
                },
                {
                    "Amount": Decimal("1050.00"),
                    "DetailType": "SubTotalLineDetail",
                    "SubTotalLineDetail": {},
                },
                {
                    "Amount": Decimal("37.50"),
                    "DetailType": "DiscountLineDetail",
                    "DiscountLineDetail": {"PercentBased": False},
                },
            ],
        },
    )
    [invoice] = records(await read_all(connector(api), "invoices"))
    assert (invoice.key, invoice.total_amount, invoice.tax_amount, invoice.status) == (
        f"{api.realm}|1037",
        Decimal("1012.50"),
        Decimal(0),
        "received",
    )
    assert invoice.lines == [
        InvoiceLine(
            line_number=1,
            description="Payroll services, September",
            supplier_part_id="Payroll",
            quantity=Decimal(350),
            unit_price=Decimal(3),
            amount=Decimal("1050.00"),
        ),
        InvoiceLine(
            line_number=2,
            quantity=Decimal(1),
            unit_price=Decimal("-37.50"),
            amount=Decimal("-37.50"),
        ),
    ]
    assert isinstance(invoice.total_amount, Decimal)


async def test_journal_lines_name_accounts_by_number_and_an_unnumbered_one_rejects_the_entry(api):
    api.put("Account", {"Id": "35", "Name": "Checking", "AcctNum": "10-0000-101"}, ago(days=3))
    api.put("Account", {"Id": "36", "Name": "Salaries", "AcctNum": "10-1000-100"}, ago(days=3))
    api.put("Account", {"Id": "37", "Name": "Misc", "Active": True}, ago(days=3))

    def entry(ident: str, debit_account: str) -> dict:
        return {
            "Id": ident,
            "TxnDate": "2026-09-30",
            "Line": [
                {
                    "Id": "0",
                    "Amount": Decimal("2500.00"),
                    "Description": "September payroll",
                    "DetailType": "JournalEntryLineDetail",
                    "JournalEntryLineDetail": {
                        "PostingType": "Debit",
                        "AccountRef": {"value": debit_account},
                    },
                },
                {
                    "Id": "1",
                    "Amount": Decimal("2500.00"),
                    "DetailType": "JournalEntryLineDetail",
                    "JournalEntryLineDetail": {
                        "PostingType": "Credit",
                        "AccountRef": {"value": "35", "name": "Checking"},
                    },
                },
            ],
        }

    api.put("JournalEntry", entry("201", "36"), ago(days=2))
    api.put("JournalEntry", entry("202", "37"), ago(days=1))
    qbo = connector(api)

    batches = await read_all(qbo, "journal_entries")

    lines = records(batches)
    assert [(j.key, j.account.code, j.debit, j.credit) for j in lines] == [
        ("201|1", "10-1000-100", Decimal("2500.00"), Decimal(0)),
        ("201|2", "10-0000-101", Decimal(0), Decimal("2500.00")),
    ]
    [reject] = [r for b in batches for r in b.rejects]
    assert reject.position == "JournalEntry Id 202"
    assert reject.reason.startswith("line 1: account None has no account number (AcctNum)")
    # and the accounts: the numbered ones split into NCES dimensions, the other rejected
    accounts = await read_all(qbo, "accounts")
    assert [(a.code, a.account.function) for a in records(accounts)] == [
        ("10-0000-101", "0000"),
        ("10-1000-100", "1000"),
    ]
    assert [r.position for b in accounts for r in b.rejects] == ["Account Id 37"]


async def test_a_bill_is_a_vendor_invoice_keyed_by_the_vendor(api):
    api.put(
        "Bill",
        {
            "Id": "300",
            "VendorRef": {"value": "56"},
            "TxnDate": "2026-09-02",
            "TotalAmt": Decimal("80.25"),
            "Balance": 0,
            "Line": [
                {
                    "Amount": Decimal("80.25"),
                    "Description": "Toner",
                    "DetailType": "AccountBasedExpenseLineDetail",
                    "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "41"}},
                }
            ],
        },
    )
    [bill] = records(await read_all(connector(api), "bills"))
    assert (bill.key, bill.status, bill.lines[0].amount) == ("56|300", "paid", Decimal("80.25"))


# --- change data capture ----------------------------------------------------------------------


async def test_a_second_read_asks_cdc_and_delivers_deleted_vendors_as_deletes(api, caplog):
    # given a first complete read of three vendors
    for n in (1, 2, 3):
        api.put("Vendor", vendor(n), ago(hours=3))
    api.put(
        "Invoice",
        {
            "Id": "9",
            "DocNumber": "1001",
            "TxnDate": "2026-09-01",
            "TotalAmt": 10,
            "Balance": 10,
            "Line": [],
        },
        ago(hours=3),
    )
    first = await read_all(connector(api), "vendors")
    state = first[-1].state
    await read_all(connector(api), "invoices")

    # when vendor 2 changes, 4 arrives, 3 is deleted, and so is the invoice
    api.put("Vendor", vendor(2, DisplayName="Vendor Two"))
    api.put("Vendor", vendor(4))
    api.delete("Vendor", "3")
    api.delete("Invoice", "9")
    api.requests.clear()
    again = await read_all(connector(api), "vendors", state)

    # then one CDC request since the cursor brings the changes, and the deletion as a key
    [asked] = [r for r in api.requests if "/cdc?" in r]
    assert "entities=Vendor" in asked and "changedSince=" in asked
    assert not queries(api, "Vendor")
    assert [v.name for v in records(again)] == ["Vendor Two", "Vendor 4"]
    assert again[-1].deletes == ["3"]
    assert again[-1].state["cursor"] > state["cursor"]

    # and an invoice deletion, which cannot be keyed (DocNumber is gone), is logged, not sent
    with caplog.at_level(logging.WARNING, logger="connectors.quickbooks"):
        invoices = await read_all(connector(api), "invoices", state)
    assert invoices[-1].deletes == []
    assert "qbo.deletes_unmatched: QuickBooks deleted Invoice Id 9" in caplog.text


async def test_a_quiet_stream_moves_its_cursor_to_the_server_time(api):
    api.put("Vendor", vendor(1), ago(days=20))
    state = (await read_all(connector(api), "vendors"))[-1].state
    # the cursor is the server's time of the read, not the vendor's 20 days old stamp
    assert datetime.fromisoformat(state["cursor"]) > datetime.now(UTC) - timedelta(minutes=1)


async def test_a_cursor_beyond_cdc_reach_falls_back_to_a_query_and_says_so(api, caplog):
    api.put("Vendor", vendor(1), ago(days=45))
    api.put("Vendor", vendor(2), ago(days=2))
    old = {"cursor": ago(days=40), "recent": {}}

    with caplog.at_level(logging.WARNING, logger="connectors.quickbooks"):
        batches = await read_all(connector(api), "vendors", old)

    assert [v.vendor_id for v in records(batches)] == ["2"]
    assert not [r for r in api.requests if "/cdc?" in r]
    [asked] = queries(api, "Vendor")
    assert "WHERE+MetaData.LastUpdatedTime+%3E%3D+" in asked
    assert "qbo.cdc_out_of_reach: vendors last read up to" in caplog.text


async def test_a_cdc_answer_cut_at_1000_is_read_again_by_query(api, caplog):
    first = await read_all(connector(api), "vendors")
    for n in range(1, 1002):
        api.put("Vendor", vendor(n))
    with caplog.at_level(logging.WARNING, logger="connectors.quickbooks"):
        batches = await read_all(connector(api), "vendors", first[-1].state)
    assert len({v.vendor_id for v in records(batches)}) == 1001
    assert "qbo.cdc_cut: CDC answered 1000 Vendor entities" in caplog.text


# --- auth: refresh, rotation, expiry ------------------------------------------------------------


async def test_each_refresh_stores_the_rotated_token_before_using_it(api):
    # given an access token the server refuses after two calls, as after its hour
    api.token_uses = 2
    for n in range(1, 8):
        api.put("Vendor", vendor(n), ago(minutes=60 - n))
    keeper = MemoryKeeper()
    qbo = connector(api, keeper, page_size=2)

    batches = await read_all(qbo, "vendors")

    # then the read goes on after each 401 with a new access token, and every refresh token
    # Intuit issued was kept, the latest being the one the server accepts now
    assert len(records(batches)) == 7
    assert len(api.issued_refresh) == 2
    assert keeper.stored == [("refresh_token", t) for t in api.issued_refresh]
    assert keeper.stored[-1][1] == api.refresh_token
    # and the first refresh token is refused from now on
    with pytest.raises(sdk.AuthError, match="invalid_grant"):
        await connector(api, secrets={"refresh_token": FIRST_REFRESH}).check()
    assert api.refused_refresh == [FIRST_REFRESH]


async def test_a_refresh_token_that_cannot_be_kept_is_never_spent(api):
    keeper = MemoryKeeper(refuse="secret 'refresh_token' comes from env:QBO_RT")
    with pytest.raises(sdk.ConnectorConfigError, match="comes from env:QBO_RT"):
        await read_all(connector(api, keeper), "vendors")
    assert api.issued_refresh == []


async def test_an_env_refresh_token_is_refused_naming_the_command_to_store_it(api, monkeypatch):
    monkeypatch.setenv("QBO_RT", FIRST_REFRESH)
    for name, value in (("QBO_ID", api.client_id), ("QBO_SECRET", CLIENT_SECRET)):
        monkeypatch.setenv(name, value)
    row = ConnectionRow(
        name="harbor-falls-qbo",
        connector="quickbooks_online",
        member="harbor-falls",
        options={"realm_id": api.realm, "base_url": api.base_url, "token_url": api.token_url},
        secrets={
            "client_id": "env:QBO_ID",
            "client_secret": "env:QBO_SECRET",
            "refresh_token": "env:QBO_RT",
        },
        base_dir=".",
    )
    qbo = open_connector(PluginHost([]), row)

    with pytest.raises(sdk.ConnectorConfigError) as raised:
        await qbo.check()

    assert str(raised.value) == (
        "connection 'harbor-falls-qbo': secret 'refresh_token' comes from env:QBO_RT, which the "
        "hub cannot update, but the vendor replaces it on use: store it in the vault with "
        "`cohub secrets set connection.harbor-falls-qbo.refresh_token` (the value on standard "
        'input) and reference it as "vault:connection.harbor-falls-qbo.refresh_token" in the '
        "connection's [secrets]"
    )
    assert api.issued_refresh == []


async def test_429_with_retry_after_and_5xx_are_retried(api):
    for n in range(1, 4):
        api.put("Vendor", vendor(n))
    api.fail_next("/query", 429, retry_after="1")
    api.fail_next("/query", 503)
    api.fail_next("/tokens/bearer", 500)
    qbo = connector(api)

    batches = await read_all(qbo, "vendors")

    assert len(records(batches)) == 3
    assert qbo.client.counts.retries == 3


# --- malformed payloads -------------------------------------------------------------------------


async def test_an_entity_that_is_not_an_object_or_does_not_validate_is_a_reject(api):
    api.put("Vendor", vendor(1), ago(minutes=3))
    api.put_raw("Vendor", "not an entity", ago(minutes=2))
    api.put("Vendor", vendor(3, DisplayName=None), ago(minutes=1))
    qbo = connector(api)

    batches = await read_all(qbo, "vendors")

    assert [v.vendor_id for v in records(batches)] == ["1"]
    assert [(r.position, r.reason) for b in batches for r in b.rejects] == [
        ("Vendor", "a QuickBooks entity is an object, not str"),
        ("Vendor Id 3", "Expected `str`, got `null` - at `$.name`"),
    ]
    fixed = {**[r for b in batches for r in b.rejects][1].raw, "DisplayName": "Vendor 3"}
    assert qbo.map_raw("vendors", fixed).name == "Vendor 3"


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ('{"QueryResponse": {"Vendor": [', sdk.TransientError, "not valid JSON"),
        ('{"time": "2026-09-01T00:00:00Z"}', sdk.ConnectorError, "without a QueryResponse"),
        ('{"QueryResponse": {"Vendor": {"Id": "1"}}}', sdk.ConnectorError, "is dict, not a list"),
    ],
    ids=["truncated-json", "no-query-response", "entities-not-a-list"],
)
async def test_a_malformed_page_fails_the_read_clearly(api, body, error, message):
    for _ in range(FAST["retry_attempts"]):
        api.fail_next("/query", 200, body=body)
    with pytest.raises(error, match=message):
        await read_all(connector(api), "vendors")


async def test_a_malformed_cdc_answer_fails_the_read_clearly(api):
    first = await read_all(connector(api), "vendors")
    api.fail_next("/cdc", 200, body='{"CDCResponse": []}')
    with pytest.raises(sdk.ConnectorError, match=r"without CDCResponse\[0\].QueryResponse"):
        await read_all(connector(api), "vendors", first[-1].state)


# --- destination --------------------------------------------------------------------------------


def statement(number: str, amount: str, quantity: int = 1) -> Invoice:
    return Invoice(
        invoice_id=number,
        vendor_id="cbo",
        invoice_date=date(2026, 9, 30),
        due_date=date(2026, 10, 30),
        lines=[
            InvoiceLine(
                line_number=1,
                description="Shared payroll service",
                quantity=Decimal(quantity),
                unit_price=Decimal(amount),
                amount=Decimal(amount) * quantity,
            ),
        ],
        total_amount=Decimal(amount) * quantity,
        updated_at=datetime.now(UTC),
    )


async def test_writing_invoices_twice_updates_by_docnumber_without_duplicates(api):
    qbo = connector(api, customers={"eastview": "58"}, item_id="7")
    batch = sdk.Batch(
        records=[statement("CBO-2026-09-E", "1234.56"), statement("CBO-9-W", "10.10", 3)], state={}
    )

    first = await qbo.write("invoices", batch, "eastview")
    again = await qbo.write("invoices", batch, "eastview")

    assert (first.written, first.rejects, again.written) == (2, [], 2)
    stored = api.entities["Invoice"]
    assert sorted(i["DocNumber"] for i in stored.values()) == ["CBO-2026-09-E", "CBO-9-W"]
    # the second write updated each at its SyncToken, amounts exact
    assert {i["SyncToken"] for i in stored.values()} == {"1"}
    east = next(i for i in stored.values() if i["DocNumber"] == "CBO-2026-09-E")
    assert east["Line"][0]["Amount"] == Decimal("1234.56")
    assert east["Line"][0]["SalesItemLineDetail"]["ItemRef"] == {"value": "7"}
    posts = [r for r in api.requests if r.startswith("POST /v3/")]
    assert len(posts) == 4 and all("requestid=" in p for p in posts)


async def test_a_retried_post_with_the_same_requestid_creates_one_invoice(api):
    # given QuickBooks created the invoice, but its answer was lost (a 503 in its place)
    api.lose_answers = 1
    qbo = connector(api, customer_id="58")
    batch = sdk.Batch(records=[statement("CBO-1", "5.00")], state={})

    result = await qbo.write("invoices", batch, "eastview")

    assert result.written == 1
    assert len(api.entities["Invoice"]) == 1
    posts = [p for p in api.requests if p.startswith("POST /v3/")]
    assert len(posts) == 2
    assert len({p.split("requestid=")[1].split("&")[0] for p in posts}) == 1


async def test_a_validation_fault_rejects_that_invoice_and_the_rest_are_written(api):
    qbo = connector(api, customers={"eastview": "58"})
    bad = statement("CBO-BAD", "10.00")
    bad = Invoice(
        **{
            **{f: getattr(bad, f) for f in bad.__struct_fields__},
            "lines": [
                InvoiceLine(
                    line_number=1,
                    quantity=Decimal(2),
                    unit_price=Decimal("10.00"),
                    amount=Decimal("25.00"),
                )
            ],
        }
    )
    batch = sdk.Batch(records=[statement("CBO-OK", "10.00"), bad], state={})

    result = await qbo.write("invoices", batch, "eastview")

    assert result.written == 1
    [reject] = result.rejects
    assert reject.position == "invoice cbo|CBO-BAD"
    assert reject.reason == (
        "QuickBooks refused invoice CBO-BAD: Amount is not equal to UnitPrice * Qty: "
        "Line 1: Amount 25.00 (code 6070)"
    )
    assert reject.raw["invoice_id"] == "CBO-BAD"


async def test_writing_for_a_member_without_a_customer_fails_the_write_clearly(api):
    qbo = connector(api, customers={"eastview": "58"})
    with pytest.raises(
        sdk.ConnectorConfigError, match="no QuickBooks customer to invoice for member 'westfield'"
    ):
        await qbo.write(
            "invoices", sdk.Batch(records=[statement("X", "1.00")], state={}), "westfield"
        )
    with pytest.raises(sdk.ConnectorConfigError, match="cannot be written; writable: invoices"):
        await qbo.write("vendors", sdk.Batch(records=[], state={}), "eastview")


async def test_an_auth_fault_while_writing_fails_the_write(api):
    api.scopes.clear()
    with pytest.raises(sdk.AuthError, match="HTTP 403"):
        await connector(api, customer_id="58").write(
            "invoices", sdk.Batch(records=[statement("X", "1.00")], state={}), None
        )


# --- check --------------------------------------------------------------------------------------


async def test_check_passes_and_streams_name_their_records(api):
    qbo = connector(api)
    await qbo.check()
    assert [(s.name, s.record, s.writable) for s in await qbo.streams()] == [
        ("accounts", "accounting.account", False),
        ("vendors", "purchasing.vendor", False),
        ("invoices", "purchasing.invoice", True),
        ("bills", "purchasing.invoice", False),
        ("journal_entries", "accounting.journal_entry", False),
    ]


async def test_check_says_the_client_credentials_were_refused(api):
    with pytest.raises(
        sdk.AuthError, match=r"refused the app's client_id and client_secret \(invalid_client\)"
    ):
        await connector(api, secrets={"client_secret": "wrong"}).check()


async def test_check_says_a_revoked_refresh_token_needs_the_app_reconnected(api):
    with pytest.raises(sdk.AuthError) as raised:
        await connector(api, secrets={"refresh_token": "RT-revoked"}).check()
    assert "(invalid_grant)" in str(raised.value)
    assert "reconnect the app to the QuickBooks company" in str(raised.value)
    assert "cohub secrets set connection.harbor-falls-qbo.refresh_token" in str(raised.value)


async def test_check_says_the_realm_is_wrong(api):
    with pytest.raises(
        sdk.AuthError,
        match=r"refused realm_id 1234 \(HTTP 403, AUTHENTICATION: message=ApplicationAuthorizationFailed",
    ):
        await connector(api, realm_id="1234").check()


async def test_check_says_the_app_lacks_the_accounting_permission(api):
    api.scopes.clear()
    with pytest.raises(
        sdk.AuthError, match=re.escape("needs the com.intuit.quickbooks.accounting scope")
    ):
        await connector(api).check()


async def test_check_says_a_wrong_base_url_does_not_answer_as_quickbooks(api):
    with pytest.raises(
        sdk.ConnectorConfigError, match=r"does not answer as the QuickBooks Online API .* HTTP 404"
    ):
        await connector(api, base_url=api.base_url + "nowhere/").check()


async def test_check_says_the_host_cannot_be_reached(api):
    with pytest.raises(
        sdk.TransientError,
        match=re.escape("cannot reach the QuickBooks API at http://127.0.0.1:9/"),
    ):
        await connector(api, base_url="http://127.0.0.1:9/", retry_attempts=1).check()
    with pytest.raises(sdk.TransientError, match="cannot reach Intuit's token endpoint"):
        await connector(api, token_url="http://127.0.0.1:9/token", retry_attempts=1).check()


def test_options_have_a_json_schema_and_the_environments_choose_the_host():
    schema = QuickBooks.options_schema()["$defs"]["QuickBooksOptions"]
    assert {"realm_id", "environment", "minor_version", "ca_bundle"} <= set(schema["properties"])
    assert schema["required"] == ["realm_id"]
    assert schema["properties"]["environment"]["enum"] == ["production", "sandbox"]
    assert QuickBooks.secrets == ("client_id", "client_secret", "refresh_token")
    context = sdk.ConnectionContext(connection="c", member=None)
    sandbox = QuickBooks(
        QuickBooks.parse_options({"realm_id": "1", "environment": "sandbox"}), {}, context
    )
    assert sandbox._base() == "https://sandbox-quickbooks.api.intuit.com/"


# --- through the engine, with the refresh token in the vault, on every backend ------------------


async def configure_route(runtime, config_dir: Path, api: QboApi) -> None:
    (config_dir / "connections" / "harbor-falls-qbo.toml").write_text(
        f'connector = "quickbooks_online"\nmember = "harbor-falls"\n\n[options]\n'
        f'realm_id = "{api.realm}"\nbase_url = "{api.base_url}"\ntoken_url = "{api.token_url}"\n'
        "page_size = 2\nretry_base_seconds = 0.01\nmax_retry_after_seconds = 0.05\n\n[secrets]\n"
        'client_id = "vault:connection.harbor-falls-qbo.client_id"\n'
        'client_secret = "vault:connection.harbor-falls-qbo.client_secret"\n'
        'refresh_token = "vault:connection.harbor-falls-qbo.refresh_token"\n'
    )
    with (config_dir / "routes.toml").open("a") as routes:
        routes.write(
            '\n[routes.harbor-falls-vendors]\nsource = "harbor-falls-qbo"\nsource_stream = "vendors"\n'
            'destination = "cbo-payroll-db"\ndestination_stream = "vendors"\nservice = "cbo-payroll"\n'
        )
    runtime.plugins = PluginHost([config_dir.parent / "plugins"])
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)
    create_key_file(key_file(runtime.home))
    await runtime.unlock_vault()
    await runtime.store_secrets(
        {
            "connection.harbor-falls-qbo.client_id": api.client_id,
            "connection.harbor-falls-qbo.client_secret": CLIENT_SECRET,
            "connection.harbor-falls-qbo.refresh_token": FIRST_REFRESH,
        },
        actor="test",
    )


async def stored_vendors(database_url: str) -> list[tuple[str, str]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            table = StreamTable("vendors", Vendor).table
            rows = await conn.execute(
                select(table.c.record_key, table.c.name).order_by(table.c.record_key)
            )
            return [tuple(row) for row in rows]
    finally:
        await engine.dispose()


async def test_a_sync_keeps_the_rotated_refresh_token_in_the_vault_for_the_next_run(
    runtime, config_dir, database_url, api, caplog
):
    # given Harbor Falls' QuickBooks with three vendors, one malformed, a throttled first page,
    # and the app's refresh token in the vault
    api.put("Vendor", vendor(1), ago(minutes=3))
    api.put("Vendor", vendor(2, DisplayName=None), ago(minutes=2))
    api.put("Vendor", vendor(3), ago(minutes=1))
    api.fail_next("/query", 429, retry_after="1")
    await configure_route(runtime, config_dir, api)

    # when the route runs
    with caplog.at_level(logging.DEBUG):
        summary = await run_route(runtime.engine, runtime.plugins, "harbor-falls-vendors")

    # then two vendors arrive, the malformed one is a dead letter, the 429 was waited out
    assert summary.status == "succeeded", summary.error
    assert (summary.counts.read, summary.counts.written, summary.counts.rejected) == (3, 2, 1)
    assert summary.counts.retried == 1
    assert await stored_vendors(database_url) == [("1", "Vendor 1"), ("3", "Vendor 3")]
    async with runtime.engine.connect() as conn:
        letters = (await conn.execute(select(dead_letters.c.position, dead_letters.c.reason))).all()
    assert letters == [("Vendor Id 2", "Expected `str`, got `null` - at `$.name`")]

    # and the vault holds the refresh token Intuit rotated to, audited by name only
    [rotated] = api.issued_refresh
    vault = await runtime.vault().unlock()
    assert vault["connection.harbor-falls-qbo.refresh_token"] == rotated
    async with runtime.engine.connect() as conn:
        entries = (
            await conn.execute(
                select(
                    audit_log.c.actor, audit_log.c.action, audit_log.c.target, audit_log.c.details
                ).where(audit_log.c.action == "secrets.rotate")
            )
        ).all()
    assert [(e.actor, e.target, e.details["stored"], e.details["members"]) for e in entries] == [
        (
            "quickbooks_online (connection harbor-falls-qbo)",
            "vault:connection.harbor-falls-qbo.refresh_token",
            ["connection.harbor-falls-qbo.refresh_token"],
            ["harbor-falls"],
        )
    ]

    # when vendor 3 changes and the route runs again (a new connector, a new worker's vault)
    api.put("Vendor", vendor(3, DisplayName="Vendor Three"))
    runtime._vault_values.clear()
    runtime._vault_values.update(await runtime.vault().unlock())
    again = await run_route(runtime.engine, runtime.plugins, "harbor-falls-vendors")

    # then it refreshed with the rotated token (the first one is refused by now) and read the change
    assert again.status == "succeeded", again.error
    assert api.refused_refresh == []
    assert len(api.issued_refresh) == 2
    assert ("3", "Vendor Three") in await stored_vendors(database_url)
    assert (await runtime.vault().unlock())[
        "connection.harbor-falls-qbo.refresh_token"
    ] == api.refresh_token
    # and no refresh token, access token or client secret was logged
    for secret in [FIRST_REFRESH, CLIENT_SECRET, *api.issued_refresh, *api.tokens]:
        assert secret not in caplog.text
