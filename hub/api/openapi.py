"""The OpenAPI 3.1 document, generated from the endpoint declarations the server runs.

Schemas come from the same msgspec types the handlers decode and encode with, so the document
describes what the server does; a test checks every response the API tests see against it.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.metadata import version
from typing import Any

import msgspec

from hub.api.endpoints import PREFIX, Endpoint, api
from hub.api.errors import CODES, ErrorResponse

REF = "#/components/schemas/{name}"
DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No content",
    400: "Malformed request or bad query parameter",
    401: "No valid API token",
    403: "The token's role may not do this",
    404: "Not found (or not visible to this token)",
    405: "Method not allowed",
    409: "Conflicts with the current state",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Body does not validate",
    429: "Too many failed tokens from this address, or tokens made by this token: see Retry-After",
    500: "Internal error",
}


def _operation_id(endpoint: Endpoint) -> str:
    return endpoint.handler.__name__


@cache
def document_bytes() -> bytes:
    """The document encoded once (it changes only with the code)."""
    return msgspec.json.encode(document())


@cache
def document() -> dict[str, Any]:
    endpoints = api.endpoints
    types: list[Any] = [ErrorResponse]
    for e in endpoints:
        types += [t for t in (e.body, e.response) if t is not None]
    queries = [e.query for e in endpoints if e.query is not None]
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    _, query_components = msgspec.json.schema_components(queries, ref_template=REF)
    by_type = dict(zip(types, schemas, strict=True))
    query_names = {q.__name__ for q in queries}
    for name, schema in query_components.items():  # enums the query parameters refer to
        if name not in query_names:
            components.setdefault(name, schema)
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        operation: dict[str, Any] = {
            "operationId": _operation_id(e),
            "summary": e.summary,
            "tags": [e.tag],
            "responses": {},
        }
        doc = (e.handler.__doc__ or "").strip()
        if doc:
            operation["description"] = re.sub(r"\s+", " ", doc)
        if e.allow is None:
            operation["security"] = []
        else:
            operation["x-roles"] = sorted(e.allow)
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 0}
                if e.path_types.get(name) is int
                else {"type": "string"},
            }
            for name in re.findall(r"{(\w+)}", e.path)
        ]
        if e.query is not None:
            schema = query_components[e.query.__name__]
            required = set(schema.get("required", []))
            parameters += [
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "schema": prop,
                }
                for name, prop in schema["properties"].items()
            ]
        if parameters:
            operation["parameters"] = parameters
        if e.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": by_type[e.body]}},
            }
        success: dict[str, Any] = {"description": DESCRIPTIONS[e.status]}
        if e.status != 204:
            content = {"application/json": {"schema": by_type.get(e.response, {})}}
            for media in e.media:
                content[media] = {"schema": {"type": "string"}}
            success["content"] = content
        operation["responses"][str(e.status)] = success
        failures = {400, 500, *e.errors}
        if e.allow is not None:
            failures |= {401, 403, 429}
        if e.body is not None:
            failures |= {413, 415, 422}
        error = {"application/json": {"schema": by_type[ErrorResponse]}}
        for status in sorted(failures):
            assert status in CODES
            operation["responses"][str(status)] = {
                "description": DESCRIPTIONS[status],
                "content": error,
            }
        paths.setdefault(PREFIX + e.path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Cohub admin API",
            "version": version("cohub"),
            "description": "Configure and watch the hub, read usage and statements. Send an "
            "API token as `Authorization: Bearer TOKEN` (create one with `cohub tokens create`).",
        },
        "servers": [{"url": "/"}],
        "security": [{"token": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
    }
