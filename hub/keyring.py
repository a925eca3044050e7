"""Member data keys: each member's records sealed with AES-256-GCM under a key of its own.

A member gets a random 256-bit data key on first need, stored in ``data_keys`` wrapped by the
master key (a Fernet/MultiFernet token of the key bytes), so rotating the master key rewraps a few
short tokens and never re-encrypts the data. Purging a member destroys its wrapped key: whatever
was sealed under it (vault secrets, dead letters) is unreadable from then on, backups included.

A sealed value is the text ``s1:`` + base64(nonce + ciphertext). The nonce is 96 random bits, fresh
for every message (AES-GCM must never see a nonce twice under one key; at 2^32 messages per key
random nonces stay far below the collision bound). The associated data names the member and where
the value lives (``("vault", NAME)``, ``("dead_letter", ROUTE, STREAM, POSITION)``), so a sealed
value copied to another row or another member's row fails to open instead of decrypting there.

One `Keyring` per process (the `Runtime` makes it and attaches it to its engine, where engine code
finds it with `keyring_for`) keeps unwrapped keys in memory; they never reach a log or an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.store.database import writing
from hub.store.tables import data_keys
from hub.vault import VaultError

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

log = structlog.get_logger("hub.keyring")

#: The envelope's version prefix: a sealed value starts with it.
SEALED_PREFIX = "s1:"
#: The keyring entry for records and secrets that belong to no member (cooperative-level).
COOPERATIVE = "@cooperative"
NONCE_BYTES = 12
KEY_BYTES = 32

#: Loads the master keys (re-reading the key file, so a rotation is followed), or None when
#: there is no master key at all.
MasterLoader = Callable[[], "MultiFernet | None"]


class SealedUnreadable(VaultError):
    """A sealed value cannot be opened (no key, a wrong key, or it was moved from another row)."""


class KeyDestroyed(SealedUnreadable):
    """The member was purged: its data key is destroyed and what was sealed under it is gone."""

    def __init__(self, member: str) -> None:
        super().__init__(f"member {member} was purged: its data key is destroyed")
        self.member = member


def is_sealed(value: object) -> bool:
    """Whether `value` is a sealed envelope (``s1:...``)."""
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def _associated(member: str, context: Sequence[str] | str) -> bytes:
    # A JSON array, so no choice of names can make two different places read the same.
    parts = [context] if isinstance(context, str) else list(context)
    return b"cohub-s1\0" + json.dumps([member, *parts], separators=(",", ":")).encode()


class Keyring:
    """Unwrapped member data keys of this process, loaded from the store on first use."""

    def __init__(self, engine: AsyncEngine, master: MasterLoader | MultiFernet | None) -> None:
        self.engine = engine
        self._master = master
        self._keys: dict[str, bytes] = {}

    def master(self) -> MultiFernet | None:
        """The master keys as they are now (None: no master key anywhere)."""
        if self._master is None or not callable(self._master):
            return self._master
        return self._master()

    def available(self) -> bool:
        """Whether there is a master key, so values can be sealed."""
        return self.master() is not None

    def forget(self, member: str | None = None) -> None:
        """Drop unwrapped keys from memory (one member's, or all)."""
        if member is None:
            self._keys.clear()
        else:
            self._keys.pop(member, None)

    async def ensure(self, member: str | None) -> None:
        """Make sure `member` has a live data key, creating it in its own transaction if it has
        none; call it before a transaction that seals. KeyDestroyed if the member was purged.

        The store is asked every time (one small select), so a purge in another process stops
        this one from sealing anything new under the destroyed key."""
        code = member or COOPERATIVE
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(data_keys.c.wrapped, data_keys.c.destroyed_at).where(
                        data_keys.c.member == code
                    )
                )
            ).first()
        if row is not None:
            if row.wrapped is None or row.destroyed_at is not None:
                self._keys.pop(code, None)
                raise KeyDestroyed(code)
            if code not in self._keys:
                self._keys[code] = self._unwrap(code, row.wrapped)
            return
        await self._create(code)

    async def _create(self, code: str) -> None:
        master = self._require_master()
        key = os.urandom(KEY_BYTES)
        wrapped = master.encrypt(key).decode()
        try:
            async with writing(self.engine) as conn:
                await conn.execute(
                    data_keys.insert().values(
                        member=code, wrapped=wrapped, created_at=datetime.now(UTC)
                    )
                )
        except IntegrityError:
            # Another process created it first: use theirs.
            self._keys.pop(code, None)
            await self.ensure(None if code == COOPERATIVE else code)
            return
        self._keys[code] = key
        log.info("keyring.key_created", member=code)

    async def data_key(self, member: str | None) -> bytes:
        """`member`'s unwrapped data key (loaded from the store once per process);
        KeyDestroyed if it was purged, SealedUnreadable if it never had one."""
        code = member or COOPERATIVE
        key = self._keys.get(code)
        if key is not None:
            return key
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(data_keys.c.wrapped, data_keys.c.destroyed_at).where(
                        data_keys.c.member == code
                    )
                )
            ).first()
        if row is None:
            raise SealedUnreadable(f"member {code} has no data key: nothing sealed for it opens")
        if row.wrapped is None or row.destroyed_at is not None:
            raise KeyDestroyed(code)
        key = self._unwrap(code, row.wrapped)
        self._keys[code] = key
        return key

    async def seal(self, member: str | None, context: Sequence[str] | str, plaintext: bytes) -> str:
        """`plaintext` sealed under `member`'s data key, bound to `context` (where it lives)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        code = member or COOPERATIVE
        if code not in self._keys:
            await self.ensure(member)
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._keys[code]).encrypt(nonce, plaintext, _associated(code, context))
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    async def open_sealed(
        self, member: str | None, context: Sequence[str] | str, sealed: str
    ) -> bytes:
        """The plaintext of a value `seal` made for the same member and context; KeyDestroyed if
        the member was purged, SealedUnreadable if it was sealed elsewhere or is damaged."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        code = member or COOPERATIVE
        if not is_sealed(sealed):
            raise SealedUnreadable("not a sealed value (unknown envelope version)")
        key = await self.data_key(member)
        try:
            blob = base64.urlsafe_b64decode(sealed[len(SEALED_PREFIX) :].encode())
            nonce, body = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
            return AESGCM(key).decrypt(nonce, body, _associated(code, context))
        except (InvalidTag, ValueError):
            raise SealedUnreadable(
                f"a value sealed for member {code} does not open here: damaged, or moved from "
                "another row or member"
            ) from None

    async def digest(self, member: str | None, context: Sequence[str] | str, data: bytes) -> str:
        """A keyed hash of `data` (HMAC-SHA256 under a key derived from the member's data key):
        equal data gives equal digests, so duplicates are found without opening anything, and
        without the key nobody can test a guess (an SSN) against it."""
        code = member or COOPERATIVE
        if code not in self._keys:
            await self.ensure(member)
        mac_key = hashlib.sha256(b"cohub-digest\0" + self._keys[code]).digest()
        return hmac.new(mac_key, _associated(code, context) + data, hashlib.sha256).hexdigest()

    def _require_master(self) -> MultiFernet:
        master = self.master()
        if master is None:
            raise VaultError("no master key: set COHUB_MASTER_KEY or run `cohub init`")
        return master

    def _unwrap(self, code: str, wrapped: str) -> bytes:
        from cryptography.fernet import InvalidToken

        try:
            return self._require_master().decrypt(wrapped.encode())
        except InvalidToken:
            raise VaultError(
                f"the data key of member {code} cannot be unwrapped with the master key "
                "(a wrong or outdated key: after `cohub keys rotate`, use the new key)"
            ) from None


# -- one keyring per engine, for engine code that is handed only the engine -----------------

_KEYRINGS: weakref.WeakKeyDictionary[object, Keyring] = weakref.WeakKeyDictionary()
_warned_no_master = False


def attach(engine: AsyncEngine, keyring: Keyring) -> None:
    """Make `keyring` the one engine code finds for `engine`."""
    _KEYRINGS[engine.sync_engine] = keyring


def keyring_for(engine: AsyncEngine) -> Keyring | None:
    """The keyring attached to `engine`, if it can seal (a master key is present); else None,
    after one warning per process: values are then stored as they are."""
    global _warned_no_master
    keyring = _KEYRINGS.get(engine.sync_engine)
    if keyring is not None and keyring.available():
        return keyring
    if not _warned_no_master:
        _warned_no_master = True
        log.warning(
            "vault.no_master_key",
            detail="dead letters are stored unsealed; run `cohub init` to create a master key",
        )
    return None


def attached(engine: AsyncEngine) -> Keyring | None:
    """The keyring attached to `engine`, for readers (no warning, master key or not)."""
    return _KEYRINGS.get(engine.sync_engine)
