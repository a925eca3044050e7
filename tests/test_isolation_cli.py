"""The CLI is the administrator's tool on the hub's host, not member-scoped; where it takes
`--member`, what it prints is that member's alone."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.test_crash_safety import cohub, worker_environment
from tests.test_serve import example

OTHERS = ("millbrook", "harbor-falls", "Millbrook", "Harbor Falls")


def test_member_filters_print_that_members_data_alone(tmp_path, database_url):
    config = example(tmp_path, database_url)
    env = worker_environment(tmp_path / "home")
    run = lambda *a: cohub(*a, config=config, database=database_url, cwd=tmp_path, env=env)  # noqa: E731
    assert run("db", "upgrade").returncode == 0
    assert run("demo", str(config)).returncode == 0
    month = datetime.now(UTC).strftime("%Y-%m")
    for command in (
        ("usage", "--member", "eastview"),
        ("usage", "--member", "eastview", "--by", "day", "--format", "csv"),
        ("deadletters", "list", "--member", "eastview", "--status", "any"),
        ("billing", "statement", month, "--member", "eastview", "--format", "csv"),
    ):
        done = run(*command)
        assert done.returncode == 0, (command, done.stderr)
        assert not [o for o in OTHERS if o in done.stdout], (command, done.stdout[:500])
    assert "eastview" in run("usage", "--member", "eastview").stdout
