"""Encrypted credentials: secrets referenced as ``vault:NAME`` live Fernet-encrypted in the store.

The master key comes from ``COHUB_MASTER_KEY`` or a key file that only its owner may read (0600).
Several keys, newest first, form a MultiFernet so old ciphertexts stay readable during rotation.

A secret of a member's connection (``connection.NAME.SECRET`` where connection NAME belongs to a
member, or one stored with an explicit member) is sealed under that member's data key instead
(`hub.keyring`, AES-GCM bound to the member and the secret's name), so purging the member makes it
unreadable; cooperative-level secrets stay Fernet tokens under the master key.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.hookspecs import hookimpl
from hub.store.database import writing
from hub.store.tables import connections, vault_secrets

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

    from hub.keyring import Keyring

log = structlog.get_logger("hub.vault")

# cryptography is imported where a key is used: it costs 7 MiB, and a hub without a master key
# (and every command that does not touch secrets) never needs it.

MASTER_KEY_ENV = "COHUB_MASTER_KEY"


class VaultError(Exception):
    """The vault cannot be opened or a secret cannot be decrypted; never carries secret material."""


def master_key_present(path: Path) -> bool:
    """Whether a master key is configured (``COHUB_MASTER_KEY`` set, or the key file exists)."""
    return MASTER_KEY_ENV in os.environ or path.exists()


def parse_keys(text: str) -> list[str]:
    """The keys in a key file's or ``COHUB_MASTER_KEY``'s text: one per line, or separated by
    commas or spaces (an environment variable holds several keys on one line)."""
    return [part for part in text.replace(",", " ").split() if part]


def create_key_file(path: Path) -> None:
    """Write a new master key readable by its owner only; refuse to overwrite an existing one."""
    from cryptography.fernet import Fernet

    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(Fernet.generate_key() + b"\n")


def write_key_file(path: Path, keys: list[str]) -> None:
    """Replace the key file with `keys` (newest first) atomically: a temporary file made 0600,
    written, synced, then renamed over it, so a reader sees the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write("".join(f"{key}\n" for key in keys).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


def key_texts(path: Path) -> tuple[list[str], str]:
    """The master keys as text, newest first, and where they came from (the environment
    variable's name or the file's path); a VaultError if there are none or they are invalid."""
    load_keys(path)  # validates, with the same messages
    text = os.environ.get(MASTER_KEY_ENV)
    if text is not None:
        return parse_keys(text), MASTER_KEY_ENV
    return parse_keys(path.read_text()), str(path)


def load_keys(path: Path) -> MultiFernet:
    """The master keys from ``COHUB_MASTER_KEY`` or `path` (one key a line, newest first)."""
    from cryptography.fernet import Fernet, MultiFernet

    text = os.environ.get(MASTER_KEY_ENV)
    origin = MASTER_KEY_ENV
    if text is None:
        origin = str(path)
        if not path.exists():
            raise VaultError(
                f"no master key: set {MASTER_KEY_ENV} or run `cohub init` to create {path}"
            )
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise VaultError(
                f"master key file {path} must be readable by its owner only (chmod 600)"
            )
        text = path.read_text()
    lines = parse_keys(text)
    if not lines:
        raise VaultError(f"master key from {origin} is empty")
    try:
        return MultiFernet([Fernet(line.encode()) for line in lines])
    except (ValueError, TypeError):
        raise VaultError(f"master key from {origin} is not a valid Fernet key") from None


class Vault:
    """Secrets stored encrypted in the hub database."""

    def __init__(
        self, engine: AsyncEngine, keys: MultiFernet, keyring: Keyring | None = None
    ) -> None:
        from hub.keyring import Keyring

        self.engine = engine
        self.keys = keys
        self.keyring = keyring or Keyring(engine, keys)

    async def set(
        self, name: str, value: str, *, member: str | None = None, actor: str = "hub"
    ) -> None:
        """Store or replace secret `name` (sealed under `member`'s data key if given)."""
        await self.set_many({name: value}, member=member, actor=actor)

    async def set_many(
        self,
        values: dict[str, str | None],
        *,
        member: str | None = None,
        actor: str = "hub",
        action: str = "secrets.set",
    ) -> None:
        """Store or replace each secret, or delete those given as None, in one transaction, with
        one audit entry (`action`) naming them, never their values.

        Each secret is sealed under `member`'s data key if given, else under the member of the
        connection it belongs to (``connection.NAME.SECRET``), else Fernet under the master key."""
        from hub.audit import record

        now = datetime.now(UTC)
        async with self.engine.connect() as conn:
            owners = {
                name: member or await connection_member(conn, name)
                for name, value in values.items()
                if value is not None
            }
        for owner in set(owners.values()) - {None}:
            await self.keyring.ensure(owner)  # before the transaction: it may create the key
        async with writing(self.engine) as conn:
            for name, value in values.items():
                await conn.execute(vault_secrets.delete().where(vault_secrets.c.name == name))
                if value is None:
                    continue
                owner = owners[name]
                if owner is None:
                    token = self.keys.encrypt(value.encode()).decode()
                else:
                    token = await self.keyring.seal(owner, ("vault", name), value.encode())
                await conn.execute(
                    vault_secrets.insert().values(
                        name=name, ciphertext=token, updated_at=now, member=owner
                    )
                )
            stored = sorted(n for n, v in values.items() if v is not None)
            deleted = sorted(n for n, v in values.items() if v is None)
            await record(
                conn,
                actor=actor,
                action=action,
                target=f"vault:{stored[0] if len(stored) == 1 and not deleted else '*'}",
                details={
                    "stored": stored,
                    "deleted": deleted,
                    "members": sorted({o for o in owners.values() if o is not None}),
                },
            )

    async def rotate(self, name: str, value: str, *, actor: str) -> None:
        """Replace secret `name` with the value its vendor issued in its place (a rotated refresh
        token), sealed as the stored one is: under the same member's data key, or the master key.
        Audited as ``secrets.rotate`` by name."""
        async with self.engine.connect() as conn:
            member = await conn.scalar(
                select(vault_secrets.c.member).where(vault_secrets.c.name == name)
            )
        await self.set_many({name: value}, member=member, actor=actor, action="secrets.rotate")

    async def unlock(self) -> dict[str, str]:
        """Every secret decrypted, for the resolver; a wrong key is a VaultError naming the secret.
        A secret of a purged member (its key destroyed) is left out, with a warning."""
        from cryptography.fernet import InvalidToken

        from hub.keyring import KeyDestroyed

        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(vault_secrets.c.name, vault_secrets.c.ciphertext, vault_secrets.c.member)
                )
            ).all()
        values: dict[str, str] = {}
        for name, token, member in rows:
            if member is not None:
                try:
                    values[name] = (
                        await self.keyring.open_sealed(member, ("vault", name), token)
                    ).decode()
                except KeyDestroyed as destroyed:
                    log.warning("vault.secret_unreadable", secret=name, reason=str(destroyed))
                except VaultError as error:
                    raise VaultError(f"vault secret {name!r} cannot be opened: {error}") from None
                continue
            try:
                values[name] = self.keys.decrypt(token.encode()).decode()
            except InvalidToken:
                raise VaultError(
                    f"vault secret {name!r} cannot be decrypted with the master key"
                ) from None
        return values


async def connection_member(conn: AsyncConnection, name: str) -> str | None:
    """The member whose connection secret `name` is (``connection.NAME.SECRET``), if any."""
    if not name.startswith("connection."):
        return None
    connection = name.removeprefix("connection.").rsplit(".", 1)[0]
    return await conn.scalar(select(connections.c.member).where(connections.c.name == connection))


class VaultResolver:
    """Resolves ``vault:NAME`` references from unlocked vault secrets, and stores the secrets
    vendors rotate (`rotate`) through `vault`, the process's way to open the vault."""

    def __init__(self, values: dict[str, str], vault: Callable[[], Vault] | None = None) -> None:
        self.values = values
        self.vault = vault

    async def rotate(self, name: str, value: str, *, actor: str) -> None:
        """Store `value` as vault secret `name` in place of the old one, and resolve it from now
        on in this process (other workers unlock the vault again when it changed)."""
        if self.vault is None:
            raise VaultError(
                f"vault secret {name!r} cannot be replaced: the vault is read-only here"
            )
        await self.vault().rotate(name, value, actor=actor)
        self.values[name] = value

    @hookimpl
    def cohub_resolve_secret(self, scheme, name, connection):
        if scheme != "vault":
            return None
        return self.values.get(name)
