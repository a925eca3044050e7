"""The connector contract: what a plugin implements to read from or write to one vendor system."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from hub.model import ACCOUNT_LAYOUTS, AccountLayout, Record
from hub.sdk.errors import ConnectorConfigError

State = dict[str, Any]


class Options(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of a connector's typed options; unknown keys are errors, never ignored."""


class StreamSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A named record set a connection reads or writes, and the canonical record it carries."""

    name: str
    record: str
    description: str = ""
    readable: bool = True
    writable: bool = False


class Reject(msgspec.Struct, frozen=True, kw_only=True):
    """A record bound for dead letters: a source record that could not become a canonical
    record (`raw` the source record), or one a destination refused (`raw` the record itself)."""

    position: str
    reason: str
    raw: dict[str, Any]


class Batch(msgspec.Struct, kw_only=True):
    """Records read together, with the state a checkpoint stores once they are delivered.

    `state` must be enough to resume right after this batch; `member` overrides the connection's
    member when a cooperative-level source carries several districts' records.
    """

    records: list[Record]
    state: State
    rejects: list[Reject] = msgspec.field(default_factory=list)
    member: str | None = None
    #: Set by the engine on the batch a destination writes: the run that began the current
    #: read cycle. Destinations stamp rows with it so `delete_missing` can find the rest.
    generation: int | None = None
    #: Keys (`Record.key`) of records the source reports deleted since the previous batch; the
    #: engine passes them to the destination's `delete`.
    deletes: list[str] = msgspec.field(default_factory=list)


class WriteResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a destination did with a batch."""

    written: int
    #: Records the destination refused (the vendor said no, a value it cannot take), each with
    #: `raw` the refused record as `msgspec.to_builtins(record)`: they go to dead letters with
    #: the reason, in the batch's checkpoint transaction, and a replay writes them again.
    rejects: list[Reject] = msgspec.field(default_factory=list)


class Inbound(msgspec.Struct, frozen=True, kw_only=True):
    """One request a vendor system pushed to the hub's inbound endpoint for a connection (a
    webhook, a cXML document): its body, its headers with lower-case names, its media type."""

    body: bytes
    headers: dict[str, str]
    content_type: str = ""


class Received(msgspec.Struct, kw_only=True):
    """What a connector made of a pushed request: the raw records it carries for `stream`,
    which the hub keeps and maps with `map_raw` in a run of the routes reading that stream,
    exactly as a polled read's records (so a bad one becomes a dead letter); and the answer
    to send back (cXML wants its own ``Response`` document, most webhooks an empty 200)."""

    stream: str | None = None
    raws: list[dict[str, Any]] = msgspec.field(default_factory=list)
    status: int = 200
    reply: bytes = b""
    reply_type: str = "application/json"


#: Options may name a path under the hub home (``COHUB_HOME``, the embedded database's folder)
#: as ``$COHUB_HOME/...``: files the hub itself produces, such as a demo's outbound drop folder.
HOME_PREFIX = "$COHUB_HOME"

#: The hub home of this process; the runtime sets it when it opens.
hub_home: list[Path] = []


class ConnectionContext(msgspec.Struct, frozen=True, kw_only=True):
    """Where a connection lives: its name, its member (None for the cooperative), and the
    configuration folder it was applied from, against which relative paths in options resolve."""

    connection: str
    member: str | None
    base_dir: str = "."

    def resolve_path(self, path: str) -> Path:
        """`path` made absolute against the configuration folder, or under the hub home when
        it starts with ``$COHUB_HOME``."""
        if path == HOME_PREFIX or path.startswith(HOME_PREFIX + "/"):
            if not hub_home:
                raise ConnectorConfigError(f"{path}: no hub home in this process")
            return hub_home[-1] / path[len(HOME_PREFIX) :].lstrip("/")
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate


OptionsT = TypeVar("OptionsT", bound=Options)
T = TypeVar("T")


