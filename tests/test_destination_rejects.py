"""Records a destination refuses (`WriteResult.rejects`): dead letters marked as the
destination's, counted rejected and never written or billed, sealed and masked like a source's,
and replayed by writing the kept record again."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from hub.engine.replay import replay
from hub.engine.run import run_route
from hub.store.tables import dead_letters
from tests.canaries import leaks, plant
from tests.scripted import configure, key, logged, pay_line, write_script
from tests.test_end_to_end import usage_total

NO_EMPLOYEE = "refused by destination 'picky': no such employee in the sink"
BANK = plant("canary-31d7e0a2-refused-bank")


async def letters(runtime) -> list[dict]:
    async with runtime.engine.connect() as conn:
        query = select(dead_letters).order_by(dead_letters.c.id)
        return [dict(row) for row in (await conn.execute(query)).mappings()]


async def test_refused_records_are_dead_letters_counted_rejected_and_not_billed(
    runtime, config_dir
):
    # given a batch of two pay lines, the second of which the destination refuses
    refused = pay_line("E2")
    batches = [{"records": [pay_line("E1"), refused]}]
    await configure(
        runtime, config_dir, batches=batches, refuse={"E2": "no such employee in the sink"}
    )

    # when the route runs
    summary = await run_route(runtime.engine, runtime.plugins, "scripted-picky")

    # then one is written and billed, the other is the destination's dead letter with its record
    assert summary.status == "succeeded", summary.error
    counts = summary.counts
    assert (counts.read, counts.written, counts.rejected) == (2, 1, 1)
    assert await usage_total(runtime) == {"eastview": Decimal(1)}
    [letter] = await letters(runtime)
    assert {k: letter[k] for k in ("side", "stream", "position", "reason", "status")} == {
        "side": "destination",
        "stream": "pay_lines",
        "position": f"line {key(refused)}",
        "reason": NO_EMPLOYEE,
        "status": "open",
    }
    assert letter["raw"] == refused  # no master key in this hub: kept as it is

    # and a second run reading the same batch again does not pile up a second dead letter
    write_script(config_dir, batches=batches * 2, refuse={"E2": "no such employee in the sink"})
    await run_route(runtime.engine, runtime.plugins, "scripted-picky")
    assert len(await letters(runtime)) == 1


async def test_replay_writes_the_refused_record_again_and_bills_it_once_taken(runtime, config_dir):
    refused = pay_line("E2", bank_account="021000021:NEW77")
    batches = [{"records": [pay_line("E1"), refused]}]
    await configure(runtime, config_dir, batches=batches, refuse={"E2": "account closed"})
    await run_route(runtime.engine, runtime.plugins, "scripted-picky")
    [letter] = await letters(runtime)

    # while the destination still refuses it, the replay says so and the letter stays open
    [still] = await replay(runtime.engine, runtime.plugins, [letter["id"]])
    assert still.still_failing == {letter["id"]: "refused by destination 'picky': account closed"}
    assert [x["status"] for x in await letters(runtime)] == ["open"]

    # once it takes it, the kept record itself is written (the source cannot map rows again)
    write_script(config_dir, batches=batches)
    [outcome] = await replay(runtime.engine, runtime.plugins, [letter["id"]])

    assert (outcome.run.status, outcome.replayed) == ("succeeded", [letter["id"]])
    assert (outcome.run.counts.written, outcome.run.counts.rejected) == (1, 0)
    assert logged(config_dir, ".written.jsonl")[-1] == {
        "key": key(refused),
        "bank_account": "021000021:NEW77",
    }
    assert [x["status"] for x in await letters(runtime)] == ["replayed"]
    assert await usage_total(runtime) == {"eastview": Decimal(2)}


async def test_a_partitioned_read_dead_letters_what_the_destination_refused(runtime, config_dir):
    batches = [{"records": [pay_line(f"E{n}")]} for n in range(1, 5)]
    await configure(runtime, config_dir, batches=batches, parts=2, refuse={"E3": "duplicate"})

    summary = await run_route(runtime.engine, runtime.plugins, "scripted-parallel")

    assert (summary.status, summary.counts.written, summary.counts.rejected) == (
        "succeeded",
        3,
        1,
    ), summary.error
    assert [(x["side"], x["reason"]) for x in await letters(runtime)] == [
        ("destination", "refused by destination 'picky': duplicate")
    ]


async def test_a_reject_that_does_not_hold_the_record_fails_the_run_naming_the_destination(
    runtime, config_dir
):
    batches = [{"records": [pay_line("E1")]}]
    await configure(
        runtime, config_dir, batches=batches, refuse={"E1": "no"}, rejects_hold="summary"
    )

    summary = await run_route(runtime.engine, runtime.plugins, "scripted-picky")

    assert summary.status == "failed"
    assert summary.error.startswith(
        "connection 'picky' (picky_sink, plugin 'scripted_connectors') failed to write: "
        "TypeError: the reject at 'line EA-2026-20|E1|1' does not hold the refused "
        "payroll.pay_line record"
    )
    assert await letters(runtime) == []


async def test_a_refused_bank_account_is_sealed_at_rest_and_masked_when_shown(runtime, config_dir):
    from tests.apikit import served_hub

    batches = [{"records": [pay_line("E1", bank_account=f"021000021:{BANK}")]}]
    await configure(runtime, config_dir, batches=batches, refuse={"E1": "account closed"})
    async with served_hub(runtime, config_dir, sync=False) as hub:
        await run_route(runtime.engine, runtime.plugins, "scripted-picky")

        [letter] = await letters(runtime)
        listed = await hub.call("GET", "/dead-letters?status=any")
        shown = await hub.call("GET", f"/dead-letters/{letter['id']}")

    assert set(letter["raw"]) == {"sealed", "digest"}
    assert leaks([str(letter)], [BANK]) == []
    assert leaks([listed.text, shown.text], [BANK]) == []
    record = shown.body["record"]
    assert (record["employee_id"], record["bank_account"]) == ("E1", "****")
    assert shown.body["reason"] == "refused by destination 'picky': account closed"
