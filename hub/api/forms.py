"""HTML form fields generated from a connector's options JSON Schema (as `msgspec.json.schema`
writes it, with ``$ref``/``$defs``), and the submitted form read back into options.

Strings, integers, numbers, booleans and enums become inputs; what a flat form cannot express
(nested objects, maps, lists) is a JSON text area, parsed on submit. The connector's own parser
validates the result afterwards, exactly as for the API and the configuration folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from multidict import MultiMapping

#: Prefixes of the form's input names: ``option.folder``, ``secret.password``.
OPTION = "option."
SECRET = "secret."


@dataclass
class Field:
    """One input of a generated form."""

    name: str
    #: text, integer, number, boolean, choice or json
    kind: str
    required: bool
    default: Any
    description: str = ""
    choices: tuple[str, ...] = ()
    nullable: bool = False

    @property
    def input_name(self) -> str:
        return OPTION + self.name

    def shown(self, value: Any) -> str:
        """`value` (or the default) as the input's text."""
        if value is None:
            value = self.default
        if value is None:
            return ""
        if self.kind == "json":
            return value if isinstance(value, str) else json.dumps(value, indent=2)
        return str(value)


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(schema, schema["$defs"][ref.removeprefix("#/$defs/")])
    return node


def _kind(schema: dict[str, Any], node: dict[str, Any]) -> tuple[str, tuple[str, ...], bool]:
    """(kind, choices, nullable) of one property."""
    node = _resolve(schema, node)
    variants = node.get("anyOf")
    if variants:
        rest = [v for v in variants if v.get("type") != "null"]
        if len(rest) == 1:
            kind, choices, _ = _kind(schema, rest[0])
            return kind, choices, len(rest) < len(variants)
        return "json", (), True
    if "enum" in node:
        return "choice", tuple(str(c) for c in node["enum"]), False
    simple = {"string": "text", "integer": "integer", "number": "number", "boolean": "boolean"}
    return simple.get(node.get("type"), "json"), (), False


def option_fields(schema: dict[str, Any]) -> list[Field]:
    """The inputs for an options schema's top-level properties, required ones first."""
    root = _resolve(schema, schema)
    required = set(root.get("required", ()))
    fields = []
    for name, node in root.get("properties", {}).items():
        kind, choices, nullable = _kind(schema, node)
        resolved = _resolve(schema, node)
        fields.append(
            Field(
                name=name,
                kind=kind,
                required=name in required,
                default=node.get("default", resolved.get("default")),
                description=node.get("description", resolved.get("description", "")),
                choices=choices,
                nullable=nullable,
            )
        )
    return sorted(fields, key=lambda f: not f.required)


def read_options(
    fields: list[Field], form: MultiMapping[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(options, problems by ``options.NAME``) from a submitted form. An empty optional input
    is left out so the connector's default applies."""
    options: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for field in fields:
        raw = str(form.get(field.input_name, "")).strip()
        key = f"options.{field.name}"
        if field.kind == "boolean":
            options[field.name] = raw in ("on", "true", "1")
            continue
        if not raw:
            if field.required:
                problems[key] = "required"
            continue
        try:
            if field.kind == "integer":
                options[field.name] = int(raw)
            elif field.kind == "number":
                options[field.name] = float(raw)
            elif field.kind == "json":
                options[field.name] = json.loads(raw)
            else:
                options[field.name] = raw
        except ValueError as error:
            reason = {
                "integer": "must be a whole number",
                "number": "must be a number",
            }.get(field.kind, f"not valid JSON: {error}")
            problems[key] = reason
    return options, problems


def read_secrets(names: list[str], form: MultiMapping[str]) -> dict[str, str]:
    """The secret values typed in (an empty input sets nothing)."""
    return {name: value for name in names if (value := str(form.get(SECRET + name, "")))}


def raw_values(fields: list[Field], form: MultiMapping[str]) -> dict[str, str]:
    """What was typed in each option input, to show the form again as it was sent."""
    return {f.name: str(form.get(f.input_name, "")) for f in fields}
