"""Writing: every batch published as one complete file, atomically, named by its content.

The engine writes a batch and commits its checkpoint once `write` returns, and calls `close`
whether the run succeeded or not. So a batch's records must be in a published file before `write`
returns: a file kept open across batches and published at the end would either be exposed half
written or lose batches whose checkpoints were already committed. Each batch therefore becomes
its own file: written to ``.NAME.part`` in the same folder (ignored by every reader), synced,
then renamed to NAME in one step. A downstream reader sees a file whole or not at all.

NAME comes from the stream profile's `file_name`, whose ``{batch}`` placeholder (required) is
the first 16 hex digits of the SHA-256 of the file's bytes. A batch written again (a retry after
a failure, a run resumed from an earlier checkpoint) has the same records, so the same bytes and
the same name: it replaces its earlier copy, and no line is ever duplicated. ``{generation}``
(the run that began the read cycle) keeps a later full re-read from replacing earlier files.
"""

from __future__ import annotations

import hashlib
import string

import msgspec

from connectors.flat_file.connection import FlatFileConnection
from connectors.flat_file.mapping import Mapping
from connectors.flat_file.options import ALWAYS_IGNORED, StreamProfile
from connectors.flat_file.writing import RecordWriter
from hub import sdk

PLACEHOLDERS = ("stream", "member", "generation", "batch")
DEFAULT_FILE_NAMES = {
    "delimited": "{stream}_{member}_{generation}_{batch}.csv",
    "fixed_width": "{stream}_{member}_{generation}_{batch}.txt",
}


def file_name_template(profile: StreamProfile, stream: str) -> str:
    """The profile's `file_name` (or the default for its format), checked."""
    template = profile.file_name or DEFAULT_FILE_NAMES[profile.format]
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise sdk.ConnectorConfigError(
            f"stream {stream!r}: file_name {template!r}: {error}"
        ) from None
    unknown = sorted(used - set(PLACEHOLDERS))
    if unknown:
        raise sdk.ConnectorConfigError(
            f"stream {stream!r}: file_name has no placeholder {{{unknown[0]}}} (it has: "
            f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
        )
    if "batch" not in used:
        raise sdk.ConnectorConfigError(
            f"stream {stream!r}: file_name must hold {{batch}}, the content's hash that makes a "
            "retried batch replace its earlier copy"
        )
    if "/" in template or template.startswith(".") or template.endswith((".part", ".tmp")):
        raise sdk.ConnectorConfigError(
            f"stream {stream!r}: file_name {template!r} must be a plain name that no reader "
            f"ignores ({', '.join(ALWAYS_IGNORED)})"
        )
    return template


class FlatFileWriter(FlatFileConnection):
    """The destination side: one published file per batch, in the connection's folder."""

    _writers: dict[str, tuple[RecordWriter, str]] | None = None

    def _writer(self, stream: str) -> tuple[RecordWriter, str]:
        if self._writers is None:
            self._writers = {}
        if stream not in self._writers:
            profile = self._profile(stream)
            mapping = Mapping(profile, self.config.account_layout, stream)
            writer = RecordWriter(
                profile, mapping, self.config.encoding, self.config.delimiter, stream
            )
            self._writers[stream] = (writer, file_name_template(profile, stream))
        return self._writers[stream]

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        writer, template = self._writer(stream)
        kinds = {record.record_name for record in batch.records} - {writer.record.record_name}
        if kinds:
            raise sdk.ConnectorConfigError(
                f"stream {stream!r} writes {writer.record.record_name}, not {kinds.pop()}"
            )
        data, written, refused = writer.encode(batch.records)
        rejects = [
            sdk.Reject(
                position=f"{stream}:{record.key}",
                reason=reason,
                raw=msgspec.to_builtins(record),
            )
            for record, reason in refused
        ]
        if written:
            name = template.format(
                stream=stream,
                member=member or "cooperative",
                generation=batch.generation if batch.generation is not None else 0,
                batch=hashlib.sha256(data).hexdigest()[:16],
            )
            await self._folder().publish(name, data)
        return sdk.WriteResult(written=written, rejects=rejects)
