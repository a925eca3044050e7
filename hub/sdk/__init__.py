"""The only API a plugin imports: connectors, records, meters, transforms, errors, hooks.

A plugin module looks like::

    from hub import sdk

    class MyConnector(sdk.Connector):
        name = "my_system"
        ...

    @sdk.hookimpl
    def cohub_register_connectors(register):
        register(MyConnector)
"""

import importlib
from types import ModuleType

from hub.hookspecs import hookimpl
from hub.model import ACCOUNT_LAYOUTS, RECORD_TYPES, AccountCode, AccountLayout, Record, record_type
from hub.model.base import Money, Pii, field_types, nested_struct
from hub.sdk.connector import (
    Batch,
    ConnectionContext,
    Connector,
    Inbound,
    Options,
    Received,
    Reject,
    State,
    StreamSpec,
    WriteResult,
    account_layout,
    convert_rows,
    map_objects,
)
from hub.sdk.cursor import IncrementalCursor
from hub.sdk.errors import (
    AuthError,
    BadRecord,
    ConnectorConfigError,
    ConnectorError,
    TransientError,
)
from hub.sdk.extensions import BatchContext, Meter, Transform, Transformed
from hub.sdk.lifecycle import CommittedBatch, RunCounts, RunInfo, UsageQuantity, count_retry

__all__ = [
    "ACCOUNT_LAYOUTS",
    "RECORD_TYPES",
    "AccountCode",
    "AccountLayout",
    "AuthError",
    "BadRecord",
    "Batch",
    "BatchContext",
    "CommittedBatch",
    "ConnectionContext",
    "Connector",
    "ConnectorConfigError",
    "ConnectorError",
    "Inbound",
    "IncrementalCursor",
    "Meter",
    "Money",
    "Options",
    "Pii",
    "Received",
    "Record",
    "Reject",
    "RunCounts",
    "RunInfo",
    "State",
    "StreamSpec",
    "Transform",
    "Transformed",
    "TransientError",
    "UsageQuantity",
    "WriteResult",
    "account_layout",
    "convert_rows",
    "count_retry",
    "field_types",
    "hookimpl",
    "http",
    "map_objects",
    "nested_struct",
    "record_type",
    "xml",
]


def __getattr__(name: str) -> ModuleType:
    """`sdk.http` and `sdk.xml` load on first use: aiohttp and the XML parser cost start-up
    time and memory that connectors reading files or databases never need."""
    if name in ("http", "xml"):
        return importlib.import_module(f"hub.sdk.{name}")
    raise AttributeError(f"module 'hub.sdk' has no attribute {name!r}")
