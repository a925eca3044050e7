"""`cohub tokens`, `cohub serve` and `cohub run --serve` as an administrator runs them: real
processes, real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import aiohttp

from hub.store.database import create_engine
from tests.conftest import EXAMPLE_CONFIG
from tests.test_crash_safety import cohub, cohub_command, worker_environment
from tests.test_worker import until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def example(tmp_path: Path, database_url: str) -> Path:
    config = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG, config)
    destination = config / "connections" / "cbo-payroll-db.toml"
    destination.write_text(
        destination.read_text().replace("sqlite:///.cohub/cbo_payroll.db", database_url)
    )
    return config


async def answers(url: str, token: str | None = None) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(url, headers=headers) as response:
                    return response.status, await response.json()
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_tokens_are_created_listed_and_revoked(tmp_path, database_url):
    config = example(tmp_path, database_url)
    env = worker_environment(tmp_path / "home")
    run = lambda *a: cohub(*a, config=config, database=database_url, cwd=tmp_path, env=env)  # noqa: E731
    assert run("db", "upgrade").returncode == 0
    assert run("apply").returncode == 0
    made = run(
        "tokens",
        "create",
        "--name",
        "eastview staff",
        "--role",
        "viewer",
        "--member",
        "eastview",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)
    assert token["token"].startswith(f"cohub_{token['id']}_")
    listed = run("tokens", "list")
    assert token["id"] in listed.stdout and "viewer" in listed.stdout
    assert token["token"] not in listed.stdout
    refused = run("tokens", "create", "--name", "x", "--role", "viewer")
    assert refused.returncode == 2 and "needs the member" in refused.stderr
    assert run("tokens", "revoke", token["id"]).returncode == 0
    assert "revoked" in run("tokens", "list").stdout
    assert run("tokens", "revoke", token["id"]).returncode == 2


async def test_cohub_serve_answers_and_stops_on_sigterm(tmp_path, database_url):
    config = example(tmp_path, database_url)
    env = worker_environment(tmp_path / "home")
    upgrade = cohub("db", "upgrade", config=config, database=database_url, cwd=tmp_path, env=env)
    assert upgrade.returncode == 0
    assert (
        cohub(
            "demo", str(config), config=config, database=database_url, cwd=tmp_path, env=env
        ).returncode
        == 0
    )
    made = cohub(
        "tokens",
        "create",
        "--name",
        "a",
        "--role",
        "admin",
        "--json",
        config=config,
        database=database_url,
        cwd=tmp_path,
        env=env,
    )
    token = json.loads(made.stdout)["token"]
    port = free_port()
    server = subprocess.Popen(
        cohub_command(
            config, database_url, "--json", "--log-level", "info", "serve", "--port", str(port)
        ),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status, body = await answers(f"http://127.0.0.1:{port}/api/v1/status", token)
        assert status == 200 and len(body["routes"]) == 17  # every route of the example
        status, body = await answers(f"http://127.0.0.1:{port}/api/v1/status")
        assert status == 401 and body["error"]["code"] == "unauthorized"
    finally:
        server.send_signal(signal.SIGTERM)
        _, log = server.communicate(timeout=30)
    assert server.returncode == 0
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["event"] == "http.request"]
    assert [r["status"] for r in requests] == [200, 401]
    assert token not in log


async def test_a_worker_serves_the_api_and_runs_what_it_starts(tmp_path, postgres_url):
    """`cohub run --serve`: health and API on one port; a connection and route made through
    the API (its secret in the vault) after the worker started are run by it on schedule."""
    config = example(tmp_path, postgres_url)
    env = worker_environment(tmp_path / "home")
    run = lambda *a: cohub(*a, config=config, database=postgres_url, cwd=tmp_path, env=env)  # noqa: E731
    assert run("db", "upgrade").returncode == 0
    assert run("init", str(tmp_path / "unused")).returncode == 0  # the master key
    assert run("apply").returncode == 0
    token = json.loads(run("tokens", "create", "--name", "a", "--role", "admin", "--json").stdout)[
        "token"
    ]
    (config / "cooperative.toml").write_text(
        (config / "cooperative.toml").read_text() + "\n[worker]\npoll_seconds = 0.3\n"
    )
    port = free_port()
    worker = subprocess.Popen(
        cohub_command(config, postgres_url, "--json", "run", "--serve", str(port)),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    engine = create_engine(postgres_url)
    try:

        async def healthy() -> bool:
            return (await answers(f"{base}/healthz"))[0] == 200

        await until(healthy, 30)
        async with aiohttp.ClientSession(headers=headers) as session:
            made = await session.post(
                f"{base}/api/v1/connections",
                json={
                    "name": "second-db",
                    "connector": "sql_table",
                    "options": {"url": postgres_url, "table_prefix": "second_"},
                    "secrets": {"password": "not-needed-with-trust-auth"},
                },
            )
            assert made.status == 201, await made.text()
            made = await session.post(
                f"{base}/api/v1/routes",
                json={
                    "name": "eastview-second",
                    "source": "eastview-payroll",
                    "source_stream": "pay_lines",
                    "destination": "second-db",
                    "destination_stream": "pay_lines",
                    "service": "cbo-payroll",
                    "schedule": {"every": "1s"},
                },
            )
            assert made.status == 201, await made.text()

            async def scheduled_run_done() -> bool:
                async with session.get(f"{base}/api/v1/runs?route=eastview-second") as r:
                    items = (await r.json())["items"]
                return any(i["trigger"] == "schedule" and i["status"] == "succeeded" for i in items)

            await until(scheduled_run_done, 30)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, log = worker.communicate(timeout=60)
        await engine.dispose()
    assert worker.returncode == 0, log[-2000:]
    assert "not-needed-with-trust-auth" not in log


def test_commands_that_do_not_serve_do_not_load_the_web_server():
    """aiohttp's server, Jinja2 and the Prometheus client load only for `serve` and `run
    --serve`: a sync's peak memory (bench/run.py) does not carry them."""
    import sys

    probe = (
        "import sys, hub.cli.main; "
        "print(sorted(m for m in ('aiohttp.web', 'jinja2', 'prometheus_client') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
