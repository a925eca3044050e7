"""Signed inbound requests (vendor webhooks): HMAC-SHA256 over the timestamp and the body.

A sender computes ``hex(HMAC-SHA256(secret, f"{timestamp}.{body}"))`` and sends it with the
timestamp (Unix seconds); the hub accepts the request only if the signature matches in constant
time and the timestamp is within `tolerance` of its clock, so a captured request replayed later
is refused. Vendors that sign their own way (Zendesk, ServiceNow...) get their own check in
their connector; this is the hub's scheme for senders that follow ours.
"""

from __future__ import annotations

import hashlib
import hmac
import time

#: How far a request's timestamp may be from the hub's clock, either way.
TOLERANCE_SECONDS = 300


class BadSignature(ValueError):
    """The request is unsigned, wrongly signed or stale; the message never echoes the body."""


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    body: bytes,
    *,
    timestamp: str | None,
    signature: str | None,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Return if `signature` signs `body` at `timestamp` recently enough; BadSignature if not."""
    if not timestamp or not signature:
        raise BadSignature("unsigned request")
    try:
        moment = int(timestamp)
    except ValueError:
        raise BadSignature("the timestamp is not Unix seconds") from None
    if abs((time.time() if now is None else now) - moment) > tolerance:
        raise BadSignature("stale or future timestamp (a replay?)")
    if not hmac.compare_digest(sign(secret, moment, body), signature.strip().lower()):
        raise BadSignature("the signature does not match")
