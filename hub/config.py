"""Configuration files → validated objects.

A cooperative's configuration is a folder of TOML files: ``cooperative.toml`` (the cooperative,
its members, services and plugin settings), ``connections/*.toml`` (one file per connection,
named after the file) and ``routes.toml``. Loading is strict: an unknown key, a wrong type, a
dangling reference or a secret written as a value is a `ConfigIssue` naming the file, the key path
and the reason, and nothing is applied while any issue stands.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from hub.billing.periods import FiscalCalendar, PeriodError
from hub.billing.plans import BillingPlans, plan_problems
from hub.contracts import CatalogError, load_catalog
from hub.schedule import schedule_problems

CODE = r"^[a-z0-9][a-z0-9_-]*$"
SECRET_REFERENCE = re.compile(r"^(?P<scheme>env|vault):(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)$")


class Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A configuration table: unknown keys are errors."""


class Cooperative(Strict):
    """The agency that runs the hub."""

    code: str
    name: str
    timezone: str = "America/New_York"
    fiscal_year_start: str = msgspec.field(default="07-01")


class Member(Strict):
    """A member district or institution, keyed by its stable code."""

    name: str
    nces_id: str | None = None
    state_code: str | None = None
    enrollment: int | None = None
    employees: int | None = None


class Service(Strict):
    """A shared service the cooperative offers members, billed by its meters."""

    name: str
    description: str = ""
    coser: str | None = None
    #: Meters measured for this service's routes besides the hub's own (records_synced,
    #: api_calls, run_minutes); None measures every registered meter.
    meters: list[str] | None = None


class PluginSettings(Strict):
    """Where site plugins live and which plugins not to load."""

    paths: list[str] = msgspec.field(default_factory=lambda: ["plugins"])
    disabled: list[str] = msgspec.field(default_factory=list)


class Connection(Strict):
    """A configured connector: connector + member + options + secret references."""

    connector: str
    member: str | None = None
    description: str = ""
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    secrets: dict[str, str] = msgspec.field(default_factory=dict)
    enabled: bool = True


class Schedule(Strict):
    """When a route runs unattended (`cohub run`): a cron expression or an interval."""

    #: Five-field crontab (minute hour day month weekday), e.g. ``0 2 * * *``.
    cron: str | None = None
    #: An interval such as ``15m`` or ``1h30m``, counted from 2000-01-01 00:00 in `timezone`.
    every: str | None = None
    #: The zone the cron fields and maintenance windows are read in; default: the cooperative's.
    timezone: str | None = None
    #: Up to this many seconds of delay after each fire time, spread by route and slot.
    jitter_seconds: int = 0
    #: A slot that could not start within this many seconds of its time is skipped.
    misfire_grace_seconds: int = 300
    #: Missed slots run once (the latest), not once each.
    coalesce: bool = True
    #: Windows in which the route does not start: ``01:00-02:00``, ``Sat 22:00-Sun 04:00``.
    maintenance: list[str] = msgspec.field(default_factory=list)


class Restart(Strict):
    """What the daemon does after a route's run fails."""

    #: Retries after a failed run, before waiting for the next scheduled slot.
    attempts: int = 3
    #: Delay before the first retry, doubled for each further one up to `max_backoff_seconds`.
    backoff_seconds: int = 60
    max_backoff_seconds: int = 3600
    #: Consecutive failures that raise an alert (the ``cohub_route_alert`` hook and a log event).
    alert_after: int = 3


class WorkerSettings(Strict):
    """How a `cohub run` worker runs routes (``[worker]`` in cooperative.toml)."""

    #: Runs at once in one worker.
    max_runs: int = 16
    #: Runs at once, in one worker, that use the same connection (as source or destination).
    max_runs_per_connection: int = 4
    #: Runs at once, in one worker, against one vendor system (connector and host).
    max_runs_per_system: int = 8
    #: Seconds a claim lasts without a heartbeat; another worker takes a run over after that.
    lease_seconds: float = 30.0
    #: Seconds between heartbeats (must be well under the lease).
    heartbeat_seconds: float = 10.0
    #: Seconds between looks at the database for changed routes and runs to take over.
    poll_seconds: float = 5.0
    #: Seconds SIGTERM waits for running batches to commit before cancelling them.
    shutdown_grace_seconds: float = 30.0
    #: Port of /healthz and /readyz on 127.0.0.1 (0: none); `cohub run --health` overrides.
    health_port: int = 0
    health_host: str = "127.0.0.1"


