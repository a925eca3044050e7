"""Member data keys: AES-GCM sealing bound to member and place, vault secrets and dead letters
sealed at rest, master key rotation under a running hub, and purging a member."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from hub.apply import apply
from hub.audit import entries
from hub.cli.keys import purge_member, rotate
from hub.config import load_config
from hub.engine.connections import route_names
from hub.engine.deadletters import is_sealed_record, open_raw, raw_record
from hub.engine.replay import replay
from hub.engine.run import run_route
from hub.keyring import KeyDestroyed, SealedUnreadable
from hub.plugins import PluginHost
from hub.runtime import Runtime, key_file
from hub.store.database import create_engine, writing
from hub.store.tables import data_keys, dead_letters, members, vault_secrets
from hub.vault import VaultError, create_key_file, parse_keys

HARBOR_MARKER = "Quillfeather, Ysolde 078-05-1120"
EASTVIEW_MARKER = "Brackenridge, Osric 219-09-9999"


def with_master_key(runtime: Runtime) -> Path:
    path = key_file(runtime.home)
    create_key_file(path)
    return path


async def add_members(runtime: Runtime, *codes: str) -> None:
    async with writing(runtime.engine) as conn:
        for code in codes:
            await conn.execute(members.insert().values(code=code, name=f"{code} district"))


def bad_rows(config_dir: Path) -> None:
    """One malformed row ('n/a' amount) carrying a made-up name and SSN in two districts."""
    harbor = config_dir / "sample-data/harbor-falls/hf_payroll_oct2026.csv"
    harbor.write_text(
        harbor.read_text()
        + f'HA-2026-21,2026-10-30,2026-10-15,2026-10-28,HF-299,"{HARBOR_MARKER}",1,SAL,'
        "earning,,,n/a,A2110.150-00-0000,2026-10-30T12:00:00-04:00\n"
    )
    eastview = config_dir / "sample-data/eastview/payroll_2026-10.csv"
    with eastview.open("a", encoding="utf-8") as handle:
        handle.write(
            f'EA-2026-20,2026-10-15,2026-10-01,2026-10-14,E1999,"{EASTVIEW_MARKER}",1,SAL,'
            "earning,,,n/a,A2110.150-00-0000,2026-10-15T18:30:00Z\n"
        )


async def sync_all(runtime: Runtime, config_dir: Path) -> None:
    """Apply the example and run its payroll routes (the dead letters these tests seal)."""
    await apply(runtime.engine, load_config(config_dir))
    async with runtime.engine.connect() as conn:
        names = [name for name in await route_names(conn) if name.endswith("-payroll")]
    for name in names:
        await run_route(runtime.engine, runtime.plugins, name)


async def letters(runtime: Runtime) -> list:
    async with runtime.engine.connect() as conn:
        result = await conn.execute(select(dead_letters).order_by(dead_letters.c.id))
        return list(result.mappings().all())


async def stored_text(runtime: Runtime, database_url: str, table: str) -> str:
    """Everything the database holds of `table`, as bytes on disk would show it."""
    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite:///"))
        blobs = [p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists()]
        return b"".join(blobs).decode("latin-1")
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT t::text FROM {table} t"))
        return "\n".join(rows.scalars())


# -- sealing -----------------------------------------------------------------------------------


async def test_a_sealed_value_opens_to_what_was_sealed(runtime):
    with_master_key(runtime)

    sealed = await runtime.keyring.seal("eastview", ("vault", "x"), b"s3cret value")

    assert sealed.startswith("s1:")
    assert b"s3cret" not in base64.urlsafe_b64decode(sealed[3:])
    assert await runtime.keyring.open_sealed("eastview", ("vault", "x"), sealed) == b"s3cret value"


async def test_a_sealed_value_moved_to_another_member_or_row_does_not_open(runtime):
    with_master_key(runtime)
    await runtime.keyring.ensure("millbrook")
    sealed = await runtime.keyring.seal("eastview", ("vault", "db.password"), b"hunter22")

    with pytest.raises(SealedUnreadable, match="moved from another row or member"):
        await runtime.keyring.open_sealed("millbrook", ("vault", "db.password"), sealed)
    with pytest.raises(SealedUnreadable, match="moved from another row or member"):
        await runtime.keyring.open_sealed("eastview", ("vault", "other.password"), sealed)
    with pytest.raises(SealedUnreadable):
        await runtime.keyring.open_sealed("eastview", ("vault", "db", "password"), sealed)


async def test_every_seal_uses_a_fresh_nonce(runtime):
    with_master_key(runtime)

    sealed = [await runtime.keyring.seal("eastview", "x", b"same") for _ in range(2000)]

    nonces = {base64.urlsafe_b64decode(s[3:])[:12] for s in sealed}
    assert len(nonces) == 2000
    assert len(set(sealed)) == 2000


async def test_a_vault_secret_row_copied_to_another_name_or_member_does_not_open(runtime):
    with_master_key(runtime)
    await add_members(runtime, "eastview", "millbrook")
    vault = runtime.vault()
    await vault.set("eastview.sis", "pa55word-east", member="eastview")
    await vault.set("millbrook.sis", "pa55word-mill", member="millbrook")
    async with writing(runtime.engine) as conn:
        east = await conn.scalar(
            select(vault_secrets.c.ciphertext).where(vault_secrets.c.name == "eastview.sis")
        )
        await conn.execute(
            update(vault_secrets)
            .where(vault_secrets.c.name == "millbrook.sis")
            .values(ciphertext=east)
        )

    with pytest.raises(VaultError, match=r"'millbrook\.sis' cannot be opened"):
        await vault.unlock()


async def test_member_connection_secrets_are_sealed_and_cooperative_ones_stay_fernet(
    runtime, config_dir
):
    with_master_key(runtime)
    await apply(runtime.engine, load_config(config_dir))
    async with runtime.engine.connect() as conn:
        east_connection = await conn.scalar(
            text("SELECT name FROM connections WHERE member = 'eastview' LIMIT 1")
        )

    await runtime.store_secrets(
        {f"connection.{east_connection}.password": "east-pw-1", "shared.smtp": "smtp-pw-2"}
    )

    async with runtime.engine.connect() as conn:
        rows = dict(
            (await conn.execute(select(vault_secrets.c.name, vault_secrets.c.member))).all()
        )
        tokens = (await conn.execute(select(vault_secrets.c.ciphertext))).scalars().all()
    assert rows == {f"connection.{east_connection}.password": "eastview", "shared.smtp": None}
    assert sorted(t[:3] for t in tokens) == ["gAA", "s1:"]
    fresh = Runtime(runtime.engine, PluginHost([]), runtime.home)
    assert await fresh.vault().unlock() == {
        f"connection.{east_connection}.password": "east-pw-1",
        "shared.smtp": "smtp-pw-2",
    }
    async with runtime.engine.connect() as conn:
        audited = [e async for e in entries(conn) if e.action == "secrets.set"]
    assert [(e.target, e.details["stored"]) for e in audited] == [
        ("vault:*", [f"connection.{east_connection}.password", "shared.smtp"])
    ]
    assert "east-pw-1" not in str(audited) and "smtp-pw-2" not in str(audited)


# -- master key problems ---------------------------------------------------------------------


async def test_a_wrong_master_key_is_a_vault_error_without_key_material(runtime, tmp_path):
    path = with_master_key(runtime)
    await add_members(runtime, "eastview")
    await runtime.vault().set("eastview.sis", "pa55word-east", member="eastview")
    await runtime.vault().set("shared.smtp", "smtp-pw-2")
    right = path.read_text()
    path.unlink()
    create_key_file(path)
    wrong = path.read_text()

    fresh = Runtime(runtime.engine, PluginHost([]), runtime.home)
    with pytest.raises(VaultError) as raised:
        await fresh.unlock_vault()

    message = str(raised.value)
    assert "cannot be" in message and "master key" in message
    for key in parse_keys(right) + parse_keys(wrong):
        assert key not in message
        assert key[:12] not in repr(raised.value)


# -- dead letters ----------------------------------------------------------------------------


async def test_dead_letters_are_sealed_at_rest_and_read_back_through_the_reader(
    runtime, config_dir, database_url
):
    with_master_key(runtime)
    bad_rows(config_dir)

    await sync_all(runtime, config_dir)

    held = await letters(runtime)
    assert len(held) == 4  # harbor-falls' two of the example, and one each added
    assert all(is_sealed_record(d["raw"]) for d in held)
    stored = await stored_text(runtime, database_url, "dead_letters")
    assert "Quillfeather" not in stored and "078-05-1120" not in stored
    assert "Brackenridge" not in stored and "219-09-9999" not in stored
    records = [await raw_record(d, runtime.keyring) for d in held]
    assert {r.get("Employee Name") or r.get("EmpName") for r in records} >= {
        HARBOR_MARKER,
        EASTVIEW_MARKER,
    }
    # A new process (its own keyring, the key loaded from the store) reads them too.
    fresh = Runtime(runtime.engine, PluginHost([]), runtime.home)
    assert [await raw_record(d, fresh.keyring) for d in held] == records


async def test_a_re_read_file_does_not_duplicate_sealed_dead_letters(runtime, config_dir):
    with_master_key(runtime)
    bad_rows(config_dir)
    await sync_all(runtime, config_dir)
    async with writing(runtime.engine) as conn:  # read everything again from the start
        await conn.execute(text("DELETE FROM stream_states"))

    await sync_all(runtime, config_dir)

    assert len(await letters(runtime)) == 4


async def test_without_a_master_key_dead_letters_stay_plain(runtime, config_dir, database_url):
    bad_rows(config_dir)

    await sync_all(runtime, config_dir)

    held = await letters(runtime)
    assert not any(is_sealed_record(d["raw"]) for d in held)
    assert "078-05-1120" in await stored_text(runtime, database_url, "dead_letters")
    assert await raw_record(held[0], runtime.keyring) == held[0]["raw"]


async def test_a_purged_members_dead_letters_and_secrets_are_unreadable_others_still_read(
    runtime, config_dir
):
    with_master_key(runtime)
    bad_rows(config_dir)
    await sync_all(runtime, config_dir)
    await runtime.vault().set("harbor.sis", "harbor-pw-1", member="harbor-falls")
    await runtime.vault().set("east.sis", "east-pw-1", member="eastview")
    backup = {d["id"]: d for d in await letters(runtime)}  # as a backup would hold them

    done = await purge_member(runtime, "harbor-falls", actor="test")

    assert done["dead_letters_deleted"] == 3 and done["vault_secrets_deleted"] == 1
    assert {d["member"] for d in await letters(runtime)} == {"eastview"}
    fresh = Runtime(runtime.engine, PluginHost([]), runtime.home)
    for row in backup.values():
        if row["member"] == "harbor-falls":
            with pytest.raises(KeyDestroyed, match="member harbor-falls was purged"):
                await open_raw(row, fresh.keyring)
            assert await raw_record(row, runtime.keyring) is None
        else:
            assert (await raw_record(row, fresh.keyring))["EmpName"] == EASTVIEW_MARKER
    assert await fresh.vault().unlock() == {"east.sis": "east-pw-1"}
    with pytest.raises(KeyDestroyed):
        await fresh.keyring.ensure("harbor-falls")  # nothing new is sealed for it
    async with runtime.engine.connect() as conn:
        key = (
            await conn.execute(select(data_keys).where(data_keys.c.member == "harbor-falls"))
        ).one()
        audited = [e async for e in entries(conn) if e.action == "member.purge"]
    assert key.wrapped is None and key.destroyed_at is not None
    assert [(e.target, e.details["dead_letters_deleted"]) for e in audited] == [
        ("member:harbor-falls", 3)
    ]
    assert audited[0].details["kept_usage_events"] > 0


async def test_replay_refuses_a_dead_letter_whose_members_key_is_destroyed(runtime, config_dir):
    with_master_key(runtime)
    bad_rows(config_dir)
    await sync_all(runtime, config_dir)
    harbor = [d["id"] for d in await letters(runtime) if d["member"] == "harbor-falls"]
    async with writing(runtime.engine) as conn:  # destroyed, the rows left (a restored backup)
        await conn.execute(
            update(data_keys)
            .where(data_keys.c.member == "harbor-falls")
            .values(wrapped=None, destroyed_at=text("CURRENT_TIMESTAMP"))
        )
    fresh = Runtime(runtime.engine, runtime.plugins, runtime.home)

    [outcome] = await replay(fresh.engine, fresh.plugins, harbor)

    assert outcome.replayed == []
    assert set(outcome.still_failing) == set(harbor)
    assert all(
        "member harbor-falls was purged: its data key is destroyed" in reason
        for reason in outcome.still_failing.values()
    )


# -- rotation ----------------------------------------------------------------------------------


async def test_rotation_keeps_a_running_hub_resolving_and_a_new_one_opens_the_rotated_file(
    runtime, config_dir, database_url
):
    path = with_master_key(runtime)
    await add_members(runtime, "eastview")
    await runtime.vault().set("shared.smtp", "smtp-pw-2")
    await runtime.vault().set("east.sis", "east-pw-1", member="eastview")
    running = Runtime(create_engine(database_url), PluginHost([]), runtime.home)
    await running.unlock_vault()
    old = parse_keys(path.read_text())

    await rotate(runtime, drop_old=False, actor="test")

    keys_now = parse_keys(path.read_text())
    assert len(keys_now) == 2 and keys_now[1:] == old
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert running.plugins.resolve_secret("vault", "smtp", "x") is None
    assert running.plugins.resolve_secret("vault", "shared.smtp", "x") == "smtp-pw-2"
    # Another process stores a secret after the rotation: the running hub picks it up.
    await runtime.vault().set("shared.ldap", "ldap-pw-3")
    await running.unlock_vault_if_changed()
    assert running.plugins.resolve_secret("vault", "shared.ldap", "x") == "ldap-pw-3"
    assert running.plugins.resolve_secret("vault", "east.sis", "x") == "east-pw-1"
    fresh = Runtime(create_engine(database_url), PluginHost([]), runtime.home)
    assert await fresh.vault().unlock() == {
        "shared.smtp": "smtp-pw-2",
        "east.sis": "east-pw-1",
        "shared.ldap": "ldap-pw-3",
    }

    await rotate(runtime, drop_old=True, actor="test")

    assert len(parse_keys(path.read_text())) == 1
    await running.unlock_vault()
    assert running.plugins.resolve_secret("vault", "east.sis", "x") == "east-pw-1"
    after_drop = Runtime(create_engine(database_url), PluginHost([]), runtime.home)
    assert (await after_drop.vault().unlock())["shared.smtp"] == "smtp-pw-2"
    async with runtime.engine.connect() as conn:
        audited = [e async for e in entries(conn) if e.action == "keys.rotate"]
    assert [(e.details["vault_secrets"], e.details["data_keys"]) for e in audited] == [
        (1, 1),
        (2, 1),
    ]
    for other in (running, fresh, after_drop):
        await other.close()
