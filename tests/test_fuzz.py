"""Fuzzing what the hub reads from outside: configuration files, district export files and the
values in them (`tests.fuzz_targets`), and every operation of the admin API.

The promise each test keeps: whatever the input, the hub answers with its own refusal (a
`ConfigError`, a rejected row or a connector error, a 4xx in the API's JSON error shape) or
accepts it, never with another exception, a 5xx or a hang. Runs are bounded so the file takes
well under two minutes in CI; set ``COHUB_FUZZ_EXAMPLES`` (examples per target, default 30) for
a longer local run, e.g. ``COHUB_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import string
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import tomli_w
import yarl
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import hub.api.app  # noqa: F401  (registers every endpoint before the document is built)
from hub import sdk
from hub.api.openapi import document
from hub.config import ConfigError, HubConfig, load_config
from tests.fuzz_targets import FUZZ_TARGETS

EXAMPLES = int(os.environ.get("COHUB_FUZZ_EXAMPLES", "30"))
#: Requests per API operation: each is a round trip to a served hub, on every backend.
API_EXAMPLES = max(EXAMPLES // 5, 5)
#: Seconds one input may take before it counts as a hang.
TIME_LIMIT = 10.0
REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "config"

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # hangs are caught by `time_limit`; a slow CI machine is not a finding
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=os.environ.get("COHUB_FUZZ_RANDOM") is None,  # CI: the same inputs each run
    print_blob=True,
)


class Hang(BaseException):
    """An input took longer than `TIME_LIMIT` (a BaseException, so no `except Exception` in
    the code under test swallows it)."""


@contextmanager
def time_limit(seconds: float = TIME_LIMIT) -> Iterator[None]:
    """Raise `Hang` in the main thread if the block runs longer than `seconds`."""

    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- byte mutations shared by the config and parser fuzzers ----------------------------------

#: Bytes that break UTF-8 and friends: lone continuation bytes, truncated sequences, overlongs.
BAD_BYTES = [b"\xff", b"\xfe", b"\x80", b"\xc3", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80", b"\x00"]


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """`original` with a few bytes inserted, deleted or replaced (invalid UTF-8 among them)."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        junk = draw(st.one_of(st.sampled_from(BAD_BYTES), st.binary(min_size=1, max_size=6)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        if action == "insert":
            data[at:at] = junk
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            data[at : at + len(junk)] = junk
    return bytes(data)


# --- configuration files ---------------------------------------------------------------------

CONFIG_FILES = sorted(str(p.relative_to(EXAMPLE_CONFIG)) for p in EXAMPLE_CONFIG.rglob("*.toml"))

toml_scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 2**63 - 1, -(2**63), 10**18]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "env:X", "vault:", "../../etc/passwd", "A" * 2000, "\u202e", "\x00"]),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.times(),
)
toml_keys = st.one_of(
    st.text(max_size=12), st.sampled_from(["name", "connector", "member", "options", "routes"])
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(toml_keys, inner, max_size=4)
    ),
    max_leaves=12,
)


def _tables(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(node, dict):
        yield path
        for key, value in node.items():
            yield from _tables(value, (*path, key))


@st.composite
def mutated_tree(draw: st.DrawFn, original: bytes) -> bytes:
    """The file parsed, a few keys added, removed or given another type or value, written back."""
    data = tomllib.loads(original.decode())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_tables(data))))
        table = data
        for key in path:
            table = table[key]
        existing = list(table)
        action = draw(st.sampled_from(["set", "set", "add", "delete"]))
        if action == "delete" and existing:
            del table[draw(st.sampled_from(existing))]
        elif action == "set" and existing:
            table[draw(st.sampled_from(existing))] = draw(toml_values)
        else:
            table[draw(toml_keys)] = draw(toml_values)
    return tomli_w.dumps(data).encode()


@st.composite
def deeply_nested(draw: st.DrawFn, original: bytes) -> bytes:
    depth = draw(st.sampled_from([50, 500, 2000, 20000]))
    if draw(st.booleans()):
        value = "[" * depth + "1" + "]" * depth
    else:
        value = "{a = " * depth + "1" + "}" * depth
    key = draw(st.sampled_from(["deep", "options.deep", "[x]\ny"]))
    return original + f"\n{key} = {value}\n".encode()