class StreamRetention(Strict):
    """How long one stream's copies stay in the hub (``[retention.streams.NAME]``); a key left
    out follows ``[retention]``."""

    dead_letters_days: int | None = None
    resolved_dead_letters_days: int | None = None
    runs_days: int | None = None
    state_changes_days: int | None = None
    inbox_days: int | None = None


class Retention(Strict):
    """How long the hub keeps copies of district records and their history (``[retention]``
    in cooperative.toml), applied by `cohub data purge`. None keeps them for good."""

    #: Days an open dead letter is kept after it was created.
    dead_letters_days: int | None = None
    #: Days a replayed or discarded dead letter is kept after it was resolved (0: until the
    #: next purge).
    resolved_dead_letters_days: int = 0
    #: Days a finished run keeps its state snapshots (state before and after).
    runs_days: int | None = None
    #: Days a manual state change (`cohub state set|reset`) is kept.
    state_changes_days: int | None = None
    #: Days a pushed request stays in the inbox when no run delivers it (its inbound route
    #: disabled or failing); delivered ones go on their own after a day.
    inbox_days: int | None = None
    #: Overrides per stream name (the stream dead letters and routes name).
    streams: dict[str, StreamRetention] = msgspec.field(default_factory=dict)


def retention_problems(retention: Retention) -> list[tuple[str, str]]:
    """(key, reason) for retention periods that are negative."""
    problems = []
    tables = [("", retention)] + [(f"streams.{n}.", s) for n, s in retention.streams.items()]
    for prefix, table in tables:
        for field in msgspec.structs.fields(table):
            value = getattr(table, field.name)
            if isinstance(value, int) and value < 0:
                problems.append((f"{prefix}{field.name}", "must not be negative"))
    return problems


class Route(Strict):
    """(source connection, stream) → (destination connection, stream), metered to a service."""

    source: str
    source_stream: str
    destination: str
    destination_stream: str
    service: str
    transforms: list[str] = msgspec.field(default_factory=list)
    batch_size: int = msgspec.field(default=5000)
    #: incremental (resume from the cursor), full_refresh (read everything each run), or
    #: full_refresh_deletes (also mark records missing from a complete read deleted).
    mode: Literal["incremental", "full_refresh", "full_refresh_deletes"] = "incremental"
    #: Seconds an incremental cursor reaches back for late updates (cursor-based connectors).
    lookback_seconds: int = 0
    #: Seconds one connector or hook call may take before the run fails naming the plugin.
    call_timeout_seconds: float = 300.0
    #: Parts of the source's read to run side by side, each in a process of its own, for
    #: sources that can split their read (`flat_file`: large files); 1 reads serially.
    parallel_reads: int = 1
    #: When `cohub run` starts the route; none: only `cohub sync` runs it.
    schedule: Schedule | None = None
    restart: Restart = msgspec.field(default_factory=Restart)
    #: Seconds without a committed batch after which the watchdog fails the run.
    stall_seconds: float = 900.0
    enabled: bool = True
    #: The source's records are pushed to ``/inbound/<source>`` (webhooks) and kept in the
    #: inbox; a run reads the inbox after its checkpoint instead of polling the source.
    inbound: bool = False


class HubConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A whole, validated configuration folder."""

    directory: str
    cooperative: Cooperative
    members: dict[str, Member]
    services: dict[str, Service]
    plugins: PluginSettings
    connections: dict[str, Connection]
    routes: dict[str, Route]
    billing: BillingPlans = msgspec.field(default_factory=BillingPlans)
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    retention: Retention = msgspec.field(default_factory=Retention)

    def plugin_dirs(self) -> list[Path]:
        """Plugin folders, relative ones resolved against the configuration folder."""
        return [Path(self.directory, p).resolve() for p in self.plugins.paths]

    def route_member(self, route: str) -> str | None:
        """The member a route serves: the member of its source connection."""
        return self.connections[self.routes[route].source].member


class ConfigIssue(msgspec.Struct, frozen=True):
    """One thing wrong in a configuration file."""

    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key or '(file)'}: {self.reason}"


class ConfigError(Exception):
    """Configuration that must not be applied, with every issue found."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


