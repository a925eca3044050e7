"""A site plugin for tests of partitioned reads and of the daemon: a transform that, as the file
`part_faults.on` beside it says, fails (``fail LINE``) or kills its own process (``kill LINE``)
on the batch that holds pay line LINE, is slow on every batch (``slow`` or ``slow SECONDS``), or
never returns (``hang``); and a route alert hook that appends each alert to `part_faults.alerts`."""

import asyncio
import json
import os
import signal
from pathlib import Path

from hub import sdk

ORDERS = Path(__file__).with_name("part_faults.on")
ALERTS = Path(__file__).with_name("part_faults.alerts")


async def part_faults(context: sdk.BatchContext, records: list[sdk.Record]) -> list[sdk.Record]:
    action, _, line = (ORDERS.read_text() if ORDERS.exists() else "").strip().partition(" ")
    if action == "slow":
        # By default short: the stop request arrives while parts are still reading.
        await asyncio.sleep(float(line or 0.05))
    elif action == "hang":
        await asyncio.Event().wait()
    elif action and any(r.line_number == int(line) for r in records):
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"the shared payroll system refused line {line}")
    return records


@sdk.hookimpl
def cohub_register_transforms(register):
    register(sdk.Transform(name="part_faults", function=part_faults, description="test faults"))


@sdk.hookimpl
def cohub_route_alert(route, failures, error):
    with ALERTS.open("a") as alerts:
        alerts.write(json.dumps({"route": route, "failures": failures, "error": error}) + "\n")
