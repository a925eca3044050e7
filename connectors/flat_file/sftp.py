"""A folder on an SFTP server (asyncssh), for districts that drop exports on, or pick files up
from, an SSH server.

The server's host key is always verified: against a SHA-256 fingerprint given in the options,
a known_hosts file, or the hub user's ``~/.ssh/known_hosts``. Authentication is by password or
private key from the vault, nothing else (no agent, no ``~/.ssh`` keys, no ``~/.ssh/config``),
so what `check` proves is what a run uses. Every failure is a precise ConnectorError that names
the server and never a secret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import asyncssh

from connectors.flat_file.transports import Entry, FileChanged, Snapshot, numbered, part_name
from hub import sdk

T = TypeVar("T")

#: Bytes asked for per read of a remote file (asyncssh splits it into parallel requests).
BLOCK = 1 << 22


class _HostKeyCheck(asyncssh.SSHClient):
    """Accepts the server's key only if its SHA-256 fingerprint is the expected one (asyncssh
    asks only about keys no known_hosts entry trusts); remembers what the server offered."""

    def __init__(self, fingerprint: str | None) -> None:
        self.fingerprint = fingerprint
        self.offered: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
        self.offered = key.get_fingerprint("sha256")
        return self.fingerprint is not None and self.offered == self.fingerprint


class SftpFolder:
    """A folder on an SFTP server, connected on first use and kept for the connector's life."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        folder: str,
        known_hosts: str | None,
        secrets: Mapping[str, str],
        timeout: float,
    ) -> None:
        self.host, self.port, self.username = host, port, username
        self.folder = PurePosixPath(folder)
        self.known_hosts = known_hosts
        self.secrets = secrets
        self.timeout = timeout
        self.connection: asyncssh.SSHClientConnection | None = None
        self.client: asyncssh.SFTPClient | None = None

    def describe(self) -> str:
        return f"folder {self.folder} on {self.username}@{self.host}:{self.port}"

    def _path(self, name: str, folder: PurePosixPath | None = None) -> str:
        return str((folder or self.folder) / name)

    async def _sftp(self) -> asyncssh.SFTPClient:
        if self.client is None:
            self.connection = await self._connect()
            try:
                self.client = await self.connection.start_sftp_client()
            except asyncssh.Error as error:
                raise sdk.ConnectorConfigError(
                    f"{self.host}:{self.port} offers no SFTP subsystem: {error.reason}"
                ) from None
        return self.client

    def _credentials(self) -> dict[str, Any]:
        password = self.secrets.get("password")
        private_key = self.secrets.get("private_key")
        if not password and not private_key:
            raise sdk.ConnectorConfigError(
                "sftp needs the secret password or private_key (none is set)"
            )
        keys = None
        if private_key:
            if not private_key.lstrip().startswith("-----BEGIN"):
                # `cohub secrets set` stores one line: the key file base64-encoded on one line.
                with contextlib.suppress(ValueError, UnicodeDecodeError):
                    private_key = base64.b64decode(private_key, validate=True).decode()
            try:
                keys = [
                    asyncssh.import_private_key(
                        private_key, self.secrets.get("private_key_passphrase") or None
                    )
                ]
            except (asyncssh.KeyImportError, ValueError):
                raise sdk.ConnectorConfigError(
                    "the secret private_key cannot be read: not an OpenSSH or PEM private key, "
                    "or its private_key_passphrase is missing or wrong"
                ) from None
        return {"password": password or None, "client_keys": keys}

    def _known_hosts(self) -> tuple[Any, str | None]:
        """(asyncssh's known_hosts argument, the fingerprint to accept besides it)."""
        if self.known_hosts is None:
            return (), None  # asyncssh reads ~/.ssh/known_hosts; an absent file trusts nothing
        if self.known_hosts.startswith("SHA256:"):
            return b"", self.known_hosts
        path = Path(self.known_hosts).expanduser()
        if not path.is_file():
            raise sdk.ConnectorConfigError(f"known_hosts file {path} does not exist")
        return str(path), None

    async def _connect(self) -> asyncssh.SSHClientConnection:
        known_hosts, fingerprint = self._known_hosts()
        check = _HostKeyCheck(fingerprint)
        where = f"{self.host}:{self.port}"
        try:
            return await asyncssh.connect(
                self.host,
                self.port,
                username=self.username,
                known_hosts=known_hosts,
                client_factory=lambda: check,
                agent_path=None,
                config=None,
                connect_timeout=self.timeout,
                **self._credentials(),
            )
        except asyncssh.HostKeyNotVerifiable:
            offered = f" (it offered {check.offered})" if check.offered else ""
            trusted = (
                f"the fingerprint {fingerprint}"
                if fingerprint
                else f"known_hosts ({self.known_hosts or '~/.ssh/known_hosts'})"
            )
            raise sdk.ConnectorConfigError(
                f"the host key of {where} is not the one {trusted} trusts{offered}: refusing "
                "to connect (if the server's key was changed on purpose, update known_hosts)"
            ) from None
        except asyncssh.PermissionDenied:
            method = "private key" if self.secrets.get("private_key") else "password"
            raise sdk.AuthError(
                f"{where} refused user {self.username!r} with the {method} given"
            ) from None
        except socket.gaierror as error:
            raise sdk.ConnectorConfigError(
                f"host {self.host!r} cannot be resolved: {error.strerror}"
            ) from None
        except ConnectionRefusedError:
            raise sdk.TransientError(
                f"{where} refused the connection: no SSH server listens on that port"
            ) from None
        except TimeoutError:
            raise sdk.TransientError(
                f"{where} did not answer within {self.timeout:g} s (connect_timeout)"
            ) from None
        except OSError as error:
            raise sdk.TransientError(
                f"{where} cannot be reached: {error.strerror or error}"
            ) from None
        except asyncssh.Error as error:
            raise sdk.ConnectorError(f"{where} closed the connection: {error.reason}") from None

    async def _call(self, what: str, call: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        """`call` on the SFTP client, its errors as ConnectorErrors naming `what`."""
        client = await self._sftp()
        try:
            return await call(client)
        except asyncssh.SFTPNoSuchFile:
            raise sdk.ConnectorConfigError(f"{what} does not exist on {self.host}") from None
        except asyncssh.SFTPPermissionDenied:
            raise sdk.ConnectorConfigError(
                f"{what} on {self.host}: permission denied for user {self.username!r}"
            ) from None
        except asyncssh.SFTPError as error:
            raise sdk.ConnectorError(f"{what} on {self.host}: {error.reason}") from None
        except (asyncssh.Error, ConnectionError) as error:
            raise sdk.TransientError(
                f"{self.host}:{self.port} lost the connection: {error}"
            ) from None

    async def check(self) -> None:
        await self._check_folder(self.folder, "folder")

    async def _check_folder(self, folder: PurePosixPath, what: str) -> None:
        attrs = await self._call(f"{what} {folder}", lambda sftp: sftp.stat(str(folder)))
        if attrs.permissions is not None and not stat.S_ISDIR(attrs.permissions):
            raise sdk.ConnectorConfigError(f"{what} {folder} on {self.host} is not a folder")
        await self._call(f"{what} {folder}", lambda sftp: sftp.readdir(str(folder)))

    async def entries(self) -> list[Entry]:
        names = await self._call(f"folder {self.folder}", lambda s: s.readdir(str(self.folder)))
        return [
            Entry(str(n.filename), n.attrs.size or 0, _mtime_ns(n.attrs))
            for n in names
            if n.attrs.permissions is not None and stat.S_ISREG(n.attrs.permissions)
        ]

    async def stat(self, name: str) -> Entry | None:
        async def stat_or_none(sftp: asyncssh.SFTPClient) -> asyncssh.SFTPAttrs | None:
            try:
                return await sftp.stat(self._path(name))
            except asyncssh.SFTPNoSuchFile:
                return None

        attrs = await self._call(f"file {name}", stat_or_none)
        return None if attrs is None else Entry(name, attrs.size or 0, _mtime_ns(attrs))

    @asynccontextmanager
    async def snapshot(self, entry: Entry) -> AsyncIterator[Snapshot]:
        # Downloaded whole, checksummed on the way, then the remote file is looked at again:
        # one that moved meanwhile is abandoned before a row of it is delivered.
        with tempfile.TemporaryDirectory(prefix="cohub-sftp-") as temporary:
            local = Path(temporary) / entry.name
            digest = hashlib.sha256()

            async def download(sftp: asyncssh.SFTPClient) -> None:
                async with sftp.open(self._path(entry.name), "rb") as remote:
                    with local.open("wb") as out:
                        while block := await remote.read(BLOCK):
                            digest.update(block)
                            out.write(block)

            await self._call(f"file {entry.name}", download)
            now = await self.stat(entry.name)
            if now != entry or local.stat().st_size != entry.size:
                raise FileChanged(entry.name)
            # The remote modification time stands in for a missing updated_at, as locally.
            os.utime(local, ns=(entry.mtime_ns, entry.mtime_ns))
            yield Snapshot(local, digest.hexdigest(), (entry.size, entry.mtime_ns))

    async def check_archive(self, folder: str) -> None:
        await self._check_folder(PurePosixPath(folder), "archive folder")

    async def archive(self, name: str, folder: str) -> str:
        target = PurePosixPath(folder)
        for number in range(10_000):
            candidate = numbered(name, number) if number else name
            destination = self._path(candidate, target)
            if await self._call("archive folder", lambda s, d=destination: s.exists(d)):
                continue
            try:
                # SFTP's own rename never replaces an existing file (OpenSSH links then
                # unlinks), so a name taken meanwhile fails here rather than being overwritten.
                await self._call(
                    f"moving {name} to {folder}",
                    lambda s, d=destination: s.rename(self._path(name), d),
                )
            except sdk.ConnectorError:
                if await self._call("archive folder", lambda s, d=destination: s.exists(d)):
                    continue
                raise
            return candidate
        raise sdk.ConnectorError(f"archive folder {folder} has 10,000 files named like {name}")

    async def publish(self, name: str, data: bytes) -> None:
        part = self._path(part_name(name))

        async def write(sftp: asyncssh.SFTPClient) -> None:
            async with sftp.open(part, "wb") as remote:
                await remote.write(data)
                await remote.fsync()  # fsync@openssh.com: on disk before it is renamed
            # posix-rename@openssh.com replaces an older copy (a retried batch) in one step.
            await sftp.posix_rename(part, self._path(name))

        await self._call(f"writing {name}", write)

    async def close(self) -> None:
        if self.client is not None:
            self.client.exit()
        if self.connection is not None:
            self.connection.close()
            await self.connection.wait_closed()
        self.client = self.connection = None


def _mtime_ns(attrs: asyncssh.SFTPAttrs) -> int:
    return (attrs.mtime or 0) * 1_000_000_000 + (attrs.mtime_ns or 0)