T = TypeVar("T")

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD = re.compile(r"(unknown|required) field `(?P<field>[^`]+)`")


def _key_path(prefix: str, message: str, data: Any) -> tuple[str, str]:
    """Turn a msgspec message about `data` into (key path, reason).

    msgspec writes a dict key as ``[...]``; the key is recovered from `data` where exactly one
    entry fits the rest of the path.
    """
    path = ""
    match = _AT.search(message)
    if match:
        path = match["path"]
        message = message[: match.start()]
    marked = path.replace("[...]", f".{_ANY_KEY}").replace("[", ".").replace("]", "")
    segments = [p for p in marked.split(".") if p]
    field = _FIELD.search(message)
    leaf = field["field"] if field else None
    names = _locate(data, segments, leaf, missing=bool(field and field.group(1) == "required"))
    if leaf:
        names.append(leaf)
    return ".".join(p for p in (prefix, *names) if p), message


_ABSENT = object()
_ANY_KEY = "\x00"


def _walk(node: Any, segments: list[str]) -> Any:
    for segment in segments:
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return _ABSENT
    return node


def _locate(data: Any, segments: list[str], leaf: str | None, *, missing: bool) -> list[str]:
    names: list[str] = []
    node = data
    for index, segment in enumerate(segments):
        if segment != _ANY_KEY:
            names.append(segment)
            node = _walk(node, [segment])
            continue
        rest = segments[index + 1 :]

        def fits(value: Any, rest: list[str] = rest) -> bool:
            target = _walk(value, rest)
            if leaf is None:
                return target is not _ABSENT
            return isinstance(target, dict) and ((leaf in target) != missing)

        candidates = [k for k, v in node.items() if fits(v)] if isinstance(node, dict) else []
        key = candidates[0] if len(candidates) == 1 else "*"
        names.append(key)
        node = node[key] if key != "*" else _ABSENT
    return names


def worker_problems(worker: WorkerSettings) -> list[tuple[str, str]]:
    """(key, reason) for worker settings no worker can run with."""
    problems = [
        (key, "must be at least 1")
        for key in ("max_runs", "max_runs_per_connection", "max_runs_per_system")
        if getattr(worker, key) < 1
    ]
    for key in ("lease_seconds", "heartbeat_seconds", "poll_seconds"):
        if getattr(worker, key) <= 0:
            problems.append((key, "must be more than 0"))
    if worker.shutdown_grace_seconds < 0:
        problems.append(("shutdown_grace_seconds", "must not be negative"))
    if 0 < worker.lease_seconds < 2 * worker.heartbeat_seconds:
        problems.append(
            (
                "heartbeat_seconds",
                "must be at most half of lease_seconds, or a busy moment loses the lease",
            )
        )
    if not 0 <= worker.health_port <= 65535:
        problems.append(("health_port", "must be a port number (0: no health server)"))
    return problems


def restart_problems(restart: Restart) -> list[tuple[str, str]]:
    """(key, reason) for a restart policy that cannot be followed."""
    problems = []
    if restart.attempts < 0:
        problems.append(("attempts", "must not be negative"))
    for key in ("backoff_seconds", "max_backoff_seconds", "alert_after"):
        if getattr(restart, key) < 1:
            problems.append((key, "must be at least 1"))
    return problems


def _check_calendar(cooperative: Cooperative, file: Path, issues: Issues) -> None:
    """The time zone and fiscal year start must be ones billing periods can be computed in."""
    for key, timezone, start in (
        ("timezone", cooperative.timezone, "07-01"),
        ("fiscal_year_start", "UTC", cooperative.fiscal_year_start),
    ):
        try:
            FiscalCalendar(timezone, start)
        except PeriodError as error:
            issues.add(file, f"cooperative.{key}", str(error))


