"""Objects shared by everything running on one event loop: the worker's sessions and budgets."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class PerLoop(Generic[K, V]):
    """Values by key, kept apart for each running event loop.

    aiohttp sessions, semaphores and locks belong to the loop that made them. A worker process
    runs one loop, so keying by loop gives it one shared object per key; a test (its own loop)
    starts afresh, and a finished loop's values are dropped with it.
    """

    def __init__(self) -> None:
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[K, V]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, key: K, create: Callable[[], V]) -> V:
        """The running loop's value for `key`, made by `create` the first time."""
        values = self._values.setdefault(asyncio.get_running_loop(), {})
        if key not in values:
            values[key] = create()
        return values[key]

    def pop_all(self) -> list[V]:
        """Remove the running loop's values and return them."""
        return list(self._values.pop(asyncio.get_running_loop(), {}).values())
