"""Where the files are: a local folder (here) or a folder on an SFTP server (`sftp.py`), behind
one small interface, so reading, writing and archiving are the same code for both.

The reader always reads a local file: the local folder hands over the file itself, the SFTP
folder a downloaded copy (a *snapshot*). Either way the snapshot carries the content's SHA-256
and the size and modification time it was taken at, so a file that changes while it is read is
noticed instead of delivered half.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple, Protocol

from hub import sdk


class Entry(NamedTuple):
    """A regular file in the folder, as listed."""

    name: str
    size: int
    mtime_ns: int


class FileChanged(Exception):
    """The file's size or modification time moved between listing and reading: it is still
    being written."""


class Snapshot(NamedTuple):
    """A file's content as a local file, with its checksum and the (size, mtime) it had."""

    path: Path
    sha256: str
    stamp: tuple[int, int]

    def changed(self) -> bool:
        """Whether the local file is no longer what was listed."""
        return stamp_of(self.path) != self.stamp


class Folder(Protocol):
    """The operations the connector needs of a folder, whatever the transport."""

    def describe(self) -> str:
        """The folder as messages name it (never with a secret)."""
        ...

    async def check(self) -> None:
        """Raise a precise ConnectorError unless the folder can be listed."""
        ...

    async def entries(self) -> list[Entry]:
        """The regular files in the folder."""
        ...

    def snapshot(self, entry: Entry) -> AsyncIterator[Snapshot]:
        """The file as a local snapshot (an async context manager); FileChanged if it moved."""
        ...

    async def stat(self, name: str) -> Entry | None:
        """The file now, or None if it is gone."""
        ...

    async def check_archive(self, folder: str) -> None:
        """Raise a ConnectorConfigError unless `folder` is a folder files can be moved into."""
        ...

    async def archive(self, name: str, folder: str) -> str:
        """Move the file into `folder` under its name, or with a number added if that is taken
        (never overwriting); the name it got."""
        ...

    async def publish(self, name: str, data: bytes) -> None:
        """Write `data` as `name` atomically: to ``.NAME.part``, synced, then renamed over."""
        ...

    async def close(self) -> None:
        """Let go of connections."""
        ...


def stamp_of(path: Path) -> tuple[int, int]:
    """(size, modification time in ns) of a local file."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def sha256_of(path: Path) -> str:
    """The SHA-256 of a local file's content, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def numbered(name: str, number: int) -> str:
    """``payroll.csv`` as ``payroll.1.csv``: a free name in an archive that has the file."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{number}.{suffix}" if dot and stem else f"{name}.{number}"


def part_name(name: str) -> str:
    """Where `name` is written before it is published, ignored by every reader of the folder."""
    return f".{name}.part"


class LocalFolder:
    """A folder on this machine."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"folder {self.path}"

    async def check(self) -> None:
        if not self.path.is_dir():
            raise sdk.ConnectorConfigError(f"folder {self.path} does not exist")
        if not os.access(self.path, os.R_OK | os.X_OK):
            raise sdk.ConnectorConfigError(f"folder {self.path} cannot be read (permission denied)")

    async def entries(self) -> list[Entry]:
        await self.check()
        found = []
        with os.scandir(self.path) as scan:
            for item in scan:
                if item.is_file(follow_symlinks=True):
                    stat = item.stat()
                    found.append(Entry(item.name, stat.st_size, stat.st_mtime_ns))
        return found

    @asynccontextmanager
    async def snapshot(self, entry: Entry) -> AsyncIterator[Snapshot]:
        # The file itself: checksummed, then checked against the listing, so one growing
        # during the checksum is caught before a row of it is delivered.
        path = self.path / entry.name
        snap = Snapshot(path, sha256_of(path), (entry.size, entry.mtime_ns))
        if snap.changed():
            raise FileChanged(entry.name)
        yield snap

    async def stat(self, name: str) -> Entry | None:
        try:
            size, mtime_ns = stamp_of(self.path / name)
        except FileNotFoundError:
            return None
        return Entry(name, size, mtime_ns)

    def _archive_path(self, folder: str) -> Path:
        target = Path(folder)
        return target if target.is_absolute() else self.path / target

    async def check_archive(self, folder: str) -> None:
        target = self._archive_path(folder)
        if not target.is_dir():
            raise sdk.ConnectorConfigError(f"archive folder {target} does not exist")
        if not os.access(target, os.W_OK | os.X_OK):
            raise sdk.ConnectorConfigError(
                f"archive folder {target} cannot be written (permission denied)"
            )

    async def archive(self, name: str, folder: str) -> str:
        target = self._archive_path(folder)
        source = self.path / name
        for number in range(10_000):
            candidate = numbered(name, number) if number else name
            try:
                # A hard link never replaces an existing name; copying (another file system)
                # opens the target exclusively for the same reason.
                try:
                    os.link(source, target / candidate)
                except FileExistsError:
                    raise
                except OSError:
                    with source.open("rb") as old, (target / candidate).open("xb") as new:
                        while block := old.read(1 << 20):
                            new.write(block)
                        new.flush()
                        os.fsync(new.fileno())
            except FileExistsError:
                continue
            source.unlink()
            return candidate
        raise sdk.ConnectorError(f"archive folder {target} has 10,000 files named like {name}")

    async def publish(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._publish, name, data)

    def _publish(self, name: str, data: bytes) -> None:
        part = self.path / part_name(name)
        with part.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, self.path / name)
        directory = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

    async def close(self) -> None:
        pass