class Issues:
    """Gathers issues so one pass reports every mistake, not only the first."""

    def __init__(self) -> None:
        self.issues: list[ConfigIssue] = []

    def add(self, file: Path | str, key: str, reason: str) -> None:
        self.issues.append(ConfigIssue(str(file), key, reason))

    def convert(self, value: Any, kind: type[T], file: Path, prefix: str) -> T | None:
        try:
            return msgspec.convert(value, kind)
        except msgspec.ValidationError as error:
            key, reason = _key_path(prefix, str(error), value)
            self.add(file, key, reason)
            return None

    def table(self, data: Mapping[str, Any], key: str, kind: type[T], file: Path) -> dict[str, T]:
        """Convert ``[key.NAME]`` tables one by one so errors carry their NAME."""
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.add(file, key, f"must be a table of named {key}")
            return {}
        out: dict[str, T] = {}
        for name, body in value.items():
            if not re.match(CODE, name):
                self.add(file, f"{key}.{name}", "name must be lower-case letters, digits, - or _")
                continue
            converted = self.convert(body, kind, file, f"{key}.{name}")
            if converted is not None:
                out[name] = converted
        return out


def _names(data: Mapping[str, Any], key: str) -> list[str]:
    value = data.get(key, {})
    return list(value) if isinstance(value, dict) else []


