"""Routes between the scripted test connectors (tests/plugins/scripted_connectors.py) and the
example cooperative's CBO database: ``scripted-picky`` (source → picky sink), ``scripted-parallel`` (the same, read in parts
when the script has ``parts``) and ``scripted-db`` (source → the CBO's sql_table database),
all Eastview's."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from hub.apply import apply
from hub.config import check_against_plugins, load_config
from hub.model.accounting import AccountCode
from hub.model.payroll import PayLine
from hub.plugins import PluginHost
from hub.runtime import Runtime

PLUGIN = Path(__file__).parent / "plugins" / "scripted_connectors.py"
SCRIPT = "script.json"
UPDATED = datetime(2026, 10, 15, 18, 30, tzinfo=UTC)

CONNECTIONS = {
    "scripted": 'connector = "scripted_source"\nmember = "eastview"\n[options]\nscript = "script.json"\n',
    "picky": 'connector = "picky_sink"\n[options]\nscript = "script.json"\n',
}
ROUTES = """
[routes.scripted-picky]
source = "scripted"
source_stream = "pay_lines"
destination = "picky"
destination_stream = "pay_lines"
service = "cbo-payroll"

[routes.scripted-parallel]
source = "scripted"
source_stream = "pay_lines"
destination = "picky"
destination_stream = "pay_lines"
service = "cbo-payroll"
parallel_reads = 2

[routes.scripted-db]
source = "scripted"
source_stream = "pay_lines"
destination = "cbo-payroll-db"
destination_stream = "pay_lines"
service = "cbo-payroll"
"""


def pay_line(employee: str, number: int = 1, **fields: Any) -> dict[str, Any]:
    """A pay line as the script holds it (a canonical record as JSON)."""
    values = {
        "pay_run_id": "EA-2026-20",
        "employee_id": employee,
        "line_number": number,
        "pay_date": date(2026, 10, 16),
        "code": "SAL",
        "amount": Decimal("100.00"),
        "account": AccountCode(code="A2110.150", fund="A", function="2110", object="150"),
        "bank_account": f"021000021:{employee}77",
        "updated_at": UPDATED,
    } | fields
    return msgspec.to_builtins(PayLine(**values))


def key(line: dict[str, Any]) -> str:
    return f"{line['pay_run_id']}|{line['employee_id']}|{line['line_number']}"


def write_script(config_dir: Path, **script: Any) -> None:
    (config_dir / SCRIPT).write_text(json.dumps(script))


def logged(config_dir: Path, suffix: str) -> list[Any]:
    """What the scripted connectors logged beside the script (``.acks.jsonl``, ``.written.jsonl``)."""
    path = (config_dir / SCRIPT).with_suffix(suffix)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def configure(
    runtime: Runtime, config_dir: Path, *, call_timeout: float | None = None, **script: Any
) -> None:
    """Install the scripted connectors, write the script, apply the routes (`call_timeout`:
    the ``call_timeout_seconds`` of ``scripted-picky``)."""
    plugins = config_dir.parent / "plugins"
    plugins.mkdir(exist_ok=True)
    shutil.copy(PLUGIN, plugins / PLUGIN.name)
    runtime.plugins = PluginHost([plugins])
    for name, text in CONNECTIONS.items():
        (config_dir / "connections" / f"{name}.toml").write_text(text)
    routes = ROUTES
    if call_timeout is not None:
        picky = "[routes.scripted-picky]\n"
        routes = routes.replace(picky, f"{picky}call_timeout_seconds = {call_timeout}\n")
    with (config_dir / "routes.toml").open("a") as out:
        out.write(routes)
    write_script(config_dir, **script)
    config = load_config(config_dir)
    check_against_plugins(
        config, runtime.plugins.connectors(), runtime.plugins.transforms(), runtime.plugins.meters()
    )
    await apply(runtime.engine, config)
