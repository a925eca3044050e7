"""Logs carry events with fields, and never a secret value or a PII field."""

from __future__ import annotations

import io
import json

import structlog

from hub import logs
from hub.redaction import MASK, mask, redact_text, register_secret


def capture_json() -> io.StringIO:
    stream = io.StringIO()
    structlog.reset_defaults()
    logs.configure(json=True, level="debug", stream=stream)
    return stream


def test_a_resolved_secret_is_masked_wherever_it_appears_in_a_log_line():
    register_secret("s3cr3t-Canary-7731")
    stream = capture_json()

    structlog.get_logger("t").warning(
        "connector.failed", error="login as cbo with s3cr3t-Canary-7731 refused", attempt=2
    )

    event = json.loads(stream.getvalue())
    assert event["error"] == f"login as cbo with {MASK} refused"
    assert event["attempt"] == 2
    assert "s3cr3t-Canary-7731" not in stream.getvalue()


def test_secret_and_pii_fields_are_masked_by_name():
    stream = capture_json()

    structlog.get_logger("t").info(
        "record.rejected",
        record={"employee_id": "E1", "ssn": "123-45-6789", "birth_date": "1980-01-02"},
        password="x",
    )

    event = json.loads(stream.getvalue())
    assert event["record"] == {"employee_id": "E1", "ssn": MASK, "birth_date": MASK}
    assert event["password"] == MASK


def test_an_exception_is_logged_without_local_variables():
    stream = capture_json()

    def connect(password: str) -> None:
        raise ConnectionError("refused")

    secret = "-".join(["hunter2", "local", "value"])  # never spelled out in the source lines
    try:
        connect(secret)
    except ConnectionError:
        structlog.get_logger("t").exception("connect.failed")

    assert "hunter2-local-value" not in stream.getvalue()
    assert "ConnectionError: refused" in json.loads(stream.getvalue())["exception"]


def test_masking_leaves_other_values_alone_and_handles_nesting():
    register_secret("tok-ABCDEFGH")

    assert mask({"a": [{"bank_account": "021000021"}, "Bearer tok-ABCDEFGH"], "n": 3}) == {
        "a": [{"bank_account": MASK}, f"Bearer {MASK}"],
        "n": 3,
    }
    assert redact_text("nothing secret here") == "nothing secret here"
