"""What run lifecycle hooks receive: plain, immutable facts about a run and its batches."""

from __future__ import annotations

from contextvars import ContextVar
from decimal import Decimal

import msgspec


class RunInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A run of a route, as plugins see it."""

    id: int
    route: str
    member: str | None
    service: str
    trigger: str = "manual"


class RunCounts(msgspec.Struct, kw_only=True):
    """Running totals of a run."""

    read: int = 0
    written: int = 0
    rejected: int = 0
    batches: int = 0
    retried: int = 0
    deleted: int = 0
    #: HTTP requests sent to vendor systems through the SDK's client: every attempt, retries
    #: and OAuth token requests included.
    api_calls: int = 0


#: The counters of the run in progress in this task (None outside a run). The engine sets it;
#: SDK helpers add to it: the HTTP toolkit counts its retries (`count_retry`) and every request
#: it sends (`count_api_call`).
CURRENT_RUN: ContextVar[RunCounts | None] = ContextVar("cohub_current_run", default=None)


def count_retry(attempts: int = 1) -> None:
    """Record that a call to a vendor system was retried, on the run in progress if any."""
    counts = CURRENT_RUN.get()
    if counts is not None:
        counts.retried += attempts


def count_api_call() -> None:
    """Record that one HTTP request was sent to a vendor system, on the run in progress if any."""
    counts = CURRENT_RUN.get()
    if counts is not None:
        counts.api_calls += 1


class UsageQuantity(msgspec.Struct, frozen=True, kw_only=True):
    """One meter's quantity for one member from one batch."""

    meter: str
    member: str
    quantity: Decimal
    #: What a unique-count or per-subject meter counted ("" for a plain quantity).
    subject: str = ""
    #: The ledger key of a meter that counts each subject once (else the batch's key is used).
    key: str = ""


class CommittedBatch(msgspec.Struct, frozen=True, kw_only=True):
    """A batch whose delivery, checkpoint and usage are committed together."""

    stream: str
    written: int
    rejected: int
    usage: list[UsageQuantity]
