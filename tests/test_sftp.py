"""The flat-file connector over SFTP, against a real OpenSSH server on loopback (`tests.sshd`):
reading delimited and fixed-width files through a route run, archiving after delivery, never
reading a half-written file, writing files atomically and once, and `check` saying precisely
what is wrong."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.flat_file import FlatFileConnector
from connectors.flat_file.transports import FileChanged
from hub import sdk
from hub.apply import apply
from hub.config import load_config
from hub.engine.run import run_route
from hub.model.payroll import PayLine
from tests.sshd import SshServer, free_port, generate_key, running_sshd
from tests.test_end_to_end import destination_rows

EASTVIEW_EXPORT = Path(__file__).parent.parent / "config/sample-data/eastview/payroll_2026-10.csv"
COLUMNS = {
    "pay_run_id": "PayRunID",
    "pay_date": "PayDate",
    "employee_id": "EmpID",
    "employee_name": "EmpName",
    "line_number": "LineNo",
    "code": "EarnCode",
    "amount": "Amount",
    "updated_at": "LastModified",
}
HEADER = "PayRunID,PayDate,EmpID,EmpName,LineNo,EarnCode,Amount,Account,LastModified"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def options(server: SshServer, folder: Path, **more) -> dict:
    return {
        "folder": str(folder),
        "transport": "sftp",
        "host": server.host,
        "port": server.port,
        "username": server.user,
        "known_hosts": server.fingerprint,
        "streams": {
            "pay_lines": {
                "record": "payroll.pay_line",
                "columns": COLUMNS,
                "account_column": "Account",
            }
        },
        **more,
    }


def connector(server: SshServer, folder: Path, secrets=None, **more) -> FlatFileConnector:
    context = sdk.ConnectionContext(connection="sftp", member="eastview", base_dir=str(folder))
    return FlatFileConnector(
        FlatFileConnector.parse_options(options(server, folder, **more)),
        {"private_key": server.client_key} if secrets is None else secrets,
        context,
    )


async def read_all(source: FlatFileConnector, state=None) -> list[sdk.Batch]:
    try:
        return [batch async for batch in source.read("pay_lines", state)]
    finally:
        await source.close()


def line(n: int, name: str = "Doe, Sam") -> str:
    return f'EA-1,2026-10-15,E{n},"{name}",{n},REG,100.00,A2110.150-00-0000,2026-10-15T18:30:00Z'


def export(folder: Path, name: str, rows: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


# --- reading through a route run -----------------------------------------------------------


def add_sftp_route(config_dir: Path, server: SshServer, inbox: Path, archive: Path) -> None:
    """An `eastview-sftp` connection reading Eastview's exports from the SFTP server (delimited
    `pay_lines` and fixed-width `fixed_lines`), routed into the CBO payroll database."""
    (config_dir / "connections" / "eastview-sftp.toml").write_text(
        f"""
connector = "flat_file"
member = "eastview"
secrets = {{ private_key = "env:COHUB_TEST_SFTP_KEY" }}

[options]
transport = "sftp"
host = "{server.host}"
port = {server.port}
username = "{server.user}"
known_hosts = "{server.known_hosts}"
folder = "{inbox}"
archive_folder = "{archive}"

[options.streams.pay_lines]
record = "payroll.pay_line"
pattern = "payroll_*.csv"
account_column = "Account"
columns = {{ pay_run_id = "PayRunID", pay_date = "PayDate", period_start = "PeriodStart", \
period_end = "PeriodEnd", employee_id = "EmpID", employee_name = "EmpName", line_number = "LineNo", \
code = "EarnCode", kind = "Type", hours = "Hours", rate = "Rate", amount = "Amount", \
updated_at = "LastModified" }}

[options.streams.fixed_lines]
record = "payroll.pay_line"
format = "fixed_width"
pattern = "PAY*.txt"
record_type_column = "1"
record_types = ["D"]
date_format = "%Y%m%d"
implied_decimals = {{ amount = 2 }}
account_column = "34-50"
columns = {{ pay_run_id = "2-7", pay_date = "8-15", employee_id = "16-21", line_number = "22-24", \
code = "25-27", amount = "28-33", employee_name = "51-70" }}
"""
    )
    routes = config_dir / "routes.toml"
    routes.write_text(
        routes.read_text()
        + "".join(
            f"""
