"""SQL helpers for connectors: the hub's engine factory and dialect-aware upserts."""

from hub.store.database import async_url, create_engine, writing
from hub.store.types import UtcDateTime, exact_decimal
from hub.store.upsert import insert_ignoring_duplicates, upsert, upsert_values

__all__ = [
    "UtcDateTime",
    "async_url",
    "create_engine",
    "exact_decimal",
    "insert_ignoring_duplicates",
    "upsert",
    "upsert_values",
    "writing",
]
