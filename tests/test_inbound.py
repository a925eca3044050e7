"""Inbound webhooks: requests vendors push to ``POST /inbound/{connection}``, verified, kept in
the inbox and delivered by a run of the connection's inbound routes like any polled read.

The pushing connectors are tests/plugins/pushed_connectors.py: ``pushed_lines`` signed the
hub's way (``X-Cohub-Timestamp``, ``X-Cohub-Signature``), ``vendor_signed_lines`` checking
its own header, and ``held_sink``, a destination a test can hold mid-write."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from hub.api.app import build_app
from hub.api.inbound import MAX_BODY
from hub.apply import apply
from hub.config import ConfigError, Retention, check_against_plugins, load_config
from hub.engine.claims import claim
from hub.engine.run import run_claimed
from hub.plugins import PluginHost
from hub.retention import purge
from hub.runtime import Runtime
from hub.store.database import create_engine
from hub.store.tables import dead_letters, inbound_signatures, inbox, runs
from tests.apikit import ServedHub, served_hub
from tests.canaries import leaks, plant
from tests.scripted import key, pay_line
from tests.test_crash_safety import cohub, cohub_command, worker_environment
from tests.test_end_to_end import destination_rows, usage_total
from tests.test_serve import example, free_port
from tests.test_worker import until

PLUGIN = Path(__file__).parent / "plugins" / "pushed_connectors.py"
SECRET = plant("canary-5be1-webhook-secret-e2f09c")
TOKEN = plant("canary-77a0-vendor-token-1c4d")
BODY_CANARY = plant("canary-c0ffee-pushed-bank-account")
SECRET_ENV = "COHUB_TEST_WEBHOOK_SECRET"
TOKEN_ENV = "COHUB_TEST_VENDOR_TOKEN"

CONNECTIONS = {
    "vendor-hook": (
        'connector = "pushed_lines"\nmember = "eastview"\n'
        f'[secrets]\nwebhook_secret = "env:{SECRET_ENV}"\n'
    ),
    "vendor-token": (
        f'connector = "vendor_signed_lines"\nmember = "millbrook"\n[secrets]\ntoken = "env:{TOKEN_ENV}"\n'
    ),
    "held": 'connector = "held_sink"\n[options]\nout = "written.jsonl"\n',
    "quiet-hook": (
        'connector = "pushed_lines"\nmember = "eastview"\n'
        f'[secrets]\nwebhook_secret = "env:{SECRET_ENV}"\n'
    ),
}
ROUTES = """
[routes.hook-payroll]
source = "vendor-hook"
source_stream = "pay_lines"
destination = "cbo-payroll-db"
destination_stream = "pay_lines"
service = "cbo-payroll"
inbound = true

[routes.token-held]
source = "vendor-token"
source_stream = "pay_lines"
destination = "held"
destination_stream = "pay_lines"
service = "cbo-payroll"
inbound = true
"""


def install(config_dir: Path, routes: str = ROUTES) -> None:
    """The pushing connectors, their connections and inbound routes, in the configuration."""
    plugins = config_dir.parent / "plugins"
    plugins.mkdir(exist_ok=True)
    shutil.copy(PLUGIN, plugins / PLUGIN.name)
    for name, text in CONNECTIONS.items():
        (config_dir / "connections" / f"{name}.toml").write_text(text)
    with (config_dir / "routes.toml").open("a") as out:
        out.write(routes)


async def configure(runtime: Runtime, config_dir: Path, routes: str = ROUTES) -> None:
    install(config_dir, routes)
    runtime.plugins = PluginHost([config_dir.parent / "plugins"])
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)


@pytest.fixture
async def pushed(runtime, config_dir, monkeypatch) -> AsyncIterator[ServedHub]:
    """The example hub with the inbound routes, served (runs start when pushes arrive)."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    await configure(runtime, config_dir)
    held = runtime.plugins.connector("held_sink")
    held.gate = held.entered = None
    async with served_hub(runtime, config_dir, sync=False) as hub:
        yield hub