[routes.eastview-sftp-{stream.replace("_", "-")}]
source = "eastview-sftp"
source_stream = "{stream}"
destination = "cbo-payroll-db"
destination_stream = "pay_lines"
service = "cbo-payroll"
"""
            for stream in ("pay_lines", "fixed_lines")
        )
    )


async def test_a_route_reads_delimited_and_fixed_width_files_over_sftp_and_archives_them(
    runtime, config_dir, database_url, sshd, tmp_path, monkeypatch
):
    inbox, archive = tmp_path / "remote" / "inbox", tmp_path / "remote" / "archive"
    inbox.mkdir(parents=True)
    archive.mkdir()
    shutil.copy(EASTVIEW_EXPORT, inbox / "payroll_2026-10.csv")
    (inbox / "PAY1015.txt").write_text(
        "H20261015 EASTVIEW\r\n"
        "DEA-FW 20261015E90100001REG012345A2110.150-00-0000Muñoz, Ana\r\n"
        "DEA-FW 20261015E90200002OVT00950-A2110.150-00-0000Zoë Park\r\n"
        "T000002\r\n",
        encoding="utf-8",
        newline="",
    )
    monkeypatch.setenv("COHUB_TEST_SFTP_KEY", sshd.client_key)
    add_sftp_route(config_dir, sshd, inbox, archive)
    await apply(runtime.engine, load_config(config_dir))

    delimited = await run_route(runtime.engine, runtime.plugins, "eastview-sftp-pay-lines")
    fixed = await run_route(runtime.engine, runtime.plugins, "eastview-sftp-fixed-lines")
    again = await run_route(runtime.engine, runtime.plugins, "eastview-sftp-pay-lines")

    assert (delimited.status, delimited.counts.read, delimited.counts.written) == (
        "succeeded",
        51,
        51,
    ), delimited.error
    assert (fixed.status, fixed.counts.read, fixed.counts.written) == ("succeeded", 2, 2)
    assert (again.status, again.counts.read) == ("succeeded", 0)
    rows = {r["record_key"]: r for r in await destination_rows(database_url)}
    assert len(rows) == 53
    assert rows["EA-FW|E90100|1"]["amount"] == Decimal("123.45")
    assert rows["EA-FW|E90100|1"]["employee_name"] == "Muñoz, Ana"
    assert rows["EA-FW|E90200|2"]["amount"] == Decimal("-9.50")
    assert rows["EA-FW|E90200|2"]["pay_date"] == date(2026, 10, 15)
    assert rows["EA-2026-20|E1001|1"]["amount"] == Decimal("2650.00")
    assert sorted(p.name for p in inbox.iterdir()) == []
    assert sorted(p.name for p in archive.iterdir()) == ["PAY1015.txt", "payroll_2026-10.csv"]


# --- reading: once only, half-written files, archive -----------------------------------------


async def test_a_file_is_read_once_and_a_changed_one_again(sshd, tmp_path):
    inbox = tmp_path / "inbox"
    path = export(inbox, "a.csv", [line(1), line(2, "Muñoz, José")])
    state = (await read_all(connector(sshd, inbox)))[-1].state

    assert await read_all(connector(sshd, inbox), state) == []

    export(inbox, "a.csv", [line(1), line(2, "Muñoz, José"), line(3)])
    os.utime(path, (1_790_000_000, 1_790_000_000))
    again = await read_all(connector(sshd, inbox), state)
    assert [r.employee_name for b in again for r in b.records] == [
        "Doe, Sam",
        "Muñoz, José",
        "Doe, Sam",
    ]
    assert again[-1].state["files"]["a.csv"]["sha256"] != state["files"]["a.csv"]["sha256"]


async def test_files_still_being_written_are_not_read(sshd, tmp_path):
    inbox = tmp_path / "inbox"
    export(inbox, "done.csv", [line(1)])
    export(inbox, "a.csv.part", [line(2)])
    export(inbox, ".a.csv", [line(3)])
    export(inbox, "b.csv.tmp", [line(4)])
    export(inbox, "fresh.csv", [line(5)])
    old = 1_700_000_000
    for name in ("done.csv", "a.csv.part", ".a.csv", "b.csv.tmp"):
        os.utime(inbox / name, (old, old))

    batches = await read_all(connector(sshd, inbox, settle_seconds=300))

    assert [r.employee_id for b in batches for r in b.records] == ["E1"]
    assert sorted(batches[-1].state["files"]) == ["done.csv"]


async def test_a_remote_file_that_changes_while_it_is_read_is_left_for_the_next_run(sshd, tmp_path):
    inbox = tmp_path / "inbox"
    export(inbox, "a.csv", [line(1), line(2)])
    growing = export(inbox, "b.csv", [line(3)])
    source = connector(sshd, inbox)
    source.batch_size = 1
    batches = []
    async for batch in source.read("pay_lines", None):
        batches.append(batch)
        if len(batches) == 1:  # b.csv listed, not yet downloaded: the writer goes on
            with growing.open("a") as handle:
                handle.write(line(4) + "\n")
            os.utime(growing, (1_790_000_000, 1_790_000_000))
    await source.close()

    assert [r.employee_id for b in batches for r in b.records] == ["E1", "E2"]
    assert "b.csv" not in batches[-1].state["files"]
    again = await read_all(connector(sshd, inbox), batches[-1].state)
    assert [r.employee_id for b in again for r in b.records] == ["E3", "E4"]


async def test_a_snapshot_of_a_file_that_moved_since_the_listing_is_refused(sshd, tmp_path):
    inbox = tmp_path / "inbox"
    path = export(inbox, "a.csv", [line(1)])
    folder = connector(sshd, inbox)._folder()
    [entry] = await folder.entries()
    path.write_text(path.read_text() + line(2) + "\n")

    with pytest.raises(FileChanged):
        async with folder.snapshot(entry):
            pass
    await folder.close()


async def test_a_done_marker_makes_a_file_ready(sshd, tmp_path):
    inbox = tmp_path / "inbox"
    export(inbox, "a.csv", [line(1)])
    export(inbox, "b.csv", [line(2)])
    (inbox / "b.csv.done").write_text("")

    batches = await read_all(connector(sshd, inbox, require_done_file=True))

    assert [r.employee_id for b in batches for r in b.records] == ["E2"]


async def test_acknowledged_files_are_archived_without_overwriting_and_not_read_again(
    sshd, tmp_path
):
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    export(inbox, "a.csv", [line(1)])
    export(archive, "a.csv", ["an older a.csv"])
    source = connector(sshd, inbox, archive_folder=str(archive))
    batches = [b async for b in source.read("pay_lines", None)]

    await source.acknowledge("pay_lines", batches[-1].state)
    await source.close()

    assert sorted(p.name for p in archive.iterdir()) == ["a.1.csv", "a.csv"]
    assert "E1" in (archive / "a.1.csv").read_text()
    assert not (inbox / "a.csv").exists()
    forgotten = await read_all(connector(sshd, inbox), batches[-1].state)
    [state] = [b.state for b in forgotten]
    assert state["files"] == {}
    assert list(state["seen"]) == [batches[-1].state["files"]["a.csv"]["sha256"]]

    shutil.copy(archive / "a.1.csv", inbox / "a.csv")  # the district drops it again
    dropped = await read_all(connector(sshd, inbox), state)
    assert [r for b in dropped for r in b.records] == []
    assert dropped[-1].state["files"]["a.csv"]["complete"] is True


# --- writing -------------------------------------------------------------------------------


def pay_line(n: int) -> PayLine:
    return PayLine(
        pay_run_id="EA-1",
        employee_id=f"E{n}",
        line_number=n,
        pay_date=date(2026, 10, 15),
        code="REG",
        amount=Decimal("1234.50"),
        account=sdk.account_layout("nys").parse("A2110.150-00-0000"),
        employee_name="Muñoz, José",
        updated_at=datetime(2026, 10, 15, 18, 30, tzinfo=UTC),
    )


async def test_a_batch_is_written_as_one_file_atomically_and_a_retry_does_not_duplicate_it(
    sshd, tmp_path
):
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    destination = connector(sshd, outbox)
    batch = sdk.Batch(records=[pay_line(1), pay_line(2)], state={}, member="eastview", generation=7)

    first = await destination.write("pay_lines", batch, "eastview")
    second = await destination.write("pay_lines", batch, "eastview")
    await destination.close()

    assert (first.written, second.written) == (2, 2)
    [written] = list(outbox.iterdir())
    assert written.name.startswith("pay_lines_eastview_7_") and written.name.endswith(".csv")
    assert written.read_bytes().decode("utf-8-sig").splitlines() == [
        "PayRunID,PayDate,EmpID,EmpName,LineNo,EarnCode,Amount,LastModified,Account",
        'EA-1,2026-10-15,E1,"Muñoz, José",1,REG,1234.50,2026-10-15T18:30:00+00:00,A2110.150-00-0000',
        'EA-1,2026-10-15,E2,"Muñoz, José",2,REG,1234.50,2026-10-15T18:30:00+00:00,A2110.150-00-0000',
    ]


# --- check: precise messages ---------------------------------------------------------------


async def check(source: FlatFileConnector) -> str:
    try:
        with pytest.raises(sdk.ConnectorError) as error:
            await source.check()
    finally:
        await source.close()
    return f"{type(error.value).__name__}: {error.value}"


async def test_check_passes_with_the_right_key_and_host_key(sshd, tmp_path):
    inbox = tmp_path / "inbox"
    export(inbox, "a.csv", [line(1)])
    by_file = connector(sshd, inbox, known_hosts=str(sshd.known_hosts))

    await by_file.check()
    await by_file.close()
    by_fingerprint = connector(sshd, inbox)
    await by_fingerprint.check()
    await by_fingerprint.close()


async def test_a_private_key_stored_base64_on_one_line_is_read(sshd, tmp_path):
    one_line = base64.b64encode(sshd.client_key.encode()).decode()
    source = connector(sshd, tmp_path, secrets={"private_key": one_line})

    await source.check()
    await source.close()


async def test_check_names_a_key_the_server_refuses(sshd, tmp_path):
    stranger = generate_key(tmp_path / "stranger").export_private_key().decode()

    message = await check(connector(sshd, tmp_path, secrets={"private_key": stranger}))

    assert message == (
        f"AuthError: 127.0.0.1:{sshd.port} refused user {sshd.user!r} with the private key given"
    )
    assert "PRIVATE KEY" not in message


async def test_check_names_a_password_the_server_refuses(sshd, tmp_path):
    message = await check(connector(sshd, tmp_path, secrets={"password": "hunter2-canary"}))

    assert message == (
        f"AuthError: 127.0.0.1:{sshd.port} refused user {sshd.user!r} with the password given"
    )


async def test_check_refuses_a_host_whose_key_is_not_the_trusted_one(sshd, tmp_path):
    other = generate_key(tmp_path / "other_host")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {other.export_public_key().decode()}")

    by_fingerprint = await check(
        connector(sshd, tmp_path, known_hosts=other.get_fingerprint("sha256"))
    )
    by_file = await check(connector(sshd, tmp_path, known_hosts=str(known)))

    assert by_fingerprint == (
        f"ConnectorConfigError: the host key of 127.0.0.1:{sshd.port} is not the one the "
        f"fingerprint {other.get_fingerprint('sha256')} trusts (it offered {sshd.fingerprint}): "
        "refusing to connect (if the server's key was changed on purpose, update known_hosts)"
    )
    assert by_file == (
        f"ConnectorConfigError: the host key of 127.0.0.1:{sshd.port} is not the one known_hosts "
        f"({known}) trusts (it offered {sshd.fingerprint}): refusing to connect (if the "
        "server's key was changed on purpose, update known_hosts)"
    )


async def test_check_names_a_port_nothing_listens_on(sshd, tmp_path):
    port = free_port()

    message = await check(connector(sshd, tmp_path, port=port))

    assert message == (
        f"TransientError: 127.0.0.1:{port} refused the connection: no SSH server listens on "
        "that port"
    )


async def test_check_names_a_host_that_does_not_resolve(sshd, tmp_path):
    message = await check(connector(sshd, tmp_path, host="sftp.invalid"))

    assert message.startswith("ConnectorConfigError: host 'sftp.invalid' cannot be resolved: ")


async def test_check_names_a_missing_remote_folder_and_archive_folder(sshd, tmp_path):
    missing = await check(connector(sshd, tmp_path / "nowhere"))
    no_archive = await check(connector(sshd, tmp_path, archive_folder=str(tmp_path / "gone")))

    assert (
        missing
        == f"ConnectorConfigError: folder {tmp_path / 'nowhere'} does not exist on 127.0.0.1"
    )
    assert no_archive == (
        f"ConnectorConfigError: archive folder {tmp_path / 'gone'} does not exist on 127.0.0.1"
    )


async def test_check_names_a_remote_folder_the_user_may_not_read(sshd, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: the test logs in as nobody to meet a permission it lacks")
    shared = Path(tempfile.mkdtemp(prefix="cohub-sftp-"))  # outside pytest's private tmp
    try:
        shared.chmod(0o755)
        locked = shared / "locked"
        locked.mkdir(mode=0o700)

        message = await check(connector(sshd, locked, username="nobody"))
    finally:
        shutil.rmtree(shared)

    assert message == (
        f"ConnectorConfigError: folder {locked} on 127.0.0.1: permission denied for user 'nobody'"
    )


async def test_sftp_without_a_secret_is_a_configuration_error(sshd, tmp_path):
    message = await check(connector(sshd, tmp_path, secrets={}))

    assert (
        message
        == "ConnectorConfigError: sftp needs the secret password or private_key (none is set)"
    )
