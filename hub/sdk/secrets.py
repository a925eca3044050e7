"""Secrets a vendor replaces: a connector hands the new value back to where the old one is kept.

Some vendors rotate a credential whenever it is used: Intuit answers each refresh-token grant
with a new refresh token and refuses the old one afterwards. A connector that received one calls
``await secrets.rotate(self.context, "refresh_token", new)``; the hub stores it in the vault
(sealed as the old value was, audited by name only) so the next run, in any worker, uses it.

The engine says where a connection's secrets are kept when it opens the connection (`keep`);
the keeper lives in a context variable, as the run's counters do (`lifecycle.CURRENT_RUN`), so
it reaches the connector's calls in the opening task and the tasks it starts, and nowhere else.
Keepers are per connection name, since a run opens its source and its destination side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Protocol

from hub.sdk.connector import ConnectionContext
from hub.sdk.errors import ConnectorConfigError


class SecretKeeper(Protocol):
    """Where one connection's secrets are kept, as the engine knows it."""

    def refusal(self, secret: str) -> str | None:
        """Why `secret` cannot be replaced (it comes from the environment, ...), or None."""
        ...

    async def store(self, secret: str, value: str) -> None:
        """Keep `value` as `secret` from now on; raise `ConnectorConfigError` if it cannot."""
        ...


#: Keepers by connection name; replaced, never changed in place, so a task started earlier keeps
#: the keepers it was started with.
_KEEPERS: ContextVar[Mapping[str, SecretKeeper]] = ContextVar(
    "cohub_secret_keepers", default=MappingProxyType({})
)


def keep(connection: str, keeper: SecretKeeper) -> None:
    """Make `keeper` where `connection`'s replaced secrets go, in this task and the tasks it
    starts from now on (the engine calls it when it opens the connection)."""
    _KEEPERS.set(MappingProxyType({**_KEEPERS.get(), connection: keeper}))


def _keeper(context: ConnectionContext, secret: str) -> SecretKeeper:
    keeper = _KEEPERS.get().get(context.connection)
    if keeper is None:
        raise ConnectorConfigError(
            f"connection {context.connection!r}: secret {secret!r} was replaced by the vendor, "
            "but this connection was not opened by the hub, which alone can store it"
        )
    return keeper


def ensure_rotatable(context: ConnectionContext, secret: str) -> None:
    """Raise `ConnectorConfigError` saying why if `secret` of this connection could not be
    replaced. A connector whose vendor rotates `secret` calls it before using it, so a
    replacement that could not be kept never invalidates the only copy the admin has."""
    reason = _keeper(context, secret).refusal(secret)
    if reason is not None:
        raise ConnectorConfigError(f"connection {context.connection!r}: {reason}")


async def rotate(context: ConnectionContext, secret: str, value: str) -> None:
    """Store `value` as this connection's `secret` in place of the one the vendor replaced;
    `ConnectorConfigError` if it cannot be kept. The value is never logged."""
    await _keeper(context, secret).store(secret, value)
