"""The console in a real browser (headless Chromium through Playwright): an admin signs in,
creates a connection through the form generated from the `flat_file` schema, tests it, routes
it to the CBO's payroll database, runs it from the console, watches it succeed and reads its
usage chart. A screenshot of each step lands in ``$COHUB_TEST_ARTIFACTS`` (default
``tests/artifacts/screenshots/``)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.apikit import ServedHub
from tests.conftest import EXAMPLE_CONFIG, REPO

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(
    os.environ.get("COHUB_TEST_ARTIFACTS") or REPO / "tests" / "artifacts" / "screenshots"
)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} for the browser tests"
)

#: The stream profile of config/connections/eastview-payroll.toml, as the form's JSON input.
STREAMS = {
    "pay_lines": {
        "record": "payroll.pay_line",
        "pattern": "payroll_*.csv",
        "account_column": "Account",
        "columns": {
            "pay_run_id": "PayRunID",
            "pay_date": "PayDate",
            "period_start": "PeriodStart",
            "period_end": "PeriodEnd",
            "employee_id": "EmpID",
            "employee_name": "EmpName",
            "line_number": "LineNo",
            "code": "EarnCode",
            "kind": "Type",
            "hours": "Hours",
            "rate": "Rate",
            "amount": "Amount",
            "updated_at": "LastModified",
        },
    }
}


async def test_an_admin_connects_routes_runs_and_reads_usage_in_a_browser(
    hub: ServedHub, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from playwright.async_api import async_playwright, expect

    # Given a district's export folder the hub has not seen
    exports = tmp_path / "westfield-exports"
    shutil.copytree(EXAMPLE_CONFIG / "sample-data" / "eastview", exports)
    backend = request.node.callspec.params.get("database_url", "db")
    shots = ARTIFACTS / backend
    shots.mkdir(parents=True, exist_ok=True)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)

            async def shot(name: str) -> None:
                await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

            # When the admin signs in
            await page.goto(hub.url + "/")
            await expect(page).to_have_url(hub.url + "/login")
            await page.fill("input[name=token]", hub.tokens["admin"])
            await shot("01-login")
            await page.click("button:has-text('Sign in')")
            await expect(page).to_have_url(hub.url + "/console")
            await expect(page.locator("#route-eastview-payroll")).to_be_visible()
            await shot("02-overview")

            # ...opens the connection form; choosing a connector reloads it with its fields
            await page.click("nav >> text=New connection")
            async with page.expect_navigation():
                await page.select_option("#connector", "sql_table")
            await expect(page.locator("input[name='secret.password']")).to_have_attribute(
                "type", "password"
            )
            async with page.expect_navigation():
                await page.select_option("#connector", "flat_file")
            await expect(page.locator("textarea[name='option.streams']")).to_be_visible()
            await page.fill("input[name=name]", "westfield-payroll")
            await page.select_option("select[name=member]", "eastview")
            await page.fill("input[name=description]", "Westfield payroll exports")
            await page.fill("input[name='option.folder']", str(exports))
            await page.fill("textarea[name='option.streams']", json.dumps(STREAMS, indent=2))
            await shot("03-connection-form")

            # ...tests it (nothing stored) and sees ok
            await page.click("#test-connection")
            await expect(page.locator("#check-result")).to_contain_text("Test connection: ok")
            await expect(page.locator("#check-result")).to_contain_text("pay_lines")
            await shot("04-connection-tested")

            # ...creates it
            await page.click("#create-connection")
            await expect(page).to_have_url(hub.url + "/console/connections/westfield-payroll")
            await expect(page.locator("h1")).to_have_text("Connection westfield-payroll")
            await shot("05-connection-created")

            # ...routes it to the CBO's payroll database
            await page.click("text=Create a route from this connection")
            await page.fill("input[name=name]", "westfield-payroll")
            await expect(page.locator("select[name=source]")).to_have_value("westfield-payroll")
            await page.fill("input[name=source_stream]", "pay_lines")
            await page.select_option("select[name=destination]", "cbo-payroll-db")
            await page.fill("input[name=destination_stream]", "pay_lines")
            await page.select_option("select[name=service]", "cbo-payroll")
            await shot("06-route-form")
            await page.click("#create-route")
            row = page.locator("#route-westfield-payroll")
            await expect(row).to_contain_text("never")
            await shot("07-route-created")

            # ...and runs it now
            await row.locator("button:has-text('Run now')").click()
            await expect(page).to_have_url(re.compile(r".*/console/runs/[0-9]+$"))
            await shot("08-run-started")

            # Then the run page refreshes itself until the run has succeeded
            await expect(page.locator("#run-status")).to_have_text("succeeded", timeout=60_000)
            await expect(page.locator("#records-read")).to_have_text("51")
            await shot("09-run-succeeded")

            # ...and its usage chart has a titled bar
            await page.click("#usage-link")
            bars = page.locator("#usage-chart svg rect.bar")
            await expect(bars).to_have_count(1)
            title = await bars.first.locator("title").text_content()
            assert title is not None and title.endswith(": 102 record")  # 51 earlier + 51 now
            await shot("10-usage-chart")
        finally:
            await browser.close()
