"""Writing a batch to a vendor API one record at a time, where the vendor may refuse one record
(`sdk.BadRecord`) without failing the others: the refused ones become the batch's rejects."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import msgspec

from hub import sdk


async def write_each(
    stream: str, records: Sequence[sdk.Record], write: Callable[[sdk.Record], Awaitable[object]]
) -> sdk.WriteResult:
    """`write` every record in turn; one it refuses is a reject at ``STREAM KEY`` with the
    vendor's reason and the record, as `WriteResult.rejects` wants it."""
    written, rejects = 0, []
    for record in records:
        try:
            await write(record)
        except sdk.BadRecord as refused:
            rejects.append(
                sdk.Reject(
                    position=f"{stream} {record.key}",
                    reason=refused.reason,
                    raw=msgspec.to_builtins(record),
                )
            )
            continue
        written += 1
    return sdk.WriteResult(written=written, rejects=rejects)