class Connector(Generic[OptionsT]):
    """One vendor system or format, as a source, a destination or both.

    A subclass sets `name`, `title` and `options` (its `Options` subclass), lists its named
    `secrets`, and implements `check`, `streams` and `read` and/or `write`. The hub creates one
    instance per connection and run, and always calls `close`.
    """

    name: ClassVar[str]
    title: ClassVar[str] = ""
    options: ClassVar[type[Options]] = Options
    secrets: ClassVar[tuple[str, ...]] = ()
    #: Records per batch; the engine sets the route's `batch_size` before reading.
    batch_size: int = 5000
    #: How far an incremental cursor reaches back for late updates (the route's
    #: `lookback_seconds`); cursor-based sources re-read that window, see `IncrementalCursor`.
    lookback: timedelta = timedelta(0)
    #: How many batches `write` may be given at once. Above 1, the engine hands the next batch
    #: over while the previous one is still being written (checkpoints still commit in order),
    #: so the destination's own work overlaps the hub's. Only for destinations whose writes of
    #: different batches may run side by side and land in any order.
    concurrent_writes: int = 1

    #: How the hub authenticates a request pushed to this connection before `receive` sees
    #: it: "hmac", the hub's signature scheme (`hub.api.signatures`) keyed by the connection's
    #: ``webhook_secret`` secret; or "connector", the connector's own check in `receive` (a
    #: vendor's signature header, cXML's shared secret), raising AuthError to refuse.
    inbound_auth: ClassVar[str] = "hmac"

    def __init__(self, options: OptionsT, secrets: Mapping[str, str], context: ConnectionContext):
        self.config = options
        self.secret_values = dict(secrets)
        self.context = context

    @classmethod
    def options_schema(cls) -> dict[str, Any]:
        """The JSON Schema of this connector's options (for docs, forms and the API)."""
        return msgspec.json.schema(cls.options)

    @classmethod
    def parse_options(cls, raw: Mapping[str, Any]) -> Options:
        """Options from config values; raises msgspec.ValidationError naming the bad key."""
        return msgspec.convert(dict(raw), cls.options, strict=False)

    async def check(self) -> None:
        """Prove the connection works (reach the system, authenticate); raise a ConnectorError."""

    async def streams(self) -> list[StreamSpec]:
        """The streams this connection offers (discovery)."""
        return []

    def offered(self, stream: str, offers: Mapping[str, T]) -> T:
        """What `offers` holds for `stream`; a configuration error naming every stream this
        connector offers when it holds nothing (a route naming a stream that is not there)."""
        if stream not in offers:
            raise ConnectorConfigError(
                f"no stream {stream!r}; {self.name} offers {', '.join(offers)}"
            )
        return offers[stream]

    def read(self, stream: str, state: State | None) -> AsyncIterator[Batch]:
        """Yield batches of `stream` after `state` (None: from the beginning)."""
        raise NotImplementedError(f"connector {self.name!r} cannot be read from")

    async def partitions(self, stream: str, state: State | None, count: int) -> list[State] | None:
        """Split what `read(stream, state)` would read into parts to read side by side, each as
        the state `read` starts that part from; or None (the default) to read serially, when
        the source cannot split or it is not worth it. `count` is the route's `parallel_reads`:
        aim for about that many parts, or a multiple of it for uneven ones.

        Each part is read by its own connector instance in its own process, so a part's state
        must say everything about it, and its batches carry states of that part alone. Once
        every part was read to its end, `join_partitions` makes one state of theirs."""
        return None

    def join_partitions(self, stream: str, parts: list[State]) -> State:
        """The state after every part was read to its end (`parts` as their last batches left
        them): the state the next, serial, `read` starts from."""
        raise NotImplementedError(f"connector {self.name!r} cannot join partitions")

    def pii_columns(self, stream: str) -> frozenset[str]:
        """Source field names in `stream`'s raw records that hold PII, masked wherever a dead
        letter is shown (as are fields named like any canonical record's PII field)."""
        return frozenset()

    def map_raw(self, stream: str, raw: dict[str, Any]) -> Record:
        """Map one raw source record again (dead-letter replay); raise BadRecord if it fails."""
        raise NotImplementedError(f"connector {self.name!r} cannot map raw records")

    async def write(self, stream: str, batch: Batch, member: str | None) -> WriteResult:
        """Upsert `batch` into `stream` by (member, record key): writing twice changes nothing."""
        raise NotImplementedError(f"connector {self.name!r} cannot be written to")

    async def delete(self, stream: str, keys: list[str], member: str | None) -> int:
        """Mark deleted the records of `member` in `stream` with these keys (the source reported
        them deleted); return how many were there. Deleting twice changes nothing."""
        raise NotImplementedError(f"connector {self.name!r} cannot delete records")

    async def acknowledge(self, stream: str, state: State) -> None:
        """Called once a checkpoint holding `state` is committed: everything read up to it is
        delivered for good, so a source may let go of it (archive a file, ack a message). A
        failure here is logged and retried at the next acknowledgement; it never fails a run."""

    async def receive(self, request: Inbound) -> Received:
        """Parse (and, with ``inbound_auth = "connector"``, authenticate) one pushed request:
        the raw records it carries and the answer. Raise BadRecord for a request that cannot
        be read at all (answered 400), AuthError for one that is not the vendor's (401)."""
        raise NotImplementedError(f"connector {self.name!r} takes no pushed requests")

    async def delete_missing(self, stream: str, member: str | None, generation: int) -> int:
        """Mark deleted every record of `member` in `stream` not written in `generation` (after a
        complete full read); return how many. Needed for routes in full_refresh_deletes mode."""
        raise NotImplementedError(f"connector {self.name!r} cannot detect deletes")

    async def close(self) -> None:
        """Release connections and files."""


