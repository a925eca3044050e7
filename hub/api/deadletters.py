"""Dead letters through the API: list, show (PII masked), replay, discard."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec
from sqlalchemy import select

from hub.api.auth import OPERATE
from hub.api.endpoints import Call, Id, Page, Paging, api, listed, visible_row
from hub.api.errors import ApiError, not_found
from hub.api.runs import RunOut, load_run
from hub.api.runs import answer as run_answer
from hub.api.scope import visible
from hub.audit import note
from hub.engine.claims import RouteRefused
from hub.engine.deadletters import discard, open_raw, pii_columns, unreadable_note
from hub.engine.replay import replay
from hub.redaction import mask, redact_text
from hub.store.tables import dead_letters
from hub.vault import VaultError

TAG = "dead letters"
MAX_IDS = 1000


class DeadLetterQuery(Paging, kw_only=True, forbid_unknown_fields=True):
    route: str | None = None
    member: str | None = None
    run: Id | None = None
    status: Literal["open", "replayed", "discarded", "any"] = "open"
    #: Only those whose reason contains this text.
    reason: str | None = None


class DeadLetterOut(msgspec.Struct, kw_only=True):
    id: int
    run: int
    route: str
    member: str | None
    stream: str
    position: str
    reason: str
    status: str
    created_at: datetime
    resolution: str | None
    resolved_at: datetime | None


class DeadLetterDetail(DeadLetterOut, kw_only=True):
    #: The source record as it was read, secrets and PII masked; null when it cannot be read
    #: (its member was purged, so its data key is destroyed), `note` then says why.
    record: dict[str, Any] | None
    note: str | None = None


def answer(row: Any) -> DeadLetterOut:
    return DeadLetterOut(
        id=row["id"],
        run=row["run_id"],
        route=row["route"],
        member=row["member"],
        stream=row["stream"],
        position=row["position"],
        reason=redact_text(row["reason"]),
        status=row["status"],
        created_at=row["created_at"],
        resolution=row["resolution"],
        resolved_at=row["resolved_at"],
    )


@api.endpoint(
    "GET",
    "/dead-letters",
    summary="List dead letters",
    tag=TAG,
    query=DeadLetterQuery,
    response=Page[DeadLetterOut],
)
async def list_dead_letters(call: Call) -> Page[DeadLetterOut]:
    q: DeadLetterQuery = call.query
    query = visible(select(dead_letters), dead_letters, call.principal)
    for name, column in (("route", "route"), ("member", "member"), ("run", "run_id")):
        if getattr(q, name) is not None:
            query = query.where(dead_letters.c[column] == getattr(q, name))
    if q.status != "any":
        query = query.where(dead_letters.c.status == q.status)
    if q.reason:
        query = query.where(dead_letters.c.reason.contains(q.reason, autoescape=True))
    return await listed(call, query, dead_letters.c.id, answer)


@api.endpoint(
    "GET",
    "/dead-letters/{id}",
    summary="Show a dead letter",
    tag=TAG,
    response=DeadLetterDetail,
    path_types={"id": int},
    errors=(404,),
)
async def get_dead_letter(call: Call) -> DeadLetterDetail:
    row = await visible_row(call, dead_letters, "id", call.path["id"], "dead letter")
    runtime = call.runtime
    try:
        raw = await open_raw(row, runtime.keyring)
    except VaultError as unreadable:
        return DeadLetterDetail(
            **msgspec.structs.asdict(answer(row)),
            record=None,
            note=redact_text(unreadable_note(unreadable)),
        )
    extra = await pii_columns(runtime.engine, runtime.plugins, row["route"], row["stream"])
    return DeadLetterDetail(**msgspec.structs.asdict(answer(row)), record=mask(raw, extra))


class DeadLetterIds(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    ids: list[Id]


class ReplayOut(msgspec.Struct, kw_only=True):
    run: RunOut
    replayed: list[int]
    still_failing: dict[str, str]


class ReplayResult(msgspec.Struct, kw_only=True):
    runs: list[ReplayOut]


class DiscardResult(msgspec.Struct, kw_only=True):
    discarded: int


async def _open_ids(call: Call, ids: list[int]) -> list[int]:
    """`ids` if every one is an open dead letter the caller may see; else a 404 or 409."""
    if not ids or len(ids) > MAX_IDS:
        raise ApiError("invalid", f"give from 1 to {MAX_IDS} ids", field="ids")
    query = visible(
        select(dead_letters.c.id, dead_letters.c.status), dead_letters, call.principal
    ).where(dead_letters.c.id.in_(ids))
    async with call.runtime.engine.connect() as conn:
        found = dict((await conn.execute(query)).all())
    missing = sorted(set(ids) - set(found))
    if missing:
        raise not_found("dead letter", missing[0])
    closed = sorted(i for i, status in found.items() if status != "open")
    if closed:
        raise ApiError("conflict", f"dead letter {closed[0]} is {found[closed[0]]}, not open")
    return sorted(set(ids))


@api.endpoint(
    "POST",
    "/dead-letters/replay",
    summary="Replay dead letters",
    tag=TAG,
    allow=OPERATE,
    body=DeadLetterIds,
    response=ReplayResult,
    errors=(404, 409, 422),
)
async def replay_dead_letters(call: Call) -> ReplayResult:
    """Map and deliver the records again, one run per route; those that fail again stay open
    with their new reason."""
    ids = await _open_ids(call, call.body.ids)
    runtime = call.runtime
    await runtime.unlock_vault_if_changed()
    await note(
        runtime.engine,
        actor=call.caller.actor,
        action="dead_letters.replay",
        target="dead letters",
        details={"ids": ids},
    )
    try:
        outcomes = await replay(runtime.engine, runtime.plugins, ids)
    except RouteRefused as refused:
        raise ApiError("conflict", f"cannot replay now: {refused}") from None
    return ReplayResult(
        runs=[
            ReplayOut(
                run=run_answer(await load_run(call, o.run.id)),
                replayed=o.replayed,
                still_failing={str(k): redact_text(v) for k, v in o.still_failing.items()},
            )
            for o in outcomes
        ]
    )


@api.endpoint(
    "POST",
    "/dead-letters/discard",
    summary="Discard dead letters",
    tag=TAG,
    allow=OPERATE,
    body=DeadLetterIds,
    response=DiscardResult,
    errors=(404, 409, 422),
)
async def discard_dead_letters(call: Call) -> DiscardResult:
    ids = await _open_ids(call, call.body.ids)
    done = await discard(call.runtime.engine, ids, call.caller.actor)
    return DiscardResult(discarded=done)
