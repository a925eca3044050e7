"""A site plugin for tests: a transform that fails on the Nth batch it sees (N read from a file
beside it; 0 never fails), to stand for a crash in the middle of a run."""

from pathlib import Path

from hub import sdk

STATE = Path(__file__).with_name("flaky.state")
seen = {"batches": 0}


def flaky(context: sdk.BatchContext, records: list[sdk.Record]) -> list[sdk.Record]:
    seen["batches"] += 1
    fail_on = int(STATE.read_text()) if STATE.exists() else 0
    if fail_on and seen["batches"] == fail_on:
        raise RuntimeError(f"batch {fail_on} failed on purpose")
    return records


@sdk.hookimpl
def cohub_register_transforms(register):
    register(sdk.Transform(name="flaky", function=flaky, description="fails on the Nth batch"))