def read_toml(path: Path, issues: Issues) -> dict[str, Any] | None:
    """Parse one TOML file; a syntax error becomes an issue with the line and column."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
        for key, reason in _unrepresentable(data, ""):
            issues.add(path, key, reason)
        return data
    except tomllib.TOMLDecodeError as error:
        issues.add(path, "", f"not valid TOML: {error}")
    except UnicodeDecodeError as error:
        issues.add(path, "", f"not UTF-8 text: byte {error.start} cannot be decoded")
    except RecursionError:
        issues.add(path, "", "nested too deeply to read")
    except OSError as error:
        issues.add(path, "", f"cannot be read: {error.strerror}")
    return None


#: The largest integer a setting may hold: the store keeps them in 32-bit columns.
MAX_INTEGER = 2**31 - 1


def _unrepresentable(node: Any, prefix: str) -> Iterator[tuple[str, str]]:
    """Values TOML allows but no setting means: NaN or infinite floats (every comparison with
    NaN is false, so a range check would pass it) and integers beyond the store's 32-bit
    columns (amounts are quoted decimals, never integers this large)."""
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, float) and not math.isfinite(value):
            yield path, "must be a finite number"
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
            yield path, f"is too large (at most {MAX_INTEGER:,})"
        else:
            yield from _unrepresentable(value, path)


def load_config(directory: str | Path) -> HubConfig:
    """Load and validate a configuration folder; raise ConfigError listing every issue."""
    root = Path(directory)
    issues = Issues()
    if not root.is_dir():
        raise ConfigError([ConfigIssue(str(root), "", "is not a configuration folder")])
    coop_file = root / "cooperative.toml"
    coop = read_toml(coop_file, issues) or {}
    for unknown in sorted(
        set(coop) - {"cooperative", "members", "services", "plugins", "worker", "retention"}
    ):
        issues.add(coop_file, unknown, "unknown key")
    cooperative = None
    if "cooperative" in coop:
        cooperative = issues.convert(coop["cooperative"], Cooperative, coop_file, "cooperative")
        if cooperative is not None:
            _check_calendar(cooperative, coop_file, issues)
    elif coop_file.exists():
        issues.add(coop_file, "cooperative", "missing required table")
    members = issues.table(coop, "members", Member, coop_file)
    services = issues.table(coop, "services", Service, coop_file)
    plugins = issues.convert(coop.get("plugins", {}), PluginSettings, coop_file, "plugins")
    worker = issues.convert(coop.get("worker", {}), WorkerSettings, coop_file, "worker")
    if worker is not None:
        for key, reason in worker_problems(worker):
            issues.add(coop_file, f"worker.{key}", reason)
    retention = issues.convert(coop.get("retention", {}), Retention, coop_file, "retention")
    for key, reason in retention_problems(retention or Retention()):
        issues.add(coop_file, f"retention.{key}", reason)

    # Names declared, even where their body has an issue: a reference to them is not dangling.
    member_names = set(_names(coop, "members"))
    service_names = set(_names(coop, "services"))
    connections: dict[str, Connection] = {}
    connection_files: dict[str, Path] = {}
    for path in sorted((root / "connections").glob("*.toml")):
        name = path.stem
        if not re.match(CODE, name):
            issues.add(path, "", "connection file names must be lower-case letters, digits, - or _")
            continue
        data = read_toml(path, issues)
        if data is None:
            continue
        connection_files[name] = path
        connection = issues.convert(data, Connection, path, "")
        if connection is not None:
            connections[name] = connection

    routes_file = root / "routes.toml"
    routes_data = (read_toml(routes_file, issues) or {}) if routes_file.exists() else {}
    for unknown in sorted(set(routes_data) - {"routes"}):
        issues.add(routes_file, unknown, "unknown key")
    routes = issues.table(routes_data, "routes", Route, routes_file)

    for name, connection in connections.items():
        path = connection_files[name]
        if connection.member is not None and connection.member not in member_names:
            issues.add(path, "member", f"no member {connection.member!r} in {coop_file.name}")
        for secret, reference in connection.secrets.items():
            if not SECRET_REFERENCE.match(reference):
                issues.add(
                    path,
                    f"secrets.{secret}",
                    "must be a reference like env:NAME or vault:NAME, never the secret itself",
                )
    for name, route in routes.items():
        key = f"routes.{name}"
        for end in ("source", "destination"):
            target = getattr(route, end)
            if target not in connection_files:
                issues.add(routes_file, f"{key}.{end}", f"no connection {target!r} in connections/")
        if route.service not in service_names:
            issues.add(
                routes_file, f"{key}.service", f"no service {route.service!r} in {coop_file.name}"
            )
        zone = cooperative.timezone if cooperative is not None else "UTC"
        for problem, reason in route_problems(route, zone):
            issues.add(routes_file, f"{key}.{problem}", reason)

    # A stream no route carries is a typo, or its overrides would never apply (unless
    # routes.toml could not be read at all: that issue is reported already).
    declared = routes_data.get("routes", {})
    streams = {
        body.get(end)
        for body in (declared.values() if isinstance(declared, dict) else ())
        if isinstance(body, dict)
        for end in ("source_stream", "destination_stream")
    }
    routes_unread = any(issue.file == str(routes_file) and not issue.key for issue in issues.issues)
    for stream in sorted(set((retention or Retention()).streams) - streams):
        if routes_unread:
            break
        issues.add(coop_file, f"retention.streams.{stream}", "no route reads or writes this stream")

    billing_file = root / "billing.toml"
    billing: BillingPlans | None = BillingPlans()
    if billing_file.exists():
        billing = issues.convert(
            read_toml(billing_file, issues) or {}, BillingPlans, billing_file, ""
        )
        for key, reason in plan_problems(billing or BillingPlans(), member_names, service_names):
            issues.add(billing_file, key, reason)
    try:
        load_catalog(root)
    except CatalogError as error:
        for file, key, reason in error.problems:
            issues.add(file, key, reason)

    if issues.issues or None in (cooperative, plugins, billing, worker, retention):
        raise ConfigError(issues.issues)
    return HubConfig(
        directory=str(root.resolve()),
        cooperative=cooperative,
        members=members,
        services=services,
        plugins=plugins,
        connections=connections,
        routes=routes,
        billing=billing,
        worker=worker,
        retention=retention,
    )


def route_problems(route: Route, zone: str) -> list[tuple[str, str]]:
    """(key, reason) for each value of `route` out of range; `zone` is the cooperative's."""
    problems = []
    if route.batch_size < 1:
        problems.append(("batch_size", "must be at least 1"))
    if route.lookback_seconds < 0:
        problems.append(("lookback_seconds", "must not be negative"))
    if route.call_timeout_seconds <= 0:
        problems.append(("call_timeout_seconds", "must be more than 0"))
    if route.parallel_reads < 1:
        problems.append(("parallel_reads", "must be at least 1"))
    if route.stall_seconds <= 0:
        problems.append(("stall_seconds", "must be more than 0"))
    if route.inbound and route.mode != "incremental":
        problems.append(("mode", "an inbound route reads its inbox incrementally"))
    if route.inbound and route.parallel_reads != 1:
        problems.append(("parallel_reads", "an inbound route reads its inbox serially (1)"))
    if route.schedule is not None:
        problems += [
            (f"schedule.{key}", reason) for key, reason in schedule_problems(route.schedule, zone)
        ]
    problems += [(f"restart.{key}", reason) for key, reason in restart_problems(route.restart)]
    return problems


