"""The base every canonical record shares: a stable key, `updated_at`, a version, PII marks."""

from __future__ import annotations

import types
import typing
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar

import msgspec

PII_MARK = "x-pii"

#: Mark a field as personally identifiable (SSN, bank account, birth date): masked in logs,
#: dead letters and the console.
Pii = msgspec.Meta(extra={PII_MARK: True})

#: Money is always Decimal; the annotation only documents the unit in the JSON Schema.
Money = Annotated[Decimal, msgspec.Meta(description="amount in US dollars, decimal")]


class Record(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """A canonical, versioned record of one domain.

    Subclasses set `record_name` (``domain.kind``), `version` and `key_fields`; the key is what
    destinations upsert by, together with the member, so a re-delivered record never duplicates.

    Records are not tracked by the cycle collector (``gc=False``): they hold only values, never
    references back to themselves, and a sync keeps hundreds of thousands of them in flight,
    which otherwise cost a sixth of a run in collector passes.
    """

    record_name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    key_fields: ClassVar[tuple[str, ...]] = ()

    updated_at: datetime

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The key is computed for every record delivered: one f-string per record type is
        # several times faster than joining the fields' str() at run time.
        cls.key = property(_key_function(cls.__name__, cls.key_fields), doc=Record.key.__doc__)

    @property
    def key(self) -> str:
        """The stable key: the key fields joined with ``|``."""
        return ""

    @classmethod
    def pii_fields(cls) -> frozenset[str]:
        """Names of fields marked PII, nested ones as ``parent.child``."""
        return _pii_fields(cls)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON Schema of this record with its name, version, key and PII marks."""
        schema = msgspec.json.schema(cls)
        body = schema["$defs"][cls.__name__]
        body["x-record"] = cls.record_name
        body["x-version"] = cls.version
        body["x-key"] = list(cls.key_fields)
        for name in cls.pii_fields():
            if "." not in name:
                body["properties"][name][PII_MARK] = True
        return schema


def _key_function(record: str, fields: tuple[str, ...]) -> Any:
    """``lambda r: f"{r.a}|{r.b}"`` for `fields` (format(v, "") is str(v) for every field type)."""
    for name in fields:
        if not name.isidentifier():
            raise TypeError(f"{record}.key_fields: {name!r} is not a field name")
    return eval("lambda r: f'" + "|".join("{r." + name + "}" for name in fields) + "'")


def field_types(hint: Any) -> set[Any]:
    """The types a field annotation admits, unwrapped: ``Annotated[Decimal, ...] | None`` gives
    {Decimal}; a container gives its origin (``dict[str, str]`` gives {dict})."""
    if typing.get_origin(hint) is Annotated:
        return field_types(typing.get_args(hint)[0])
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return {
            kind
            for arg in typing.get_args(hint)
            if arg is not type(None)
            for kind in field_types(arg)
        }
    return {typing.get_origin(hint) or hint}


_PII_CACHE: dict[type, frozenset[str]] = {}


def _pii_fields(cls: type) -> frozenset[str]:
    if cls in _PII_CACHE:
        return _PII_CACHE[cls]
    found: set[str] = set()
    hints = typing.get_type_hints(cls, include_extras=True)
    for field in msgspec.structs.fields(cls):
        hint = hints[field.name]
        if _is_pii(hint):
            found.add(field.name)
        nested = nested_struct(hint)
        if nested is not None:
            found.update(f"{field.name}.{inner}" for inner in _pii_fields(nested))
    _PII_CACHE[cls] = frozenset(found)
    return _PII_CACHE[cls]


def _is_pii(hint: Any) -> bool:
    if typing.get_origin(hint) is Annotated:
        if any(
            isinstance(m, msgspec.Meta) and (m.extra or {}).get(PII_MARK) for m in hint.__metadata__
        ):
            return True
        hint = typing.get_args(hint)[0]
    return any(_is_pii(arg) for arg in typing.get_args(hint) if arg is not type(None))


def nested_struct(hint: Any) -> type | None:
    """The Struct type behind a field annotation (``X``, ``X | None``), if any."""
    for kind in field_types(hint):
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            return kind
    return None


__all__ = ["PII_MARK", "Money", "Pii", "Record", "date", "datetime", "field_types", "nested_struct"]
