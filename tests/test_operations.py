"""What an admin does after a sync: read a run, replay or discard dead letters, rewind state."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
from pathlib import Path

import pytest

from tests.test_cli import REPO, cohub


@pytest.fixture
def synced(tmp_path: Path) -> Path:
    """A hub in `tmp_path` with the example cooperative applied and its payroll routes synced
    once (runs 1 to 3; Harbor Falls' two bad lines are dead letters 1 and 2)."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    assert cohub("apply", "config", cwd=tmp_path).returncode == 0
    payroll = ("eastview-payroll", "harbor-falls-payroll", "millbrook-payroll")
    assert cohub("sync", *payroll, cwd=tmp_path).returncode == 0
    return tmp_path


def hub_db(folder: Path) -> sqlite3.Connection:
    return sqlite3.connect(folder / ".cohub" / "cohub.db")


def test_runs_show_gives_counts_timing_state_and_error(synced):
    result = cohub("runs", "show", "2", cwd=synced)

    assert result.returncode == 0
    text = result.stdout
    for expected in (
        "harbor-falls-payroll",
        "succeeded",
        "dead-lettered │ 2",
        "retried       │ 0",
        "hf_payroll_oct2026.csv",
    ):
        assert expected in text, expected


def test_cancelling_a_run_that_is_not_running_is_refused(synced):
    result = cohub("runs", "cancel", "1", cwd=synced)

    assert result.returncode == 2
    assert "run 1 is not running" in result.stderr


def test_a_dead_letter_is_shown_with_its_source_record_and_pii_masked(synced):
    with hub_db(synced) as db:
        raw = json.loads(db.execute("SELECT raw FROM dead_letters WHERE id = 1").fetchone()[0])
        raw["SSN"] = "123-45-6789"
        db.execute("UPDATE dead_letters SET raw = ? WHERE id = 1", (json.dumps(raw),))

    result = cohub("deadletters", "show", "1", cwd=synced)

    assert result.returncode == 0
    assert '"Employee Number": "HF-202"' in result.stdout
    assert '"SSN": "****"' in result.stdout
    assert "123-45-6789" not in result.stdout


def test_replay_after_a_fix_delivers_what_now_maps_and_keeps_the_rest(synced):
    connection = synced / "config" / "connections" / "harbor-falls-payroll.toml"
    layout = r"(?P<fund>[A-Z]{1,2})(?P<function>\\d{4})[.-](?P<object>\\d{3})(?:-(?P<location>\\d{2}))?(?:-(?P<program>\\d{4}))?"
    connection.write_text(
        connection.read_text().replace(
            'encoding = "utf-8"', f'encoding = "utf-8"\naccount_layout = "{layout}"'
        )
    )
    assert cohub("apply", "config", cwd=synced).returncode == 0

    result = cohub("deadletters", "replay", "--all", "--route", "harbor-falls-payroll", cwd=synced)

    assert result.returncode == 1  # one dead letter still fails
    assert "1 replayed, 1 still failing" in result.stdout
    assert "dead letter 2: 'n/a' is not an amount" in result.stdout
    with hub_db(synced) as db:
        statuses = db.execute(
            "SELECT id, status, resolution FROM dead_letters ORDER BY id"
        ).fetchall()
        usage = db.execute(
            "SELECT sum(quantity) FROM usage_events"
            " WHERE member = 'harbor-falls' AND meter = 'records_synced'"
        ).fetchone()[0]
    assert statuses == [(1, "replayed", "replayed in run 4"), (2, "open", None)]
    assert usage == 43_000_000  # 43 records, in millionths
    with sqlite3.connect(synced / ".cohub" / "cbo_payroll.db") as cbo:
        [(account,)] = cbo.execute(
            "SELECT account_code FROM pay_lines WHERE record_key = 'HA-2026-20|HF-202|3'"
        ).fetchall()
    assert account == "A2110-150"


def test_a_replayed_dead_letter_cannot_be_replayed_again(synced):
    result = cohub("deadletters", "discard", "2", cwd=synced)
    assert result.returncode == 0

    again = cohub("deadletters", "replay", "2", cwd=synced)

    assert again.returncode == 2
    assert "no open dead letter 2" in again.stderr
    with hub_db(synced) as db:
        [(status, resolution)] = db.execute(
            "SELECT status, resolution FROM dead_letters WHERE id = 2"
        ).fetchall()
    assert status == "discarded"
    assert resolution.startswith("discarded by ")


def test_dead_letters_filter_by_reason_and_member(synced):
    result = cohub(
        "deadletters", "list", "--member", "harbor-falls", "--reason", "amount", cwd=synced
    )

    assert "hf_payroll_oct2026.csv:12" in result.stdout
    assert "hf_payroll_oct2026.csv:6 " not in result.stdout


def test_state_reset_makes_the_next_run_read_again_and_is_recorded(synced):
    reset = cohub(
        "state",
        "reset",
        "millbrook-payroll",
        cwd=synced,
        env={"COHUB_ACTOR": "it-admin@boces.example"},
    )
    again = cohub("sync", "millbrook-payroll", cwd=synced)

    assert (reset.returncode, again.returncode) == (0, 0)
    with hub_db(synced) as db:
        [(read,)] = db.execute("SELECT records_read FROM runs ORDER BY id DESC LIMIT 1").fetchall()
        assert read == 39
        [(action, actor, before)] = db.execute(
            "SELECT action, actor, state_before FROM state_changes"
        ).fetchall()
        usage = db.execute(
            "SELECT sum(quantity) FROM usage_events"
            " WHERE member = 'millbrook' AND meter = 'records_synced'"
        ).fetchone()[0]
    assert (action, actor) == ("reset", "it-admin@boces.example")
    assert json.loads(before)["files"]["PAYEXP_202610.txt"]["rows"] == 39
    assert usage == 78_000_000  # read again from the beginning: metered again


def test_state_set_rewinds_a_route_to_a_given_state(synced):
    result = cohub(
        "state", "set", "millbrook-payroll", "pay_lines", "--state", '{"files": {}}', cwd=synced
    )
    shown = cohub("state", "show", "millbrook-payroll", cwd=synced)

    assert result.returncode == 0
    assert '"files": {}' in shown.stdout
    assert "a manual change" in shown.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["state", "set", "millbrook-payroll", "--state", "[1]"],
            "the state must be a JSON object",
        ),
        (["state", "set", "millbrook-payroll", "--state", "{"], "the state is not JSON"),
        (
            ["state", "show", "millbrook-payroll", "tickets"],
            "reads stream 'pay_lines', not 'tickets'",
        ),
        (["state", "show", "nowhere"], "no route 'nowhere'"),
    ],
)
def test_state_commands_refuse_bad_input_with_a_reason(synced, argv, message):
    result = cohub(*argv, cwd=synced)

    assert result.returncode == 2
    assert message in result.stderr


