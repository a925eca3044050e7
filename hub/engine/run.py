"""One run of a route: read batches, transform, deliver, checkpoint; report the outcome.

Batches flow from the source to the destination through a bounded queue, so a slow destination
slows the source down instead of piling batches up in memory.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.engine.checkpoint import commit_batch, load_state
from hub.engine.connections import ConnectionRow, RouteRow, load_route, open_connector
from hub.metering import batch_fingerprint, measure
from hub.model import Record
from hub.plugins import PluginHookError, PluginHost, describe
from hub.redaction import redact_text
from hub.sdk.connector import Batch, Connector, State
from hub.sdk.extensions import BatchContext
from hub.sdk.lifecycle import CURRENT_RUN, CommittedBatch, RunCounts, RunInfo
from hub.store.database import writing
from hub.store.tables import runs

log = structlog.get_logger("hub.engine")

#: Batches read ahead of delivery. Two keep both ends busy; more only costs memory.
QUEUE_DEPTH = 2

WORKER = f"{socket.gethostname()}:{os.getpid()}"


class RouteRefused(Exception):
    """The route cannot run now: disabled, or already running."""


class RunSummary(msgspec.Struct, kw_only=True):
    """How a run ended."""

    id: int
    route: str
    member: str | None
    status: str
    counts: RunCounts
    error: str | None = None


Progress = Callable[[str, RunCounts], None]


class _SourceFailed(msgspec.Struct):
    error: BaseException


async def run_route(
    engine: AsyncEngine,
    host: PluginHost,
    name: str,
    *,
    trigger: str = "manual",
    progress: Progress | None = None,
) -> RunSummary:
    """Run route `name` once, from its last checkpoint to the end of its source."""
    route, run_id, state = await _claim(engine, name, trigger)
    info = RunInfo(
        id=run_id, route=name, member=route.member, service=route.service, trigger=trigger
    )
    counts = RunCounts()
    CURRENT_RUN.set(counts)
    # Every log line below carries the run, route and member.
    with structlog.contextvars.bound_contextvars(run_id=run_id, route=name, member=route.member):
        log.info("run.started", trigger=trigger)
        await host.notify("cohub_run_started", run=info)
        error = await _execute(engine, host, route, info, state, counts, progress)
        await _finish(engine, run_id, "failed" if error else "succeeded", error)
        if error:
            log.error("run.failed", error=error, **msgspec.structs.asdict(counts))
            await host.notify("cohub_run_failed", run=info, error=error)
        else:
            log.info("run.finished", **msgspec.structs.asdict(counts))
            await host.notify("cohub_run_finished", run=info, counts=counts)
    return RunSummary(
        id=run_id,
        route=name,
        member=route.member,
        status="failed" if error else "succeeded",
        counts=counts,
        error=error,
    )


async def _execute(
    engine: AsyncEngine,
    host: PluginHost,
    route: RouteRow,
    info: RunInfo,
    state: State | None,
    counts: RunCounts,
    progress: Progress | None,
) -> str | None:
    """Open both connections and pump batches; the error message (secrets scrubbed) or None."""
    opened: list[Connector] = []
    try:
        source = open_connector(host, route.source)
        source.batch_size = route.batch_size
        opened.append(source)
        destination = open_connector(host, route.destination)
        opened.append(destination)
        await _pump(engine, host, route, info, source, destination, state, counts, progress)
    except Exception as error:
        named = isinstance(error, ConnectionFailed | PluginHookError)
        return redact_text(str(error) if named else describe(error))
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
    return None


async def _claim(
    engine: AsyncEngine, name: str, trigger: str
) -> tuple[RouteRow, int, State | None]:
    """Create the run row, refusing if the route is running in a live process."""
    async with writing(engine) as conn:
        route = await load_route(conn, name)
        if not route.enabled:
            raise RouteRefused(f"route {name!r} is disabled")
        for end in (route.source, route.destination):
            if not end.enabled:
                raise RouteRefused(f"route {name!r}: connection {end.name!r} is disabled")
        running = (
            await conn.execute(
                select(runs.c.id, runs.c.worker).where(
                    runs.c.route == name, runs.c.status == "running"
                )
            )
        ).all()
        for other_id, worker in running:
            if not _is_dead_local_worker(worker):
                raise RouteRefused(
                    f"route {name!r} is already running (run {other_id}, worker {worker})"
                )
            await conn.execute(
                runs.update()
                .where(runs.c.id == other_id)
                .values(status="abandoned", finished_at=datetime.now(UTC), error="its process died")
            )
        state = await load_state(conn, name)
        run_id = (
            await conn.execute(
                runs.insert().values(
                    route=name,
                    member=route.member,
                    service=route.service,
                    trigger=trigger,
                    status="running",
                    worker=WORKER,
                    started_at=datetime.now(UTC),
                    state_before=state,
                    state_after=state,
                )
            )
        ).inserted_primary_key[0]
    return route, run_id, state


def _is_dead_local_worker(worker: str | None) -> bool:
    """Whether `worker` is a process on this host that no longer exists."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def _finish(engine: AsyncEngine, run_id: int, status: str, error: str | None) -> None:
    async with writing(engine) as conn:
        await conn.execute(
            runs.update()
            .where(runs.c.id == run_id)
            .values(status=status, error=error, finished_at=datetime.now(UTC))
        )


