"""The audit log: what is recorded, and that any edit, removal or reordering is found."""

from __future__ import annotations

import asyncio
import hashlib
import json

from sqlalchemy import delete, select, update

from hub.apply import apply
from hub.audit import GENESIS, note, verify
from hub.config import load_config
from hub.store.database import create_engine
from hub.store.tables import audit_log
from tests.test_crash_safety import cohub, worker_environment
from tests.test_serve import example


async def rows(engine) -> list[dict]:
    async with engine.connect() as conn:
        return [
            dict(r)
            for r in (await conn.execute(select(audit_log).order_by(audit_log.c.id))).mappings()
        ]


async def test_apply_records_each_change_and_the_chain_verifies(runtime, config_dir):
    changes = await apply(runtime.engine, load_config(config_dir), actor="alice (cli)")
    logged = await rows(runtime.engine)
    assert len(logged) == len(changes) > 5
    assert {r["actor"] for r in logged} == {"alice (cli)"}
    assert {r["action"] for r in logged} == {"config.add"}
    assert "connection eastview-payroll" in {r["target"] for r in logged}
    assert logged[0]["prev_hash"] == GENESIS
    async with runtime.engine.connect() as conn:
        count, head, breaks = await verify(conn)
    assert (count, head, breaks) == (len(logged), logged[-1]["hash"], [])
    assert await apply(runtime.engine, load_config(config_dir)) == []
    assert len(await rows(runtime.engine)) == len(logged)  # nothing applied, nothing recorded


async def chain(runtime, count: int = 5) -> list[dict]:
    for number in range(count):
        await note(
            runtime.engine,
            actor="bob",
            action="test",
            target=f"thing {number}",
            details={"n": number},
        )
    return await rows(runtime.engine)


async def problems(runtime) -> list[tuple[int, str]]:
    async with runtime.engine.connect() as conn:
        _, _, breaks = await verify(conn)
    return [(b.id, b.problem) for b in breaks]


async def test_an_edited_entry_is_found(runtime):
    logged = await chain(runtime)
    async with runtime.engine.begin() as conn:
        await conn.execute(
            update(audit_log).where(audit_log.c.id == logged[2]["id"]).values(actor="mallory")
        )
    found = await problems(runtime)
    assert found == [(logged[2]["id"], "its content was changed after it was written")]


async def test_an_edit_with_a_recomputed_hash_is_found_at_the_next_entry(runtime):
    from hub.audit import entry_hash

    logged = await chain(runtime)
    target = logged[2]
    forged = entry_hash(
        target["prev_hash"],
        target["at"],
        "mallory",
        target["action"],
        target["target"],
        target["details"],
    )
    async with runtime.engine.begin() as conn:
        await conn.execute(
            update(audit_log)
            .where(audit_log.c.id == target["id"])
            .values(actor="mallory", hash=forged)
        )
    assert [i for i, _ in await problems(runtime)] == [logged[3]["id"]]


async def test_a_removed_entry_is_found(runtime):
    logged = await chain(runtime)
    async with runtime.engine.begin() as conn:
        await conn.execute(delete(audit_log).where(audit_log.c.id == logged[1]["id"]))
    found = await problems(runtime)
    assert [i for i, _ in found] == [logged[2]["id"]] and "removed" in found[0][1]


async def test_reordered_entries_are_found(runtime):
    logged = await chain(runtime)
    first, second = logged[1], logged[3]
    fields = ("at", "actor", "action", "target", "details", "prev_hash", "hash")
    async with runtime.engine.begin() as conn:
        for row, other in ((first, second), (second, first)):
            await conn.execute(
                update(audit_log)
                .where(audit_log.c.id == row["id"])
                .values({f: other[f] for f in fields})
            )
    assert len(await problems(runtime)) >= 2


async def test_concurrent_writers_keep_one_chain(postgres_url):
    """Twenty writers at once on PostgreSQL, each in its own transaction: one unbroken chain."""
    from hub.store import migrate

    engine = create_engine(postgres_url)
    try:
        await migrate.upgrade(engine)
        await asyncio.gather(
            *(note(engine, actor=f"w{n}", action="test", target="t", details={}) for n in range(20))
        )
        async with engine.connect() as conn:
            count, _, breaks = await verify(conn)
        assert (count, breaks) == (20, [])
    finally:
        await engine.dispose()


def test_the_cli_verifies_exports_and_finds_a_truncated_log(tmp_path, database_url):
    config = example(tmp_path, database_url)
    env = {**worker_environment(tmp_path / "home"), "COHUB_ACTOR": "carol"}
    run = lambda *a: cohub(*a, config=config, database=database_url, cwd=tmp_path, env=env)  # noqa: E731
    assert run("db", "upgrade").returncode == 0
    assert run("apply").returncode == 0
    assert run("tokens", "create", "--name", "x", "--role", "billing").returncode == 0
    verified = run("audit", "verify")
    assert verified.returncode == 0 and "verifies" in verified.stdout
    exported = run("audit", "export")
    entries = [json.loads(line) for line in exported.stdout.splitlines()]
    assert entries[-1]["action"] == "token.create" and entries[-1]["actor"] == "carol (cli)"
    # An auditor recomputes every hash from the export alone.
    previous = GENESIS
    for entry in entries:
        body = json.dumps(
            [
                previous,
                entry["at"],
                entry["actor"],
                entry["action"],
                entry["target"],
                entry["details"],
            ],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        assert entry["prev_hash"] == previous
        assert hashlib.sha256(body.encode()).hexdigest() == entry["hash"]
        previous = entry["hash"]
    listed = run("audit", "list", "--limit", "3")
    assert "token.create" in listed.stdout
    # The newest entry removed: the chain alone still holds, the kept head does not.

    async def drop_last() -> None:
        engine = create_engine(database_url)
        async with engine.begin() as conn:
            await conn.execute(delete(audit_log).where(audit_log.c.id == entries[-1]["id"]))
        await engine.dispose()

    asyncio.run(drop_last())
    assert run("audit", "verify").returncode == 0
    truncated = run("audit", "verify", "--head", entries[-1]["hash"])
    assert truncated.returncode == 1 and "removed" in truncated.stderr


async def test_api_changes_are_recorded_without_secret_values(hub, tmp_path):
    made = await hub.call(
        "POST",
        "/connections",
        json={
            "name": "audited-db",
            "connector": "sql_table",
            "options": {"url": f"sqlite:///{tmp_path / 'a.db'}"},
            "secrets": {"password": "canary-audit-5521"},
        },
    )
    assert made.status == 201
    await hub.call("POST", "/runs", as_="operator", json={"route": "eastview-payroll"})
    logged = await rows(hub.runtime.engine)
    create = next(r for r in logged if r["action"] == "connection.create")
    assert create["actor"].startswith("token admin (") and create["details"]["secrets_set"] == [
        "password"
    ]
    assert "canary-audit-5521" not in json.dumps(logged, default=str)
    assert any(
        r["action"] == "run.start" and r["actor"].startswith("token operator") for r in logged
    )
