"""Keyset walks over lists a vendor pages by offset and orders by a last-updated stamp.

Help desks (ServiceNow's Table API, Jira's search) page a query ordered by its updated time with
an offset. A record updated while the walk goes on moves to the end of the order, and every
record after its old place moves one up: a plain offset walk then skips one. Restarting each
page's query at the stamp of the last record received (``updated >= stamp``, offset 0) leaves
nothing behind; it reads the records at that stamp again, which the caller's
`sdk.IncrementalCursor` drops as already delivered. When a whole page shares the stamp it
started from (more records in one second, or one JQL minute, than a page holds), the walk goes
on by offset inside that stamp instead, so it always progresses. Rows that become rejects are
remembered the same way (`admit_rejects`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from hub import sdk

#: One page of the query: (rows, whether the vendor says more follow), for records at or after
#: the stamp (None: from the beginning), skipping `offset` of them.
Fetch = Callable[[datetime | None, int], Awaitable[tuple[list[Any], bool]]]


async def keyset_pages(
    fetch: Fetch,
    stamp: Callable[[Any], datetime | None],
    since: datetime | None,
) -> AsyncIterator[list[Any]]:
    """Pages of the query from `since` on; `stamp` gives a row's position in the order, as
    the query can select it (a JQL minute, a ServiceNow second), None if it has none."""
    offset = 0
    while True:
        rows, more = await fetch(since, offset)
        if rows:
            yield rows
        if not rows or not more:
            return
        last = stamp(rows[-1])
        if last is None or last == since:
            offset += len(rows)
        else:
            since, offset = last, 0


def admit_rejects(
    cursor: sdk.IncrementalCursor,
    rejects: list[sdk.Reject],
    stamp: Callable[[Any], datetime | None],
    identity: str,
) -> list[sdk.Reject]:
    """The rejects not yet reported at this version: a bad row read again (a keyset restart,
    the route's lookback) is a dead letter once, like a record is delivered once. They are
    remembered in the cursor's window as ``reject:{identity}``, `identity` the row's ID field;
    a reject without an ID or a stamp is always reported."""
    fresh = []
    for reject in rejects:
        when, row_id = stamp(reject.raw), reject.raw.get(identity)
        if when is None or not row_id:
            fresh.append(reject)
            continue
        key = f"reject:{row_id}"
        if cursor.recent.get(key) != when.isoformat():
            cursor.recent[key] = when.isoformat()
            fresh.append(reject)
    return fresh
