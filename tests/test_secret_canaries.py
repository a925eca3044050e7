"""Canary secrets and PII: planted in every secret and PII field of the example cooperative, then
everything that emits (CLI, API, run errors, dead letters, logs) is searched; none may appear."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from hub import logs
from hub.engine.run import run_route
from hub.plugins import PluginHost
from hub.runtime import key_file
from hub.vault import create_key_file
from tests.canaries import leaks, plant

REPO = Path(__file__).resolve().parent.parent

DB_PASSWORD = plant("canary-7f3a91c0-dbpass")
API_KEY = plant("canary-2b8e44d1-apikey")
SSN = plant("canary-5d0c7a3e-ssn")
BANK = plant("canary-9e1f2b6a-bank")
BIRTH = plant("canary-c4a8d09f-birth")
TAX_ID = plant("canary-0a6b3c5d-taxid")
SECRETS = [DB_PASSWORD, API_KEY]
PII = [SSN, BANK, BIRTH, TAX_ID]

CANARY_PLUGIN = f'''
"""A vendor system that fails with its API key in the message and sends records whose PII
fields hold canaries."""
from hub import sdk


class CanaryHr(sdk.Connector):
    name = "canary_hr"
    secrets = ("api_key", "password")

    async def check(self):
        raise ConnectionError(f"login refused for key {{self.secret_values['api_key']}}")

    async def streams(self):
        return [sdk.StreamSpec(name="employees", record="hr.employee")]

    def pii_columns(self, stream):
        return frozenset({{"TaxpayerNo"}})

    async def read(self, stream, state):
        if state and state.get("fail"):
            raise RuntimeError(f"GET /employees?key={{self.secret_values['api_key']}} failed")
        raw = {{"EmpID": "E1", "SSN": "{SSN}", "bank_account": "{BANK}",
               "birth_date": "{BIRTH}", "TaxpayerNo": "{TAX_ID}"}}
        yield sdk.Batch(records=[], state={{"fail": True}},
                        rejects=[sdk.Reject(position="row 1", reason="no last name", raw=raw)])


@sdk.hookimpl
def cohub_register_connectors(register):
    register(CanaryHr)
'''


@pytest.fixture
async def canary_hub(runtime, config_dir, tmp_path, monkeypatch):
    """The example cooperative with canaries: the CBO database password from the environment,
    a district HR connection whose API key is in the vault, and its PII in dead letters."""
    monkeypatch.setenv("CANARY_CBO_DB_PASSWORD", DB_PASSWORD)
    cbo = config_dir / "connections" / "cbo-payroll-db.toml"
    if re.search(r'^url = "postgresql', cbo.read_text(), re.M):  # SQLite takes no password
        cbo.write_text(cbo.read_text() + '\n[secrets]\npassword = "env:CANARY_CBO_DB_PASSWORD"\n')
    (config_dir / "connections" / "eastview-hr.toml").write_text(
        'connector = "canary_hr"\nmember = "eastview"\n[secrets]\napi_key = "vault:CANARY_API_KEY"\n'
        'password = "env:CANARY_CBO_DB_PASSWORD"\n'
    )
    routes = config_dir / "routes.toml"
    routes.write_text(
        routes.read_text()
        + '\n[routes.eastview-hr]\nsource = "eastview-hr"\nsource_stream = "employees"\n'
        'destination = "cbo-payroll-db"\ndestination_stream = "employees"\n'
        'service = "cbo-payroll"\n'
    )
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "canary_hr.py").write_text(CANARY_PLUGIN)
    runtime.plugins = PluginHost([plugins])  # the fixture's host loaded the folder empty
    if not key_file(runtime.home).exists():
        create_key_file(key_file(runtime.home))
    await runtime.store_secrets({"CANARY_API_KEY": API_KEY})
    from tests.apikit import served_hub

    stream = io.StringIO()
    structlog.reset_defaults()
    logs.configure(json=True, level="debug", stream=stream)
    async with served_hub(runtime, config_dir) as served:
        served.log = stream
        yield served
    structlog.reset_defaults()


async def every_api_answer(hub) -> list[str]:
    """The admin's answer from every GET endpoint and the actions that show errors."""
    texts = []
    for path in (
        "/whoami", "/members", "/members/eastview", "/services", "/services/cbo-payroll",
        "/connectors", "/meters", "/status", "/connections", "/connections/eastview-hr",
        "/connections/cbo-payroll-db", "/runs?limit=100", "/dead-letters?status=any",
        "/routes", "/routes/eastview-hr", "/usage", "/statements", "/tokens",
    ):  # fmt: skip
        texts.append((await hub.call("GET", path)).text)
    runs = (await hub.call("GET", "/runs?limit=100")).body
    for run in runs["items"]:
        texts.append((await hub.call("GET", f"/runs/{run['id']}")).text)
    letters = (await hub.call("GET", "/dead-letters?status=any")).body
    for letter in letters["items"]:
        texts.append((await hub.call("GET", f"/dead-letters/{letter['id']}")).text)
    for name in ("eastview-hr", "cbo-payroll-db"):
        texts.append((await hub.call("POST", f"/connections/{name}/check")).text)
    texts.append((await hub.call("POST", "/runs", json={"route": "eastview-hr"})).text)
    return texts


