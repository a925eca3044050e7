"""One run of a route: read batches, transform, deliver, checkpoint; report the outcome.

Batches flow from the source to the destination through a bounded queue, so a slow destination
slows the source down instead of piling batches up in memory. Every call into a plugin has a
time limit and its answer is checked, so a hung or confused plugin fails its run with a message
naming it, and the other runs go on. A run stops early only at a batch boundary, with that
batch's checkpoint committed.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.billing.periods import FiscalCalendar
from hub.engine import inbox
from hub.engine.checkpoint import (
    BatchEffects,
    ClaimLost,
    Delivered,
    commit_checkpoint,
    load_state,
    save_state,
)
from hub.engine.claims import (
    DEFAULT_LEASE,
    FULL_MODES,
    WORKER,
    Claim,
    Start,
    claim,
    forget,
    release,
    renew,
)
from hub.engine.connections import ConnectionRow, RouteRow, open_connector
from hub.metering import UsageEvent, append_usage, batch_fingerprint, load_calendar, measure
from hub.meters import run_minutes
from hub.model import Record
from hub.plugins import PluginHookError, PluginHost, TookTooLong, describe, within
from hub.redaction import redact_text
from hub.sdk.connector import Batch, Connector, Reject, State, WriteResult
from hub.sdk.extensions import BatchContext, Transformed
from hub.sdk.lifecycle import CURRENT_RUN, CommittedBatch, RunCounts, RunInfo, UsageQuantity
from hub.store.database import writing
from hub.store.tables import runs

log = structlog.get_logger("hub.engine")


T = TypeVar("T")


class RunSummary(msgspec.Struct, kw_only=True):
    """How a run ended: succeeded, failed or cancelled."""

    id: int
    route: str
    member: str | None
    status: str
    counts: RunCounts
    error: str | None = None


Progress = Callable[[str, RunCounts], None]


class RunFailed(Exception):
    """A failure whose message already says what failed (secrets scrubbed): shown as it is."""


class ConnectionFailed(RunFailed):
    """A connector raised while reading or writing; the message names connection and plugin."""

    def __init__(
        self, host: PluginHost, connection: ConnectionRow, action: str, error: BaseException
    ):
        plugin = host.owner("connector", connection.connector)
        super().__init__(
            f"connection {connection.name!r} ({connection.connector}, plugin {plugin!r}) "
            f"failed to {action}: {describe(error)}"
        )


def error_text(error: BaseException) -> str:
    """What a run's failure says: a named failure's own message, or the error described; secrets
    scrubbed either way."""
    named = isinstance(error, RunFailed | PluginHookError)
    return redact_text(str(error) if named else describe(error))


def refused_reason(destination: str, reason: str) -> str:
    """A destination's reason for refusing a record, as its dead letter says it: which
    connection refused, so nobody looks for the fault in the source."""
    return f"refused by destination {destination!r}: {reason}"


class _SourceFailed(msgspec.Struct):
    error: BaseException


class Sent(msgspec.Struct, frozen=True, kw_only=True):
    """What the destination did with a batch: records written, records it refused (bound for
    dead letters), records it marked deleted, and the usage of what it took."""

    written: int
    refused: list[Reject]
    deleted: int
    usage: list[UsageQuantity]
    #: Records a transform of the route held back (bound for dead letters).
    held: list[Reject] = msgspec.field(default_factory=list)


class Delivery(msgspec.Struct):
    """A batch handed to the destination: its write in progress, and the state it began at."""

    batch: Batch
    state_before: State | None
    write: asyncio.Task[Sent]


async def run_route(
    engine: AsyncEngine,
    host: PluginHost,
    name: str,
    *,
    trigger: str = "manual",
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    scheduled_for: datetime | None = None,
    lease: timedelta = DEFAULT_LEASE,
    heartbeat: float | None = None,
    release_on_stop: bool = False,
    claimed: Callable[[int], None] | None = None,
) -> RunSummary:
    """Run route `name` once, from its last checkpoint to the end of its source, or until `stop`
    is set or `cohub runs cancel` asks (then it ends `cancelled` after the batch in hand).
    `claimed` hears the run's id as soon as its claim is taken."""
    held = await claim(engine, name, trigger, scheduled_for=scheduled_for, lease=lease)
    if claimed is not None:
        claimed(held.run_id)
    return await run_claimed(
        engine,
        host,
        held,
        progress=progress,
        stop=stop,
        lease=lease,
        heartbeat=heartbeat,
        release_on_stop=release_on_stop,
    )


