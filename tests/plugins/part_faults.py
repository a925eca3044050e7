"""A site plugin for tests of partitioned reads: a transform that, as the file `part_faults.on`
beside it says, fails (``fail LINE``) or kills its own process (``kill LINE``) on the batch that
holds pay line LINE, or is slow on every batch (``slow``)."""

import asyncio
import os
import signal
from pathlib import Path

from hub import sdk

ORDERS = Path(__file__).with_name("part_faults.on")


async def part_faults(context: sdk.BatchContext, records: list[sdk.Record]) -> list[sdk.Record]:
    action, _, line = (ORDERS.read_text() if ORDERS.exists() else "").partition(" ")
    if action == "slow":
        await asyncio.sleep(0.05)  # the stop request arrives while parts are still reading
    elif action and any(r.line_number == int(line) for r in records):
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"the shared payroll system refused line {line}")
    return records


@sdk.hookimpl
def cohub_register_transforms(register):
    register(sdk.Transform(name="part_faults", function=part_faults, description="test faults"))
