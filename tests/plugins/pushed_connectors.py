"""Test connectors that take pushed requests (tests/test_inbound.py), and a sink a test can hold.

- ``pushed_lines`` (``inbound_auth = "hmac"``: the hub checks the signature): a JSON body
  ``{"lines": [pay line, ...]}`` carries pay lines; answered 202 with ``{"received": N}``.
- ``vendor_signed_lines``: the same body, authenticated by the connector itself: the header
  ``X-Vendor-Token`` must equal its ``token`` secret; answered with its own XML document.
- ``held_sink``: appends each record it writes (key and bank account) to the JSON-lines file
  `out`; while the class attribute `gate` is an unset event, a write waits for it (after
  setting `entered`), so a test can push while a run is writing.

A raw pay line with ``"bad": "why"`` cannot be mapped (BadRecord with that reason).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec

from hub import sdk

STREAM = "pay_lines"


class NoOptions(sdk.Options, kw_only=True):
    pass


class PushedLines(sdk.Connector[NoOptions]):
    name = "pushed_lines"
    options = NoOptions

    async def streams(self) -> list[sdk.StreamSpec]:
        return [sdk.StreamSpec(name=STREAM, record="payroll.pay_line")]

    async def receive(self, request: sdk.Inbound) -> sdk.Received:
        try:
            lines = json.loads(request.body)["lines"]
        except (ValueError, KeyError, TypeError):
            raise sdk.BadRecord("the body is not a JSON object with lines") from None
        reply = json.dumps({"received": len(lines)}).encode()
        return sdk.Received(stream=STREAM, raws=lines, status=202, reply=reply)

    def map_raw(self, stream: str, raw: dict[str, Any]) -> sdk.Record:
        if "bad" in raw:
            raise sdk.BadRecord(raw["bad"])
        return msgspec.convert(raw, sdk.record_type("payroll.pay_line"), strict=False)


class VendorSignedLines(PushedLines):
    name = "vendor_signed_lines"
    secrets = ("token",)
    inbound_auth = "connector"

    async def receive(self, request: sdk.Inbound) -> sdk.Received:
        if request.headers.get("x-vendor-token") != self.secret_values["token"]:
            raise sdk.AuthError("the vendor token does not match")
        received = await super().receive(request)
        received.status = 200
        received.reply = b'<Response><Status code="200" text="OK"/></Response>'
        received.reply_type = "text/xml; charset=utf-8"
        return received


class SinkOptions(sdk.Options, kw_only=True):
    out: str


class HeldSink(sdk.Connector[SinkOptions]):
    name = "held_sink"
    options = SinkOptions
    gate: asyncio.Event | None = None
    entered: asyncio.Event | None = None

    async def streams(self) -> list[sdk.StreamSpec]:
        return [sdk.StreamSpec(name=STREAM, record="payroll.pay_line", writable=True)]

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        cls = type(self)
        if cls.gate is not None and not cls.gate.is_set():
            if cls.entered is not None:
                cls.entered.set()
            await cls.gate.wait()
        with self.context.resolve_path(self.config.out).open("a") as out:
            for record in batch.records:
                line = {"key": record.key, "bank_account": record.bank_account, "member": member}
                out.write(json.dumps(line) + "\n")
        return sdk.WriteResult(written=len(batch.records))


@sdk.hookimpl
def cohub_register_connectors(register):
    register(PushedLines)
    register(VendorSignedLines)
    register(HeldSink)
