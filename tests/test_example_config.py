"""The bundled example configuration: the API-based example connections in config/examples/
apply and check as their comments promise, and the reporting database matches its SQL."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

from tests.test_cli import cohub

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "config" / "examples"


def with_examples(tmp_path: Path) -> Path:
    """The example configuration with every example connection and route copied in, as an
    admin would."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config, ignore=shutil.ignore_patterns("examples"))
    for connection in (EXAMPLES / "connections").glob("*.toml"):
        shutil.copy(connection, config / "connections" / connection.name)
    routes = config / "routes.toml"
    routes.write_text(routes.read_text() + "\n" + (EXAMPLES / "routes.toml").read_text())
    return config


def test_every_example_connection_has_an_example_route_and_a_connector_page():
    connections = {p.stem for p in (EXAMPLES / "connections").glob("*.toml")}
    routes = (EXAMPLES / "routes.toml").read_text()
    assert connections
    for name in connections:
        assert f'source = "{name}"' in routes or f'destination = "{name}"' in routes, name
        text = (EXAMPLES / "connections" / f"{name}.toml").read_text()
        assert "enabled = false" in text, name
        page = re.search(r"docs/connectors/([\w.-]+\.md)", text)
        assert page and (REPO / "docs" / "connectors" / page[1]).is_file(), name


def test_the_examples_validate_apply_disabled_and_say_which_secret_is_missing(tmp_path):
    config = with_examples(tmp_path)
    env = {"COHUB_CONFIG": str(config)}

    validated = cohub("validate", str(config), cwd=tmp_path)
    applied = cohub("apply", str(config), cwd=tmp_path)
    synced = cohub("sync", "harbor-falls-edfi-employees", cwd=tmp_path, env=env)
    checked = cohub("check", "harbor-falls-edfi", "millbrook-quickbooks", cwd=tmp_path, env=env)

    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert applied.returncode == 0, applied.stderr
    assert synced.returncode != 0
    assert "route 'harbor-falls-edfi-employees' is disabled" in synced.stderr + synced.stdout
    assert checked.returncode == 1
    assert "secret 'client_secret' (vault:HARBOR_FALLS_EDFI_SECRET) is not set" in checked.stdout
    assert "(vault:MILLBROOK_QBO_CLIENT_ID) is not set" in checked.stdout


def test_the_demo_skips_the_disabled_examples(tmp_path):
    config = with_examples(tmp_path)

    demo = cohub("demo", str(config), cwd=tmp_path)

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "harbor-falls-employees" in demo.stdout
    assert "harbor-falls-edfi-employees" not in demo.stdout


def test_the_reporting_database_is_built_from_its_sql(tmp_path):
    folder = REPO / "config" / "sample-data" / "eastview"
    built = tmp_path / "reporting.sqlite"
    with sqlite3.connect(built) as db:
        db.executescript((folder / "reporting.sql").read_text())
    with sqlite3.connect(built) as fresh, sqlite3.connect(folder / "reporting.sqlite") as shipped:
        for view in ("rpt_employees", "rpt_assignments", "rpt_budget"):
            query = f"SELECT * FROM {view} ORDER BY 1, 2, 3"
            assert fresh.execute(query).fetchall() == shipped.execute(query).fetchall(), view