def convert_rows(
    record: type[Record], mapped: Sequence[dict[str, Any]]
) -> tuple[list[Record], list[tuple[int, str]]]:
    """Validate mapped rows into records; return the records and (row index, reason) failures.

    Converting the whole batch in one msgspec call is several times faster than row by row, so
    the per-row path runs only when the batch holds at least one bad row.
    """
    try:
        return msgspec.convert(mapped, list[record], strict=False), []
    except msgspec.ValidationError:
        pass
    records: list[Record] = []
    failures: list[tuple[int, str]] = []
    for index, row in enumerate(mapped):
        try:
            records.append(msgspec.convert(row, record, strict=False))
        except msgspec.ValidationError as error:
            failures.append((index, str(error)))
    return records, failures


def map_objects(
    record: type[Record],
    rows: Sequence[Any],
    map_row: Callable[[dict[str, Any]], dict[str, Any]],
    position: Callable[[int, Any], str],
    expected: str,
) -> tuple[list[Record], list[Reject]]:
    """Records from the JSON objects of a vendor API's page: each object mapped by `map_row`
    and validated as `record`. A row that is not an object (reason: `expected`, not its type)
    or does not validate becomes a reject at `position(index, row)`, with its reason."""
    mapped: list[dict[str, Any]] = []
    kept: list[int] = []
    rejects: list[Reject] = []
    for index, raw in enumerate(rows):
        if not isinstance(raw, dict):
            rejects.append(
                Reject(
                    position=position(index, raw),
                    reason=f"{expected}, not {type(raw).__name__}",
                    raw={"value": msgspec.to_builtins(raw)},
                )
            )
            continue
        mapped.append(map_row(raw))
        kept.append(index)
    records, failures = convert_rows(record, mapped)
    for index, reason in failures:
        raw = rows[kept[index]]
        rejects.append(
            Reject(position=position(kept[index], raw), reason=reason, raw=msgspec.to_builtins(raw))
        )
    return records, rejects


def account_layout(layout: str) -> AccountLayout:
    """A named account layout (`ACCOUNT_LAYOUTS`), or a regular expression naming at least the
    fund, function and object groups; anything else is a configuration error."""
    if layout in ACCOUNT_LAYOUTS:
        return ACCOUNT_LAYOUTS[layout]
    try:
        groups = set(re.compile(layout).groupindex)
    except re.error:
        groups = set()
    if not {"fund", "function", "object"} <= groups:
        raise ConnectorConfigError(
            f"unknown account layout {layout!r}: use {', '.join(ACCOUNT_LAYOUTS)} or a regular "
            "expression with named groups fund, function and object"
        )
    return AccountLayout("custom", layout)
