"""The hub's own plugin: the meters every run records (`records_synced` here, the domain and run
meters of `hub.meters`), the cooperative-contract check transform (`hub.contracts`) and the
``env:`` secret resolver."""

from __future__ import annotations

import os
from collections.abc import Sequence

from hub.contracts import CONTRACT_CHECK
from hub.hookspecs import hookimpl
from hub.meters import DOMAIN_METERS
from hub.model import Record
from hub.sdk.extensions import BatchContext, Meter


def _records_synced(context: BatchContext, records: Sequence[Record]) -> int:
    return len(records)


RECORDS_SYNCED = Meter(
    name="records_synced",
    unit="record",
    aggregation="sum",
    description="records delivered to the destination, per route and stream",
    measure=_records_synced,
)


@hookimpl
def cohub_register_meters(register):
    register(RECORDS_SYNCED)
    for meter in DOMAIN_METERS:
        register(meter)


@hookimpl
def cohub_register_transforms(register):
    register(CONTRACT_CHECK)


@hookimpl
def cohub_resolve_secret(scheme, name, connection):
    if scheme != "env":
        return None
    return os.environ.get(name)
