"""The documentation keeps up with the code: every hook, command and configuration key is in it."""

from __future__ import annotations

import argparse
import inspect
import re
import typing
from pathlib import Path

import msgspec
import pytest

from hub import hookspecs
from hub.billing.plans import Method, Plan, Tier
from hub.cli import build_parser
from hub.config import (
    Connection,
    Cooperative,
    Member,
    PluginSettings,
    Retention,
    Route,
    Service,
    StreamRetention,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"
HOOK_REFERENCE = DOCS / "plugins" / "hooks.md"
ADMIN_GUIDE = DOCS / "admin-guide.md"

CONFIG_STRUCTS = (
    Cooperative,
    Member,
    Service,
    PluginSettings,
    Connection,
    Route,
    Retention,
    StreamRetention,
)


def hooks() -> list[str]:
    """Every hook specification in hub/hookspecs.py."""
    return sorted(
        name
        for name, value in vars(hookspecs).items()
        if name.startswith("cohub_") and inspect.isfunction(value)
    )


def hook_headings() -> list[str]:
    """Second-level headings of the hook reference that name a ``cohub_`` hook."""
    headings = re.findall(r"^## +(.+?)\s*$", HOOK_REFERENCE.read_text(), flags=re.MULTILINE)
    names = (heading.strip("`") for heading in headings)
    return [name for name in names if name.startswith("cohub_")]


def subcommands() -> list[str]:
    """Every subcommand of the ``cohub`` parser."""
    parser = build_parser()
    return sorted(
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    )


def config_fields() -> list[tuple[str, str]]:
    """(struct, field) for every key the configuration files accept."""
    return [
        (struct.__name__, field.name)
        for struct in CONFIG_STRUCTS
        for field in msgspec.structs.fields(struct)
    ]


def test_the_checks_below_see_the_hooks_commands_and_keys_they_guard():
    assert "cohub_register_connectors" in hooks()
    assert "cohub_run_failed" in hooks()
    assert {"init", "validate", "apply", "sync", "deadletters"} <= set(subcommands())
    assert ("Route", "batch_size") in config_fields()
    assert ("PluginSettings", "disabled") in config_fields()


@pytest.mark.parametrize("hook", hooks())
def test_every_hook_has_its_own_heading_in_the_hook_reference(hook):
    assert hook in hook_headings(), f"docs/plugins/hooks.md has no '## {hook}' heading"


@pytest.mark.parametrize("heading", hook_headings())
def test_every_hook_heading_names_a_hook_that_exists(heading):
    assert heading in hooks(), f"'## {heading}' in docs/plugins/hooks.md is no hook in hookspecs"


def test_no_hook_has_two_headings_in_the_hook_reference():
    headings = hook_headings()
    assert sorted(headings) == sorted(set(headings))


@pytest.mark.parametrize("command", subcommands())
def test_every_cohub_command_is_mentioned_in_the_admin_guide(command):
    text = ADMIN_GUIDE.read_text()
    assert re.search(rf"\bcohub {re.escape(command)}\b", text), (
        f"docs/admin-guide.md never mentions `cohub {command}`"
    )


@pytest.mark.parametrize(("struct", "field"), config_fields())
def test_every_configuration_key_is_in_the_admin_guide(struct, field):
    assert f"`{field}`" in ADMIN_GUIDE.read_text(), (
        f"docs/admin-guide.md does not document `{field}` ({struct} in hub/config.py)"
    )


BILLING_GUIDE = Path(__file__).parent.parent / "docs" / "billing.md"


@pytest.mark.parametrize(
    "field",
    sorted({f.name for struct in (Plan, Tier) for f in msgspec.structs.fields(struct)}),
)
def test_every_billing_plan_key_is_in_the_billing_guide(field):
    assert f"`{field}`" in BILLING_GUIDE.read_text(), (
        f"docs/billing.md does not document `{field}` (hub/billing/plans.py)"
    )


@pytest.mark.parametrize("method", typing.get_args(Method))
def test_every_billing_method_is_in_the_billing_guide(method):
    assert f"| `{method}` |" in BILLING_GUIDE.read_text()


def test_every_api_endpoint_is_in_the_api_guide():
    from hub.api.app import build_app  # registers every endpoint
    from hub.api.endpoints import PREFIX, api

    assert build_app
    text = (DOCS / "api.md").read_text()
    for e in api.endpoints:
        assert f"`{e.method} {PREFIX}{e.path}`" in text, f"docs/api.md lacks {e.method} {e.path}"