async def test_no_canary_reaches_the_api_run_errors_dead_letters_or_logs(canary_hub):
    hub = canary_hub
    # A second run: resumes from {"fail": true} and fails with the key in the exception.
    summary = await run_route(hub.runtime.engine, hub.runtime.plugins, "eastview-hr")
    assert summary.status == "failed"

    texts = await every_api_answer(hub)
    texts.append(summary.error or "")
    texts.append(hub.log.getvalue())

    assert any("login refused for key" in t for t in texts)  # the errors are there, masked
    assert leaks(texts, SECRETS + PII) == []


def cohub(*args: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "hub", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout + result.stderr


async def test_no_canary_reaches_the_cli(canary_hub, database_url, tmp_path):
    import os

    hub = canary_hub
    env = {k: v for k, v in os.environ.items() if not k.startswith("COHUB_")}
    env.update(COHUB_HOME=str(hub.runtime.home), CANARY_CBO_DB_PASSWORD=DB_PASSWORD)
    common = ("--config", str(hub.config_dir), "--database", database_url)
    letters = (await hub.call("GET", "/dead-letters?status=any")).body
    ids = [str(x["id"]) for x in (letters["items"])]
    texts = [
        cohub(*common, *args, cwd=tmp_path, env=env)
        for args in (
            ("validate",), ("check",), ("sync", "--all"), ("runs", "list"),
            *(("runs", "show", str(i)) for i in range(1, 8)),
            ("deadletters", "list", "--status", "any"), ("deadletters", "show", *ids),
            ("usage",), ("billing", "periods"), ("plugins",), ("state", "show", "eastview-hr"),
            ("data", "inventory", "--json"), ("--json", "--log-level", "debug", "sync", "eastview-hr"),
        )
    ]  # fmt: skip

    assert any("deadletters" not in t for t in texts)
    assert leaks(texts, SECRETS + PII) == [], [t for t in texts if leaks([t], SECRETS + PII)]


async def test_console_pages_mask_dead_letter_pii(canary_hub):
    hub = canary_hub
    letters = (await hub.call("GET", "/dead-letters?status=any")).body
    ids = [x["id"] for x in letters["items"] if x["route"] == "eastview-hr"]
    runs = (await hub.call("GET", "/runs?limit=100")).body["items"]
    assert ids, (letters, [(r["route"], r["status"], r.get("error")) for r in runs])
    record = (await hub.call("GET", f"/dead-letters/{ids[-1]}")).body["record"]

    assert record.get("EmpID") == "E1", record
    assert {record[k] for k in ("SSN", "bank_account", "birth_date", "TaxpayerNo")} == {"****"}
    json.dumps(record)
