"""Encrypted credentials: secrets referenced as ``vault:NAME`` live Fernet-encrypted in the store.

The master key comes from ``COHUB_MASTER_KEY`` or a key file that only its owner may read (0600).
Several keys, newest first, form a MultiFernet so old ciphertexts stay readable during rotation.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.hookspecs import hookimpl
from hub.store.database import writing
from hub.store.tables import vault_secrets

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

# cryptography is imported where a key is used: it costs 7 MiB, and a hub without a master key
# (and every command that does not touch secrets) never needs it.

MASTER_KEY_ENV = "COHUB_MASTER_KEY"


class VaultError(Exception):
    """The vault cannot be opened or a secret cannot be decrypted; never carries secret material."""


def create_key_file(path: Path) -> None:
    """Write a new master key readable by its owner only; refuse to overwrite an existing one."""
    from cryptography.fernet import Fernet

    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(Fernet.generate_key() + b"\n")


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
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    try:
        return MultiFernet([Fernet(line.encode()) for line in lines])
    except (ValueError, TypeError):
        raise VaultError(f"master key from {origin} is not a valid Fernet key") from None


class Vault:
    """Secrets stored encrypted in the hub database."""

    def __init__(self, engine: AsyncEngine, keys: MultiFernet) -> None:
        self.engine = engine
        self.keys = keys

    async def set(self, name: str, value: str) -> None:
        """Store or replace secret `name`."""
        await self.set_many({name: value})

    async def set_many(self, values: dict[str, str | None]) -> None:
        """Store or replace each secret, or delete those given as None, in one transaction."""
        now = datetime.now(UTC)
        async with writing(self.engine) as conn:
            for name, value in values.items():
                await conn.execute(vault_secrets.delete().where(vault_secrets.c.name == name))
                if value is not None:
                    token = self.keys.encrypt(value.encode()).decode()
                    await conn.execute(
                        vault_secrets.insert().values(name=name, ciphertext=token, updated_at=now)
                    )

    async def unlock(self) -> dict[str, str]:
        """Every secret decrypted, for the resolver; a wrong key is a VaultError naming the secret."""
        from cryptography.fernet import InvalidToken

        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(vault_secrets.c.name, vault_secrets.c.ciphertext))
            ).all()
        values: dict[str, str] = {}
        for name, token in rows:
            try:
                values[name] = self.keys.decrypt(token.encode()).decode()
            except InvalidToken:
                raise VaultError(
                    f"vault secret {name!r} cannot be decrypted with the master key"
                ) from None
        return values


class VaultResolver:
    """Resolves ``vault:NAME`` references from unlocked vault secrets."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    @hookimpl
    def cohub_resolve_secret(self, scheme, name, connection):
        if scheme != "vault":
            return None
        return self.values.get(name)
