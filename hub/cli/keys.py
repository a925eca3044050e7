"""``cohub keys rotate`` and ``cohub member purge CODE``: the master key's life and a member's end.

Rotation adds a new master key in front of the old ones in the key file (atomically), then, in one
transaction, re-encrypts every Fernet vault secret and rewraps every member data key under it
(`MultiFernet.rotate`); member data keys themselves do not change, so nothing sealed under them is
touched. A running daemon keeps working throughout: it re-reads the key file when it changes and
decrypts with any key the file holds. ``--drop-old`` then leaves only the new key once nothing
needs the old ones.

Purging a member destroys its data key, which makes everything sealed under it unreadable for
good (backups included), and deletes what the hub keeps of it beyond its financial records.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select

from hub.audit import record
from hub.cli.common import UsageError, cli_actor, ensure_schema, escape, out
from hub.keyring import COOPERATIVE
from hub.runtime import Runtime, key_file
from hub.store.database import writing
from hub.store.tables import (
    api_tokens,
    connections,
    console_sessions,
    data_keys,
    dead_letters,
    members,
    routes,
    statements,
    usage_events,
    vault_secrets,
)
from hub.vault import MASTER_KEY_ENV, VaultError, key_texts, write_key_file

# -- cohub keys ------------------------------------------------------------------------------


def add_keys_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["rotate"])
    parser.add_argument(
        "--drop-old",
        action="store_true",
        help="after rotating, keep only the new key (once nothing needs the old ones)",
    )


async def cmd_keys(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    return await rotate(runtime, drop_old=args.drop_old, actor=cli_actor())


async def _tokens(conn: Any) -> list[tuple[str, str, str]]:
    """Every token under the master key: ("vault secret"/"data key", name, token)."""
    secrets = await conn.execute(
        select(vault_secrets.c.name, vault_secrets.c.ciphertext).where(
            vault_secrets.c.member.is_(None)
        )
    )
    keys = await conn.execute(
        select(data_keys.c.member, data_keys.c.wrapped).where(data_keys.c.wrapped.is_not(None))
    )
    return [("vault secret", n, t) for n, t in secrets.all()] + [
        ("data key", m, w) for m, w in keys.all()
    ]


def _undecryptable(keys: Any, tokens: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    from cryptography.fernet import InvalidToken

    failed = []
    for kind, name, token in tokens:
        try:
            keys.decrypt(token.encode())
        except InvalidToken:
            failed.append((kind, name))
    return failed


def _describe(failed: list[tuple[str, str]]) -> str:
    kind, name = failed[0]
    what = f"vault secret {name!r}" if kind == "vault secret" else f"the data key of member {name}"
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"{what}{more}"


async def rotate(runtime: Runtime, *, drop_old: bool, actor: str) -> int:
    """Rotate the master key (see the module's docstring); print what was done."""
    from cryptography.fernet import Fernet, MultiFernet

    path = key_file(runtime.home)
    old_texts, origin = key_texts(path)  # VaultError: missing, unreadable, invalid
    old = MultiFernet([Fernet(k.encode()) for k in old_texts])
    async with runtime.engine.connect() as conn:
        failed = _undecryptable(old, await _tokens(conn))
    if failed:
        raise VaultError(
            f"{_describe(failed)} cannot be decrypted with the master key from {origin}: "
            "a wrong key? Nothing was changed"
        )
    new_text = Fernet.generate_key().decode()
    after = [new_text, *old_texts]
    from_env = origin == MASTER_KEY_ENV
    if not from_env:
        # First the file (new key first): from now on every process encrypts under the new key
        # and can still decrypt what the old ones encrypted.
        write_key_file(path, after)
    rotated = MultiFernet([Fernet(k.encode()) for k in after])
    async with writing(runtime.engine) as conn:
        tokens = await _tokens(conn)
        for kind, name, token in tokens:
            fresh = rotated.rotate(token.encode()).decode()
            if kind == "vault secret":
                await conn.execute(
                    vault_secrets.update()
                    .where(vault_secrets.c.name == name)
                    .values(ciphertext=fresh)
                )
            else:
                await conn.execute(
                    data_keys.update().where(data_keys.c.member == name).values(wrapped=fresh)
                )
        secrets = sum(1 for kind, _, _ in tokens if kind == "vault secret")
        await record(
            conn,
            actor=actor,
            action="keys.rotate",
            target="master key",
            details={
                "vault_secrets": secrets,
                "data_keys": len(tokens) - secrets,
                "keys_before": len(old_texts),
                "drop_old": drop_old,
                "source": "environment" if from_env else "key file",
            },
        )
    out.print(
        f"rotated the master key: {secrets} vault secret(s) re-encrypted, "
        f"{len(tokens) - secrets} member data key(s) rewrapped"
    )
    final = after
    if drop_old:
        newest = MultiFernet([Fernet(new_text.encode())])
        async with writing(runtime.engine) as conn:
            # Anything a process wrote under an old key while we rotated: rotate it too.
            for kind, name, token in await _tokens(conn):
                if not _undecryptable(newest, [(kind, name, token)]):
                    continue
                fresh = rotated.rotate(token.encode()).decode()
                table, column = (
                    (vault_secrets, vault_secrets.c.name)
                    if kind == "vault secret"
                    else (data_keys, data_keys.c.member)
                )
                values = {"ciphertext": fresh} if kind == "vault secret" else {"wrapped": fresh}
                await conn.execute(table.update().where(column == name).values(values))
        final = [new_text]
        if not from_env:
            write_key_file(path, final)
        out.print(f"dropped {len(old_texts)} old key(s): only the new key remains")
    if from_env:
        out.print(
            f"{MASTER_KEY_ENV} is set, so no key file was written. Set it, for every hub "
            "process, to exactly:"
        )
        sys.stdout.flush()
        # The one place a key is printed: the operator asked for it and must store it.
        print(f"{MASTER_KEY_ENV}={','.join(final)}", flush=True)
        if not drop_old:
            out.print(
                "then restart them; once all run with it, `cohub keys rotate --drop-old` "
                "(or drop the keys after the first comma)"
            )
    else:
        out.print(
            f"key file {escape(str(path))}: {len(final)} key(s), newest first "
            "(back it up now: the old backup cannot open what was re-encrypted)"
        )
    return 0


# -- cohub member purge ----------------------------------------------------------------------


def add_member_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["purge"])
    parser.add_argument("code", help="the member's code")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")


