"""An incremental cursor on ``updated_at`` with a lookback window.

Source systems commit late: a record stamped 10:59 can become visible at 11:05, after a sync at
11:00 moved the cursor past it. Reading again from ``cursor - lookback`` catches it; remembering
what was delivered inside the window keeps the re-read records from being delivered, and
billed, twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from hub.model import Record
from hub.sdk.connector import State


class IncrementalCursor:
    """A stream's cursor and the records delivered within the lookback window, as state."""

    def __init__(self, state: State | None, lookback: timedelta = timedelta(0)) -> None:
        state = state or {}
        self.lookback = lookback
        self.cursor = datetime.fromisoformat(state["cursor"]) if state.get("cursor") else None
        self.recent: dict[str, str] = dict(state.get("recent", {}))

    def since(self) -> datetime | None:
        """Read records updated at or after this (None: read everything)."""
        return None if self.cursor is None else self.cursor - self.lookback

    def admit(self, records: Iterable[Record]) -> list[Record]:
        """The records not yet delivered at this version, in order; moves the cursor past them."""
        fresh: list[Record] = []
        for record in records:
            stamp = record.updated_at.isoformat()
            if self.recent.get(record.key) == stamp:
                continue
            fresh.append(record)
            self.recent[record.key] = stamp
            if self.cursor is None or record.updated_at > self.cursor:
                self.cursor = record.updated_at
        self._forget_outside_window()
        return fresh

    def _forget_outside_window(self) -> None:
        horizon = self.since()
        if horizon is not None:
            self.recent = {
                k: v for k, v in self.recent.items() if datetime.fromisoformat(v) >= horizon
            }

    def state(self) -> State:
        """The state to store with the batch just admitted."""
        return {
            "cursor": self.cursor.isoformat() if self.cursor else None,
            "recent": dict(self.recent),
        }