@st.composite
def config_changes(draw: st.DrawFn) -> tuple[str, bytes]:
    """(a file of the example configuration, new bytes for it)."""
    name = draw(st.sampled_from(CONFIG_FILES))
    original = (EXAMPLE_CONFIG / name).read_bytes()
    data = draw(
        st.one_of(
            mutated_tree(original),
            mutated(original),
            deeply_nested(original),
            st.binary(max_size=200),
            st.text(max_size=200).map(str.encode),
        )
    )
    return name, data


def _write_and_load(tmp_path: Path, name: str, data: bytes) -> None:
    folder = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG, folder)
    (folder / name).write_bytes(data)
    load_config(folder)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path):
    """Found by this suite: tomllib decodes the file itself and raised UnicodeDecodeError."""
    with pytest.raises(ConfigError, match=r"routes\.toml"):
        _write_and_load(tmp_path, "routes.toml", b"\xff[routes]\n")


def test_deeply_nested_arrays_are_a_config_error(tmp_path: Path):
    """Found by this suite: tomllib parses nesting recursively, and about 1,000 levels raised
    RecursionError."""
    with pytest.raises(ConfigError, match=r"routes\.toml"):
        _write_and_load(tmp_path, "routes.toml", b"x = " + b"[" * 2000 + b"]" * 2000 + b"\n")


def test_the_example_configuration_loads():
    assert isinstance(load_config(EXAMPLE_CONFIG), HubConfig)


def test_config_loader_refuses_or_accepts_any_file(tmp_path: Path):
    folder = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG, folder)

    @FUZZ
    @given(config_changes())
    def loads_or_refuses(change: tuple[str, bytes]) -> None:
        name, data = change
        target = folder / name
        original = target.read_bytes()
        target.write_bytes(data)
        try:
            with time_limit():
                try:
                    loaded = load_config(folder)
                except ConfigError as error:
                    assert error.issues and all(str(issue) for issue in error.issues)
                else:
                    assert isinstance(loaded, HubConfig)
        finally:
            target.write_bytes(original)

    loads_or_refuses()


# --- file parsers ----------------------------------------------------------------------------


EASTVIEW_HEADER = (
    b"PayRunID,PayDate,PeriodStart,PeriodEnd,EmpID,EmpName,LineNo,EarnCode,Type,Hours,Rate,"
    b"Amount,Account,LastModified\n"
)


def test_a_cell_over_the_csv_field_limit_is_a_rejected_file_not_a_crash():
    """Found by this suite: `csv` refuses a field over 131,072 characters with csv.Error, which
    escaped the flat-file source."""
    row = b"R1,2026-10-15,,,E1," + b"x" * 140_000 + b",1,SAL,earning,,,1,A2110.150-00-0000,\n"
    with pytest.raises(sdk.ConnectorError):
        FUZZ_TARGETS["flat_file.csv_utf8"].parse(EASTVIEW_HEADER + row)


@pytest.mark.parametrize("name", sorted(FUZZ_TARGETS))
def test_parsers_refuse_or_accept_any_bytes(name: str):
    target = FUZZ_TARGETS[name]
    sources = [st.binary(max_size=300)]
    if target.seeds:
        sources.append(st.sampled_from(target.seeds).flatmap(mutated))
    if target.inputs is not None:
        sources.append(target.inputs)

    @FUZZ
    @given(st.one_of(sources))
    def refuses_or_accepts(data: bytes) -> None:
        with time_limit(), suppress(target.refusals):
            target.parse(data)

    for example in target.seeds:  # the seeds themselves must go through
        with time_limit(), suppress(target.refusals):
            target.parse(example)
    refuses_or_accepts()


# --- the admin API ---------------------------------------------------------------------------

DOCUMENT = document()
COMPONENTS = DOCUMENT["components"]["schemas"]
OPERATIONS = sorted(
    (method.upper(), path, operation)
    for path, operations in DOCUMENT["paths"].items()
    for method, operation in operations.items()
    if path != "/api/v1/openapi.json"
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)