def signed(body: bytes, *, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    """The hub's scheme, written out: hex HMAC-SHA256 of "<timestamp>.<body>"."""
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {"X-Cohub-Timestamp": str(timestamp), "X-Cohub-Signature": digest.hexdigest()}


def lines_body(*lines: dict[str, Any]) -> bytes:
    return json.dumps({"lines": list(lines)}).encode()


async def push(
    hub: ServedHub, connection: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, bytes, str]:
    async with hub.session.post(
        f"{hub.url}/inbound/{connection}", data=body, headers=headers or {}
    ) as response:
        return response.status, await response.read(), response.headers.get("Content-Type", "")


async def finished_runs(runtime: Runtime, route: str) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        query = select(runs).where(runs.c.route == route, runs.c.status != "running")
        return [dict(row) for row in (await conn.execute(query.order_by(runs.c.id))).mappings()]


async def inbox_rows(runtime: Runtime) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        query = select(inbox).order_by(inbox.c.id)
        return [dict(row) for row in (await conn.execute(query)).mappings()]


def written(config_dir: Path) -> list[dict[str, Any]]:
    path = config_dir / "written.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def delivered(runtime: Runtime, route: str, count: int) -> list[dict[str, Any]]:
    """Wait for `count` finished runs of `route` with nothing left in the inbox for it."""

    async def done() -> bool:
        return len(await finished_runs(runtime, route)) >= count

    await until(done, 30)
    return await finished_runs(runtime, route)


# -- a signed push, delivered ------------------------------------------------------------------


async def test_a_signed_push_lands_in_the_destination_through_a_route_run(
    pushed, runtime, database_url
):
    body = lines_body(pay_line("P1"), pay_line("P2", bank_account=f"021000021:{BODY_CANARY}"))

    status, reply, media = await push(pushed, "vendor-hook", body, signed(body))

    assert (status, json.loads(reply), media) == (202, {"received": 2}, "application/json")
    [run] = await delivered(runtime, "hook-payroll", 1)
    assert {k: run[k] for k in ("trigger", "status", "records_read", "records_written")} == {
        "trigger": "inbound",
        "status": "succeeded",
        "records_read": 2,
        "records_written": 2,
    }
    assert run["state_after"] == {"inbox": 1}
    rows = await destination_rows(database_url)
    assert sorted(r["record_key"] for r in rows) == ["EA-2026-20|P1|1", "EA-2026-20|P2|1"]
    assert await usage_total(runtime) == {"eastview": Decimal(2)}
    # once the checkpoint is past it, the inbox keeps only the body's digest (for retries)
    [row] = await inbox_rows(runtime)
    assert (row["raws"], row["records"], row["delivered_at"] is not None) == (None, 2, True)

    # and the run history shows it like any run
    listed = await pushed.call("GET", "/runs?route=hook-payroll")
    assert [(r["trigger"], r["status"]) for r in listed.body["items"]] == [("inbound", "succeeded")]


async def test_pushed_records_wait_sealed_in_the_inbox_while_their_route_is_disabled(
    pushed, runtime
):
    await set_enabled(runtime, "hook-payroll", False)
    body = lines_body(pay_line("P1", bank_account=f"021000021:{BODY_CANARY}"))

    status, _, _ = await push(pushed, "vendor-hook", body, signed(body))

    assert status == 202
    [row] = await inbox_rows(runtime)
    assert set(row["raws"]) == {"sealed"}
    assert leaks([str(row)], [BODY_CANARY]) == []
    # re-enabled, the next look (here: a push to the other connection) delivers it
    await set_enabled(runtime, "hook-payroll", True)
    other = lines_body(pay_line("T1"))
    assert (await push(pushed, "vendor-token", other, {"X-Vendor-Token": TOKEN}))[0] == 200
    [run] = await delivered(runtime, "hook-payroll", 1)
    assert run["records_written"] == 1


async def set_enabled(runtime: Runtime, route: str, enabled: bool) -> None:
    from hub.store.tables import routes

    async with runtime.engine.begin() as conn:
        await conn.execute(routes.update().where(routes.c.name == route).values(enabled=enabled))


# -- refusals ----------------------------------------------------------------------------------

BAD_SIGNATURES = {
    "unsigned": lambda body: {},
    "wrongly signed": lambda body: signed(body, secret="not-the-secret"),
    "signed for another body": lambda body: signed(b'{"lines": []}'),
    "stale": lambda body: signed(body, at=int(time.time()) - 301),
    "from the future": lambda body: signed(body, at=int(time.time()) + 301),
    "timestamp not seconds": lambda body: {**signed(body), "X-Cohub-Timestamp": "yesterday"},
}


@pytest.mark.parametrize("case", list(BAD_SIGNATURES))
async def test_a_request_not_signed_right_is_refused_and_logged_without_its_body(
    pushed, runtime, case
):
    body = lines_body(pay_line("P1", bank_account=f"021000021:{BODY_CANARY}"))
    headers = BAD_SIGNATURES[case](body)

    with structlog.testing.capture_logs() as logs:
        status, reply, _ = await push(pushed, "vendor-hook", body, headers)

    assert status == 401
    assert json.loads(reply)["error"]["code"] == "unauthorized"
    [refused] = [e for e in logs if e["event"] == "inbound.refused"]
    assert refused["connection"] == "vendor-hook"
    assert refused["remote"] == "127.0.0.1" and refused["size"] == len(body)
    assert refused["reason"] in {"unsigned", "bad_signature", "stale_timestamp", "bad_timestamp"}
    texts = [json.dumps(logs, default=str), reply.decode()]
    assert leaks(texts, [BODY_CANARY, SECRET]) == []
    if "X-Cohub-Signature" in headers:
        assert all(headers["X-Cohub-Signature"] not in text for text in texts)
    assert await inbox_rows(runtime) == []


async def test_the_same_signed_request_sent_again_is_refused_as_a_replay(pushed, runtime):
    body = lines_body(pay_line("P1"))
    headers = signed(body)
    assert (await push(pushed, "vendor-hook", body, headers))[0] == 202

    with structlog.testing.capture_logs() as logs:
        status, reply, _ = await push(pushed, "vendor-hook", body, headers)

    assert status == 401
    assert "received already" in json.loads(reply)["error"]["message"]
    assert [e["reason"] for e in logs if e["event"] == "inbound.refused"] == ["replayed"]
    assert len(await inbox_rows(runtime)) == 1
    # what is kept against replays is a hash that expires with the timestamp's window
    async with runtime.engine.connect() as conn:
        [kept] = (await conn.execute(select(inbound_signatures))).mappings().all()
    assert headers["X-Cohub-Signature"] not in str(dict(kept))
    assert kept["expires_at"].timestamp() == int(headers["X-Cohub-Timestamp"]) + 300


async def test_the_connector_refusing_its_own_credentials_is_a_401(pushed, runtime):
    body = lines_body(pay_line("T1", bank_account=f"021000021:{BODY_CANARY}"))

    with structlog.testing.capture_logs() as logs:
        status, reply, _ = await push(pushed, "vendor-token", body, {"X-Vendor-Token": "guess"})

    assert status == 401
    assert json.loads(reply)["error"]["code"] == "unauthorized"
    [refused] = [e for e in logs if e["event"] == "inbound.refused"]
    assert refused["reason"] == "connector_refused"
    assert leaks([json.dumps(logs, default=str)], [BODY_CANARY, TOKEN]) == []
    assert await inbox_rows(runtime) == []


async def test_refused_pushes_are_rate_limited_per_address(pushed):
    body = lines_body(pay_line("P1"))
    statuses = [(await push(pushed, "vendor-hook", body))[0] for _ in range(11)]

    assert statuses == [401] * 10 + [429]
    # a signed request from the same address waits its turn too
    assert (await push(pushed, "vendor-hook", body, signed(body)))[0] == 429


async def test_an_oversize_body_is_a_413_and_nothing_is_kept(pushed, runtime):
    body = b"x" * (MAX_BODY + 1)

    status, reply, _ = await push(pushed, "vendor-hook", body, signed(body))

    assert status == 413
    assert json.loads(reply)["error"]["code"] == "too_large"
    assert await inbox_rows(runtime) == []


async def test_unknown_disabled_and_unrouted_connections_answer_the_same_404(pushed, runtime):
    body = lines_body(pay_line("P1"))
    from hub.store.tables import connections

    async with runtime.engine.begin() as conn:
        await conn.execute(
            connections.update().where(connections.c.name == "vendor-token").values(enabled=False)
        )
    answers = {}
    for name in ("nobody", "vendor-token", "quiet-hook", "eastview-payroll"):
        status, reply, _ = await push(pushed, name, body, signed(body))
        answers[name] = (status, json.loads(reply)["error"]["code"])

    # unknown; disabled; no inbound route reads it; its connector takes no pushes
    assert set(answers.values()) == {(404, "not_found")}


async def test_an_unreadable_request_is_a_400_with_the_connectors_reason(pushed, runtime):
    body = b"<not json/>"

    status, reply, _ = await push(pushed, "vendor-hook", body, signed(body))

    assert status == 400
    assert json.loads(reply)["error"] == {
        "status": 400,
        "code": "bad_request",
        "message": "the body is not a JSON object with lines",
        "field": None,
    }


# -- the same pipeline as a polled read ----------------------------------------------------------


async def test_a_raw_record_that_cannot_be_mapped_becomes_a_dead_letter(pushed, runtime):
    bad = {**pay_line("P2"), "bad": "no such earning code"}
    body = lines_body(pay_line("P1"), bad)

    assert (await push(pushed, "vendor-hook", body, signed(body)))[0] == 202

    [run] = await delivered(runtime, "hook-payroll", 1)
    assert (run["records_read"], run["records_written"], run["records_rejected"]) == (2, 1, 1)
    async with runtime.engine.connect() as conn:
        [letter] = (await conn.execute(select(dead_letters))).mappings().all()
    assert {k: letter[k] for k in ("route", "position", "reason", "side", "status")} == {
        "route": "hook-payroll",
        "position": "inbox 1 record 2",
        "reason": "no such earning code",
        "side": "source",
        "status": "open",
    }
    assert set(letter["raw"]) == {"sealed", "digest"}  # sealed like any source record


async def test_the_same_body_pushed_twice_is_stored_once_and_answered_the_same(
    pushed, runtime, config_dir
):
    body = lines_body(pay_line("T1"))
    headers = {"X-Vendor-Token": TOKEN}

    first = await push(pushed, "vendor-token", body, headers)
    second = await push(pushed, "vendor-token", body, headers)

    assert first == second
    assert first[0] == 200 and first[2] == "text/xml; charset=utf-8"
    assert first[1] == b'<Response><Status code="200" text="OK"/></Response>'
    assert len(await inbox_rows(runtime)) == 1
    await delivered(runtime, "token-held", 1)
    assert [w["key"] for w in written(config_dir)] == [key(pay_line("T1"))]
    assert await usage_total(runtime) == {"millbrook": Decimal(1)}


async def test_a_push_while_the_route_runs_is_delivered_by_the_next_run(
    pushed, runtime, config_dir
):
    held = runtime.plugins.connector("held_sink")
    held.gate, held.entered = asyncio.Event(), asyncio.Event()
    headers = {"X-Vendor-Token": TOKEN}
    assert (await push(pushed, "vendor-token", lines_body(pay_line("T1")), headers))[0] == 200
    await asyncio.wait_for(held.entered.wait(), 30)  # the first run is writing T1

    assert (await push(pushed, "vendor-token", lines_body(pay_line("T2")), headers))[0] == 200
    held.gate.set()

    first, second = await delivered(runtime, "token-held", 2)
    assert [(r["status"], r["records_written"]) for r in (first, second)] == [
        ("succeeded", 1),
        ("succeeded", 1),
    ]
    assert [w["key"] for w in written(config_dir)] == [
        key(pay_line("T1")),
        key(pay_line("T2")),
    ]
    assert (first["state_after"], second["state_after"]) == ({"inbox": 1}, {"inbox": 2})


async def test_many_pushes_at_once_to_two_servers_are_each_delivered_once(
    pushed, runtime, config_dir, database_url
):
    """Two servers on one database (two processes' worth of engines and delivery loops)."""
    second = Runtime(
        create_engine(database_url), PluginHost([config_dir.parent / "plugins"]), runtime.home
    )
    await second.unlock_vault()
    runner = web.AppRunner(build_app(second, config_dir), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    other = ServedHub(
        f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}",  # type: ignore[union-attr]
        second,
        config_dir,
        pushed.session,
    )
    headers = {"X-Vendor-Token": TOKEN}
    try:
        answers = await asyncio.gather(
            *(
                push(
                    pushed if n % 2 else other,
                    "vendor-token",
                    lines_body(pay_line(f"C{n}")),
                    headers,
                )
                for n in range(24)
            )
        )
        assert [a[0] for a in answers] == [200] * 24

        async def all_written() -> bool:
            return len(written(config_dir)) >= 24

        await until(all_written, 60)
        await asyncio.sleep(0.5)  # a duplicate delivery would land now
    finally:
        await runner.cleanup()
        await second.close()
    keys = [w["key"] for w in written(config_dir)]
    assert sorted(keys) == sorted(key(pay_line(f"C{n}")) for n in range(24))
    assert await usage_total(runtime) == {"millbrook": Decimal(24)}
    async with runtime.engine.connect() as conn:
        left = await conn.scalar(select(func.count()).where(inbox.c.raws.is_not(None)))
    assert left == 0


async def test_a_run_started_by_hand_reads_the_inbox_too(runtime, config_dir, monkeypatch):
    """`cohub sync` of an inbound route (or a scheduled run) delivers what waits, here what a
    server took while the route was disabled, and stopped before delivering."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    await configure(runtime, config_dir)
    await set_enabled(runtime, "hook-payroll", False)
    body = lines_body(pay_line("P1"))
    async with served_hub(runtime, config_dir, sync=False) as hub:
        assert (await push(hub, "vendor-hook", body, signed(body)))[0] == 202
    await set_enabled(runtime, "hook-payroll", True)

    held = await claim(runtime.engine, "hook-payroll", "manual")
    summary = await run_claimed(runtime.engine, runtime.plugins, held)

    assert (summary.status, summary.counts.written) == ("succeeded", 1)
    again = await run_claimed(
        runtime.engine, runtime.plugins, await claim(runtime.engine, "hook-payroll", "manual")
    )
    assert again.counts.read == 0


# -- retention and configuration -----------------------------------------------------------------


async def test_undelivered_inbox_rows_are_purged_after_inbox_days(pushed, runtime):
    from datetime import UTC, datetime, timedelta

    await set_enabled(runtime, "hook-payroll", False)
    body = lines_body(pay_line("P1"))
    assert (await push(pushed, "vendor-hook", body, signed(body)))[0] == 202

    kept = await purge(runtime.engine, Retention(inbox_days=7), actor="t")
    gone = await purge(
        runtime.engine,
        Retention(inbox_days=7),
        actor="t",
        now=datetime.now(UTC) + timedelta(days=8),
    )

    assert kept.totals()["inbox_rows"] == 0
    assert gone.totals()["inbox_rows"] == 1
    assert [(x.member, x.stream, x.inbox_rows) for x in gone.lines] == [
        ("eastview", "pay_lines", 1)
    ]
    assert await inbox_rows(runtime) == []


def test_an_inbound_route_whose_connector_takes_no_pushes_is_a_configuration_error(config_dir):
    install(
        config_dir,
        ROUTES
        + ROUTES.replace("hook-payroll", "polled")
        .replace('source = "vendor-hook"', 'source = "eastview-payroll"')
        .split("[routes.token-held]")[0],
    )
    host = PluginHost([config_dir.parent / "plugins"])
    config = load_config(config_dir)

    with pytest.raises(ConfigError) as error:
        check_against_plugins(config, host.connectors(), host.transforms(), host.meters())

    assert [str(i) for i in error.value.issues] == [
        f"{config_dir / 'routes.toml'}: routes.polled.inbound: "
        "connector 'flat_file' takes no pushed requests"
    ]


def test_a_signed_inbound_connection_without_its_webhook_secret_is_a_configuration_error(
    config_dir,
):
    install(config_dir)
    hook = config_dir / "connections" / "vendor-hook.toml"
    hook.write_text('connector = "pushed_lines"\nmember = "eastview"\n')
    host = PluginHost([config_dir.parent / "plugins"])

    with pytest.raises(ConfigError) as error:
        check_against_plugins(
            load_config(config_dir), host.connectors(), host.transforms(), host.meters()
        )

    [issue] = error.value.issues
    assert (issue.file, issue.key) == (str(hook), "secrets.webhook_secret")


def test_an_inbound_route_reads_incrementally_and_serially(config_dir):
    install(config_dir, ROUTES.replace("inbound = true", 'inbound = true\nmode = "full_refresh"'))

    with pytest.raises(ConfigError) as error:
        load_config(config_dir)

    assert {i.key for i in error.value.issues} == {
        "routes.hook-payroll.mode",
        "routes.token-held.mode",
    }


async def test_the_api_shows_the_route_option_and_refuses_it_where_no_push_comes(pushed):
    shown = await pushed.call("GET", "/routes/hook-payroll")
    assert shown.body["inbound"] is True

    made = await pushed.call(
        "POST",
        "/routes",
        json={
            "name": "polled-inbound",
            "source": "eastview-payroll",
            "source_stream": "pay_lines",
            "destination": "cbo-payroll-db",
            "destination_stream": "pay_lines",
            "service": "cbo-payroll",
            "inbound": True,
        },
    )
    assert made.status == 422
    assert made.body["error"]["field"] == "inbound"
    assert "takes no pushed requests" in made.body["error"]["message"]


async def test_the_console_route_form_sets_the_option_and_shows_why_it_cannot(pushed):
    from tests.test_console import Browser

    route = {
        "source_stream": "pay_lines",
        "destination": "cbo-payroll-db",
        "destination_stream": "pay_lines",
        "service": "cbo-payroll",
        "inbound": "on",
    }
    async with Browser(pushed) as browser:
        await browser.sign_in(pushed.tokens["admin"])
        await browser.get("/console/routes/new")
        refused = await browser.post(
            "/console/routes/new", {"name": "polled", "source": "eastview-payroll", **route}
        )
        made = await browser.post(
            "/console/routes/new", {"name": "hooked", "source": "quiet-hook", **route}
        )

    assert refused[0] == 422 and "takes no pushed requests" in refused[2]
    assert made[0] == 303
    assert (await pushed.call("GET", "/routes/hooked")).body["inbound"] is True


# -- real processes --------------------------------------------------------------------------------


async def test_a_worker_serving_the_api_takes_a_push_and_delivers_it(tmp_path, database_url):
    """`cohub run --serve`: a vendor pushes a signed request, the worker's server delivers it."""
    config = example(tmp_path, database_url)
    install(config)
    env = worker_environment(tmp_path / "home") | {SECRET_ENV: SECRET, TOKEN_ENV: TOKEN}
    run = lambda *a: cohub(*a, config=config, database=database_url, cwd=tmp_path, env=env)  # noqa: E731
    assert run("db", "upgrade").returncode == 0
    assert run("init", str(tmp_path / "unused")).returncode == 0  # the master key
    port = free_port()
    worker = subprocess.Popen(
        cohub_command(
            config, database_url, "--json", "--log-level", "info", "run", "--serve", str(port)
        ),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    body = lines_body(pay_line("W1", bank_account=f"021000021:{BODY_CANARY}"))
    try:
        async with aiohttp.ClientSession() as session:

            async def accepted() -> bool:
                try:
                    async with session.post(
                        f"http://127.0.0.1:{port}/inbound/vendor-hook",
                        data=body,
                        headers=signed(body),
                    ) as response:
                        return response.status == 202
                except aiohttp.ClientConnectionError:
                    return False

            await until(accepted, 30)

            async def landed() -> bool:
                try:
                    return len(await destination_rows(database_url)) == 1
                except DBAPIError:  # the destination's table comes with its first write
                    return False

            await until(landed, 30)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, log = worker.communicate(timeout=60)
    assert worker.returncode == 0, log[-2000:]
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert [e["records"] for e in events if e["event"] == "inbound.accepted"] == [1]
    assert leaks([log], [BODY_CANARY, SECRET]) == []
