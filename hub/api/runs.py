"""Runs through the API: history, one run in full, starting a route now, cancelling a run.

A run started here executes in this server process (a `cohub run` worker started with
``--serve`` is one); it is claimed like any other run, so it never overlaps a daemon's run of the
same route, and on shutdown its claim is released for a worker to resume.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

import msgspec
import structlog
from aiohttp import web
from sqlalchemy import func, select, update

from hub.api.auth import OPERATE
from hub.api.endpoints import Call, Page, Paging, api, listed, visible_row
from hub.api.errors import ApiError
from hub.api.scope import visible
from hub.audit import note, record
from hub.engine.claims import RouteRefused, claim
from hub.engine.connections import UnknownRoute
from hub.engine.run import run_claimed
from hub.redaction import mask
from hub.store.database import writing
from hub.store.tables import dead_letters, runs

TAG = "runs"
log = structlog.get_logger("hub.api")
STARTED: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("started_runs")
STOP: web.AppKey[asyncio.Event] = web.AppKey("stop_runs")

RunStatus = Literal["running", "succeeded", "failed", "cancelled", "abandoned"]


class RunQuery(Paging, kw_only=True, forbid_unknown_fields=True):
    route: str | None = None
    member: str | None = None
    status: RunStatus | None = None
    trigger: str | None = None


class RunOut(msgspec.Struct, kw_only=True):
    id: int
    route: str
    member: str | None
    service: str
    trigger: str
    status: str
    worker: str | None
    started_at: datetime
    finished_at: datetime | None
    scheduled_for: datetime | None
    records_read: int
    records_written: int
    records_rejected: int
    records_deleted: int
    retries: int
    batches: int
    takeovers: int
    cancel_requested: bool
    error: str | None


class RunDetail(RunOut, kw_only=True):
    """A run in full: where it began and ended reading (secrets and PII masked), and how many
    of its dead letters are still open."""

    state_before: Any
    state_after: Any
    open_dead_letters: int


def answer(row: Any) -> RunOut:
    return RunOut(**{name: row[name] for name in RunOut.__struct_fields__})


@api.endpoint("GET", "/runs", summary="List runs", tag=TAG, query=RunQuery, response=Page[RunOut])
async def list_runs(call: Call) -> Page[RunOut]:
    q: RunQuery = call.query
    query = visible(select(runs), runs, call.principal)
    for name in ("route", "member", "status", "trigger"):
        if getattr(q, name) is not None:
            query = query.where(runs.c[name] == getattr(q, name))
    return await listed(call, query, runs.c.id, answer, newest_first=True)


async def load_run(call: Call, run_id: int) -> Any:
    return await visible_row(call, runs, "id", run_id, "run")


@api.endpoint(
    "GET",
    "/runs/{id}",
    summary="Show a run",
    tag=TAG,
    response=RunDetail,
    path_types={"id": int},
    errors=(404,),
)
async def get_run(call: Call) -> RunDetail:
    row = await load_run(call, call.path["id"])
    async with call.runtime.engine.connect() as conn:
        letters = await conn.scalar(
            select(func.count()).where(
                dead_letters.c.run_id == row["id"], dead_letters.c.status == "open"
            )
        )
    return RunDetail(
        **msgspec.structs.asdict(answer(row)),
        state_before=mask(row["state_before"]),
        state_after=mask(row["state_after"]),
        open_dead_letters=letters or 0,
    )


class StartRun(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    route: str


@api.endpoint(
    "POST",
    "/runs",
    summary="Start a run",
    tag=TAG,
    allow=OPERATE,
    body=StartRun,
    response=RunOut,
    status=202,
    errors=(409, 422),
)
async def start_run(call: Call) -> RunOut:
    """Claim the route now (409 if it is disabled or running) and run it in the background;
    poll ``GET /runs/{id}`` for its end."""
    name = call.body.route
    runtime = call.runtime
    try:
        held = await claim(runtime.engine, name, "api")
    except UnknownRoute:
        raise ApiError("invalid", f"no route {name!r}", field="route") from None
    except RouteRefused as refused:
        raise ApiError("conflict", str(refused)) from None
    app = call.request.app

    async def execute() -> None:
        try:
            await runtime.unlock_vault_if_changed()
            await run_claimed(
                runtime.engine, runtime.plugins, held, stop=app[STOP], release_on_stop=True
            )
        except Exception:
            log.exception("api.run_crashed", run_id=held.run_id)

    task = asyncio.create_task(execute(), name=f"run {held.run_id}")
    app[STARTED].add(task)
    task.add_done_callback(app[STARTED].discard)
    await note(
        runtime.engine,
        actor=call.caller.actor,
        action="run.start",
        target=f"route {name}",
        details={"run": held.run_id},
    )
    return answer(await load_run(call, held.run_id))


@api.endpoint(
    "POST",
    "/runs/{id}/cancel",
    summary="Cancel a run",
    tag=TAG,
    allow=OPERATE,
    response=RunOut,
    status=202,
    path_types={"id": int},
    errors=(404, 409),
)
async def cancel_run(call: Call) -> RunOut:
    """Ask a running run to stop after the batch in hand (on whichever worker runs it)."""
    row = await load_run(call, call.path["id"])
    async with writing(call.runtime.engine) as conn:
        asked = await conn.execute(
            update(runs)
            .where(runs.c.id == row["id"], runs.c.status == "running")
            .values(cancel_requested=True)
        )
        if asked.rowcount:
            await record(
                conn,
                actor=call.caller.actor,
                action="run.cancel",
                target=f"route {row['route']}",
                details={"run": row["id"]},
            )
    if asked.rowcount == 0:
        raise ApiError("conflict", f"run {row['id']} is not running (it {row['status']})")
    return answer(await load_run(call, row["id"]))
