"""``cohub keys rotate`` and ``cohub member purge`` as an admin types them, on each backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.vault import parse_keys

REPO = Path(__file__).resolve().parent.parent


def cohub(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("COHUB_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        cwd=cwd,
        env=environment,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def hub_dir(tmp_path: Path, database_url: str):
    """A folder with an initialised hub (master key, migrated database); `run` calls cohub
    there against the test database."""

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return cohub("--database", database_url, *args, cwd=tmp_path, **kwargs)

    assert run("db", "upgrade").returncode == 0
    assert run("init").returncode == 0
    return tmp_path, run


def key_of(folder: Path) -> Path:
    return folder / ".cohub" / "master.key"


def test_rotate_puts_a_new_key_first_then_drop_old_leaves_only_it(hub_dir):
    folder, run = hub_dir
    assert run("secrets", "set", "shared.smtp", stdin="smtp-pw-2\n").returncode == 0
    old = parse_keys(key_of(folder).read_text())

    rotated = run("keys", "rotate")

    assert rotated.returncode == 0, rotated.stderr
    assert "1 vault secret(s) re-encrypted" in rotated.stdout
    now = parse_keys(key_of(folder).read_text())
    assert len(now) == 2 and now[1] == old[0]
    assert oct(key_of(folder).stat().st_mode & 0o777) == "0o600"
    assert not any(key in rotated.stdout + rotated.stderr for key in now)

    dropped = run("keys", "rotate", "--drop-old")

    assert dropped.returncode == 0, dropped.stderr
    final = parse_keys(key_of(folder).read_text())
    assert len(final) == 1 and final[0] not in now
    # The secret still opens under the one key left: a further rotation verifies it first.
    assert run("keys", "rotate").returncode == 0


def test_rotate_with_a_wrong_key_is_a_clear_error_and_changes_nothing(hub_dir):
    folder, run = hub_dir
    assert run("secrets", "set", "shared.smtp", stdin="smtp-pw-2\n").returncode == 0
    key_of(folder).unlink()
    assert run("init").returncode == 0  # a new, different key
    wrong = key_of(folder).read_text()

    result = run("keys", "rotate")

    assert result.returncode == 2
    assert "vault secret 'shared.smtp' cannot be decrypted with the master key" in result.stderr
    assert "Nothing was changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert parse_keys(wrong)[0] not in result.stdout + result.stderr
    assert key_of(folder).read_text() == wrong


def test_rotate_without_any_master_key_says_how_to_make_one(tmp_path, database_url):
    assert cohub("--database", database_url, "db", "upgrade", cwd=tmp_path).returncode == 0

    result = cohub("--database", database_url, "keys", "rotate", cwd=tmp_path)

    assert result.returncode == 2
    assert "no master key: set COHUB_MASTER_KEY or run `cohub init`" in result.stderr
    assert "Traceback" not in result.stderr


def test_rotate_with_the_key_in_the_environment_prints_the_new_value(tmp_path, database_url):
    folder = tmp_path
    from cryptography.fernet import Fernet

    first = Fernet.generate_key().decode()
    base = ["--database", database_url]
    assert cohub(*base, "db", "upgrade", cwd=folder).returncode == 0
    env = {"COHUB_MASTER_KEY": first}
    stored = cohub(*base, "secrets", "set", "shared.smtp", cwd=folder, env=env, stdin="pw-9\n")
    assert stored.returncode == 0, stored.stderr

    rotated = cohub(*base, "keys", "rotate", cwd=folder, env=env)

    assert rotated.returncode == 0, rotated.stderr
    [line] = [x for x in rotated.stdout.splitlines() if x.startswith("COHUB_MASTER_KEY=")]
    value = line.removeprefix("COHUB_MASTER_KEY=")
    assert parse_keys(value)[1:] == [first]
    assert not key_of(folder).exists()
    # The old value alone no longer opens the re-encrypted secret; the printed one does.
    stale = cohub(*base, "keys", "rotate", cwd=folder, env=env)
    assert stale.returncode == 2 and "cannot be decrypted" in stale.stderr
    dropped = cohub(
        *base, "keys", "rotate", "--drop-old", cwd=folder, env={"COHUB_MASTER_KEY": value}
    )
    assert dropped.returncode == 0, dropped.stderr
    [line] = [x for x in dropped.stdout.splitlines() if x.startswith("COHUB_MASTER_KEY=")]
    assert len(parse_keys(line.removeprefix("COHUB_MASTER_KEY="))) == 1


def test_purge_asks_for_confirmation_then_destroys_and_reports(tmp_path, database_url):
    base = ["--database", database_url]
    assert cohub(*base, "db", "upgrade", cwd=tmp_path).returncode == 0
    demo = cohub(*base, "demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert key_of(tmp_path).exists()  # the demo made a master key, so dead letters are sealed
    stored = cohub(
        *base,
        "secrets",
        "set",
        "harbor.sis",
        "--member",
        "harbor-falls",
        cwd=tmp_path,
        stdin="harbor-pw\n",
    )
    assert "sealed under member harbor-falls's data key" in stored.stdout
    shown = cohub(*base, "deadletters", "show", "3", cwd=tmp_path)  # after 2 held orders
    assert "HF-202" in shown.stdout  # readable through the one reader

    refused = cohub(*base, "member", "purge", "harbor-falls", cwd=tmp_path)
    assert refused.returncode == 2 and "confirm with --yes" in refused.stderr

    purged = cohub(*base, "member", "purge", "harbor-falls", "--yes", cwd=tmp_path)

    assert purged.returncode == 0, purged.stderr
    assert "dead letters deleted: 2" in purged.stdout
    assert "vault secrets deleted: 1" in purged.stdout
    assert "routes disabled: 5" in purged.stdout  # payroll, personnel and ledger routes
    assert "kept (financial records, no PII):" in purged.stdout
    assert ": 0 usage event(s)" not in purged.stdout
    listed = cohub(*base, "deadletters", "list", "--status", "any", cwd=tmp_path)
    assert "harbor-falls" not in listed.stdout
    again = cohub(*base, "sync", "harbor-falls-payroll", cwd=tmp_path)
    assert again.returncode != 0  # its route is disabled
    usage = cohub(*base, "usage", "--format", "json", cwd=tmp_path)
    assert "harbor-falls" in usage.stdout
    assert json.loads(usage.stdout)
