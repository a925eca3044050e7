"""Records a source reports deleted (`Batch.deletes`): delivered to the destination's `delete`
after the batch's records, in the batch's delivery, counted; never dropped in silence."""

from __future__ import annotations

from sqlalchemy import select

from hub.engine.run import run_route
from hub.store.tables import runs, stream_states
from tests.scripted import configure, key, pay_line
from tests.test_end_to_end import destination_rows

E1, E2, E3 = pay_line("E1"), pay_line("E2"), pay_line("E3")


async def test_deletes_reach_the_sql_destination_after_the_batch_records(
    runtime, config_dir, database_url
):
    # given lines written, then a batch deleting one, then one writing and deleting another
    batches = [
        {"records": [E1, E2]},
        {"deletes": [key(E1)]},
        {"records": [E3], "deletes": [key(E3), "EA-2026-20|E9|1"]},
    ]
    await configure(runtime, config_dir, batches=batches)

    # when the route runs
    summary = await run_route(runtime.engine, runtime.plugins, "scripted-db")

    # then E1 and E3 are marked deleted (E3 after it was written), E2 stays, two are counted
    assert summary.status == "succeeded", summary.error
    assert (summary.counts.written, summary.counts.deleted) == (3, 2)
    rows = await destination_rows(database_url)
    assert sorted((r["record_key"], r["deleted_at"] is not None) for r in rows) == [
        (key(E1), True),
        (key(E2), False),
        (key(E3), True),
    ]
    async with runtime.engine.connect() as conn:
        stored = await conn.scalar(select(runs.c.records_deleted).where(runs.c.id == summary.id))
    assert stored == 2


async def test_a_destination_that_cannot_delete_fails_the_run_at_that_batch(runtime, config_dir):
    batches = [{"records": [E1]}, {"records": [E2], "deletes": [key(E1)]}, {"records": [E3]}]
    await configure(runtime, config_dir, batches=batches)

    summary = await run_route(runtime.engine, runtime.plugins, "scripted-picky")

    assert summary.status == "failed"
    assert summary.error == (
        "destination connection 'picky' (picky_sink, plugin 'scripted_connectors') cannot "
        "delete records; the source reported 1 deleted in stream 'pay_lines'"
    )
    # and the batch holding the deletes is not checkpointed: the next run reads it again
    async with runtime.engine.connect() as conn:
        state = await conn.scalar(
            select(stream_states.c.state).where(stream_states.c.route == "scripted-picky")
        )
    assert state == {"batches": 1}
