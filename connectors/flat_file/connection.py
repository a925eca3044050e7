"""What the reading and the writing side of a flat-file connection share: its options, its
stream profiles and its folder (opened once per connector, on the chosen transport)."""

from __future__ import annotations

from connectors.flat_file.options import FlatFileOptions, StreamProfile
from connectors.flat_file.transports import Folder, LocalFolder
from hub import sdk


class FlatFileConnection(sdk.Connector[FlatFileOptions]):
    """The base of both sides: options, profiles, the folder."""

    options = FlatFileOptions
    secrets = ("password", "private_key", "private_key_passphrase")
    _opened: Folder | None = None

    def _profile(self, stream: str) -> StreamProfile:
        try:
            return self.config.streams[stream]
        except KeyError:
            raise sdk.ConnectorConfigError(
                f"no stream {stream!r}; this connection has {', '.join(self.config.streams)}"
            ) from None

    def _folder(self) -> Folder:
        """The connection's folder: local, or on the SFTP server (connected on first use)."""
        if self._opened is None:
            options = self.config
            if options.transport == "local":
                self._opened = LocalFolder(self.context.resolve_path(options.folder))
            else:
                if not options.host or not options.username:
                    raise sdk.ConnectorConfigError("transport sftp needs host and username")
                from connectors.flat_file.sftp import SftpFolder  # asyncssh only when used

                known_hosts = options.known_hosts
                if known_hosts and not known_hosts.startswith("SHA256:"):
                    known_hosts = str(self.context.resolve_path(known_hosts))
                self._opened = SftpFolder(
                    host=options.host,
                    port=options.port,
                    username=options.username,
                    folder=options.folder,
                    known_hosts=known_hosts,
                    secrets=self.secret_values,
                    timeout=options.connect_timeout,
                )
        return self._opened

    def _archive_folder(self) -> str | None:
        """Where finished files go: resolved like `folder` (locally against the configuration
        folder, on a server against the login folder)."""
        archive = self.config.archive_folder
        if archive and self.config.transport == "local":
            return str(self.context.resolve_path(archive))
        return archive

    async def close(self) -> None:
        if self._opened is not None:
            await self._opened.close()
            self._opened = None
