"""A pytest plugin: canary secret and PII values that must never show up in any test's output.

Tests plant canaries (`plant`); after every test, whatever pytest captured for it (stdout,
stderr, log records) and its failure report are searched for every canary planted so far, in
plain and URL-encoded form, and a test whose output holds one fails naming it. Enable it with
``pytest_plugins = ["tests.canaries"]`` in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

import pytest

_planted: set[str] = set()


def plant(value: str) -> str:
    """Remember `value` as a canary (no output may ever contain it); return it."""
    _planted.add(value)
    return value


def forms(value: str) -> set[str]:
    """The ways a canary can appear: as is, and URL-encoded (a password inside a URL)."""
    return {value, quote(value, safe=""), quote_plus(value)}


def leaks(texts: Iterable[str], canaries: Iterable[str] | None = None) -> list[str]:
    """The canaries (`canaries`, else every one planted) found in any of `texts`."""
    found = []
    wanted = list(canaries if canaries is not None else _planted)
    for text in texts:
        for canary in wanted:
            if canary not in found and any(form in text for form in forms(canary)):
                found.append(canary)
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    if not _planted:
        return
    report = outcome.get_result()
    texts = [content for _, _, content in item._report_sections]
    texts += [content for _, content in report.sections]
    if report.longrepr is not None:
        texts.append(str(report.longrepr))
    found = leaks(texts)
    if found and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = f"canary value(s) in the test's captured output: {found}"
