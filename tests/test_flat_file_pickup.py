"""Which files are read and when: never a half-written one (settle time, temporary names, ignore
patterns, done markers, a file changing while read), each once, archived once delivered, and
the state bounded: files gone from the folder leave it, their checksums kept for a while."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from connectors.flat_file import FlatFileConnector
from hub import sdk
from hub.apply import apply
from hub.config import load_config
from hub.engine.run import run_route
from tests.test_flat_file import PAY_LINES

HEADER = "Run,Date,Emp,Line,Code,Amount,Account"


def line(n: int) -> str:
    return f"R1,2026-10-15,E{n},{n},REG,100.00,A2110.150-00-0000"


def connector(folder: Path, **options) -> FlatFileConnector:
    # These exports have no Modified column: a line's update time is its file's.
    columns = {k: v for k, v in PAY_LINES["columns"].items() if k != "updated_at"}
    stream = {**PAY_LINES, "columns": columns}
    raw = {"folder": str(folder), "streams": {"pay_lines": stream}, **options}
    context = sdk.ConnectionContext(connection="t", member="eastview", base_dir=str(folder))
    return FlatFileConnector(FlatFileConnector.parse_options(raw), {}, context)


def export(folder: Path, name: str, *numbers: int, age: float = 600) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join([HEADER, *(line(n) for n in numbers)]) + "\n")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


async def read_all(source: FlatFileConnector, state=None) -> list[sdk.Batch]:
    return [batch async for batch in source.read("pay_lines", state)]


def employees(batches: list[sdk.Batch]) -> list[str]:
    return [r.employee_id for b in batches for r in b.records]


async def test_temporary_hidden_and_ignored_names_are_never_read(tmp_path):
    export(tmp_path, "a.csv", 1)
    export(tmp_path, "a.csv.part", 2)
    export(tmp_path, ".b.csv", 3)
    export(tmp_path, "c.csv.tmp", 4)
    export(tmp_path, "d.csv", 5)
    export(tmp_path, "~e.csv", 6)

    batches = await read_all(connector(tmp_path, ignore=["~*", "d.*"]))

    assert employees(batches) == ["E1"]


async def test_a_file_modified_within_the_settle_time_waits_for_the_next_run(tmp_path):
    export(tmp_path, "a.csv", 1, age=600)
    export(tmp_path, "b.csv", 2, age=5)

    batches = await read_all(connector(tmp_path, settle_seconds=60))

    assert employees(batches) == ["E1"]
    assert sorted(batches[-1].state["files"]) == ["a.csv"]


async def test_with_done_markers_a_file_is_read_only_once_its_marker_exists(tmp_path):
    export(tmp_path, "a.csv", 1)
    export(tmp_path, "b.csv", 2)
    (tmp_path / "b.csv.done").write_text("")
    source = connector(tmp_path, require_done_file=True)

    first = await read_all(source)
    (tmp_path / "a.csv.done").write_text("")
    second = await read_all(source, first[-1].state)

    assert (employees(first), employees(second)) == (["E2"], ["E1"])


async def test_a_file_that_changes_while_it_is_read_is_abandoned_with_a_warning(tmp_path):
    path = export(tmp_path, "a.csv", 1, 2, 3)
    source = connector(tmp_path)
    source.batch_size = 1
    batches = []
    with structlog.testing.capture_logs() as logs:
        async for batch in source.read("pay_lines", None):
            batches.append(batch)
            if len(batches) == 1:  # the export is being rewritten under the reader
                path.write_text(path.read_text() + line(4) + "\n")

    assert employees(batches) == ["E1"]
    assert batches[-1].state["files"]["a.csv"]["complete"] is False
    assert [(e["event"], e["file"]) for e in logs if e["log_level"] == "warning"] == [
        ("flat_file.file_changed_while_read", "a.csv")
    ]
    again = await read_all(connector(tmp_path), batches[-1].state)
    assert employees(again) == ["E1", "E2", "E3", "E4"]  # new content, read whole: upserted


async def test_an_acknowledged_file_is_archived_under_a_free_name_with_its_done_marker(tmp_path):
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    export(inbox, "a.csv", 1)
    (inbox / "a.csv.done").write_text("")
    export(archive, "a.csv", 9)
    export(archive, "a.1.csv", 9)
    source = connector(inbox, archive_folder=str(archive), require_done_file=True)
    batches = await read_all(source)

    await source.acknowledge("pay_lines", batches[0].state)  # mid-file: nothing finished
    assert sorted(p.name for p in inbox.iterdir()) == ["a.csv", "a.csv.done"]
    await source.acknowledge("pay_lines", batches[-1].state)

    assert list(inbox.iterdir()) == []
    assert sorted(p.name for p in archive.iterdir()) == [
        "a.1.csv",
        "a.2.csv",
        "a.csv",
        "a.csv.done",
    ]
    assert "E1," in (archive / "a.2.csv").read_text()


async def test_a_file_rewritten_after_it_was_read_is_not_archived_before_its_own_read(tmp_path):
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    archive.mkdir()
    export(inbox, "a.csv", 1)
    source = connector(inbox, archive_folder=str(archive))
    batches = await read_all(source)
    export(inbox, "a.csv", 1, 2, age=1)

    await source.acknowledge("pay_lines", batches[-1].state)

    assert list(archive.iterdir()) == []


async def test_archived_files_leave_the_state_and_their_checksums_are_kept_for_a_while(tmp_path):
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    archive.mkdir()
    export(inbox, "a.csv", 1)
    source = connector(inbox, archive_folder=str(archive), remember_days=30)
    read = await read_all(source)
    await source.acknowledge("pay_lines", read[-1].state)
    checksum = read[-1].state["files"]["a.csv"]["sha256"]

    [after] = await read_all(source, read[-1].state)
    (inbox / "again.csv").write_bytes((archive / "a.csv").read_bytes())  # dropped again
    again = await read_all(source, after.state)
    long_after = {**after.state, "seen": {checksum: "2026-01-01"}}
    (inbox / "again.csv").unlink()
    expired = await read_all(source, long_after)

    today = datetime.now(UTC).date().isoformat()
    assert after.state == {"files": {}, "seen": {checksum: today}}
    assert employees(again) == []
    assert again[-1].state["files"]["again.csv"]["complete"] is True
    assert expired[-1].state["seen"] == {}


async def test_a_route_run_archives_what_it_delivered(runtime, config_dir):
    archive = config_dir / "sample-data" / "eastview-archive"
    archive.mkdir()
    connection = config_dir / "connections" / "eastview-payroll.toml"
    connection.write_text(
        connection.read_text().replace(
            'account_layout = "nys"',
            'account_layout = "nys"\narchive_folder = "sample-data/eastview-archive"',
        )
    )
    await apply(runtime.engine, load_config(config_dir))

    summary = await run_route(runtime.engine, runtime.plugins, "eastview-payroll")

    assert (summary.status, summary.counts.written) == ("succeeded", 51), summary.error
    assert not (config_dir / "sample-data" / "eastview" / "payroll_2026-10.csv").exists()
    assert [p.name for p in archive.iterdir()] == ["payroll_2026-10.csv"]


async def test_check_names_a_missing_folder_and_a_missing_archive_folder(tmp_path):
    with pytest.raises(sdk.ConnectorConfigError) as missing:
        await connector(tmp_path / "nowhere").check()
    with pytest.raises(sdk.ConnectorConfigError) as no_archive:
        await connector(tmp_path, archive_folder="done").check()

    assert str(missing.value) == f"folder {tmp_path / 'nowhere'} does not exist"
    assert str(no_archive.value) == f"archive folder {tmp_path / 'done'} does not exist"


def test_remembered_checksums_expire_by_date(tmp_path):
    source = connector(tmp_path, remember_days=10)
    today = datetime.now(UTC).date()
    seen = {
        "kept": (today - timedelta(days=10)).isoformat(),
        "gone": (today - timedelta(days=11)).isoformat(),
    }

    source._forget_gone({}, seen, [])

    assert list(seen) == ["kept"]