def from_schema(schema: dict[str, Any], known: list[str], depth: int = 0) -> st.SearchStrategy:
    """Values fitting a JSON Schema of the document (mostly), with known names mixed in so some
    requests reach past the not-found checks."""
    if "$ref" in schema:
        return from_schema(COMPONENTS[schema["$ref"].rsplit("/", 1)[1]], known, depth)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(s, known, depth) for s in schema[key]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}, known, depth) for k in kind])
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        return st.one_of(
            st.integers(min_value=low, max_value=high),
            st.sampled_from([0, 1, -1, 2**31, 2**63 - 1, 2**63, 10**30]),
        )
    if kind == "number":
        return st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "string":
        strategies = [st.text(max_size=schema.get("maxLength", 40)), st.sampled_from(known)]
        if schema.get("format") == "date":
            strategies.append(st.dates().map(str))
        if schema.get("format") == "date-time":
            strategies.append(st.datetimes().map(lambda d: d.isoformat() + "Z"))
        if "pattern" in schema:
            strategies.append(st.from_regex(schema["pattern"], fullmatch=True))
        return st.one_of(strategies)
    if kind == "array":
        if depth > 3:
            return st.just([])
        items = from_schema(schema.get("items", {}), known, depth + 1)
        return st.lists(items, max_size=4)
    if kind == "object" or "properties" in schema:
        if depth > 3:
            return st.just({})
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        fields = {k: from_schema(v, known, depth + 1) for k, v in properties.items()}
        extra = schema.get("additionalProperties")
        base = st.fixed_dictionaries(
            {k: v for k, v in fields.items() if k in required},
            optional={k: v for k, v in fields.items() if k not in required},
        )
        if isinstance(extra, dict):
            more = st.dictionaries(st.text(max_size=12), from_schema(extra, known, depth + 1))
            return st.tuples(base, more).map(lambda pair: {**pair[1], **pair[0]})
        if not properties:
            return st.dictionaries(st.text(max_size=12), json_values, max_size=4)
        return base
    return json_values


def _as_query_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@st.composite
def requests_for(
    draw: st.DrawFn, method: str, path: str, operation: dict[str, Any], known: list[str]
) -> tuple[str, str, dict[str, str], bytes | None, str | None]:
    """(method, encoded URL path and query, query dict, body bytes, content type)."""
    parameters = operation.get("parameters", [])
    concrete = path
    for parameter in (p for p in parameters if p["in"] == "path"):
        if parameter["schema"].get("type") == "integer":
            value = str(draw(st.integers(min_value=0, max_value=2**70)))
        else:
            value = draw(
                st.one_of(
                    st.sampled_from(known), st.text(min_size=1, max_size=30), st.just("%2F..")
                )
            )
        concrete = concrete.replace("{" + parameter["name"] + "}", quote(value, safe=""))
    query: dict[str, str] = {}
    for parameter in (p for p in parameters if p["in"] == "query"):
        if draw(st.booleans()):
            text = _as_query_value(draw(from_schema(parameter["schema"], known)))
            if text is not None:
                query[parameter["name"]] = text
    if draw(st.integers(0, 9)) == 0:  # garbage: unknown or ill-typed parameters
        query.update(draw(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=20))))
    body: bytes | None = None
    content_type: str | None = None
    request_body = operation.get("requestBody")
    if request_body is not None:
        schema = request_body["content"]["application/json"]["schema"]
        choice = draw(st.integers(0, 9))
        if choice < 7:
            body = _json_bytes(draw(from_schema(schema, known)))
            content_type = "application/json"
        elif choice < 9:
            body = _json_bytes(draw(json_values))
            content_type = "application/json"
        else:
            body = draw(st.binary(max_size=100))
            content_type = draw(st.sampled_from(["application/json", "text/plain", None]))
    elif draw(st.integers(0, 19)) == 0:
        body = draw(st.binary(min_size=1, max_size=50))
        content_type = "application/json"
    return method, concrete, query, body, content_type


def _json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


