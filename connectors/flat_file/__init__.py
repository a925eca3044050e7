"""Flat files: delimited and fixed-width files in a local folder or on an SFTP server.

District payroll, HR and finance systems export nightly CSV, pipe-delimited or fixed-width
files, and some take files back. A connection names the folder (local, or on an SFTP server),
the encoding, and per stream a *mapping profile*: which file column or character positions fill
which record field, the date format, implied decimals, and how the account code is laid out (see
`hub.sdk.ACCOUNT_LAYOUTS`). The same profile read in reverse writes records out.

The package, by module: `options` (every option), `transports` and `sftp` (the folder),
`delimited` and `fixed_width` (the two row readers), `mapping` (rows to records, shared by both),
`source` (which files, once only, resume, archive, parallel parts), `writing` and `destination`
(records to files, published atomically). docs/connectors/flat-file.md is the admin's page.
"""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.flat_file.delimited import open_table, split_rows
from connectors.flat_file.destination import FlatFileWriter, file_name_template
from connectors.flat_file.fixed_width import FixedWidthLayout
from connectors.flat_file.mapping import Mapping, _decimal
from connectors.flat_file.options import FlatFileOptions, StreamProfile
from connectors.flat_file.source import FlatFileReader
from connectors.flat_file.transports import LocalFolder
from hub import sdk

__all__ = [
    "FlatFileConnector",
    "FlatFileOptions",
    "FlatFileSource",
    "Mapping",
    "StreamProfile",
    "_decimal",
    "cohub_register_connectors",
    "split_rows",
]


class FlatFileConnector(FlatFileReader, FlatFileWriter):
    """CSV, pipe-delimited and fixed-width files, read from and written to a folder, local or
    over SFTP."""

    name = "flat_file"
    title = "Flat files (CSV, pipe-delimited, fixed-width) in a folder or over SFTP"

    async def check(self) -> None:
        """The folder (and archive folder) can be listed, every profile is sound, and the
        newest settled local delimited export carries every mapped column."""
        for name, profile in self.config.streams.items():
            Mapping(profile, self.config.account_layout, name)
            if profile.format == "fixed_width":
                FixedWidthLayout(profile, name)
            file_name_template(profile, name)
        folder = self._folder()
        await folder.check()
        archive = self._archive_folder()
        if archive is not None:
            await folder.check_archive(archive)
        if not isinstance(folder, LocalFolder):
            return
        listing = await folder.entries()
        for name, profile in self.config.streams.items():
            ready = [e for e in self._ready(profile, listing) if e.size]
            if profile.format != "delimited" or not ready:
                continue
            newest = max(ready, key=lambda e: e.mtime_ns)
            path = folder.path / newest.name
            with open_table(path, self.config.encoding, self.config.delimiter) as reader:
                header = next(reader, None) or []
            mapping = Mapping(profile, self.config.account_layout, name)
            mapping.compile([h.strip() for h in header], datetime.now(UTC), newest.name)

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(
                name=name,
                record=profile.record,
                description=f"files matching {profile.pattern}",
                writable=True,
            )
            for name, profile in self.config.streams.items()
        ]


#: The name this connector had when it only read; tests and benchmarks import it.
FlatFileSource = FlatFileConnector
