"""Structured logging: JSON lines for the daemon and ``--json``, readable lines in a terminal.

The redaction processor runs before the renderer, so no secret value or PII field reaches any
output; tracebacks are rendered without local variables (they can hold secrets).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from hub.redaction import mask


def redact(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask sensitive keys and scrub secret values from every field."""
    return mask(event)


class _StandardError:
    """sys.stderr looked up at each write, so a swapped stream (pytest, daemons) is followed."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(*, json: bool, level: str = "info", stream: Any = None) -> None:
    """Set up structlog once per process (loggers are cached on first use)."""
    output = stream or _StandardError()
    renderer: Any
    if json:
        renderer = structlog.processors.JSONRenderer()
        exceptions: Any = structlog.processors.format_exc_info
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=output.isatty(),
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False)
            if output.isatty()
            else structlog.dev.plain_traceback,
        )
        exceptions = structlog.dev.set_exc_info
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            exceptions,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(output),
        cache_logger_on_first_use=True,
    )