async def test_ids_beyond_64_bits_and_nul_characters_are_not_a_500(hub):
    """Found by this suite: ids past 2**63 - 1 answered 500 (the store's integers are 64-bit),
    and on PostgreSQL so did a NUL in a name (its text cannot hold one)."""
    too_big = 2**63
    answers = [
        await hub.call("GET", f"/dead-letters?run={too_big}"),
        await hub.call("POST", "/dead-letters/replay", json={"ids": [too_big]}),
        await hub.call("POST", "/dead-letters/discard", json={"ids": [too_big]}),
        await hub.call("DELETE", "/connections/%00"),
        await hub.call("DELETE", "/routes/%00"),
        await hub.call("GET", "/runs?route=%00"),
        await hub.call("PATCH", "/routes/x", json={"source_stream": "a\u0000b"}),
    ]
    assert [a.status for a in answers if a.status >= 500] == []


def known_names(config_dir: Path) -> list[str]:
    config = load_config(config_dir)
    names = [*config.members, *config.services, *config.connections, *config.routes]
    return [*sorted(set(names)), "flat_file", "sql_table", "2026-10", "1", "0", ""]


def error_shape_problem(status: int, content_type: str, body: Any) -> str | None:
    """Why an error answer is not the API's one JSON error shape, or None."""
    if content_type != "application/json" or not isinstance(body, dict):
        return f"not JSON ({content_type})"
    error = body.get("error")
    if set(body) != {"error"} or not isinstance(error, dict):
        return "no single `error` object"
    if error.get("status") != status:
        return f"error.status {error.get('status')!r} is not the HTTP status {status}"
    if not isinstance(error.get("code"), str) or not isinstance(error.get("message"), str):
        return "error.code or error.message is not a string"
    return None


async def test_every_api_operation_answers_fuzzed_requests_without_a_5xx(hub):
    loop = asyncio.get_running_loop()
    known = known_names(hub.config_dir)
    admin = hub.tokens["admin"]
    admin_id = admin.removeprefix("cohub_").split("_", 1)[0]
    findings: dict[str, str] = {}

    async def send(method: str, target: str, body: bytes | None, content_type: str | None):
        headers = {"Authorization": f"Bearer {admin}"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        url = yarl.URL(hub.url + target, encoded=True)
        async with hub.session.request(method, url, data=body, headers=headers) as response:
            raw = await response.read()
            parsed = None
            if response.content_type == "application/json":
                try:
                    parsed = await response.json()
                except ValueError:
                    parsed = "unparsable"
            return response.status, response.content_type, parsed, raw

    def fuzz(method: str, path: str, operation: dict[str, Any]) -> None:
        @settings(FUZZ, max_examples=API_EXAMPLES)
        @seed(len(path) * 31 + len(method))
        @given(requests_for(method, path, operation, known))
        def answers(request: tuple[str, str, dict[str, str], bytes | None, str | None]) -> None:
            method_, concrete, query, body, content_type = request
            if method_ == "DELETE" and concrete.endswith("/tokens/" + admin_id):
                return  # the fuzzer's own token stays
            target = str(yarl.URL.build(path=concrete, query=query or None, encoded=True))
            if query:
                target = concrete + "?" + yarl.URL.build(query=query).raw_query_string
            future = asyncio.run_coroutine_threadsafe(
                send(method_, target, body, content_type), loop
            )
            try:
                status, media, parsed, raw = future.result(timeout=TIME_LIMIT * 3)
            except TimeoutError:
                future.cancel()
                raise AssertionError(
                    f"{method_} {target}: no answer in {TIME_LIMIT * 3} s"
                ) from None
            where = f"{method_} {target} body={body[:300] if body else body!r}"
            assert status < 500, f"{where} answered {status}: {raw[:300]!r}"
            if status >= 400:
                problem = error_shape_problem(status, media, parsed)
                assert problem is None, f"{where} answered {status} with {problem}: {raw[:300]!r}"

        try:
            answers()
        except AssertionError as error:
            findings[f"{method} {path}"] = str(error).splitlines()[0]

    for method, path, operation in OPERATIONS:
        await asyncio.to_thread(fuzz, method, path, operation)

    assert not findings, "\n".join(f"{op}: {why}" for op, why in findings.items())


def test_the_api_fuzzer_covers_every_operation():
    """A new endpoint is fuzzed without a change here: the operations come from the document."""
    assert len(OPERATIONS) >= 30
    assert {m for m, _, _ in OPERATIONS} <= {"GET", "POST", "PATCH", "PUT", "DELETE"}
    assert all(c in string.printable for _, path, _ in OPERATIONS for c in path)
