"""The plugin manager: loads plugins in isolation and offers typed access to what they provide.

Plugins come from four places: the hub's own built-ins, the ``cohub`` entry-point group
(installed distributions with hooks), the ``cohub.connectors`` group (a connector class per
entry, the bundled connectors among them) and plugin folders (``*.py`` files and packages).
Each is loaded on its own: one that fails to import, fails pluggy's validation or raises in a
hook is recorded as a `PluginFailure`, logged, and skipped; the hub keeps working.

A declared connector is imported only when something asks for it: a sync of one route does not
pay for the HTTP client, XML and EDI code of the fifteen connectors it does not use (0.25 s and
10 MiB of every command, measured).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import inspect
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import msgspec
import pluggy
import structlog

from hub import builtins, hookspecs
from hub.sdk.connector import Connector
from hub.sdk.extensions import Meter, Transform

log = structlog.get_logger("hub.plugins")

T = TypeVar("T")

ENTRY_POINT_GROUP = "cohub"

#: Entry points naming one connector class each (``name = "module:Class"``), imported on demand.
CONNECTOR_GROUP = "cohub.connectors"


class PluginFailure(msgspec.Struct, frozen=True):
    """A plugin that failed to load or raised in a hook."""

    plugin: str
    stage: str
    error: str


class PluginInfo(msgspec.Struct, kw_only=True):
    """One plugin as `cohub plugins` lists it."""

    name: str
    version: str
    source: str
    provides: list[str] = msgspec.field(default_factory=list)
    status: str = "loaded"
    error: str | None = None


class PluginHookError(Exception):
    """A plugin raised where the hub cannot skip it (a transform in a run)."""

    def __init__(self, plugin: str, hook: str, error: BaseException) -> None:
        super().__init__(f"plugin {plugin!r} failed in {hook}: {type(error).__name__}: {error}")
        self.plugin = plugin


def describe(error: BaseException) -> str:
    """An error as one line: type and message."""
    return f"{type(error).__name__}: {error}"


class PluginHost:
    """Owns the pluggy manager; the rest of the hub asks it for connectors, meters, transforms."""

    def __init__(
        self,
        plugin_dirs: Sequence[Path] = (),
        disabled: Iterable[str] = (),
        *,
        entry_points: bool = True,
    ) -> None:
        self.pm = pluggy.PluginManager("cohub")
        self.pm.add_hookspecs(hookspecs)
        self.disabled = set(disabled)
        self.infos: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self._connectors: dict[str, type[Connector]] = {}
        #: Connectors declared in `CONNECTOR_GROUP` and not imported yet.
        self._declared: dict[str, importlib.metadata.EntryPoint] = {}
        self._meters: dict[str, Meter] = {}
        self._transforms: dict[str, Transform] = {}
        self._owners: dict[tuple[str, str], str] = {}
        self._registries: dict[str, dict[str, Any]] = {
            "connector": self._connectors,
            "meter": self._meters,
            "transform": self._transforms,
        }
        self._load("builtin", "builtin", _version_of("cohub"), lambda: builtins)
        if entry_points:
            found = importlib.metadata.entry_points()  # one scan of the installed distributions
            described: dict[int, tuple[str, str]] = {}
            self._load_entry_points(found.select(group=ENTRY_POINT_GROUP), described)
            self._declare_connectors(found.select(group=CONNECTOR_GROUP), described)
        for folder in plugin_dirs:
            self._load_folder(Path(folder))
        self._check_pending()
        self._collect()

    # -- loading ---------------------------------------------------------------------------

    def report(self, plugin: str, stage: str, error: BaseException | str) -> None:
        """Record that `plugin` failed at `stage`; it is skipped, the hub goes on."""
        message = error if isinstance(error, str) else describe(error)
        self.failures.append(PluginFailure(plugin, stage, message))
        info = self.infos.get(plugin)
        if info is not None:
            info.status, info.error = "failed", message
        log.warning("plugin.failed", plugin=plugin, stage=stage, error=message)

    def _admit(self, name: str, source: str, version: str | None) -> PluginInfo | None:
        """The new plugin's entry, or None when its name is taken or it is disabled."""
        if name in self.infos:
            # Listed under its own entry, so the plugin already loaded keeps its status; the
            # newcomer is never imported.
            clash = f"a plugin named {name!r} is already loaded from {self.infos[name].source}"
            self.infos[f"{name} ({source})"] = PluginInfo(
                name=name, version=version or "-", source=source, status="failed", error=clash
            )
            self.failures.append(PluginFailure(name, "load", clash))
            log.warning("plugin.failed", plugin=name, stage="load", error=clash)
            return None
        info = self.infos[name] = PluginInfo(name=name, version=version or "-", source=source)
        if name in self.disabled:
            info.status = "disabled"
            self.pm.set_blocked(name)
            return None
        return info

    def _load(self, name: str, source: str, version: str | None, load: Callable[[], Any]) -> None:
        """Import and register one plugin, recording whatever goes wrong instead of raising."""
        info = self._admit(name, source, version)
        if info is None:
            return
        try:
            module = load()
        except Exception as error:
            self.report(name, "import", error)
            return
        if version is None:
            info.version = str(getattr(module, "__version__", "-"))
        try:
            self.pm.register(module, name=name)
        except Exception as error:  # pluggy validation: bad hook signature, firstresult misuse
            self.report(name, "register", error)

    def _load_entry_points(
        self, found: importlib.metadata.EntryPoints, described: dict[int, tuple[str, str]]
    ) -> None:
        for entry_point in found:
            self._load(entry_point.name, *_source_of(entry_point, described), entry_point.load)

    def _declare_connectors(
        self, found: importlib.metadata.EntryPoints, described: dict[int, tuple[str, str]]
    ) -> None:
        """Note each connector entry point as a plugin providing that connector, unimported."""
        for entry_point in found:
            name = entry_point.name
            info = self._admit(name, *_source_of(entry_point, described))
            if info is not None:
                info.provides.append(f"connector:{name}")
                self._declared[name] = entry_point
                self._owners[("connector", name)] = name

    def _import_connector(self, name: str) -> None:
        """Import a declared connector; a failure is reported as its plugin's and it is gone."""
        entry_point = self._declared.pop(name)
        try:
            cls = entry_point.load()
            if _check_connector(cls) != name:
                raise TypeError(f"{entry_point.value} is connector {cls.name!r}, not {name!r}")
        except Exception as error:
            self.report(name, "import", error)
            self.infos[name].provides.clear()
            del self._owners[("connector", name)]
            return
        self._connectors[name] = cls

    def _load_folder(self, folder: Path) -> None:
        if not folder.is_dir():
            return
        candidates = sorted(folder.glob("*.py")) + sorted(
            p / "__init__.py" for p in folder.iterdir() if (p / "__init__.py").is_file()
        )
        for path in candidates:
            name = path.parent.name if path.name == "__init__.py" else path.stem
            if not name.startswith("_"):
                self._load(name, f"folder {path}", None, partial(_import_file, name, path))

    def _check_pending(self) -> None:
        """A misspelled ``cohub_`` hook is an error naming the plugin, not silence."""
        for hook_name in dir(self.pm.hook):
            caller = getattr(self.pm.hook, hook_name)
            if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.opts.get("optionalhook"):
                    continue
                self.report(
                    impl.plugin_name, "register", f"unknown hook {hook_name!r} (misspelled?)"
                )
                self.pm.unregister(name=impl.plugin_name)

    # -- registration hooks ----------------------------------------------------------------

    def _collect(self) -> None:
        self._register_each("cohub_register_connectors", _check_connector, "connector")
        self._register_each("cohub_register_meters", _check_meter, "meter")
        self._register_each("cohub_register_transforms", _check_transform, "transform")

    def _register_each(self, hook: str, check: Callable[[Any], str], kind: str) -> None:
        into = self._registries[kind]
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            plugin = impl.plugin_name

            def register(item: Any, plugin: str = plugin) -> None:
                name = check(item)
                if (kind, name) in self._owners:
                    raise ValueError(
                        f"{kind} {name!r} is already provided by {self._owners[(kind, name)]}"
                    )
                into[name] = item
                self._owners[(kind, name)] = plugin
                self.infos[plugin].provides.append(f"{kind}:{name}")

            try:
                result = impl.function(*(register for _ in impl.argnames))
                if inspect.isawaitable(result):
                    getattr(result, "close", lambda: None)()
                    raise TypeError(f"{hook} must be a plain function, not async")
            except Exception as error:
                self.report(plugin, hook, error)
                self._drop(plugin)

    def _drop(self, plugin: str) -> None:
        """Skip a plugin that failed to register: none of its hooks or registrations remain."""
        for (kind, name), owner in list(self._owners.items()):
            if owner == plugin:
                del self._owners[(kind, name)]
                self._registries[kind].pop(name)
        self.infos[plugin].provides.clear()
        if self.pm.get_plugin(plugin) is not None:
            self.pm.unregister(name=plugin)

    # -- typed access ----------------------------------------------------------------------

    def connectors(self) -> Mapping[str, type[Connector]]:
        """Every connector by name; a declared one is imported when it is looked up."""
        return _Connectors(self)

    def connector(self, name: str) -> type[Connector]:
        """The connector called `name`; KeyError names the known ones, or why it failed."""
        if name in self._declared:
            self._import_connector(name)
        try:
            return self._connectors[name]
        except KeyError:
            info = self.infos.get(name)
            if info is not None and info.status == "failed" and info.error:
                raise KeyError(f"connector {name!r} failed to load: {info.error}") from None
            known = ", ".join(self.connector_names()) or "none loaded"
            raise KeyError(f"no connector {name!r} (known: {known})") from None

    def import_connectors(self) -> None:
        """Import every declared connector (a listing shows what works, not what is declared)."""
        for name in list(self._declared):
            self._import_connector(name)

    def connector_names(self) -> list[str]:
        """The names of every connector, imported or not, sorted."""
        return sorted({*self._connectors, *self._declared})

    def meters(self) -> dict[str, Meter]:
        """Every declared meter by name."""
        return dict(self._meters)

    def transforms(self) -> dict[str, Transform]:
        """Every registered transform by name."""
        return dict(self._transforms)

    def owner(self, kind: str, name: str) -> str:
        """The plugin that registered `kind` `name` (for error messages)."""
        return self._owners.get((kind, name), "?")

    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen, loaded, disabled or failed (declared connectors are imported, so
        the list says which of them work)."""
        self.import_connectors()
        return sorted(self.infos.values(), key=lambda i: (i.source != "builtin", i.name))

    def add_plugin(self, plugin: object, name: str) -> None:
        """Register an object the hub builds at run time (the vault's secret resolver)."""
        self.pm.register(plugin, name=name)

    # -- calling hooks ---------------------------------------------------------------------

    def resolve_secret(self, scheme: str, name: str, connection: str) -> str | None:
        """Ask resolvers for ``scheme:name`` in pluggy's order; the first non-None answer wins."""
        for impl in self.pm.hook.cohub_resolve_secret.get_hookimpls()[::-1]:
            arguments = {"scheme": scheme, "name": name, "connection": connection}
            try:
                value = impl.function(*(arguments[arg] for arg in impl.argnames))
                if inspect.isawaitable(value):
                    getattr(value, "close", lambda: None)()
                    raise TypeError("cohub_resolve_secret must be a plain function, not async")
            except Exception as error:
                self.report(impl.plugin_name, "cohub_resolve_secret", error)
                continue
            if value is not None:
                return value
        return None

    async def notify(self, hook: str, *, timeout: float | None = None, **kwargs: Any) -> None:
        """Call a lifecycle hook in every plugin; one that raises, or whose awaitable takes
        longer than `timeout` seconds, is reported and skipped."""
        for impl in getattr(self.pm.hook, hook).get_hookimpls()[::-1]:
            try:
                result = impl.function(*(kwargs[arg] for arg in impl.argnames))
                if inspect.isawaitable(result):
                    await within(result, timeout)
            except TookTooLong as error:
                self.report(impl.plugin_name, hook, f"TimeoutError: {error}")
            except Exception as error:
                self.report(impl.plugin_name, hook, error)


class _Connectors(Mapping[str, type[Connector]]):
    """The host's connectors as a mapping that imports a declared one when it is looked up."""

    def __init__(self, host: PluginHost) -> None:
        self._host = host

    def __getitem__(self, name: str) -> type[Connector]:
        return self._host.connector(name)  # KeyError says why: unknown, or failed to import

    def __contains__(self, name: object) -> bool:  # without importing it
        return name in self._host.connector_names()

    def __iter__(self) -> Iterator[str]:  # every one that imports
        self._host.import_connectors()
        return iter(self._host.connector_names())

    def __len__(self) -> int:
        self._host.import_connectors()
        return len(self._host.connector_names())


class TookTooLong(TimeoutError):
    """A plugin's awaitable ran past its time limit."""


async def within(awaitable: Awaitable[T], seconds: float | None) -> T:
    """Await `awaitable` for at most `seconds`, else raise TookTooLong. Unlike asyncio.wait_for
    before Python 3.12, a cancellation of the caller that arrives as the awaitable finishes is
    never swallowed (a swallowed one once left a run's reader blocked forever)."""
    try:
        async with asyncio.timeout(seconds) as limit:
            return await awaitable
    except TimeoutError:
        if limit.expired():
            raise TookTooLong(f"took longer than {seconds:g} s") from None
        raise


def _import_file(name: str, path: Path) -> ModuleType:
    module_name = f"cohub_site_plugin_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _source_of(
    entry_point: importlib.metadata.EntryPoint, described: dict[int, tuple[str, str]]
) -> tuple[str, str]:
    """Where an entry-point plugin comes from, as listed, and its distribution's version.
    `described` keeps each distribution's name and version by the identity of the object its
    entry points share: every read of either parses the distribution's METADATA file again."""
    dist = entry_point.dist
    if dist is None:
        return f"entry point {entry_point.value}", "-"
    if id(dist) not in described:
        metadata = dist.metadata
        described[id(dist)] = (metadata["Name"], metadata["Version"])
    name, version = described[id(dist)]
    return f"entry point {entry_point.value} ({name})", version


def _version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _check_connector(item: Any) -> str:
    if not (isinstance(item, type) and issubclass(item, Connector)):
        raise TypeError(f"register() takes a Connector subclass, got {item!r}")
    if not getattr(item, "name", ""):
        raise TypeError(f"connector {item.__qualname__} has no name")
    return item.name


def _check_meter(item: Any) -> str:
    if not isinstance(item, Meter):
        raise TypeError(f"register() takes a Meter, got {item!r}")
    return item.name


def _check_transform(item: Any) -> str:
    if not isinstance(item, Transform):
        raise TypeError(f"register() takes a Transform, got {item!r}")
    return item.name
