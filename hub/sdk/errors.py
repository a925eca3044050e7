"""Errors a connector raises; the engine decides from the type what happens next."""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every error a connector reports on purpose."""


class ConnectorConfigError(ConnectorError):
    """The connection's options or secrets cannot work (missing folder, bad URL). Not retried."""


class AuthError(ConnectorError):
    """The vendor system refused the credentials. Not retried until an admin fixes them."""


class TransientError(ConnectorError):
    """The vendor system is briefly unavailable (timeout, 429, 5xx); retrying may succeed."""


class BadRecord(ConnectorError):
    """One record cannot be mapped or validated; it goes to dead letters and the run goes on."""

    def __init__(self, reason: str, *, position: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position