async def member_exists(runtime: Runtime, code: str) -> bool:
    """Whether `code` is a member of the cooperative."""
    async with runtime.engine.connect() as conn:
        return await conn.scalar(select(members.c.code).where(members.c.code == code)) is not None


async def cmd_member(args: argparse.Namespace, runtime: Runtime) -> int:
    await ensure_schema(runtime)
    code = args.code
    if code == COOPERATIVE:
        raise UsageError(f"{code} is the cooperative's own key, not a member")
    async with runtime.engine.connect() as conn:
        known = await conn.scalar(select(members.c.code).where(members.c.code == code))
        keyed = await conn.scalar(select(data_keys.c.member).where(data_keys.c.member == code))
    if known is None and keyed is None:
        raise UsageError(f"no member {code!r}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"purging member {code} cannot be undone: confirm with --yes")
        out.print(
            f"Purge member [bold]{escape(code)}[/]: its data key is destroyed (what was sealed "
            "under it is unreadable for good), its secrets, dead letters and API tokens are "
            "deleted and its connections and routes disabled. Usage and statements are kept."
        )
        answer = input(f"Type the member code ({code}) to confirm: ")
        if answer.strip() != code:
            out.print("not purged")
            return 1
    done = await purge_member(runtime, code, actor=cli_actor())
    out.print(f"purged member {escape(code)}:")
    for what, count in done.items():
        if what.startswith("kept_"):
            continue
        out.print(f"  {what.replace('_', ' ')}: {count}")
    out.print(
        f"kept (financial records, no PII): {done['kept_usage_events']} usage event(s), "
        f"{done['kept_statements']} statement(s)"
    )
    if done["connections_disabled"] or done["routes_disabled"]:
        out.print(
            "the disabled connections and routes come from the configuration folder: remove "
            "them there, or `cohub apply` enables them again"
        )
    return 0


async def purge_member(runtime: Runtime, code: str, *, actor: str) -> dict[str, int]:
    """Destroy member `code`'s data key and what the hub keeps of it beyond its financial
    records, in one transaction with its audit entry; return the counts of what was done."""
    now = datetime.now(UTC)
    done: dict[str, int] = {}
    async with writing(runtime.engine) as conn:
        destroyed = await conn.execute(
            data_keys.update()
            .where(data_keys.c.member == code, data_keys.c.destroyed_at.is_(None))
            .values(wrapped=None, destroyed_at=now)
        )
        if destroyed.rowcount == 0 and not await conn.scalar(
            select(data_keys.c.member).where(data_keys.c.member == code)
        ):
            # No key yet: a tombstone, so none is ever made for the purged member.
            await conn.execute(
                data_keys.insert().values(member=code, created_at=now, destroyed_at=now)
            )
        done["data_key_destroyed"] = 1

        owned = (
            await conn.execute(
                select(connections.c.name, connections.c.managed_by, connections.c.secrets).where(
                    connections.c.member == code
                )
            )
        ).all()
        names = [c.name for c in owned]
        referenced = {
            ref.removeprefix("vault:")
            for c in owned
            for ref in (c.secrets or {}).values()
            if isinstance(ref, str) and ref.startswith("vault:")
        }
        others = (
            await conn.execute(
                select(connections.c.secrets).where(
                    or_(connections.c.member.is_(None), connections.c.member != code)
                )
            )
        ).scalars()
        shared = {
            ref.removeprefix("vault:")
            for secrets in others
            for ref in (secrets or {}).values()
            if isinstance(ref, str) and ref.startswith("vault:")
        }
        prefixes = [vault_secrets.c.name.startswith(f"connection.{n}.") for n in names]
        gone = await conn.execute(
            vault_secrets.delete().where(
                or_(
                    vault_secrets.c.member == code,
                    vault_secrets.c.name.in_(sorted(referenced - shared)),
                    *prefixes,
                )
            )
        )
        done["vault_secrets_deleted"] = gone.rowcount

        gone = await conn.execute(dead_letters.delete().where(dead_letters.c.member == code))
        done["dead_letters_deleted"] = gone.rowcount

        tokens = (
            (await conn.execute(select(api_tokens.c.id).where(api_tokens.c.member == code)))
            .scalars()
            .all()
        )
        if tokens:
            await conn.execute(
                console_sessions.delete().where(console_sessions.c.token_id.in_(tokens))
            )
            await conn.execute(api_tokens.delete().where(api_tokens.c.id.in_(tokens)))
        done["api_tokens_deleted"] = len(tokens)

        route_rows = (
            await conn.execute(
                select(routes.c.name, routes.c.managed_by).where(
                    or_(routes.c.source.in_(names), routes.c.destination.in_(names))
                )
            )
        ).all()
        api_routes = [r.name for r in route_rows if r.managed_by == "api"]
        config_routes = [r.name for r in route_rows if r.managed_by != "api"]
        if api_routes:
            await conn.execute(routes.delete().where(routes.c.name.in_(api_routes)))
        if config_routes:
            await conn.execute(
                routes.update().where(routes.c.name.in_(config_routes)).values(enabled=False)
            )
        done["routes_deleted"] = len(api_routes)
        done["routes_disabled"] = len(config_routes)

        still_used = set(
            (
                await conn.execute(
                    select(routes.c.source, routes.c.destination).where(
                        or_(routes.c.source.in_(names), routes.c.destination.in_(names))
                    )
                )
            ).all()
        )
        in_use = {name for pair in still_used for name in pair}
        deletable = [c.name for c in owned if c.managed_by == "api" and c.name not in in_use]
        disable = [c.name for c in owned if c.name not in deletable]
        if deletable:
            await conn.execute(connections.delete().where(connections.c.name.in_(deletable)))
        if disable:
            await conn.execute(
                connections.update().where(connections.c.name.in_(disable)).values(enabled=False)
            )
        done["connections_deleted"] = len(deletable)
        done["connections_disabled"] = len(disable)

        done["kept_usage_events"] = await conn.scalar(
            select(func.count()).select_from(usage_events).where(usage_events.c.member == code)
        )
        done["kept_statements"] = await conn.scalar(
            select(func.count()).select_from(statements).where(statements.c.member == code)
        )
        await record(
            conn, actor=actor, action="member.purge", target=f"member:{code}", details=done
        )
    runtime.keyring.forget(code)
    return done


__all__ = [
    "add_keys_arguments",
    "add_member_arguments",
    "cmd_keys",
    "cmd_member",
    "purge_member",
    "rotate",
]
