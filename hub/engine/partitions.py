"""Partitioned reads: a source split into parts that are read side by side, a process each.

A route with `parallel_reads` above 1 asks its source to split the read (`Connector.partitions`)
and reads that many parts at once: one in the run's own process, the others each in a process
forked from it. Every part opens both connections and pumps its batches through the same read,
transform, write and measure steps as a serial run, then hands each written batch's checkpoint
facts (`Delivered`) to the run, over a pipe from a forked process. The run commits every one of
them (state, usage, dead letters, counters) in one transaction, as a serial run does; those that
arrived while it was committing go in the next one together, so the checkpoints keep up with
parts delivering faster than a transaction each. Records never cross the pipe, so the parts
scale with the cores instead of paying to pickle records.

While parts are in progress the route's stored state is ``{PARTS: [{"state": …, "done": …}]}``:
a run that stops, fails or dies resumes every part from its own checkpoint. Usage keys come from
each part's own checkpoint range, so a resumed part never bills a batch twice. When every part is
done, the source's `join_partitions` turns their states back into one, and once that is
committed the source hears it (`acknowledge`), once for the whole read.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from multiprocessing.context import ForkContext, ForkProcess
from multiprocessing.synchronize import Event
from typing import Any

import msgspec

from hub.engine.checkpoint import Delivered
from hub.engine.run import Run, RunFailed, error_text
from hub.sdk.connector import Connector, State
from hub.sdk.lifecycle import CURRENT_RUN

#: The key of a route state that holds the parts of a partitioned read in progress.
PARTS = "cohub.partitions"


class PartBatch(msgspec.Struct, frozen=True, tag=True):
    """A part's process wrote a batch: commit its checkpoint."""

    delivered: Delivered


class PartEnded(msgspec.Struct, frozen=True, tag=True):
    """A part's process is done: read to the end, stopped when asked, or failed."""

    status: str
    error: str | None = None
    retried: int = 0
    api_calls: int = 0
    api_calls_measured: int = 0


#: The read ends of the pipes from the parts this process forked and still hears from. A forked
#: part closes every one it inherits, so that its writes fail once the run's process is gone
#: (the kernel reports a broken pipe only when no process holds a read end).
_READERS: set[Connection] = set()

#: Where a part's messages arrive, by part: batches, its end, then None once it is over.
Inbox = asyncio.Queue[tuple[int, PartBatch | PartEnded | None]]

_encode = msgspec.msgpack.Encoder(enc_hook=str).encode
_decode = msgspec.msgpack.Decoder(PartBatch | PartEnded).decode


def can_fork() -> bool:
    """Whether parts can run in forked processes here (not on Windows)."""
    return "fork" in multiprocessing.get_all_start_methods()


def in_progress(state: State | None) -> bool:
    """Whether a route's stored state is a partitioned read left unfinished."""
    return isinstance(state, dict) and PARTS in state


def stored_parts(state: State) -> list[dict[str, Any]]:
    """The parts of a partitioned read in progress, as stored."""
    return [dict(part) for part in state[PARTS]]


def new_parts(states: Iterable[State]) -> list[dict[str, Any]]:
    """Parts to read, from the states the source split its read into."""
    return [{"state": state, "done": False} for state in states]


async def pump_parts(run: Run, source: Connector, parts: list[dict[str, Any]]) -> str:
    """Read the unfinished `parts`, `parallel_reads` at a time, committing every written batch as
    it arrives; when all are done, store the source's joined state. Returns the run's status."""
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    inbox: Inbox = asyncio.Queue()
    arrived: deque[tuple[int, PartBatch | PartEnded | None]] = deque()  # taken from the inbox
    waiting = [index for index, part in enumerate(parts) if not part["done"]]
    running: dict[int, ForkProcess | asyncio.Task[None]] = {}
    ended: set[int] = set()
    failure: str | None = None
    try:
        while waiting or running:
            while waiting and len(running) < max(run.route.parallel_reads, 1) and not stop.is_set():
                index = waiting.pop(0)
                state = parts[index]["state"]
                if any(isinstance(worker, asyncio.Task) for worker in running.values()):
                    running[index] = _fork_part(context, run, index, state, stop, inbox)
                else:
                    running[index] = _start_here(run, index, state, stop, inbox)
            if not running:
                break
            if not arrived:
                arrived.append(await inbox.get())
            while not inbox.empty():
                arrived.append(inbox.get_nowait())
            index, message = arrived.popleft()
            if message is None:  # the part is over: its process closed its end of the pipe
                worker = running.pop(index)
                if isinstance(worker, asyncio.Task):
                    await worker
                    continue
                await _exited(worker)
                if index not in ended:
                    failure = failure or (
                        f"part {index + 1} of the read ended without finishing "
                        f"(its process exited with code {worker.exitcode})"
                    )
                    stop.set()
            elif isinstance(message, PartBatch):
                # The batches that arrived while the last checkpoint was committed, from any
                # part, are committed in one checkpoint.
                batches = [message.delivered]
                parts[index]["state"] = message.delivered.state
                while arrived and isinstance(arrived[0][1], PartBatch):
                    index, message = arrived.popleft()
                    batches.append(message.delivered)
                    parts[index]["state"] = message.delivered.state
                if await run.checkpoint(*batches, stored={PARTS: parts}) or run.stopping():
                    stop.set()
            else:
                ended.add(index)
                run.counts.retried += message.retried
                run.counts.api_calls += message.api_calls
                run.api_calls_measured += message.api_calls_measured
                if message.status == "succeeded":
                    parts[index]["done"] = True
                    if await run.commit({PARTS: parts}) or run.stopping():
                        stop.set()
                elif message.status == "failed":
                    failure = failure or message.error
                    stop.set()
    finally:
        # Left early (cancelled): what the parts wrote without a checkpoint is read again.
        for worker in running.values():
            if isinstance(worker, asyncio.Task):
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
            else:
                worker.kill()
                worker.join()
    if failure is not None:
        raise RunFailed(failure)
    if not all(part["done"] for part in parts):
        return "cancelled"
    stream = run.route.source_stream
    try:
        joined = source.join_partitions(stream, [part["state"] for part in parts])
    except Exception as error:
        raise run.blame_source(error) from error
    await run.commit(joined)
    await run.acknowledge(source, joined)
    return "succeeded"


