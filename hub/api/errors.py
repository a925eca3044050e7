"""The API's errors: one JSON shape for every 4xx and 5xx, so a client parses failures one way.

``{"error": {"status": 422, "code": "invalid", "message": "...", "field": "options.path"}}``
"""

from __future__ import annotations

import re

import msgspec


class ErrorBody(msgspec.Struct, kw_only=True):
    """What went wrong: a stable `code` to branch on, a `message` for people, and the `field`
    (a dotted path into the body or the query parameter's name) when one input was wrong."""

    status: int
    code: str
    message: str
    field: str | None = None


class ErrorResponse(msgspec.Struct, kw_only=True):
    error: ErrorBody


#: The HTTP status each code is answered with.
STATUS = {
    "bad_request": 400,
    "invalid": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "too_large": 413,
    "unsupported_media_type": 415,
    "too_many_requests": 429,
    "internal": 500,
    "unavailable": 503,
}
CODES = {status: code for code, status in STATUS.items()}


class ApiError(Exception):
    """Raised by a handler (or the request decoding) to answer with a JSON error."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.body = ErrorBody(status=STATUS[code], code=code, message=message, field=field)


def not_found(kind: str, key: object) -> ApiError:
    return ApiError("not_found", f"no {kind} {key!r}")


def from_validation(error: msgspec.ValidationError, *, where: str) -> ApiError:
    """msgspec's "Expected `int`, got `str` - at `$.limit`" as an error naming the field."""
    text = str(error)
    message, _, path = text.partition(" - at `")
    field = re.sub(r"\[(\d+)\]", r".\1", path.rstrip("`").removeprefix("$")).lstrip(".") or None
    if message.startswith("Object contains unknown field"):
        name = message.split("`")[1]
        field = f"{field}.{name}" if field else name
        message = f"unknown {where} field" if where == "body" else "unknown query parameter"
    elif message.startswith("Object missing required field"):
        name = message.split("`")[1]
        field = f"{field}.{name}" if field else name
        message = "required" if where == "body" else "required query parameter"
    return ApiError("invalid" if where == "body" else "bad_request", f"{message}", field=field)