def test_replaying_on_a_full_refresh_route_leaves_its_read_cycle_open(synced):
    routes = synced / "config" / "routes.toml"
    routes.write_text(
        routes.read_text().replace(
            "[routes.harbor-falls-payroll]\n",
            '[routes.harbor-falls-payroll]\nmode = "full_refresh"\n',
        )
    )
    assert cohub("apply", "config", cwd=synced).returncode == 0
    with hub_db(synced) as db:
        db.execute(
            "UPDATE stream_states SET cycle_complete = 0 WHERE route = 'harbor-falls-payroll'"
        )

    cohub("deadletters", "replay", "1", cwd=synced)

    with hub_db(synced) as db:
        [(complete,)] = db.execute(
            "SELECT cycle_complete FROM stream_states WHERE route = 'harbor-falls-payroll'"
        ).fetchall()
    assert complete == 0


def test_replay_on_a_disabled_route_is_refused_with_a_reason(synced):
    routes = synced / "config" / "routes.toml"
    routes.write_text(
        routes.read_text().replace(
            "[routes.harbor-falls-payroll]\n", "[routes.harbor-falls-payroll]\nenabled = false\n"
        )
    )
    assert cohub("apply", "config", cwd=synced).returncode == 0

    result = cohub("deadletters", "replay", "1", cwd=synced)

    assert result.returncode == 2
    assert "cannot replay now: route 'harbor-falls-payroll' is disabled" in result.stderr


def test_state_can_be_reset_after_a_sync_died_without_a_trace(synced):
    with hub_db(synced) as db:
        db.execute(
            "INSERT INTO runs (route, service, trigger, status, worker, started_at, records_read, records_written,"
            " records_rejected, batches, retries, records_deleted, cancel_requested)"
            " VALUES ('millbrook-payroll', 'cbo-payroll', 'manual', 'running', ?, '2026-11-01 00:00:00', 0, 0, 0, 0, 0, 0, 0)",
            (f"{socket.gethostname()}:999999",),
        )

    result = cohub("state", "reset", "millbrook-payroll", cwd=synced)

    assert result.returncode == 0, result.stderr
    with hub_db(synced) as db:
        assert db.execute("SELECT status FROM runs WHERE worker LIKE '%:999999'").fetchall() == [
            ("abandoned",)
        ]