def _start_here(
    run: Run, index: int, state: State, stop: Event, inbox: Inbox
) -> asyncio.Task[None]:
    """Read part `index` in this process; its messages arrive in `inbox`, then None."""

    def send(message: PartBatch | PartEnded | None) -> None:
        inbox.put_nowait((index, message))

    async def read_here() -> None:
        send(await _read_part(run, state, send, stop))
        send(None)

    return asyncio.create_task(read_here())


def _fork_part(
    context: ForkContext,
    run: Run,
    index: int,
    state: State,
    stop: Event,
    inbox: Inbox,
) -> ForkProcess:
    """Fork the process of part `index`; its messages arrive in `inbox`, then None."""
    reader, writer = context.Pipe(duplex=False)
    _READERS.add(reader)
    process = context.Process(
        target=_part_main,
        args=(run, state, writer, stop),
        name=f"cohub-{run.route.name}-part-{index + 1}",
        daemon=True,
    )
    process.start()
    writer.close()
    loop = asyncio.get_running_loop()
    descriptor = reader.fileno()

    def readable() -> None:
        try:
            message = _decode(reader.recv_bytes())
        except (EOFError, OSError):
            loop.remove_reader(descriptor)
            reader.close()
            _READERS.discard(reader)
            inbox.put_nowait((index, None))
        else:
            inbox.put_nowait((index, message))

    loop.add_reader(descriptor, readable)
    return process


async def _exited(process: ForkProcess) -> None:
    """Wait, without blocking the loop, for a part's process to exit; then reap it."""
    loop = asyncio.get_running_loop()
    gone = loop.create_future()
    loop.add_reader(process.sentinel, lambda: gone.done() or gone.set_result(None))
    try:
        await gone
    finally:
        loop.remove_reader(process.sentinel)
    process.join()


def _part_main(run: Run, state: State, writer: Connection, stop: Event) -> None:
    """The body of a part's process: read the part, tell the parent how it ended."""
    # The fork copied the parent's running-loop marker (Python < 3.12 keeps it) and its signal
    # wake-up descriptor. This process runs a loop of its own and stops when the parent says so,
    # not on the terminal's or the service manager's signals, which the parent handles.
    asyncio.events._set_running_loop(None)
    signal.set_wakeup_fd(-1)
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    for reader in _READERS:
        reader.close()
    # A thread of the parent (a progress display) may have held the standard streams' locks at
    # the fork: write through fresh ones.
    sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115

    def send(message: PartBatch | PartEnded) -> None:
        writer.send_bytes(_encode(message))

    try:
        ended = asyncio.run(_read_part(run, state, send, stop))
    except Exception as error:
        ended = PartEnded(status="failed", error=error_text(error))
    with contextlib.suppress(OSError):  # the parent is gone: the next run resumes the parts
        send(ended)
    writer.close()


class PartRun(Run):
    """The run, reading one part: each written batch's checkpoint is sent to the run to commit."""

    # The parts overlap one another's reads and writes already: reading ahead within a part
    # only holds a second batch in every process.
    reads_ahead = False

    def __init__(self, run: Run, send: Callable[[PartBatch], None], stop: Event) -> None:
        super().__init__(
            run.engine, run.host, run.route, run.info.id, run.info.trigger, run.start, None, None
        )
        self.send_batch = send
        self.parts_stop = stop
        self.retried_sent = 0

    def _write_limit(self, destination: Connector) -> int:
        super()._write_limit(destination)  # a wrong `concurrent_writes` is reported all the same
        # The parts already overlap the destination's work with the hub's; a second batch in
        # flight per part only adds memory (measured: 10 MiB less, no slower, in bench/).
        return 1

    async def checkpoint(self, *delivered: Delivered, stored: State | None = None) -> bool:
        for batch in delivered:
            retried, self.retried_sent = (
                self.counts.retried - self.retried_sent,
                self.counts.retried,
            )
            self.send_batch(PartBatch(msgspec.structs.replace(batch, retried=retried)))
        return self.parts_stop.is_set()

    async def acknowledge(self, source: Connector, state: State) -> None:
        """Nothing: a part's batch is not committed yet when it is sent, and its state is the
        part's alone. The run acknowledges once, with the joined state, when every part is done."""


async def _read_part(
    run: Run, state: State, send: Callable[[PartBatch], None], stop: Event
) -> PartEnded:
    """Read one part to its end, or until the parts are told to stop; how it ended."""
    part = PartRun(run, send, stop)
    token = CURRENT_RUN.set(part.counts)
    try:
        async with part.connected() as (source, destination):
            status = await part.pump(source, destination, state)
    except Exception as error:
        return PartEnded(status="failed", error=error_text(error))
    finally:
        CURRENT_RUN.reset(token)
    return PartEnded(
        status=status,
        retried=part.counts.retried - part.retried_sent,
        api_calls=part.counts.api_calls,
        api_calls_measured=part.api_calls_measured,
    )
