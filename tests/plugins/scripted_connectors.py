"""Test connectors a test steers through one JSON script file (the `script` option, relative to
the configuration folder): a source of pay lines whose batches, deletes and acknowledgements
the test sets, and a destination that refuses the employees the script names.

The script: ``{"batches": [{"records": [pay line, ...], "deletes": [key, ...]}, ...],
"parts": N (read in N parts, batch i in part i % N), "refuse": {employee_id: reason},
"rejects_hold": "record"|"summary", "write_fails_for": [employee_id],
"acknowledge": "fails"|"hangs"}``.
Beside it, ``<script>.acks.jsonl`` gets a line per acknowledged state and
``<script>.written.jsonl`` one per record written (its key and bank account).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec

from hub import sdk

STREAM = "pay_lines"


class ScriptOptions(sdk.Options, kw_only=True):
    script: str


class Scripted(sdk.Connector[ScriptOptions]):
    options = ScriptOptions

    @property
    def path(self) -> Path:
        return self.context.resolve_path(self.config.script)

    def script(self) -> dict[str, Any]:
        return json.loads(self.path.read_text())

    def append(self, suffix: str, entries: list[Any]) -> None:
        with self.path.with_suffix(suffix).open("a") as out:
            out.writelines(json.dumps(entry) + "\n" for entry in entries)

    async def streams(self) -> list[sdk.StreamSpec]:
        return [sdk.StreamSpec(name=STREAM, record="payroll.pay_line", writable=True)]


class ScriptedSource(Scripted):
    """The script's batches, one after another; the state counts the batches read."""

    name = "scripted_source"

    async def read(self, stream: str, state: sdk.State | None):
        kind = sdk.record_type("payroll.pay_line")
        script = self.script()
        state = state or {}
        part, parts = state.get("part"), script.get("parts", 1)
        done = state.get("batches", 0)
        for number, batch in enumerate(script["batches"][done:], start=done + 1):
            if part is not None and (number - 1) % parts != part:
                continue
            yield sdk.Batch(
                records=msgspec.convert(batch.get("records", []), list[kind], strict=False),
                deletes=batch.get("deletes", []),
                state={"batches": number} if part is None else {"part": part, "batches": number},
            )

    async def partitions(self, stream: str, state: sdk.State | None, count: int):
        parts = self.script().get("parts")
        return [{"part": part} for part in range(parts)] if parts and not state else None

    def join_partitions(self, stream: str, parts: list[sdk.State]) -> sdk.State:
        return {"batches": len(self.script()["batches"])}

    async def acknowledge(self, stream: str, state: sdk.State) -> None:
        self.append(".acks.jsonl", [state])
        how = self.script().get("acknowledge")
        if how == "fails":
            raise ConnectionError("the message queue refused the acknowledgement")
        if how == "hangs":
            await asyncio.sleep(3600)


class PickySink(Scripted):
    """Writes every pay line except those of the employees the script refuses; cannot delete."""

    name = "picky_sink"

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        script = self.script()
        if any(r.employee_id in script.get("write_fails_for", []) for r in batch.records):
            raise sdk.ConnectorError("the sink is down")
        refuse = script.get("refuse", {})
        summary = script.get("rejects_hold") == "summary"
        rejects = [
            sdk.Reject(
                position=f"line {record.key}",
                reason=refuse[record.employee_id],
                raw={"employee": record.employee_id} if summary else msgspec.to_builtins(record),
            )
            for record in batch.records
            if record.employee_id in refuse
        ]
        taken = [r for r in batch.records if r.employee_id not in refuse]
        self.append(
            ".written.jsonl", [{"key": r.key, "bank_account": r.bank_account} for r in taken]
        )
        return sdk.WriteResult(written=len(taken), rejects=rejects)


@sdk.hookimpl
def cohub_register_connectors(register):
    register(ScriptedSource)
    register(PickySink)
