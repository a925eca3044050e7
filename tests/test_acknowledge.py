"""`Connector.acknowledge`: a source hears of every committed checkpoint, in order, with the
state committed; never of a batch that was not delivered; and its failures never fail a run."""

from __future__ import annotations

import structlog

from hub.engine.run import run_route
from tests.scripted import configure, logged, pay_line

THREE_BATCHES = [{"records": [pay_line(employee)]} for employee in ("E1", "E2", "E3")]


async def run(runtime, route: str = "scripted-picky"):
    return await run_route(runtime.engine, runtime.plugins, route)


async def test_the_source_hears_each_committed_checkpoint_in_order(runtime, config_dir):
    await configure(runtime, config_dir, batches=THREE_BATCHES)

    summary = await run(runtime)

    assert summary.status == "succeeded", summary.error
    assert logged(config_dir, ".acks.jsonl") == [{"batches": 1}, {"batches": 2}, {"batches": 3}]


async def test_a_batch_whose_write_failed_is_not_acknowledged(runtime, config_dir):
    await configure(runtime, config_dir, batches=THREE_BATCHES, write_fails_for=["E2"])

    summary = await run(runtime)

    assert summary.status == "failed"
    assert logged(config_dir, ".acks.jsonl") == [{"batches": 1}]


async def test_a_failing_acknowledgement_is_logged_and_the_run_goes_on(runtime, config_dir):
    await configure(runtime, config_dir, batches=THREE_BATCHES, acknowledge="fails")

    with structlog.testing.capture_logs() as logs:
        summary = await run(runtime)

    assert (summary.status, summary.counts.written) == ("succeeded", 3)
    assert len(logged(config_dir, ".acks.jsonl")) == 3
    failures = [e for e in logs if e["event"] == "source.acknowledge_failed"]
    assert [e["log_level"] for e in failures] == ["warning"] * 3
    assert failures[0]["error"] == (
        "connection 'scripted' (scripted_source, plugin 'scripted_connectors') failed to "
        "acknowledge: ConnectionError: the message queue refused the acknowledgement"
    )


async def test_an_acknowledgement_that_hangs_is_cut_at_the_call_timeout(runtime, config_dir):
    await configure(
        runtime, config_dir, call_timeout=0.2, batches=THREE_BATCHES[:1], acknowledge="hangs"
    )

    with structlog.testing.capture_logs() as logs:
        summary = await run(runtime)

    assert summary.status == "succeeded", summary.error
    [failure] = [e for e in logs if e["event"] == "source.acknowledge_failed"]
    assert "TimeoutError: acknowledge" in failure["error"]


async def test_a_partitioned_read_is_acknowledged_once_with_the_joined_state(runtime, config_dir):
    batches = [{"records": [pay_line(f"E{n}")]} for n in range(1, 6)]
    await configure(runtime, config_dir, batches=batches, parts=2)

    summary = await run(runtime, "scripted-parallel")

    assert (summary.status, summary.counts.written) == ("succeeded", 5), summary.error
    assert logged(config_dir, ".acks.jsonl") == [{"batches": 5}]
