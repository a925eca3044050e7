"""Hook specifications: the plugin author's table of contents.

Every hook is named ``cohub_*`` so a grep finds each implementation. Hooks that *register* things
take a `register` callback, so one plugin can register several things and the hub validates each
as it arrives; they run once at start-up and must be plain functions. Lifecycle hooks
(``cohub_run_*``, ``cohub_batch_committed``) may be ``async def``: the hub awaits what they
return. `cohub_resolve_secret` is firstresult and must be synchronous.

A plugin that raises in a hook is reported with its error and skipped (a failed registration
skips the whole plugin); the one exception is a registered transform function, whose failure
fails its run, since records must not be delivered untransformed (see docs/plugins/hooks.md).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("cohub")
hookimpl = pluggy.HookimplMarker("cohub")


@hookspec
def cohub_register_connectors(register):
    """Register the connector classes this plugin provides: ``register(MyConnector)``."""


@hookspec
def cohub_register_meters(register):
    """Declare usage meters: ``register(Meter(name=..., unit=..., aggregation=..., measure=...))``."""


@hookspec
def cohub_register_transforms(register):
    """Register named record transforms routes can list: ``register(Transform(name=..., ...))``."""


@hookspec(firstresult=True)
def cohub_resolve_secret(scheme, name, connection):
    """Return the value of secret reference ``scheme:name`` for `connection`, or None if this
    plugin does not handle `scheme`. Stops at the first non-None result; must be synchronous."""


@hookspec
def cohub_run_started(run):
    """A run of a route has started; `run` is a RunInfo (id, route, member, service)."""


@hookspec
def cohub_batch_committed(run, batch):
    """A batch was delivered and its checkpoint, usage and counters committed; `batch` is a
    CommittedBatch (stream, records written, rejected, usage quantities)."""


@hookspec
def cohub_run_finished(run, counts):
    """A run finished successfully; `counts` is a RunCounts (read, written, rejected, batches)."""


@hookspec
def cohub_run_failed(run, error):
    """A run failed; `error` is the message stored on the run (never secret values)."""


@hookspec
def cohub_route_alert(route, failures, error):
    """A scheduled route failed `failures` runs in a row, reaching its restart policy's
    `alert_after` (and again at every multiple of it): page someone. `error` is the last run's
    message (never secret values). Called by `cohub run`, not by `cohub sync`."""
