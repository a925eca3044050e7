"""A hub process's moving parts: the database engine, the plugin host and the vault."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.config import (
    ConfigError,
    HubConfig,
    Issues,
    PluginSettings,
    check_against_plugins,
    load_config,
    read_toml,
)
from hub.keyring import Keyring, attach
from hub.plugins import PluginHost
from hub.sdk import connector as connector_paths
from hub.store.database import create_engine, default_url
from hub.store.tables import vault_secrets
from hub.vault import MASTER_KEY_ENV, Vault, VaultResolver, load_keys, master_key_present

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

HOME_ENV = "COHUB_HOME"
CONFIG_ENV = "COHUB_CONFIG"


def home_dir() -> Path:
    """Where the embedded database and the master key live (``COHUB_HOME``, else ``./.cohub``)."""
    return Path(os.environ.get(HOME_ENV, ".cohub"))


def key_file(home: Path) -> Path:
    """The master key file under `home`."""
    return home / "master.key"


def plugin_settings(config_dir: Path) -> tuple[list[Path], list[str]]:
    """Plugin folders and disabled plugins from ``cooperative.toml`` (defaults if absent)."""
    path = config_dir / "cooperative.toml"
    settings = PluginSettings()
    if path.is_file():
        issues = Issues()
        data = read_toml(path, issues) or {}
        settings = (
            issues.convert(data.get("plugins", {}), PluginSettings, path, "plugins") or settings
        )
        if issues.issues:
            raise ConfigError(issues.issues)
    return [(config_dir / p).resolve() for p in settings.paths], settings.disabled


class Runtime:
    """Everything a command or the daemon needs to run routes."""

    def __init__(self, engine: AsyncEngine, plugins: PluginHost, home: Path) -> None:
        self.engine = engine
        self.plugins = plugins
        self.home = home
        self._vault_values: dict[str, str] | None = None
        self._vault_stamp: tuple[object, ...] | None = None
        self._master: tuple[object, MultiFernet] | None = None
        # Connection options may name paths under it as $COHUB_HOME/...
        connector_paths.hub_home[:] = [Path(home).resolve()]
        #: This process's member data keys; engine code finds it through the engine.
        self.keyring = Keyring(engine, self.master_keys)
        attach(engine, self.keyring)

    @classmethod
    def open(
        cls, config_dir: Path, database_url: str | None = None, home: Path | None = None
    ) -> Runtime:
        """Create the engine and load plugins as `config_dir` configures them."""
        home = home or home_dir()
        dirs, disabled = plugin_settings(config_dir)
        engine = create_engine(database_url or default_url(home))
        return cls(engine, PluginHost(dirs, disabled), home)

    def load_checked(self, directory: Path) -> HubConfig:
        """Load a configuration folder and check it against the loaded plugins."""
        config = load_config(directory)
        plugins = self.plugins
        check_against_plugins(config, plugins.connectors(), plugins.transforms(), plugins.meters())
        return config

    def master_keys(self) -> MultiFernet | None:
        """The master keys as ``COHUB_MASTER_KEY`` or the key file hold them now (None: no
        master key). The file is read again whenever it changed, so a process running during
        `cohub keys rotate` picks up the rotated file (new key first, old after)."""
        path = key_file(self.home)
        if not master_key_present(path):
            return None
        env = os.environ.get(MASTER_KEY_ENV)
        if env is not None:
            version: object = ("env", env)
        else:
            status = path.stat()
            version = ("file", status.st_mtime_ns, status.st_size, status.st_ino)
        if self._master is None or self._master[0] != version:
            self._master = (version, load_keys(path))
        return self._master[1]

    def vault(self) -> Vault:
        """The vault under the current master keys and this process's keyring; a VaultError if
        there is no master key."""
        keys = self.master_keys()
        if keys is None:
            keys = load_keys(key_file(self.home))  # raises the "no master key" VaultError
        return Vault(self.engine, keys, self.keyring)

    async def unlock_vault(self) -> None:
        """Make ``vault:`` secrets resolvable, if a master key is present; the key file is read
        again each time (see `master_keys`)."""
        if self.master_keys() is None:
            return
        self._vault_stamp = await self._vault_version()
        values = await self.vault().unlock()
        if self._vault_values is None:
            self._vault_values = values
            self.plugins.add_plugin(VaultResolver(values, self.vault), name="vault")
        else:  # unlocked before: refresh in place (secrets set by another process)
            self._vault_values.clear()
            self._vault_values.update(values)

    async def _vault_version(self) -> tuple[object, ...]:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(func.count(), func.max(vault_secrets.c.updated_at)))
            ).one()
        return tuple(row)

    async def unlock_vault_if_changed(self) -> None:
        """Unlock the vault again if another process changed its secrets since (a connection
        created through the API while this worker runs)."""
        if self._vault_values is None or await self._vault_version() != self._vault_stamp:
            await self.unlock_vault()

    async def store_secrets(
        self, values: dict[str, str | None], *, member: str | None = None, actor: str = "api"
    ) -> None:
        """Encrypt each value into the vault under its name (None: delete it), and make it
        resolvable in this process at once; a VaultError if there is no master key. A member's
        connection secret is sealed under the member's data key (`Vault.set_many`)."""
        await self.vault().set_many(values, member=member, actor=actor)
        if self._vault_values is None:
            await self.unlock_vault()
        else:
            for name, value in values.items():
                if value is None:
                    self._vault_values.pop(name, None)
                else:
                    self._vault_values[name] = value

    async def close(self) -> None:
        """Release the database pool and the worker's shared HTTP session."""
        http = sys.modules.get("hub.sdk.http")
        if http is not None:  # only if a connector used it
            await http.close_sessions()
        await self.engine.dispose()