async def run_claimed(
    engine: AsyncEngine,
    host: PluginHost,
    held: Claim,
    *,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    lease: timedelta = DEFAULT_LEASE,
    heartbeat: float | None = None,
    release_on_stop: bool = False,
) -> RunSummary:
    """Run a claimed run (new, or taken over from a worker that died) to its end; with
    `release_on_stop`, a run stopped by `stop` gives its claim up for another worker to resume
    instead of ending `cancelled` (a worker shutting down)."""
    run = Run(engine, host, held.route, held.run_id, held.trigger, held.start, progress, stop)
    run.lease = lease
    run.heartbeat = heartbeat or lease.total_seconds() / 3
    run.release = release_on_stop
    run.counts = msgspec.structs.replace(held.counts)
    token = CURRENT_RUN.set(run.counts)
    try:
        with structlog.contextvars.bound_contextvars(
            run_id=held.run_id, route=held.route.name, member=held.route.member
        ):
            return await run.execute()
    finally:
        CURRENT_RUN.reset(token)


class Run:
    """The moving parts of one run."""

    #: Whether the source reads the next batch while the destination writes one (and no further
    #: one: a bounded queue alone let a third batch be read while a second waited in it, 3 MiB
    #: more per 5,000 records and no faster). Without, a batch is read once the one before it
    #: is committed, and nothing of that one is held while it is read.
    reads_ahead = True

    def __init__(
        self,
        engine: AsyncEngine,
        host: PluginHost,
        route: RouteRow,
        run_id: int,
        trigger: str,
        start: Start,
        progress: Progress | None,
        stop: asyncio.Event | None,
    ) -> None:
        self.engine = engine
        self.host = host
        self.route = route
        self.start = start
        self.progress = progress
        self.stop = stop
        self.timeout = route.call_timeout_seconds
        self.counts = RunCounts()
        self.api_calls_measured = 0  # the run's HTTP requests already in a batch's usage
        self.calendar: FiscalCalendar | None = None  # read when the run starts
        self.info = RunInfo(
            id=run_id, route=route.name, member=route.member, service=route.service, trigger=trigger
        )
        self.lease = DEFAULT_LEASE
        self.heartbeat = DEFAULT_LEASE.total_seconds() / 3  # seconds between lease renewals
        #: Whether a run stopped by `stop` gives its claim up instead of ending.
        self.release = False
        self.lost = False  # the claim passed to another worker
        self.last_progress = time.monotonic()

    async def execute(self) -> RunSummary:
        log.info("run.started", trigger=self.info.trigger, mode=self.route.mode)
        # Read once: the cooperative's time zone and fiscal year change only with `cohub apply`.
        async with self.engine.connect() as conn:
            self.calendar = await load_calendar(conn)
        await self.host.notify("cohub_run_started", timeout=self.timeout, run=self.info)
        status, error = await self._watched()
        if self.lost:
            forget(self.info.id)
            log.warning("run.claim_lost", **msgspec.structs.asdict(self.counts))
            status, error = "lost", "another worker took the run over (this worker's lease lapsed)"
        elif self.release and status == "cancelled" and self.stopping():
            await release(self.engine, self.info.id)
            log.info("run.released", **msgspec.structs.asdict(self.counts))
            status = "released"
        else:
            await self._finish(status, error)
        return RunSummary(
            id=self.info.id,
            route=self.route.name,
            member=self.route.member,
            status=status,
            counts=self.counts,
            error=error,
        )

    async def _finish(self, status: str, error: str | None) -> None:
        await finish(
            self.engine,
            self.route,
            self.info.id,
            status,
            error,
            self.counts,
            self.start.generation,
            read_complete=status == "succeeded",
            unmeasured_api_calls=self.counts.api_calls - self.api_calls_measured,
        )
        if status == "failed":
            log.error("run.failed", error=error, **msgspec.structs.asdict(self.counts))
            await self.host.notify(
                "cohub_run_failed", timeout=self.timeout, run=self.info, error=error
            )
        else:
            log.info(
                f"run.{'finished' if status == 'succeeded' else status}",
                **msgspec.structs.asdict(self.counts),
            )
            await self.host.notify(
                "cohub_run_finished", timeout=self.timeout, run=self.info, counts=self.counts
            )

    async def _watched(self) -> tuple[str, str | None]:
        """Connect and pump while renewing the claim and watching for progress: a run whose
        claim passed to another worker stops at its next batch, and one that commits no batch
        for `stall_seconds` is failed by the watchdog (no silent hung syncs)."""
        pump = asyncio.create_task(self._connect_and_pump())
        keeper = asyncio.create_task(self._keep_claim(pump))
        try:
            await asyncio.wait({pump})
        finally:
            keeper.cancel()
            pump.cancel()
            await asyncio.gather(keeper, pump, return_exceptions=True)
        if pump.cancelled():
            stalled = time.monotonic() - self.last_progress
            return "failed", (
                f"no batch committed for {stalled:.0f} s (stall_seconds is "
                f"{self.route.stall_seconds:g}): the watchdog stopped the run"
            )
        return pump.result()

    async def _keep_claim(self, pump: asyncio.Task[tuple[str, str | None]]) -> None:
        beat = min(self.heartbeat, self.route.stall_seconds / 2)
        while not pump.done():
            await asyncio.sleep(beat)
            try:
                if not await renew(self.engine, self.info.id, self.lease):
                    self.lost = True  # checkpoints are fenced too: no batch commits from now
                    if self.stop is None:
                        self.stop = asyncio.Event()
                    self.stop.set()
            except Exception as error:  # a database hiccup: the next beat tries again
                log.warning("run.heartbeat_failed", error=redact_text(describe(error)))
            if time.monotonic() - self.last_progress > self.route.stall_seconds:
                log.error("run.stalled", seconds=self.route.stall_seconds)
                pump.cancel()
                return

    async def _connect_and_pump(self) -> tuple[str, str | None]:
        """Open both connections and pump batches: (status, error message with secrets scrubbed)."""
        try:
            async with self.connected() as (source, destination):
                parts = await self._partitions(source)
                if parts:
                    from hub.engine.partitions import pump_parts  # it builds on this module

                    status = await pump_parts(self, source, parts)
                else:
                    status = await self.pump(source, destination, self.start.state)
                if status == "succeeded" and self.route.mode == "full_refresh_deletes":
                    self.counts.deleted += await self.call(
                        destination.delete_missing(
                            self.route.destination_stream, self.route.member, self.start.generation
                        ),
                        "delete_missing",
                        lambda error: ConnectionFailed(
                            self.host, self.route.destination, "mark deletes", error
                        ),
                        expect=int,
                    )
            return status, None
        except ClaimLost:
            self.lost = True
            return "lost", None
        except Exception as error:
            return "failed", error_text(error)

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[tuple[Connector, Connector]]:
        """The route's source, set up for this route, and destination; both closed after."""
        opened: list[Connector] = []
        try:
            source = open_connector(self.host, self.route.source)
            source.batch_size = self.route.batch_size
            source.lookback = timedelta(seconds=self.route.lookback_seconds)
            opened.append(source)
            opened.append(open_connector(self.host, self.route.destination))
            yield source, opened[1]
        finally:
            for connector in opened:
                try:
                    await connector.close()
                except Exception as error:
                    log.warning(
                        "connector.close_failed",
                        connector=connector.name,
                        error=redact_text(describe(error)),
                    )

    async def call(
        self,
        awaitable: Awaitable[Any],
        what: str,
        blame: Callable[[BaseException], Exception],
        *,
        expect: type[T] | tuple[type, ...],
    ) -> T:
        """Await a plugin call within the route's time limit and check what it returns."""
        try:
            result = await within(awaitable, self.timeout)
        except TookTooLong as error:
            raise blame(TimeoutError(f"{what} {error}")) from None
        except Exception as error:
            raise blame(error) from error
        if not isinstance(result, expect):
            wanted = " or ".join(
                t.__name__ for t in (expect if isinstance(expect, tuple) else (expect,))
            )
            raise blame(TypeError(f"{what} returned {type(result).__name__}, not {wanted}"))
        return result

    async def _partitions(self, source: Connector) -> list[dict[str, Any]] | None:
        """The parts to read side by side: those of a partitioned read in progress, or the
        source's split of a new read when the route allows parallel reads; None reads serially."""
        from hub.engine import partitions  # it builds on this module

        if not partitions.can_fork():
            return None
        if partitions.in_progress(self.start.state):
            return partitions.stored_parts(self.start.state)
        if self.route.parallel_reads < 2:
            return None
        states = await self.call(
            source.partitions(
                self.route.source_stream, self.start.state, self.route.parallel_reads
            ),
            "partitions",
            self.blame_source,
            expect=(list, type(None)),
        )
        if states and any(not isinstance(state, dict) for state in states):
            raise self.blame_source(TypeError("partitions returned a list holding a non-dict"))
        return partitions.new_parts(states) if states and len(states) > 1 else None

    def read(self, source: Connector, start: State | None) -> AsyncIterator[Batch]:
        """The route's batches after `start`: the source's own read, or for an inbound route
        the records pushed to the source connection (`hub.engine.inbox`)."""
        if self.route.inbound:
            return inbox.read(self.engine, source, self.route, start)
        return source.read(self.route.source_stream, start)

    def blame_source(self, error: BaseException) -> ConnectionFailed:
        """`error` as the source connection's failure to read."""
        return ConnectionFailed(self.host, self.route.source, "read", error)

    def stopping(self) -> bool:
        """Whether the run was asked to stop after the batches in hand."""
        return self.stop is not None and self.stop.is_set()

    async def pump(self, source: Connector, destination: Connector, start: State | None) -> str:
        """Read `source` after `start`, write, and checkpoint every batch in read order."""
        queue: asyncio.Queue[Batch | _SourceFailed | None] = asyncio.Queue()
        # Taken to read a batch; given back when the batch is taken from the queue, or once it
        # is committed (`reads_ahead` false).
        reading = asyncio.Semaphore(1)
        taken = reading.release if self.reads_ahead else _nothing
        committed = _nothing if self.reads_ahead else reading.release
        blame_source = self.blame_source

        async def produce() -> None:
            try:
                batches = self.read(source, start)

                async def next_batch() -> Batch | None:
                    try:
                        return await anext(batches)
                    except StopAsyncIteration:
                        return None

                while True:
                    await reading.acquire()
                    batch = await self.call(
                        next_batch(), "read", blame_source, expect=(Batch, type(None))
                    )
                    if batch is None:
                        break
                    queue.put_nowait(batch)
                    del batch  # not held here while the next one is read
            except Exception as error:
                await queue.put(
                    _SourceFailed(
                        error if isinstance(error, ConnectionFailed) else blame_source(error)
                    )
                )
            else:
                queue.put_nowait(None)

        limit = self._write_limit(destination)
        producer = asyncio.create_task(produce())
        writing_now: deque[Delivery] = deque()
        state = start
        try:
            while (item := await queue.get()) is not None:
                taken()
                if isinstance(item, _SourceFailed):
                    # What was written before the failure keeps its checkpoints.
                    await self._commit(source, writing_now, len(writing_now), committed)
                    raise item.error
                # Deletes neither overtake an earlier batch's writes nor are overtaken by a
                # later one's: a batch carrying them is written alone.
                alone = bool(item.deletes)
                if alone and await self._commit(source, writing_now, len(writing_now), committed):
                    return "cancelled"
                write = asyncio.create_task(self.send(destination, item))
                writing_now.append(Delivery(item, state, write))
                state = item.state
                del item  # the delivery holds it, until it is committed
                in_flight = 1 if alone else limit
                waited = len(writing_now) - in_flight + 1
                if await self._commit(source, writing_now, waited, committed):
                    await self._commit(source, writing_now, len(writing_now), committed)
                    return "cancelled"
            cancel = await self._commit(source, writing_now, len(writing_now), committed)
            return "cancelled" if cancel else "succeeded"
        finally:
            for delivery in writing_now:
                delivery.write.cancel()
            if not producer.done():
                producer.cancel()
            await asyncio.gather(producer, *(d.write for d in writing_now), return_exceptions=True)

    def _write_limit(self, destination: Connector) -> int:
        limit = destination.concurrent_writes
        if type(limit) is not int or limit < 1:
            raise ConnectionFailed(
                self.host,
                self.route.destination,
                "write",
                ValueError(f"concurrent_writes is {limit!r}, not a positive integer"),
            )
        return limit

    async def _commit(
        self,
        source: Connector,
        writing_now: deque[Delivery],
        count: int,
        committed: Callable[[], object],
    ) -> bool:
        """Wait for the oldest `count` writes in turn, commit each one's checkpoint, tell the
        source and call `committed()`; whether the run was asked to stop."""
        cancel = False
        for _ in range(max(count, 0)):
            cancel = await self._commit_oldest(source, writing_now) or cancel
            committed()
        return cancel

    async def _commit_oldest(self, source: Connector, writing_now: deque[Delivery]) -> bool:
        """`_commit` for the oldest write (nothing of its batch outlives the call)."""
        delivery = writing_now[0]
        sent = await delivery.write
        writing_now.popleft()
        batch = delivery.batch
        delivered = Delivered(
            state_before=delivery.state_before,
            state=batch.state,
            member=batch.member or self.route.member,
            read=len(batch.records) + len(batch.rejects),
            written=sent.written,
            rejects=batch.rejects,
            refused=sent.refused,
            held=sent.held,
            deleted=sent.deleted,
            usage=sent.usage,
        )
        cancel = await self.checkpoint(delivered)
        await self.acknowledge(source, batch.state)
        return cancel or self.stopping()

    async def acknowledge(self, source: Connector, state: State) -> None:
        """Tell the source a checkpoint holding `state` is committed (an inbound route's inbox
        drops what every route is past). A failure is logged and nothing more: the next
        acknowledgement covers everything up to a later state."""
        route = self.route
        if route.inbound:  # what the inbox holds is the hub's to let go of, not the source's
            try:
                await inbox.settle(self.engine, route.source.name, route.source_stream)
            except Exception as error:
                log.warning("inbox.settle_failed", error=redact_text(describe(error)))
            return

        def blame(error: BaseException) -> ConnectionFailed:
            return ConnectionFailed(self.host, route.source, "acknowledge", error)

        try:
            await self.call(
                source.acknowledge(route.source_stream, state),
                "acknowledge",
                blame,
                expect=type(None),
            )
        except ConnectionFailed as error:
            log.warning("source.acknowledge_failed", error=redact_text(str(error)))

    async def checkpoint(self, *delivered: Delivered, stored: State | None = None) -> bool:
        """Commit the checkpoint of the `delivered` batches, in the order they were written, in
        one transaction: the route's state (`stored`, else the last batch's own), their usage
        and dead letters; whether to stop."""
        counts = self.counts
        route = self.route
        effects = []
        rejected = [len(b.rejects) + len(b.refused) + len(b.held) for b in delivered]
        for batch, its_rejected in zip(delivered, rejected, strict=True):
            counts.read += batch.read
            counts.written += batch.written
            counts.rejected += its_rejected
            counts.deleted += batch.deleted
            counts.retried += batch.retried
            counts.batches += 1
            effects.append(
                BatchEffects(
                    member=batch.member or route.member,
                    fingerprint=batch_fingerprint(
                        route.name,
                        route.source_stream,
                        batch.state_before,
                        batch.state,
                        self.start.generation,
                    ),
                    usage=batch.usage,
                    rejects=batch.rejects,
                    refused=batch.refused,
                    held=batch.held,
                )
            )
        self.last_progress = time.monotonic()
        cancel = await self.commit(delivered[-1].state if stored is None else stored, effects)
        for batch, its_rejected in zip(delivered, rejected, strict=True):
            log.debug(
                "batch.committed",
                written=batch.written,
                rejected=its_rejected,
                deleted=batch.deleted,
            )
            await self.host.notify(
                "cohub_batch_committed",
                timeout=self.timeout,
                run=self.info,
                batch=CommittedBatch(
                    stream=route.source_stream,
                    written=batch.written,
                    rejected=its_rejected,
                    usage=batch.usage,
                ),
            )
        if self.progress is not None:
            self.progress(route.name, counts)
        return cancel

    async def commit(self, state: State, batches: Sequence[BatchEffects] = ()) -> bool:
        """Commit the route's state with the run's counters, and the usage and dead letters of
        the `batches` it covers, in one transaction; whether the run was asked to stop."""
        route = self.route
        return await commit_checkpoint(
            self.engine,
            run_id=self.info.id,
            route=route.name,
            stream=route.source_stream,
            service=route.service,
            state=state,
            generation=self.start.generation,
            counts=self.counts,
            batches=batches,
            calendar=self.calendar,
        )

    async def send(self, destination: Connector, batch: Batch) -> Sent:
        """Check and transform a batch's records, then deliver them and its deletes; the records
        a transform held back go to dead letters instead."""
        member = batch.member or self.route.member
        context = self.batch_context(batch.records, member)
        records, held = await self._transform(context, batch.records)
        sent = await self.deliver(
            destination, context, msgspec.structs.replace(batch, records=records, member=member)
        )
        return msgspec.structs.replace(sent, held=held) if held else sent

    def batch_context(self, records: list[Record], member: str | None) -> BatchContext:
        """What transforms and meters are told about a batch of `records`, which must be of one
        record type."""
        route = self.route
        kinds = {type(r) for r in records}
        if len(kinds) > 1 or any(not issubclass(k, Record) for k in kinds):
            names = ", ".join(sorted(k.__name__ for k in kinds))
            raise ConnectionFailed(
                self.host,
                route.source,
                "read",
                TypeError(f"a batch must hold one record type, got {names}"),
            )
        return BatchContext(
            route=route.name,
            run_id=self.info.id,
            member=member,
            service=route.service,
            source_stream=route.source_stream,
            destination_stream=route.destination_stream,
            record=records[0].record_name if records else "",
            config_dir=route.source.base_dir,
        )

    async def deliver(self, destination: Connector, context: BatchContext, batch: Batch) -> Sent:
        """Write the batch's records (transformed already), then mark its deletes deleted, and
        measure the usage of the records the destination took (those it refused are billed once
        a replay delivers them)."""
        records, member = batch.records, batch.member
        written, refused, refused_keys = 0, [], set()
        if records:
            written, refused, refused_keys = await self._write(destination, batch)
        deleted = await self._delete(destination, batch.deletes, member) if batch.deletes else 0
        taken = [r for r in records if r.key not in refused_keys] if refused_keys else records
        # The requests since the previous measured batch, this batch's write included; no await
        # between reading and measuring, so overlapping writes never count a request twice.
        calls = self.counts.api_calls
        context = msgspec.structs.replace(context, api_calls=calls - self.api_calls_measured)
        self.api_calls_measured = calls
        return Sent(
            written=written,
            refused=refused,
            deleted=deleted,
            usage=measure(self.host, context, taken, self.route.meters),
        )

    async def _write(
        self, destination: Connector, batch: Batch
    ) -> tuple[int, list[Reject], set[str]]:
        """Write the batch's records (not its deletes): (written, the destination's rejects with
        reasons that name it, their record keys)."""
        route = self.route

        def blame(error: BaseException) -> ConnectionFailed:
            return ConnectionFailed(self.host, route.destination, "write", error)

        records = batch.records
        outgoing = Batch(
            records=records,
            state=batch.state,
            member=batch.member,
            generation=self.start.generation,
        )
        result = await self.call(
            destination.write(route.destination_stream, outgoing, batch.member),
            "write",
            blame,
            expect=WriteResult,
        )
        refused: list[Reject] = []
        keys: set[str] = set()
        kind = type(records[0])
        for reject in result.rejects:
            if not isinstance(reject, Reject):
                raise blame(TypeError(f"write rejected a {type(reject).__name__}, not a Reject"))
            try:
                keys.add(msgspec.convert(reject.raw, kind, strict=False).key)
            except (msgspec.ValidationError, TypeError) as error:
                raise blame(
                    TypeError(
                        f"the reject at {reject.position!r} does not hold the refused "
                        f"{kind.record_name} record (msgspec.to_builtins of it): {error}"
                    )
                ) from None
            reason = refused_reason(route.destination.name, reject.reason)
            refused.append(msgspec.structs.replace(reject, reason=reason))
        return result.written, refused, keys

    async def _delete(self, destination: Connector, keys: list[str], member: str | None) -> int:
        """Mark deleted in the destination the records the source reported deleted. A
        destination that cannot fails the run: the deletes are never dropped in silence."""
        route = self.route

        def blame(error: BaseException) -> RunFailed:
            if isinstance(error, NotImplementedError):
                plugin = self.host.owner("connector", route.destination.connector)
                return RunFailed(
                    f"destination connection {route.destination.name!r} "
                    f"({route.destination.connector}, plugin {plugin!r}) cannot delete records; "
                    f"the source reported {len(keys)} deleted in stream {route.source_stream!r}"
                )
            return ConnectionFailed(self.host, route.destination, "delete records", error)

        return await self.call(
            destination.delete(route.destination_stream, list(keys), member),
            "delete",
            blame,
            expect=int,
        )

    async def _transform(
        self, context: BatchContext, records: list[Record]
    ) -> tuple[list[Record], list[Reject]]:
        """The records the route's transforms deliver, and the rejects of those they held."""
        transforms = self.host.transforms()
        held: list[Reject] = []
        for name in self.route.transforms:
            transform = transforms.get(name)
            owner = self.host.owner("transform", name)
            if transform is None:
                raise PluginHookError(
                    "?", f"transform {name}", LookupError(f"no transform {name!r} is registered")
                )

            def blame(error: BaseException, owner: str = owner, name: str = name) -> Exception:
                return PluginHookError(owner, f"transform {name}", error)

            try:
                result = transform.function(context, records)
            except Exception as error:
                raise blame(error) from error
            if inspect.isawaitable(result):
                result = await self.call(result, "the transform", blame, expect=(list, Transformed))
            if isinstance(result, Transformed):
                held += [_held(name, record, reason) for record, reason in result.held]
                result = result.records
            if not isinstance(result, list):
                raise blame(TypeError(f"returned {type(result).__name__}, not a list"))
            records = result
        return records, held