async def _pump(
    engine: AsyncEngine,
    host: PluginHost,
    route: RouteRow,
    info: RunInfo,
    source: Connector,
    destination: Connector,
    state: State | None,
    counts: RunCounts,
    progress: Progress | None,
) -> None:
    queue: asyncio.Queue[Batch | _SourceFailed | None] = asyncio.Queue(maxsize=QUEUE_DEPTH)

    async def produce() -> None:
        try:
            async for batch in source.read(route.source_stream, state):
                await queue.put(batch)
        except Exception as error:
            await queue.put(_SourceFailed(ConnectionFailed(host, route.source, "read", error)))
        else:
            await queue.put(None)

    producer = asyncio.create_task(produce())
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, _SourceFailed):
                raise item.error
            state = await _deliver(engine, host, route, info, destination, item, state, counts)
            if progress is not None:
                progress(route.name, counts)
    finally:
        if not producer.done():
            producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)


async def _deliver(
    engine: AsyncEngine,
    host: PluginHost,
    route: RouteRow,
    info: RunInfo,
    destination: Connector,
    batch: Batch,
    state_before: State | None,
    counts: RunCounts,
) -> State:
    member = batch.member or route.member
    records = batch.records
    context = BatchContext(
        route=route.name,
        run_id=info.id,
        member=member,
        service=route.service,
        source_stream=route.source_stream,
        destination_stream=route.destination_stream,
        record=records[0].record_name if records else "",
    )
    records = await _transform(host, route, context, records)
    written = 0
    if records:
        try:
            result = await destination.write(
                route.destination_stream,
                Batch(records=records, state=batch.state, member=member),
                member,
            )
        except Exception as error:
            raise ConnectionFailed(host, route.destination, "write", error) from error
        written = result.written
    usage = measure(host, context, records)
    counts.read += len(batch.records) + len(batch.rejects)
    counts.written += written
    counts.rejected += len(batch.rejects)
    counts.batches += 1
    await commit_batch(
        engine,
        run_id=info.id,
        route=route.name,
        stream=route.source_stream,
        member=member,
        service=route.service,
        state=batch.state,
        counts=counts,
        usage=usage,
        fingerprint=batch_fingerprint(route.name, route.source_stream, state_before, batch.state),
        rejects=batch.rejects,
    )
    log.debug("batch.committed", written=written, rejected=len(batch.rejects))
    await host.notify(
        "cohub_batch_committed",
        run=info,
        batch=CommittedBatch(
            stream=route.source_stream, written=written, rejected=len(batch.rejects), usage=usage
        ),
    )
    return batch.state


async def _transform(
    host: PluginHost, route: RouteRow, context: BatchContext, records: list[Record]
) -> list[Record]:
    transforms = host.transforms()
    for name in route.transforms:
        transform = transforms.get(name)
        if transform is None:
            raise PluginHookError(
                "?", f"transform {name}", LookupError(f"no transform {name!r} is registered")
            )
        try:
            result = transform.function(context, records)
            records = await result if inspect.isawaitable(result) else result
        except Exception as error:
            raise PluginHookError(
                host.owner("transform", name), f"transform {name}", error
            ) from error
        if not isinstance(records, list):
            raise PluginHookError(
                host.owner("transform", name),
                f"transform {name}",
                TypeError(f"returned {type(records).__name__}, not a list"),
            )
    return records


class ConnectionFailed(Exception):
    """A connector raised while reading or writing; the message names connection and plugin."""

    def __init__(
        self, host: PluginHost, connection: ConnectionRow, action: str, error: BaseException
    ):
        plugin = host.owner("connector", connection.connector)
        super().__init__(
            f"connection {connection.name!r} ({connection.connector}, plugin {plugin!r}) "
            f"failed to {action}: {describe(error)}"
        )