#: The secret the hub verifies signed pushes with, for connectors with ``inbound_auth = "hmac"``.
WEBHOOK_SECRET = "webhook_secret"


def takes_pushes(connector: Any) -> bool:
    """Whether a connector class implements `receive` (accepts pushed requests)."""
    from hub.sdk.connector import Connector

    return getattr(connector, "receive", Connector.receive) is not Connector.receive


def hub_verifies(connector: Any) -> bool:
    """Whether the hub verifies pushes to this connector class with its own signature scheme."""
    return takes_pushes(connector) and connector.inbound_auth == "hmac"


def inbound_problems(secrets: Mapping[str, str] | None, connector: Any) -> list[tuple[str, str]]:
    """(key, reason) for why a route's ``inbound = true`` cannot work with its source connection
    (its secret references `secrets`, its connector class `connector`): key ``inbound`` for the
    route, ``secrets.webhook_secret`` for the connection."""
    if connector is None or secrets is None:
        return []  # reported as an unknown connection or connector already
    if not takes_pushes(connector):
        return [("inbound", f"connector {connector.name!r} takes no pushed requests")]
    if hub_verifies(connector) and WEBHOOK_SECRET not in secrets:
        return [
            (
                f"secrets.{WEBHOOK_SECRET}",
                "required: pushes to this connection are signed with it (an inbound route "
                "reads it)",
            )
        ]
    return []


def connection_problems(
    connection: Connection, connectors: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """(key, reason) for what the loaded connectors say is wrong with `connection`: an unknown
    connector, options its schema refuses, secrets it does not take."""
    try:
        connector = connectors[connection.connector]
    except KeyError as error:
        if error.args and error.args[0] != connection.connector:  # the plugin host says why
            return [("connector", str(error.args[0]))]
        known = ", ".join(sorted(connectors)) or "none loaded"
        return [("connector", f"no connector {connection.connector!r} (known: {known})")]
    problems = []
    try:
        connector.parse_options(connection.options)
    except msgspec.ValidationError as error:
        problems.append(_key_path("options", str(error), connection.options))
    accepted = (
        (*connector.secrets, WEBHOOK_SECRET) if hub_verifies(connector) else connector.secrets
    )
    for secret in connection.secrets:
        if secret not in accepted:
            declared = ", ".join(accepted) or "none"
            problems.append(
                (
                    f"secrets.{secret}",
                    f"{connection.connector} takes no secret {secret!r} (it takes: {declared})",
                )
            )
    return problems


def check_against_plugins(
    config: HubConfig,
    connectors: Mapping[str, Any],
    transforms: Iterable[str],
    meters: Iterable[str],
) -> None:
    """Check what only the loaded plugins know: connectors, their options and secrets, and
    transform and meter names. Raise ConfigError listing every issue."""
    issues = Issues()
    root = Path(config.directory)
    known_transforms = set(transforms)
    known_meters = set(meters)
    unsigned: set[str] = set()  # connections already told they lack a webhook secret
    for name, service in config.services.items():
        for index, meter in enumerate(service.meters or ()):
            if meter not in known_meters:
                issues.add(
                    root / "cooperative.toml",
                    f"services.{name}.meters.{index}",
                    f"no meter {meter!r} is registered",
                )
    for name, connection in config.connections.items():
        path = root / "connections" / f"{name}.toml"
        for key, reason in connection_problems(connection, connectors):
            issues.add(path, key, reason)
    for name, route in config.routes.items():
        if route.inbound:
            source = config.connections.get(route.source)
            connector = connectors.get(source.connector) if source is not None else None
            secrets = source.secrets if source is not None else None
            for key, reason in inbound_problems(secrets, connector):
                if key == "inbound":
                    issues.add(root / "routes.toml", f"routes.{name}.inbound", reason)
                elif route.source not in unsigned:
                    unsigned.add(route.source)
                    issues.add(root / "connections" / f"{route.source}.toml", key, reason)
        for index, transform in enumerate(route.transforms):
            if transform not in known_transforms:
                issues.add(
                    root / "routes.toml",
                    f"routes.{name}.transforms.{index}",
                    f"no transform {transform!r} is registered",
                )
    if issues.issues:
        raise ConfigError(issues.issues)