def _held(transform: str, record: Record, reason: str) -> Reject:
    """A record a transform held back, as its dead letter: the record as the transform was
    given it, and the reason naming the transform."""
    return Reject(
        position=f"{record.record_name} {record.key}",
        reason=f"held by transform {transform!r}: {reason}",
        raw=msgspec.to_builtins(record),
    )


async def finish(
    engine: AsyncEngine,
    route: RouteRow,
    run_id: int,
    status: str,
    error: str | None,
    counts: RunCounts,
    generation: int,
    *,
    read_complete: bool,
    unmeasured_api_calls: int = 0,
) -> None:
    """Record how the run ended, with its run minutes and the HTTP requests no batch measured
    (the last read, marking deletes); a full read that got to the end closes its read cycle.
    Nothing is recorded if the claim passed to another worker meanwhile."""
    finished = datetime.now(UTC)
    # The run stays this process's until its end is committed, or a worker of this process
    # would see a run of its own pid it does not hold, and take it over.
    try:
        async with writing(engine) as conn:
            started = (
                await conn.execute(
                    runs.update()
                    .where(runs.c.id == run_id, runs.c.worker == WORKER)
                    .values(
                        status=status,
                        error=error,
                        finished_at=finished,
                        retries=counts.retried,
                        records_deleted=counts.deleted,
                        lease_expires_at=None,
                    )
                    .returning(runs.c.started_at)
                )
            ).scalar()
            if started is None:
                log.warning("run.claim_lost", status=status)
                return
            if route.member is not None:
                ended = {
                    "run_minutes": run_minutes(started, finished),
                    "api_calls": unmeasured_api_calls,
                }
                await append_usage(
                    conn,
                    [
                        UsageEvent(
                            idempotency_key=f"run:{run_id}:{meter}",
                            member=route.member,
                            service=route.service,
                            meter=meter,
                            quantity=Decimal(quantity),
                            occurred_at=finished,
                            route=route.name,
                            run_id=run_id,
                        )
                        for meter, quantity in ended.items()
                        if quantity
                    ],
                )
            if read_complete and route.mode in FULL_MODES:
                stored = await load_state(conn, route.name)
                await save_state(
                    conn,
                    route=route.name,
                    stream=route.source_stream,
                    state=stored.state,
                    run_id=run_id,
                    generation=generation,
                    cycle_complete=True,
                )
    finally:
        forget(run_id)


def _nothing() -> None:
    """What `Run.pump` does where a run that reads ahead has nothing to do."""
