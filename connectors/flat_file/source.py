"""Reading: which files are ready, each read once, resumed mid-file, archived once delivered.

A file is *ready* when its name matches the stream's pattern and none of the ignored patterns,
it was not modified within `settle_seconds`, and (with `require_done_file`) ``NAME.done`` exists.
The state remembers every file's checksum, size, modification time and the rows delivered, so a
run resumes mid-file after a crash and skips files it finished (without opening them while their
size and modification time stand); a file whose content changed is read again (destinations
upsert, nothing duplicates).

Files gone from the folder (archived, or deleted by the district) leave the state: only their
checksums are kept, for `remember_days`, so the same file dropped again is not read again.

A route with `parallel_reads` splits new local delimited files into byte ranges that start on
row boundaries (see `delimited.split_rows`), each read as a part of its own.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from fnmatch import fnmatchcase
from itertools import islice
from pathlib import Path
from typing import IO, Any

import structlog

from connectors.flat_file.connection import FlatFileConnection
from connectors.flat_file.delimited import SPLITTABLE_ENCODINGS, open_table, open_text, split_rows
from connectors.flat_file.fixed_width import FixedWidthLayout
from connectors.flat_file.mapping import MAP_SLICE, Mapping, RowsBuilder
from connectors.flat_file.options import ALWAYS_IGNORED, DONE_SUFFIX, StreamProfile
from connectors.flat_file.transports import Entry, FileChanged, LocalFolder, Snapshot, stamp_of
from hub import sdk

log = structlog.get_logger(__name__)

#: Mapped batches of one file: (records, rejects, lines consumed).
FileBatches = Iterator[tuple[list[sdk.Record], list[sdk.Reject], int]]


class FlatFileReader(FlatFileConnection):
    """The source side: ready files, read once each, from a local folder or an SFTP server."""

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        profile = self._profile(stream)
        mapping = Mapping(profile, self.config.account_layout, stream)
        layout = (
            FixedWidthLayout(profile, stream, mapping.required)
            if profile.format == "fixed_width"
            else None
        )
        if state and "part" in state:
            async for batch in self._read_part(mapping, state):
                yield batch
                del batch  # the destination's now: not held while the next is read
            return
        folder = self._folder()
        files: dict[str, dict[str, Any]] = dict((state or {}).get("files", {}))
        seen: dict[str, str] = dict((state or {}).get("seen", {}))
        given = (dict(files), dict(seen))
        listing = await folder.entries()
        self._forget_gone(files, seen, listing)
        for entry in self._ready(profile, listing):
            known = files.get(entry.name)
            if known and known["complete"] and _same_stamp(known, entry):
                continue
            try:
                async with folder.snapshot(entry) as snapshot:
                    async for batch in self._read_file(
                        snapshot, entry, mapping, layout, files, seen
                    ):
                        given = (dict(files), dict(seen))
                        yield batch
                        del batch  # the destination's now: not held while the next is read
            except FileChanged:
                log.warning("flat_file.file_changed_while_read", file=entry.name, stream=stream)
        if (files, seen) != given:  # files forgotten or looked at again: keep that too
            yield sdk.Batch(records=[], state=_state(files, seen))

    async def _read_file(
        self,
        snapshot: Snapshot,
        entry: Entry,
        mapping: Mapping,
        layout: FixedWidthLayout | None,
        files: dict[str, dict[str, Any]],
        seen: dict[str, str],
    ) -> AsyncIterator[sdk.Batch]:
        """The batches of one ready file, after the rows the state says were delivered; raises
        FileChanged if the file moves under the reader."""
        checksum = snapshot.sha256
        stamp = {"size": entry.size, "mtime_ns": entry.mtime_ns}
        known = files.get(entry.name)
        if known and known["sha256"] == checksum and known["complete"]:
            files[entry.name] = known | stamp  # touched, not changed
            return
        if checksum in seen:
            log.info("flat_file.already_read", file=entry.name, sha256=checksum)
            files[entry.name] = {"sha256": checksum, "rows": 0, "complete": True} | stamp
            return
        start = known["rows"] if known and known["sha256"] == checksum else 0
        delivered = start
        with self._file_batches(snapshot.path, mapping, layout, start) as batches:
            for records, rejects, rows in batches:
                if snapshot.changed():
                    raise FileChanged(entry.name)
                delivered += rows
                files[entry.name] = {"sha256": checksum, "rows": delivered, "complete": False}
                files[entry.name] |= stamp
                yield sdk.Batch(records=records, rejects=rejects, state=_state(files, seen))
                del records, rejects  # the destination's now: not held while the next is read
        files[entry.name] = {"sha256": checksum, "rows": delivered, "complete": True} | stamp
        yield sdk.Batch(records=[], state=_state(files, seen))

    @contextmanager
    def _file_batches(
        self, path: Path, mapping: Mapping, layout: FixedWidthLayout | None, start: int
    ) -> Iterator[FileBatches]:
        """The mapped batches of a local file, delimited or fixed width, inside its opening."""
        if layout is None:
            with open_table(path, self.config.encoding, self.config.delimiter) as reader:
                yield self._batches(path, reader, mapping, start, None)
        else:
            with open_text(path, self.config.encoding, newline=None) as handle:
                yield self._fixed_batches(path, handle, mapping, layout, start)

    def _ready(self, profile: StreamProfile, listing: list[Entry]) -> Iterator[Entry]:
        """The listed files this stream reads now, by name: see the module docstring."""
        names = {entry.name for entry in listing}
        ignored = (*ALWAYS_IGNORED, *self.config.ignore)
        done = self.config.require_done_file
        settle = self.config.settle_seconds
        now = time.time()
        for entry in sorted(listing):
            if not fnmatchcase(entry.name, profile.pattern):
                continue
            if any(fnmatchcase(entry.name, pattern) for pattern in ignored):
                continue
            if done and (entry.name.endswith(DONE_SUFFIX) or entry.name + DONE_SUFFIX not in names):
                continue
            if settle and now - entry.mtime_ns / 1e9 < settle:
                continue  # a clock ahead of ours counts as fresh: the file waits
            yield entry

    def _forget_gone(
        self, files: dict[str, dict[str, Any]], seen: dict[str, str], listing: list[Entry]
    ) -> None:
        """Move the files no longer in the folder out of the state, remembering the checksums of
        finished ones for `remember_days`; forget checksums older than that."""
        present = {entry.name for entry in listing}
        today = datetime.now(UTC).date()
        for name in [name for name in files if name not in present]:
            gone = files.pop(name)
            if gone["complete"]:
                seen[gone["sha256"]] = today.isoformat()
        horizon = today - timedelta(days=self.config.remember_days)
        for checksum in [c for c, day in seen.items() if date.fromisoformat(day) < horizon]:
            del seen[checksum]

    async def acknowledge(self, stream: str, state: sdk.State) -> None:
        """Move every file the committed `state` finished to `archive_folder`, unless it changed
        since it was read (a new version waits for its own read)."""
        archive = self._archive_folder()
        if archive is None:
            return
        folder = self._folder()
        for name, entry in state.get("files", {}).items():
            if not entry.get("complete"):
                continue
            now = await folder.stat(name)
            if now is None or not _same_stamp(entry, now):
                continue
            moved = await folder.archive(name, archive)
            log.info("flat_file.archived", stream=stream, file=name, archived_as=moved)
            if self.config.require_done_file and await folder.stat(name + DONE_SUFFIX):
                await folder.archive(name + DONE_SUFFIX, archive)

    async def partitions(
        self, stream: str, state: sdk.State | None, count: int
    ) -> list[sdk.State] | None:
        """Every new file split into about `count` byte ranges of at least a batch of rows; None
        (a serial read) for fixed-width files, an SFTP folder, an encoding that cannot be split
        at the byte level, a file left half read or anything the serial read has to settle."""
        profile = self._profile(stream)
        Mapping(profile, self.config.account_layout, stream)  # a bad profile fails here, once
        folder = self._folder()
        if (
            profile.format != "delimited"
            or not isinstance(folder, LocalFolder)
            or not codecs.lookup(self.config.encoding).name.startswith(SPLITTABLE_ENCODINGS)
        ):
            return None
        files: dict[str, dict[str, Any]] = dict((state or {}).get("files", {}))
        seen: dict[str, str] = dict((state or {}).get("seen", {}))
        listing = await folder.entries()
        self._forget_gone(files, seen, listing)
        parts: list[sdk.State] = []
        for entry in self._ready(profile, listing):
            known = files.get(entry.name)
            if known and known["complete"] and _same_stamp(known, entry):
                continue
            path = folder.path / entry.name
            checksum, ranges = split_rows(path, count, self.batch_size)
            if stamp_of(path) != (entry.size, entry.mtime_ns) or checksum in seen:
                return None
            if known and known["sha256"] == checksum:
                return None  # finished but touched, or half read: the serial read goes on
            for begin, end, line in ranges:
                part = {"file": entry.name, "sha256": checksum, "size": entry.size}
                part |= {"mtime_ns": entry.mtime_ns, "begin": begin, "end": end, "line": line}
                parts.append(
                    {"files": files, "seen": seen, "part": part | {"rows": 0, "complete": False}}
                )
        return parts

    def join_partitions(self, stream: str, parts: list[sdk.State]) -> sdk.State:
        files: dict[str, dict[str, Any]] = dict(parts[0]["files"]) if parts else {}
        seen: dict[str, str] = dict(parts[0].get("seen", {})) if parts else {}
        read: dict[str, dict[str, Any]] = {}
        for state in parts:
            part = state["part"]
            entry = read.setdefault(
                part["file"],
                {
                    "sha256": part["sha256"],
                    "rows": 0,
                    "complete": True,
                    "size": part["size"],
                    "mtime_ns": part["mtime_ns"],
                },
            )
            entry["rows"] += part["rows"]
            entry["complete"] = entry["complete"] and part["complete"]
        return {"files": files | read, "seen": seen}

    async def _read_part(self, mapping: Mapping, state: sdk.State) -> AsyncIterator[sdk.Batch]:
        """The rows of one byte range of a local file, from where the part's state says it
        stopped. A file changed since it was split is left: the joined state keeps its old
        checksum, so the next run reads the new content whole."""
        folder = self._folder()
        assert isinstance(folder, LocalFolder)  # partitions() splits local files only
        part = dict(state["part"])
        path = folder.path / part["file"]
        listed = (part["size"], part["mtime_ns"])
        if not path.is_file() or stamp_of(path) != listed:
            yield sdk.Batch(records=[], state={**state, "part": part | {"complete": True}})
            return
        with open_table(path, self.config.encoding, self.config.delimiter) as header_reader:
            header = next(header_reader, [])
        with open_table(
            path, self.config.encoding, self.config.delimiter, part["begin"], part["end"]
        ) as reader:
            for records, rejects, rows in self._batches(
                path, reader, mapping, part["rows"], header, part["line"]
            ):
                if stamp_of(path) != listed:
                    log.warning("flat_file.file_changed_while_read", file=part["file"])
                    break
                part["rows"] += rows
                yield sdk.Batch(
                    records=records, rejects=rejects, state={**state, "part": dict(part)}
                )
                del records, rejects  # the destination's now: not held while the next is read
        yield sdk.Batch(records=[], state={**state, "part": part | {"complete": True}})

    def _batches(
        self,
        path: Path,
        reader: Iterator[list[str]],
        mapping: Mapping,
        start: int,
        header: list[str] | None,
        first_line: int = 1,
    ) -> FileBatches:
        """Mapped batches of `reader`'s rows after the first `start`; the header is the first row
        unless given (a part further into the file)."""
        fallback_updated = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        if header is None:
            header = next(reader, None)
            if header is None:
                return
        build = mapping.compile([h.strip() for h in header], fallback_updated, path.name)
        for _ in range(start):
            next(reader, None)
        line = first_line + start  # data rows counted from 1 after the header, as positions say
        while True:
            # Parsed rows and mapped dicts take several times the memory of the records they
            # become: map a batch a slice at a time, so only the records pile up.
            records: list[sdk.Record] = []
            rejects: list[sdk.Reject] = []
            first = line
            while line - first < self.batch_size:
                chunk = list(islice(reader, min(MAP_SLICE, self.batch_size - (line - first))))
                if not chunk:
                    break
                mapped, rejected = build(chunk, range(line, line + len(chunk)))
                records += mapped
                rejects += rejected
                line += len(chunk)
            if line == first:
                return
            yield records, rejects, line - first

    def _fixed_batches(
        self,
        path: Path,
        handle: IO[str],
        mapping: Mapping,
        layout: FixedWidthLayout,
        start: int,
    ) -> FileBatches:
        """Mapped batches of a fixed-width file's data lines after line `start`; the lines
        consumed by a batch run to its last data line."""
        fallback_updated = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        build = mapping.compile(layout.names, fallback_updated, path.name)
        pending = ((n, text) for n, text in layout.data_lines(handle) if n > start)
        position = start
        while True:
            records: list[sdk.Record] = []
            rejects: list[sdk.Reject] = []
            taken, first = 0, position
            while taken < self.batch_size:
                chunk = list(islice(pending, min(MAP_SLICE, self.batch_size - taken)))
                if not chunk:
                    break
                mapped, rejected = _map_lines(build, layout, chunk, path.name)
                records += mapped
                rejects += rejected
                taken += len(chunk)
                position = chunk[-1][0]
            if not taken:
                return
            yield records, rejects, position - first

    def pii_columns(self, stream: str) -> frozenset[str]:
        profile = self._profile(stream)
        mapping = Mapping(profile, self.config.account_layout, stream)
        marked = mapping.record.pii_fields()
        return frozenset(column for field, column in mapping.columns.items() if field in marked)

    def map_raw(self, stream: str, raw: dict[str, Any]) -> sdk.Record:
        mapping = Mapping(self._profile(stream), self.config.account_layout, stream)
        header = list(raw)
        records, rejects = mapping.compile(header, datetime.now(UTC), "replay")(
            [[raw[h] for h in header]], [1]
        )
        if rejects:
            raise sdk.BadRecord(rejects[0].reason, position=rejects[0].position)
        return records[0]


def _map_lines(
    build: RowsBuilder, layout: FixedWidthLayout, chunk: list[tuple[int, str]], file_name: str
) -> tuple[list[sdk.Record], list[sdk.Reject]]:
    """Records and rejects of fixed-width data lines: a line too short for the layout is a
    reject of its own, the others are cut into cells and mapped."""
    rows: list[Any] = []
    numbers: list[int] = []
    short: list[sdk.Reject] = []
    for number, text in chunk:
        if len(text) < layout.required_width:
            cells = dict(zip(layout.names, (text[s] for s in layout.slices.values()), strict=True))
            short.append(
                sdk.Reject(position=f"{file_name}:{number}", reason=layout.short(text), raw=cells)
            )
        else:
            rows.append(layout.split(text.ljust(layout.width)))
            numbers.append(number)
    records, rejects = build(rows, numbers) if rows else ([], [])
    return records, sorted(short + rejects, key=lambda r: int(r.position.rpartition(":")[2]))


def _same_stamp(known: dict[str, Any], entry: Entry) -> bool:
    """Whether a file in the state is, by size and modification time, the listed one."""
    return (known.get("size"), known.get("mtime_ns")) == (entry.size, entry.mtime_ns)


def _state(files: dict[str, dict[str, Any]], seen: dict[str, str]) -> sdk.State:
    """A batch's state: copies, as the engine may still hold it while reading goes on."""
    return {"files": dict(files), "seen": dict(seen)}
