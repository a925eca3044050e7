"""A page of a vendor API's JSON objects as canonical records, each bad one a reject with its
reason: like `sdk.map_objects`, but a mapping may also refuse a row with `sdk.BadRecord` (a code
the connection does not know how to map), which then rejects that row alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from hub import sdk


def map_rows(
    record: type[sdk.Record],
    rows: Sequence[Any],
    map_row: Callable[[dict[str, Any]], dict[str, Any]],
    position: Callable[[Any], str],
    expected: str,
) -> tuple[list[sdk.Record], list[sdk.Reject]]:
    """Records of the rows `map_row` maps and `record` validates; the others as rejects at
    `position(row)`: a row that is not an object (reason `expected`), one `map_row` refused,
    one that does not validate."""
    mapped: list[dict[str, Any]] = []
    origin: list[int] = []
    refused: list[tuple[int, sdk.Reject]] = []
    for index, raw in enumerate(rows):
        if not isinstance(raw, dict):
            reason = f"{expected}, not {type(raw).__name__}"
            value = {"value": msgspec.to_builtins(raw)}
            refused.append((index, sdk.Reject(position=position(raw), reason=reason, raw=value)))
            continue
        try:
            mapped.append(map_row(raw))
        except sdk.BadRecord as error:
            refused.append(
                (index, sdk.Reject(position=position(raw), reason=error.reason, raw=raw))
            )
            continue
        origin.append(index)
    records, failures = sdk.convert_rows(record, mapped)
    for at, reason in failures:
        raw = rows[origin[at]]
        refused.append((origin[at], sdk.Reject(position=position(raw), reason=reason, raw=raw)))
    return records, [reject for _, reject in sorted(refused, key=lambda pair: pair[0])]


def map_one(
    record: type[sdk.Record],
    raw: dict[str, Any],
    map_row: Callable[[dict[str, Any]], dict[str, Any]],
    position: Callable[[Any], str],
    expected: str,
) -> sdk.Record:
    """One raw row mapped again (a dead letter replayed, a pushed record); BadRecord if not."""
    records, rejects = map_rows(record, [raw], map_row, position, expected)
    if rejects:
        raise sdk.BadRecord(rejects[0].reason, position=rejects[0].position)
    return records[0]


#: What a stream's rows become: the record type, the row mapping, and the reason a row that is
#: not an object is refused with.
RowMapping = tuple[type[sdk.Record], Callable[..., dict[str, Any]], str]


class MapsRows:
    """`map_rows` and `map_raw` for a connector whose every stream maps its rows with one
    function: it names them in `_mapping(stream)` and where a row is in `_position(stream)`."""

    def _stream(self, stream: str) -> str:
        raise NotImplementedError

    def _mapping(self, stream: str) -> RowMapping:
        raise NotImplementedError

    def _position(self, stream: str) -> Callable[[Any], str]:
        raise NotImplementedError

    def map_rows(self, stream: str, rows: list[Any]) -> tuple[list[sdk.Record], list[sdk.Reject]]:
        """Rows of `stream` as records, and those that cannot be, with the reason."""
        record, map_row, expected = self._mapping(stream)
        return map_rows(record, rows, map_row, self._position(stream), expected)

    def map_raw(self, stream: str, raw: dict[str, Any]) -> sdk.Record:
        self._stream(stream)
        record, map_row, expected = self._mapping(stream)
        return map_one(record, raw, map_row, self._position(stream), expected)
