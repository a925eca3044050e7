"""The connection's own state: control numbers, interchanges sent, 997s sent and received.

X12 wants ISA13, GS06 and ST02 unique per trading partner, whatever route wrote the
interchange (the 850 destination, a 997 after a read), so they cannot live in one route's
checkpoint: they live in one JSON file per connection, changed under an exclusive lock
(`fcntl.flock`) and replaced atomically (temporary file, fsync, rename).

**Allocate before writing.** Numbers are taken and the file saved *before* the interchange is
published. A crash between the two leaves a gap (numbers never sent); a number is never sent
twice. Partners tolerate gaps; they reject repeats.

**Retries repeat, not renumber.** A batch written again (an engine retry, a run resumed from an
earlier checkpoint) is recognised by the digest of its records: it gets the control numbers and
time stamp it had, so the same bytes under the same file name, which replace their copy instead
of sending the partner a second order.

Entries older than `remember_days` are dropped at each change, so the file stays small.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

#: ISA13 and GS06 are 9 digits at most; after 999,999,999 numbering starts again at 1.
LIMIT = 999_999_999


class ControlFile:
    """One connection's state file."""

    def __init__(self, path: Path, remember_days: int) -> None:
        self.path = path
        self.remember_days = remember_days

    @contextmanager
    def changing(self) -> Iterator[dict[str, Any]]:
        """The state, locked against every other process; saved when the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self._load()
                yield state
                self._prune(state)
                self._save(state)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict[str, Any]:
        """The state as last saved (no lock: a snapshot for reporting)."""
        return self._load()

    def _load(self) -> dict[str, Any]:
        try:
            state = json.loads(self.path.read_text())
        except FileNotFoundError:
            state = {}
        for key in ("batches", "sent", "acknowledged", "received_997"):
            state.setdefault(key, {})
        for key in ("interchange", "group", "set"):
            state.setdefault(key, 0)
        return state

    def _save(self, state: dict[str, Any]) -> None:
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with open(temporary, "w") as handle:
            json.dump(state, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _prune(self, state: dict[str, Any]) -> None:
        horizon = (datetime.now(UTC) - timedelta(days=self.remember_days)).date().isoformat()
        for key in ("batches", "sent", "acknowledged", "received_997"):
            entries = state[key]
            for name in [n for n, e in entries.items() if e.get("on", horizon) < horizon]:
                del entries[name]


def next_number(state: dict[str, Any], counter: str) -> int:
    """The next number of `counter` (``interchange``, ``group`` or ``set``), taken."""
    number = state[counter] % LIMIT + 1
    state[counter] = number
    return number


def today() -> str:
    return datetime.now(UTC).date().isoformat()
