"""Redaction: secret values and PII never leave the hub in logs, errors or dead letters shown.

Secrets are redacted by *value*: every resolved secret is registered here, and any text the hub
emits is scrubbed of it. PII is masked by *field name*: record fields marked `Pii` and a few
names that always mean a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "****"

#: Keys whose values are secret wherever they appear.
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "client_secret",
        "authorization",
        "private_key",
    }
)
#: PII field names masked wherever they appear, on top of each record's own marks.
PII_KEYS = frozenset(
    {
        "ssn",
        "social_security_number",
        "bank_account",
        "routing_number",
        "birth_date",
        "date_of_birth",
    }
)

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Remember a resolved secret so every later output is scrubbed of it."""
    global _pattern
    if len(value) >= 4 and value not in _secrets:
        _secrets.add(value)
        _pattern = re.compile(
            "|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True))
        )


def redact_text(text: str) -> str:
    """`text` with every registered secret value replaced by the mask."""
    if _pattern is None:
        return text
    return _pattern.sub(MASK, text)


def is_sensitive_key(key: str, extra: Iterable[str] = ()) -> bool:
    """Whether a field called `key` holds a secret or PII."""
    lowered = key.lower()
    return lowered in SECRET_KEYS or lowered in PII_KEYS or lowered in extra


def mask(value: Any, extra: frozenset[str] = frozenset()) -> Any:
    """A copy of `value` with sensitive keys masked and secret values scrubbed, recursively."""
    if isinstance(value, Mapping):
        return {
            k: (
                MASK
                if value[k] is not None and is_sensitive_key(str(k), extra)
                else mask(value[k], extra)
            )
            for k in value
        }
    if isinstance(value, list | tuple):
        return [mask(v, extra) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
