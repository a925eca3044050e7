"""A bench-only Cohub plugin: a ``jsonl_file`` destination writing one JSON object per line.

bench/run.py lists this folder in its generated configuration's ``[plugins] paths`` so that Cohub
can be measured writing JSON lines, against Singer's ``target-jsonl`` and a plain csv → orjson
program. Each line is the canonical record as msgspec encodes it (nested account code as an
object, decimals as strings, dates and timestamps in ISO 8601), plus ``member`` and
``record_key``. It is not a product connector: a file cannot be upserted into, so writing a batch
twice writes it twice (the benchmark starts every run with no file), and deletes are not tracked.
The parts of a partitioned read append from several processes: the file is opened with
``O_APPEND`` and each batch goes in one ``write``, which the kernel places at the end whole.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import msgspec

from hub import sdk


class JsonlFileOptions(sdk.Options, kw_only=True):
    """Where the lines go: ``<folder>/<stream>.jsonl``."""

    folder: str


class JsonlFileDestination(sdk.Connector[JsonlFileOptions]):
    name = "jsonl_file"
    title = "JSON lines file (bench only)"
    options = JsonlFileOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._files: dict[str, io.FileIO] = {}
        self._encoder = msgspec.json.Encoder(decimal_format="string")

    def _folder(self) -> Path:
        return self.context.resolve_path(self.config.folder)

    async def check(self) -> None:
        folder = self._folder()
        if not folder.is_dir():
            raise sdk.ConnectorConfigError(f"no folder {folder}")

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(name=p.stem, record="", readable=False, writable=True)
            for p in sorted(self._folder().glob("*.jsonl"))
        ]

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        handle = self._files.get(stream)
        if handle is None:
            path = self._folder() / f"{stream}.jsonl"
            handle = self._files[stream] = path.open("ab", buffering=0)
        encode = self._encoder.encode
        # {"member":…,"record_key":…, then the record's own fields (its encoding minus "{").
        head = b'{"member":' + encode(member or "") + b',"record_key":'
        lines = [head + encode(r.key) + b"," + encode(r)[1:] for r in batch.records]
        lines.append(b"")
        data = memoryview(b"\n".join(lines))
        while data:
            data = data[handle.write(data) :]
        return sdk.WriteResult(written=len(batch.records))

    async def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()


@sdk.hookimpl
def cohub_register_connectors(register):
    register(JsonlFileDestination)
