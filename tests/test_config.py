"""Configuration errors: each mistake names its file, key path and reason, and nothing is applied."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub import cli
from hub.apply import apply
from hub.config import ConfigError, ConfigIssue, check_against_plugins, load_config
from hub.plugins import PluginHost
from hub.store.tables import members, routes

EXAMPLE = Path(__file__).resolve().parent.parent / "config"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(EXAMPLE, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def issues_of(folder: Path) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as raised:
        config = load_config(folder)
        host = PluginHost([])
        check_against_plugins(config, host.connectors(), host.transforms(), host.meters())
    return [(Path(i.file).name, i.key, i.reason) for i in raised.value.issues]


def test_the_example_configuration_is_valid(folder):
    config = load_config(folder)

    assert sorted(config.members) == ["eastview", "harbor-falls", "millbrook"]
    assert sorted(config.routes) == [
        f"{member}-{flow}"
        for member, flows in (
            ("eastview", ["assignments", "budget", "employees", "orders", "payroll"]),
            ("harbor-falls", ["assignments", "budget", "employees", "journal", "payroll"]),
            ("millbrook", ["assignments", "employees", "journal", "payroll", "tickets"]),
        )
        for flow in flows
    ] + ["techsource-acknowledgements", "techsource-invoices"]
    host = PluginHost([])
    check_against_plugins(config, host.connectors(), host.transforms(), host.meters())


def test_an_unknown_key_is_named_with_its_path(folder):
    edit(folder / "cooperative.toml", 'nces_id = "3699001"', 'nces_id = "3699001"\nncesid = "x"')

    assert issues_of(folder) == [
        ("cooperative.toml", "members.eastview.ncesid", "Object contains unknown field `ncesid`")
    ]


def test_a_wrong_type_is_named_with_its_path(folder):
    edit(folder / "cooperative.toml", "enrollment = 2140", 'enrollment = "2140"')

    assert issues_of(folder) == [
        ("cooperative.toml", "members.eastview.enrollment", "Expected `int | null`, got `str`")
    ]


def test_a_missing_required_key_is_named(folder):
    edit(
        folder / "routes.toml",
        'service = "cbo-payroll"\n',
        "",
    )

    assert issues_of(folder) == [
        (
            "routes.toml",
            "routes.eastview-payroll.service",
            "Object missing required field `service`",
        )
    ]


def test_a_route_to_a_missing_connection_is_a_dangling_reference(folder):
    edit(folder / "routes.toml", 'destination = "cbo-payroll-db"', 'destination = "cbo-payrol-db"')

    assert issues_of(folder) == [
        (
            "routes.toml",
            "routes.eastview-payroll.destination",
            "no connection 'cbo-payrol-db' in connections/",
        )
    ]


def test_a_route_to_a_missing_service_is_a_dangling_reference(folder):
    edit(folder / "routes.toml", 'service = "cbo-payroll"', 'service = "payroll"')

    assert issues_of(folder) == [
        (
            "routes.toml",
            "routes.eastview-payroll.service",
            "no service 'payroll' in cooperative.toml",
        )
    ]


def test_a_connection_for_an_unknown_member_is_a_dangling_reference(folder):
    edit(
        folder / "connections/millbrook-payroll.toml", 'member = "millbrook"', 'member = "milbrook"'
    )

    assert issues_of(folder) == [
        ("millbrook-payroll.toml", "member", "no member 'milbrook' in cooperative.toml")
    ]


def test_a_secret_written_as_a_value_is_refused(folder):
    path = folder / "connections/cbo-payroll-db.toml"
    path.write_text(path.read_text() + '\n[secrets]\npassword = "hunter2-letmein"\n')

    assert issues_of(folder) == [
        (
            "cbo-payroll-db.toml",
            "secrets.password",
            "must be a reference like env:NAME or vault:NAME, never the secret itself",
        )
    ]


def test_a_toml_syntax_error_gives_line_and_column(folder):
    edit(folder / "routes.toml", 'source = "eastview-payroll"', 'source = "eastview-payroll')

    [(file, key, reason)] = issues_of(folder)
    assert (file, key) == ("routes.toml", "")
    assert reason.startswith("not valid TOML: ")
    assert "line 5" in reason


def test_an_unknown_connector_names_the_loaded_ones(folder):
    edit(
        folder / "connections/eastview-payroll.toml",
        'connector = "flat_file"',
        'connector = "flatfile"',
    )

    [(file, key, reason)] = issues_of(folder)
    assert (file, key) == ("eastview-payroll.toml", "connector")
    assert reason.startswith("no connector 'flatfile' (known: ")
    known = reason.removeprefix("no connector 'flatfile' (known: ").removesuffix(")").split(", ")
    assert known == sorted(known) and {"flat_file", "sql_table"} <= set(known)


def test_a_bad_connector_option_is_named_with_its_path(folder):
    edit(folder / "connections/millbrook-payroll.toml", 'delimiter = "|"', "delimiter = 1")

    assert issues_of(folder) == [
        ("millbrook-payroll.toml", "options.delimiter", "Expected `str`, got `int`")
    ]


def test_a_nested_unknown_connector_option_is_named_with_its_path(folder):
    edit(
        folder / "connections/millbrook-payroll.toml",
        'pattern = "PAYEXP_*.txt"',
        'pattern = "PAYEXP_*.txt"\nglob = "x"',
    )

    assert issues_of(folder) == [
        (
            "millbrook-payroll.toml",
            "options.streams.pay_lines.glob",
            "Object contains unknown field `glob`",
        )
    ]


def test_a_secret_the_connector_does_not_take_is_refused(folder):
    path = folder / "connections/eastview-payroll.toml"
    path.write_text(
        path.read_text().replace(
            'description = "Eastview payroll export files"',
            'description = "x"\nsecrets = { api_key = "env:EASTVIEW_KEY" }',
        )
    )

    assert issues_of(folder) == [
        (
            "eastview-payroll.toml",
            "secrets.api_key",
            "flat_file takes no secret 'api_key' "
            "(it takes: password, private_key, private_key_passphrase)",
        )
    ]


def test_an_unregistered_transform_is_refused(folder):
    edit(
        folder / "routes.toml",
        'service = "cbo-payroll"',
        'service = "cbo-payroll"\ntransforms = ["mask_names"]',
    )

    assert issues_of(folder) == [
        (
            "routes.toml",
            "routes.eastview-payroll.transforms.0",
            "no transform 'mask_names' is registered",
        )
    ]


def test_every_mistake_is_reported_at_once(folder):
    edit(folder / "routes.toml", 'service = "cbo-payroll"', 'service = "payroll"')
    edit(folder / "cooperative.toml", "enrollment = 2140", 'enrollment = "many"')

    assert [(f, k) for f, k, _ in issues_of(folder)] == [
        ("cooperative.toml", "members.eastview.enrollment"),
        ("routes.toml", "routes.eastview-payroll.service"),
    ]


def test_an_issue_reads_as_file_key_and_reason():
    issue = ConfigIssue(
        "config/routes.toml", "routes.x.service", "no service 'y' in cooperative.toml"
    )

    assert str(issue) == "config/routes.toml: routes.x.service: no service 'y' in cooperative.toml"


async def test_a_bad_configuration_applies_nothing_and_exits_2(
    folder, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("COHUB_HOME", str(tmp_path / "home"))
    database = f"sqlite:///{tmp_path / 'hub.db'}"
    assert await _apply_main(["--database", database, "apply", str(folder)]) == 0
    edit(
        folder / "cooperative.toml",
        "[members.eastview]",
        '[members.lakeside]\nname = "Lakeside"\n\n[members.eastview]',
    )
    edit(folder / "routes.toml", 'service = "cbo-payroll"', 'service = "payroll"')
    capsys.readouterr()

    code = await _apply_main(["--database", database, "apply", str(folder)])

    assert code == 2
    err = capsys.readouterr().err
    assert (
        "routes.toml: routes.eastview-payroll.service: no service 'payroll' in cooperative.toml"
        in err
    )
    assert "nothing was applied" in err
    from hub.store.database import create_engine

    engine = create_engine(database)
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(members)) == 3
        assert await conn.scalar(select(func.count()).select_from(routes)) == 17
    await engine.dispose()


async def _apply_main(argv: list[str]) -> int:
    import asyncio

    return await asyncio.to_thread(cli.main, argv)


async def test_apply_is_idempotent_and_dry_run_shows_the_diff_without_changing_anything(
    runtime, config_dir
):
    config = load_config(config_dir)
    first = await apply(runtime.engine, config)
    # the cooperative, 3 members, 6 services, 15 connections, 17 routes
    assert len(first) == 42
    assert await apply(runtime.engine, config) == []

    edit(config_dir / "cooperative.toml", "enrollment = 2140", "enrollment = 2188")
    changed = load_config(config_dir)
    planned = await apply(runtime.engine, changed, dry_run=True)

    assert [str(c) for c in planned] == ["~ member eastview\n    enrollment: 2140 → 2188"]
    assert await apply(runtime.engine, changed, dry_run=True) == planned
    assert [str(c) for c in await apply(runtime.engine, changed)] == [
        "~ member eastview\n    enrollment: 2140 → 2188"
    ]
    assert await apply(runtime.engine, changed) == []


async def test_removing_a_route_from_the_configuration_removes_it_from_the_store(
    runtime, config_dir
):
    await apply(runtime.engine, load_config(config_dir))
    text = (config_dir / "routes.toml").read_text()
    start = text.index("[routes.millbrook-payroll]")
    end = text.index("[routes.harbor-falls-payroll]")
    (config_dir / "routes.toml").write_text(text[:start] + text[end:])

    changes = await apply(runtime.engine, load_config(config_dir))

    assert [str(c) for c in changes] == ["- route millbrook-payroll"]


@pytest.mark.parametrize(
    ("old", "new", "key", "reason"),
    [
        (
            "enrollment = 2140",
            "enrollment = 99999999999",
            "members.eastview.enrollment",
            "is too large (at most 2,147,483,647)",
        ),
        (
            "enrollment = 2140",
            "enrollment = nan",
            "members.eastview.enrollment",
            "must be a finite number",
        ),
    ],
)
def test_values_toml_allows_but_no_setting_means_are_named(folder, old, new, key, reason):
    """NaN passes every range check (each comparison with it is false) and an integer past the
    store's columns would fail only when applied: both are refused when the file is read."""
    edit(folder / "cooperative.toml", old, new)

    assert (("cooperative.toml", key, reason)) in issues_of(folder)


def test_a_file_that_is_not_toml_text_is_named(folder):
    (folder / "routes.toml").write_bytes(b"\xff\xfe[routes]\n")

    assert issues_of(folder) == [("routes.toml", "", "not UTF-8 text: byte 0 cannot be decoded")]
