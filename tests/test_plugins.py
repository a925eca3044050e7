"""Plugin failure isolation: a broken plugin is reported and skipped, the hub keeps working."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.flat_file import FlatFileConnector
from hub import sdk
from hub.apply import apply
from hub.config import Connection, connection_problems, load_config
from hub.engine.run import run_route
from hub.metering import measure
from hub.plugins import CONNECTOR_GROUP, PluginHost

FLAT_FILE = "connectors.flat_file:FlatFileConnector"


def write_plugin(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text("from hub import sdk\n\n" + textwrap.dedent(body))


def by_name(host: PluginHost) -> dict[str, object]:
    return {info.name: info for info in host.plugins()}


def test_builtin_connectors_load_through_the_entry_points_a_vendor_uses():
    host = PluginHost([])

    plugins = by_name(host)
    assert (
        plugins["flat_file"].source == "entry point connectors.flat_file:FlatFileConnector (cohub)"
    )
    assert plugins["flat_file"].provides == ["connector:flat_file"]
    assert plugins["sql_table"].provides == ["connector:sql_table"]
    assert plugins["builtin"].provides == [
        "meter:records_synced",
        "meter:paychecks_processed",
        "meter:employees_served",
        "meter:journal_lines_posted",
        "meter:tickets_opened",
        "meter:tickets_resolved",
        "meter:purchase_orders_placed",
        "meter:purchase_order_volume",
        "meter:api_calls",
        "meter:run_minutes",
        "transform:contract_check",
    ]
    assert host.failures == []


def test_a_declared_connector_is_imported_only_when_it_is_asked_for():
    # In a fresh interpreter, so modules earlier tests imported do not count.
    script = (
        "import sys; from hub.plugins import PluginHost; host = PluginHost([]); "
        "assert 'cxml' in host.connectors(); "
        "before = sorted(m for m in sys.modules if m.startswith('connectors.')); "
        "host.connector('flat_file'); "
        "after = {m for m in sys.modules if m.startswith('connectors.')}; "
        "print(before, 'connectors.flat_file' in after, 'connectors.cxml' in after)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["[]", "True", "False"]


def declare(monkeypatch, **entries: str) -> None:
    """Make `entries` (name = "module:Class") the whole ``cohub.connectors`` group."""
    real = importlib.metadata.entry_points()
    declared = importlib.metadata.EntryPoints(
        importlib.metadata.EntryPoint(n, v, CONNECTOR_GROUP) for n, v in entries.items()
    )

    class Installed:
        def select(self, *, group: str) -> importlib.metadata.EntryPoints:
            return declared if group == CONNECTOR_GROUP else real.select(group=group)

    monkeypatch.setattr(importlib.metadata, "entry_points", Installed)


def test_a_listing_of_connectors_leaves_out_one_that_fails_to_import(monkeypatch):
    declare(monkeypatch, ledgerline="cohub_ledgerline_missing:Ledgerline", flat_file=FLAT_FILE)
    host = PluginHost([])

    listed = dict(host.connectors().items())
    assert listed["flat_file"] is FlatFileConnector
    assert "ledgerline" not in listed
    assert by_name(host)["ledgerline"].status == "failed"


def test_a_declared_connector_that_fails_to_import_is_reported_when_asked_for(monkeypatch):
    declare(monkeypatch, ledgerline="cohub_ledgerline_missing:Ledgerline")
    host = PluginHost([])
    assert host.infos["ledgerline"].provides == ["connector:ledgerline"]  # not imported yet
    assert host.failures == []
    # what `cohub validate` says of a connection naming it
    assert connection_problems(Connection(connector="ledgerline"), host.connectors()) == [
        (
            "connector",
            "connector 'ledgerline' failed to load: ModuleNotFoundError: No module "
            "named 'cohub_ledgerline_missing'",
        )
    ]

    with pytest.raises(KeyError, match="connector 'ledgerline' failed to load: ModuleNotFound"):
        host.connector("ledgerline")  # and asked again, the same answer

    assert [(f.plugin, f.stage) for f in host.failures] == [("ledgerline", "import")]

    assert connection_problems(Connection(connector="ledgerline"), host.connectors()) == [
        (
            "connector",
            "connector 'ledgerline' failed to load: ModuleNotFoundError: No module "
            "named 'cohub_ledgerline_missing'",
        )
    ]
    assert by_name(host)["ledgerline"].status == "failed"
    assert "ledgerline" not in host.connectors()


def test_a_declared_connector_must_carry_its_entry_point_name(monkeypatch):
    declare(monkeypatch, ledger="connectors.sql_table:SqlTableDestination")
    host = PluginHost([])

    assert host.connectors().get("ledger") is None
    assert host.failures[0].error == (
        "TypeError: connectors.sql_table:SqlTableDestination is connector 'sql_table', not 'ledger'"
    )


def test_the_core_never_imports_the_builtin_connectors():
    hub = Path(__file__).resolve().parent.parent / "hub"
    offenders = [
        str(path.relative_to(hub))
        for path in hub.rglob("*.py")
        if "import connectors" in path.read_text() or "from connectors" in path.read_text()
    ]
    assert offenders == []


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_load(tmp_path):
    write_plugin(tmp_path, "broken", "raise ImportError('needs vendorlib 2.0')\n")
    write_plugin(
        tmp_path,
        "good",
        """
        @sdk.hookimpl
        def cohub_register_meters(register):
            register(sdk.Meter(name="helpdesk_hours", unit="hour"))
        """,
    )

    host = PluginHost([tmp_path])

    plugins = by_name(host)
    assert plugins["broken"].status == "failed"
    assert plugins["broken"].error == "ImportError: needs vendorlib 2.0"
    assert plugins["good"].status == "loaded"
    assert plugins["good"].source == f"folder {tmp_path / 'good.py'}"
    assert "helpdesk_hours" in host.meters()
    assert "flat_file" in host.connectors()


def test_a_plugin_that_raises_while_registering_is_reported_and_skipped(tmp_path):
    write_plugin(
        tmp_path,
        "raising",
        """
        @sdk.hookimpl
        def cohub_register_connectors(register):
            raise RuntimeError("licence server unreachable")
        """,
    )

    host = PluginHost([tmp_path])

    assert [(f.plugin, f.stage, f.error) for f in host.failures] == [
        ("raising", "cohub_register_connectors", "RuntimeError: licence server unreachable")
    ]
    assert {"flat_file", "sql_table"} <= set(host.connectors())
    assert by_name(host)["raising"].provides == []


def test_a_misspelled_hook_is_an_error_naming_the_plugin(tmp_path):
    write_plugin(
        tmp_path,
        "typo",
        """
        @sdk.hookimpl
        def cohub_register_conectors(register):
            pass
        """,
    )

    host = PluginHost([tmp_path])

    assert [(f.plugin, f.error) for f in host.failures] == [
        ("typo", "unknown hook 'cohub_register_conectors' (misspelled?)")
    ]


def test_registering_something_that_is_not_a_connector_is_reported(tmp_path):
    write_plugin(
        tmp_path,
        "confused",
        """
        @sdk.hookimpl
        def cohub_register_connectors(register):
            register("flat_file")
        """,
    )

    host = PluginHost([tmp_path])

    assert [(f.plugin, f.error) for f in host.failures] == [
        ("confused", "TypeError: register() takes a Connector subclass, got 'flat_file'")
    ]


def test_a_plugin_disabled_by_name_is_listed_but_not_loaded():
    host = PluginHost([], disabled=["flat_file"])

    assert by_name(host)["flat_file"].status == "disabled"
    assert "flat_file" not in host.connectors()


def test_a_second_plugin_claiming_a_connector_name_is_refused(tmp_path):
    write_plugin(
        tmp_path,
        "impostor",
        """
        class Impostor(sdk.Connector):
            name = "flat_file"

        @sdk.hookimpl
        def cohub_register_connectors(register):
            register(Impostor)
        """,
    )

    host = PluginHost([tmp_path])

    assert [(f.plugin, f.error) for f in host.failures] == [
        ("impostor", "ValueError: connector 'flat_file' is already provided by flat_file")
    ]
    assert host.connectors()["flat_file"].__module__ == "connectors.flat_file"


@pytest.fixture
def plugin_dir(config_dir: Path) -> Path:
    folder = config_dir.parent / "plugins"
    folder.mkdir()
    return folder


async def test_a_lifecycle_hook_that_raises_is_reported_and_the_run_succeeds(
    runtime, config_dir, plugin_dir
):
    write_plugin(
        plugin_dir,
        "noisy",
        """
        seen = []

        @sdk.hookimpl
        def cohub_run_started(run):
            raise RuntimeError("pager service down")

        @sdk.hookimpl
        async def cohub_run_finished(run, counts):
            seen.append((run.route, counts.written))
        """,
    )
    runtime.plugins = PluginHost([plugin_dir])
    await apply(runtime.engine, load_config(config_dir))

    summary = await run_route(runtime.engine, runtime.plugins, "eastview-payroll")

    assert summary.status == "succeeded"
    assert [(f.plugin, f.stage, f.error) for f in runtime.plugins.failures] == [
        ("noisy", "cohub_run_started", "RuntimeError: pager service down")
    ]
    import cohub_site_plugin_noisy as noisy

    assert noisy.seen == [("eastview-payroll", 51)]


async def test_a_transform_that_raises_fails_its_run_naming_the_plugin_and_other_routes_go_on(
    runtime, config_dir, plugin_dir
):
    write_plugin(
        plugin_dir,
        "masking",
        """
        def mask(context, records):
            raise KeyError("employee_name")

        @sdk.hookimpl
        def cohub_register_transforms(register):
            register(sdk.Transform(name="mask_names", function=mask))
        """,
    )
    runtime.plugins = PluginHost([plugin_dir])
    routes = config_dir / "routes.toml"
    routes.write_text(
        routes.read_text().replace(
            "[routes.eastview-payroll]\n",
            '[routes.eastview-payroll]\ntransforms = ["mask_names"]\n',
        )
    )
    await apply(runtime.engine, load_config(config_dir))

    failed = await run_route(runtime.engine, runtime.plugins, "eastview-payroll")
    other = await run_route(runtime.engine, runtime.plugins, "millbrook-payroll")

    assert failed.status == "failed"
    assert (
        failed.error == "plugin 'masking' failed in transform mask_names: KeyError: 'employee_name'"
    )
    assert failed.counts.written == 0
    assert other.status == "succeeded"
    assert other.counts.written == 39


async def test_a_connector_that_raises_fails_its_run_naming_connection_and_plugin(
    runtime, config_dir, plugin_dir
):
    write_plugin(
        plugin_dir,
        "vendor",
        """
        class Exploding(sdk.Connector):
            name = "exploding"

            async def read(self, stream, state):
                yield sdk.Batch(records=[], state={"page": 1})
                raise ConnectionResetError("peer reset")

        @sdk.hookimpl
        def cohub_register_connectors(register):
            register(Exploding)
        """,
    )
    runtime.plugins = PluginHost([plugin_dir])
    (config_dir / "connections" / "eastview-payroll.toml").write_text(
        'connector = "exploding"\nmember = "eastview"\n'
    )
    await apply(runtime.engine, load_config(config_dir))

    failed = await run_route(runtime.engine, runtime.plugins, "eastview-payroll")

    assert failed.status == "failed"
    assert failed.error == (
        "connection 'eastview-payroll' (exploding, plugin 'vendor') failed to read: "
        "ConnectionResetError: peer reset"
    )
    assert failed.counts.batches == 1


def test_a_plugin_whose_name_is_taken_is_listed_as_failed_and_the_first_keeps_working(tmp_path):
    write_plugin(tmp_path, "flat_file", "VALUE = 1\n")

    host = PluginHost([tmp_path])

    entries = [
        (i.name, i.status, i.source.split()[0]) for i in host.plugins() if i.name == "flat_file"
    ]
    assert sorted(entries) == [("flat_file", "failed", "folder"), ("flat_file", "loaded", "entry")]
    assert host.connectors()["flat_file"].__module__ == "connectors.flat_file"


def test_an_async_register_hook_is_reported_not_silently_ignored(tmp_path):
    write_plugin(
        tmp_path,
        "eager",
        """
        @sdk.hookimpl
        async def cohub_register_meters(register):
            register(sdk.Meter(name="never", unit="x"))
        """,
    )

    host = PluginHost([tmp_path])

    assert [(f.plugin, f.error) for f in host.failures] == [
        ("eager", "TypeError: cohub_register_meters must be a plain function, not async")
    ]
    assert "never" not in host.meters()


def test_a_register_hook_may_take_fewer_arguments_than_the_spec(tmp_path):
    write_plugin(
        tmp_path,
        "quiet",
        """
        @sdk.hookimpl
        def cohub_register_meters():
            pass
        """,
    )

    host = PluginHost([tmp_path])

    assert host.failures == []


def test_an_async_secret_resolver_is_reported_and_the_others_still_answer(tmp_path, monkeypatch):
    write_plugin(
        tmp_path,
        "slow_vault",
        """
        @sdk.hookimpl
        async def cohub_resolve_secret(scheme, name, connection):
            return "never"
        """,
    )
    monkeypatch.setenv("CBO_DB_PASSWORD", "from-the-environment")
    host = PluginHost([tmp_path])

    assert host.resolve_secret("env", "CBO_DB_PASSWORD", "cbo-payroll-db") == "from-the-environment"
    assert [(f.plugin, f.error) for f in host.failures] == [
        ("slow_vault", "TypeError: cohub_resolve_secret must be a plain function, not async")
    ]


def test_a_plugin_that_fails_any_registration_is_skipped_whole(tmp_path, monkeypatch):
    write_plugin(
        tmp_path,
        "half",
        """
        class Half(sdk.Connector):
            name = "half"

        @sdk.hookimpl
        def cohub_register_connectors(register):
            register(Half)

        @sdk.hookimpl
        def cohub_register_meters(register):
            raise RuntimeError("meter table missing")

        @sdk.hookimpl
        def cohub_resolve_secret(scheme, name, connection):
            return "from-a-broken-plugin"
        """,
    )
    monkeypatch.setenv("CBO_DB_PASSWORD", "from-the-environment")

    host = PluginHost([tmp_path])

    assert "half" not in host.connectors()
    assert by_name(host)["half"].status == "failed"
    assert by_name(host)["half"].provides == []
    assert host.resolve_secret("env", "CBO_DB_PASSWORD", "cbo") == "from-the-environment"


def test_a_plugin_whose_name_is_taken_is_never_imported(tmp_path):
    marker = tmp_path / "imported"
    write_plugin(tmp_path, "sql_table", f"open({str(marker)!r}, 'w').close()\n")

    PluginHost([tmp_path])

    assert not marker.exists()


def test_a_secret_resolver_may_take_fewer_arguments(tmp_path):
    write_plugin(
        tmp_path,
        "static",
        """
        @sdk.hookimpl
        def cohub_resolve_secret(name):
            return "static-" + name if name == "ONLY_THIS" else None
        """,
    )

    host = PluginHost([tmp_path])

    assert host.resolve_secret("vault", "ONLY_THIS", "cbo") == "static-ONLY_THIS"
    assert host.failures == []


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("0.1", "TypeError: a measure must return an int or Decimal, not float"),
        ("Decimal('0.0000001')", "ValueError: 1E-7 has more than 6 decimal places"),
    ],
)
def test_a_meter_answering_other_than_an_exact_quantity_is_reported_and_skipped(
    tmp_path, answer, error
):
    write_plugin(
        tmp_path,
        "sloppy",
        f"""
        from decimal import Decimal

        @sdk.hookimpl
        def cohub_register_meters(register):
            register(sdk.Meter(name="hours", unit="hour", measure=lambda context, records: {answer}))
        """,
    )
    host = PluginHost([tmp_path])
    context = sdk.BatchContext(
        route="r",
        run_id=1,
        member="eastview",
        service="s",
        source_stream="a",
        destination_stream="b",
        record="x",
    )

    usage = measure(host, context, [object()])

    assert [(u.meter, u.quantity) for u in usage] == [("records_synced", Decimal(1))]
    assert [(f.plugin, f.stage, f.error) for f in host.failures] == [
        ("sloppy", "meter hours", error)
    ]
