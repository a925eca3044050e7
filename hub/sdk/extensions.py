"""What plugins register besides connectors: meters and record transforms."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Literal

import msgspec

from hub.model import Record

Aggregation = Literal["sum", "count", "unique_count", "max"]


class BatchContext(msgspec.Struct, frozen=True, kw_only=True):
    """What a meter or transform knows about the batch in hand."""

    route: str
    run_id: int
    member: str | None
    service: str
    source_stream: str
    destination_stream: str
    record: str
    #: HTTP requests the run sent (each attempt and token request counted) since the batch
    #: measured before this one; the engine fills it in just before measuring.
    api_calls: int = 0
    #: The configuration folder the route's source connection was applied from (a transform
    #: may read the cooperative's own tables there, as `contract_check` reads contracts.toml).
    config_dir: str = ""


#: A meter's measure: what a committed batch used, or None where the meter does not apply. The
#: answer is a plain quantity (an int, or a Decimal with at most six decimal places, never a
#: float), or a mapping ``{subject: quantity}`` that the ledger stores as one usage event per
#: subject: the employee ID for a unique-count meter, ``"supplier/contract"`` for a breakdown.
#: A unique-count meter counts distinct subjects over a period, whatever quantity each carries.
Measure = Callable[
    [BatchContext, Sequence[Record]], Decimal | int | Mapping[str, Decimal | int] | None
]


class Meter(msgspec.Struct, frozen=True, kw_only=True):
    """A named usage quantity with its unit and how it aggregates over a period."""

    name: str
    unit: str
    aggregation: Aggregation = "sum"
    description: str = ""
    measure: Measure | None = None
    #: Count each subject once ever, the first time it is measured, however often a record is
    #: delivered again (an order re-sent on every status change is still placed once). Needs a
    #: measure that answers ``{subject: quantity}`` with subjects that identify the record.
    once_per_subject: bool = False


class Transformed(msgspec.Struct, kw_only=True):
    """A transform's answer when it holds records back: the records to deliver, and those held
    with the reason each (they become dead letters; a replay sends them through the route's
    transforms again, so a transform that holds must give the same answer twice)."""

    records: list[Record]
    held: list[tuple[Record, str]] = msgspec.field(default_factory=list)


#: A transform takes a batch's records and returns the records to deliver (it may drop or replace
#: some), or a `Transformed` holding some back with a reason; it may be `async def`. An exception
#: fails the run with a message naming the plugin, since delivering records a route says must be
#: transformed, untransformed, would be worse.
TransformFunction = Callable[
    [BatchContext, list[Record]],
    list[Record] | Transformed | Awaitable[list[Record] | Transformed],
]


class Transform(msgspec.Struct, frozen=True, kw_only=True):
    """A named record transform that routes list in their configuration."""

    name: str
    function: TransformFunction
    description: str = ""
