"""Who is calling: API tokens stored hashed, their roles, and console sign-in sessions.

A token reads ``cohub_<id>_<secret>``. The id is public (it names the token in lists and logs);
the secret is 256 random bits, so a SHA-256 of it is all the store keeps (a slow password hash
buys nothing against a secret nobody can guess). Roles:

- ``admin``: everything, configuration and tokens included;
- ``operator``: run routes, cancel runs, replay or discard dead letters, test connections;
- ``billing``: usage and statements, and posting usage for services that meter their own work;
- ``viewer``: reads one member's data only (district staff), never another member's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.audit import record
from hub.store.database import writing
from hub.store.tables import api_tokens, console_sessions, members

PREFIX = "cohub_"
SESSION_HOURS = 12
#: How long a verified token is trusted without asking the database again (per process): a
#: token revoked elsewhere stops working within this many seconds, here at once.
CACHE_SECONDS = 5.0


class Role(StrEnum):
    admin = "admin"
    operator = "operator"
    billing = "billing"
    viewer = "viewer"


EVERYONE = frozenset(Role)
ADMIN = frozenset({Role.admin})
OPERATE = frozenset({Role.admin, Role.operator})
METER = frozenset({Role.admin, Role.operator, Role.billing})
BILLING = frozenset({Role.admin, Role.billing, Role.viewer})


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The caller: a token's id, name and role, and for a viewer the one member it may see."""

    token: str
    name: str
    role: Role
    member: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"token {self.name} ({self.token})"

    @property
    def member_scope(self) -> str | None:
        """The member every read is limited to (a viewer's), or None for the agency's staff."""
        return self.member if self.role is Role.viewer else None


class TokenError(ValueError):
    """A token cannot be created as asked (unknown role, viewer without a member...)."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(token: str) -> tuple[str, str] | None:
    if not token.startswith(PREFIX):
        return None
    token_id, _, secret = token.removeprefix(PREFIX).partition("_")
    return (token_id, secret) if token_id and secret else None


async def create_token(
    engine: AsyncEngine,
    *,
    name: str,
    role: str,
    member: str | None,
    created_by: str,
    expires_in: timedelta | None = None,
) -> tuple[Principal, str]:
    """A new token: its principal and the token text, shown once and never stored."""
    try:
        kind = Role(role)
    except ValueError:
        raise TokenError(f"unknown role {role!r}; one of {', '.join(Role)}") from None
    if kind is Role.viewer and not member:
        raise TokenError("a viewer token needs the member it may see")
    if kind is not Role.viewer and member:
        raise TokenError(f"only a viewer token is scoped to a member, not a {kind} token")
    if not name.strip():
        raise TokenError("a token needs a name")
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        if (
            member
            and await conn.scalar(select(members.c.code).where(members.c.code == member)) is None
        ):
            raise TokenError(f"no member {member!r}")
        await conn.execute(
            api_tokens.insert().values(
                id=token_id,
                name=name,
                role=kind.value,
                member=member,
                secret_hash=_digest(secret),
                created_at=now,
                created_by=created_by,
                expires_at=now + expires_in if expires_in else None,
            )
        )
        await record(
            conn,
            actor=created_by,
            action="token.create",
            target=f"token {token_id}",
            details={"name": name, "role": kind.value, "member": member},
        )
    principal = Principal(token=token_id, name=name, role=kind, member=member)
    return principal, f"{PREFIX}{token_id}_{secret}"


async def revoke_token(engine: AsyncEngine, token_id: str, actor: str) -> bool:
    """Revoke a token and end its console sessions; False if there is no live token by that id."""
    async with writing(engine) as conn:
        done = await conn.execute(
            update(api_tokens)
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        await conn.execute(delete(console_sessions).where(console_sessions.c.token_id == token_id))
        if done.rowcount:
            await record(conn, actor=actor, action="token.revoke", target=f"token {token_id}")
    Verifier.forget(token_id)
    return done.rowcount > 0


class Verifier:
    """Checks tokens against the store, trusting a verified one for `CACHE_SECONDS`."""

    _cache: dict[str, tuple[float, Principal]] = {}

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    def forget(cls, token_id: str) -> None:
        for key, (_, principal) in list(cls._cache.items()):
            if principal.token == token_id:
                cls._cache.pop(key, None)

    async def verify(self, token: str) -> Principal | None:
        """The token's principal, or None for an unknown, revoked, expired or forged token."""
        key = _digest(token)
        cached = self._cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        parts = _split(token)
        if parts is None:
            return None
        token_id, secret = parts
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)))
                .mappings()
                .first()
            )
        now = datetime.now(UTC)
        if row is None or not hmac.compare_digest(row["secret_hash"], _digest(secret)):
            return None
        if row["revoked_at"] is not None or (row["expires_at"] and row["expires_at"] <= now):
            return None
        if row["last_used_at"] is None or now - row["last_used_at"] > timedelta(minutes=1):
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=now)
                )
        principal = Principal(
            token=token_id, name=row["name"], role=Role(row["role"]), member=row["member"]
        )
        self._cache[key] = (time.monotonic() + CACHE_SECONDS, principal)
        return principal

    async def start_session(self, principal: Principal, address: str) -> tuple[str, str]:
        """A console session for `principal` signing in from `address` (audited as a login):
        (cookie value, CSRF token)."""
        session, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = datetime.now(UTC)
        async with writing(self.engine) as conn:
            await record(
                conn,
                actor=principal.actor,
                action="login",
                target=f"token {principal.token}",
                details={"address": address},
            )
            await conn.execute(delete(console_sessions).where(console_sessions.c.expires_at < now))
            await conn.execute(
                console_sessions.insert().values(
                    id_hash=_digest(session),
                    token_id=principal.token,
                    csrf=csrf,
                    created_at=now,
                    expires_at=now + timedelta(hours=SESSION_HOURS),
                )
            )
        return session, csrf

    async def session(self, cookie: str) -> tuple[Principal, str] | None:
        """The principal and CSRF token of a live console session, or None."""
        now = datetime.now(UTC)
        async with self.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(
                            api_tokens,
                            console_sessions.c.csrf,
                            console_sessions.c.expires_at.label("ends"),
                        )
                        .join(api_tokens, api_tokens.c.id == console_sessions.c.token_id)
                        .where(console_sessions.c.id_hash == _digest(cookie))
                    )
                )
                .mappings()
                .first()
            )
        if row is None or row["ends"] <= now or row["revoked_at"] is not None:
            return None
        if row["expires_at"] and row["expires_at"] <= now:
            return None
        principal = Principal(
            token=row["id"], name=row["name"], role=Role(row["role"]), member=row["member"]
        )
        return principal, row["csrf"]

    async def end_session(self, cookie: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(console_sessions).where(console_sessions.c.id_hash == _digest(cookie))
            )
