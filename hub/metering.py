"""The usage ledger: measuring committed batches and appending usage events exactly once."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.model import Record
from hub.plugins import PluginHost
from hub.sdk.extensions import BatchContext
from hub.sdk.lifecycle import UsageQuantity
from hub.store.tables import QUANTITY_PLACES, usage_events
from hub.store.upsert import insert_ignoring_duplicates

_encode = msgspec.json.Encoder(order="sorted").encode


def batch_fingerprint(
    route: str, stream: str, state_before: Any, state_after: Any, generation: int | None = None
) -> str:
    """A stable identity for one batch of a route: the same checkpoint range in the same read
    cycle gives the same value, so a batch re-read after a crash carries the same usage
    idempotency keys, while the next full refresh (a new cycle) is metered anew."""
    digest = hashlib.sha256()
    parts = (
        route.encode(),
        stream.encode(),
        _encode(state_before),
        _encode(state_after),
        _encode(generation),
    )
    for part in parts:
        digest.update(part)
        digest.update(b"\x00")
    return digest.hexdigest()[:40]


def measure(
    host: PluginHost, context: BatchContext, records: Sequence[Record]
) -> list[UsageQuantity]:
    """Every applicable meter's quantity for a batch; a meter that raises is reported and skipped."""
    if context.member is None:
        return []
    quantities: list[UsageQuantity] = []
    for meter in host.meters().values():
        if meter.measure is None:
            continue
        try:
            quantity = _checked(meter.measure(context, records))
        except Exception as error:
            host.report(host.owner("meter", meter.name), f"meter {meter.name}", error)
            continue
        if quantity:
            quantities.append(
                UsageQuantity(meter=meter.name, member=context.member, quantity=quantity)
            )
    return quantities


def _checked(quantity: object) -> Decimal | None:
    """A measure's answer as the ledger stores it: None, or an int or Decimal with at most six
    decimal places (a float would carry binary rounding into bills)."""
    if quantity is None:
        return None
    if isinstance(quantity, bool) or not isinstance(quantity, int | Decimal):
        raise TypeError(f"a measure must return an int or Decimal, not {type(quantity).__name__}")
    value = Decimal(quantity)
    if value.as_tuple().exponent < -QUANTITY_PLACES:  # type: ignore[operator]
        raise ValueError(f"{value} has more than {QUANTITY_PLACES} decimal places")
    return value


async def record_usage(
    conn: AsyncConnection,
    quantities: Sequence[UsageQuantity],
    *,
    fingerprint: str,
    service: str,
    occurred_at: datetime,
    route: str | None = None,
    run_id: int | None = None,
) -> None:
    """Append usage events; a key already in the ledger is ignored, never counted twice."""
    if not quantities:
        return
    rows = [
        {
            "idempotency_key": f"{fingerprint}:{q.meter}:{q.member}",
            "member": q.member,
            "service": service,
            "meter": q.meter,
            "quantity": q.quantity,
            "occurred_at": occurred_at,
            "route": route,
            "run_id": run_id,
        }
        for q in quantities
    ]
    await conn.execute(insert_ignoring_duplicates(usage_events, conn.dialect.name), rows)
