"""Connections through the API: list, show, create, change, delete, test.

Secrets are write-only: a value sent here is encrypted into the vault as
``vault:connection.NAME.SECRET`` and only which secrets are set is ever answered. Connections
applied from the configuration folder are the folder's: the API shows them and tests them but
changing one is a 409 naming the file to edit (``cohub apply`` would undo the change).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from sqlalchemy import select

from hub.api.auth import ADMIN, OPERATE
from hub.api.catalog import StreamInfo
from hub.api.endpoints import CONFIG_DIR, Call, Page, Paging, api, listed, visible_row
from hub.api.errors import ApiError
from hub.api.scope import visible
from hub.audit import record
from hub.config import CODE, SECRET_REFERENCE, Connection, connection_problems
from hub.engine.connections import ConnectionRow, check_connection, plain
from hub.store.database import writing
from hub.store.tables import connections, members, routes
from hub.vault import VaultError

TAG = "connections"
Name = msgspec.Meta(pattern=CODE, max_length=64)


class SecretReference(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A secret kept elsewhere: ``env:NAME`` (the worker's environment) or ``vault:NAME``."""

    reference: str


class SecretInfo(msgspec.Struct, kw_only=True):
    """A secret as answered: its name and where it comes from, never its value."""

    name: str
    source: str


class ConnectionOut(msgspec.Struct, kw_only=True):
    name: str
    connector: str
    member: str | None
    description: str
    options: dict[str, Any]
    secrets: list[SecretInfo]
    enabled: bool
    managed_by: str


class ConnectionIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A connection to create (or to test before creating it)."""

    name: Annotated[str, Name]
    connector: str
    member: str | None = None
    description: str = ""
    options: dict[str, Any] = {}
    #: A value (stored encrypted in the vault) or a reference to one kept elsewhere.
    secrets: dict[str, str | SecretReference] = {}
    enabled: bool = True


class ConnectionPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields to change; absent fields stay. `options` replaces all options; `secrets` sets
    the secrets named (null removes one) and keeps the others."""

    description: str | msgspec.UnsetType = msgspec.UNSET
    options: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    secrets: dict[str, str | SecretReference | None] | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class CheckResult(msgspec.Struct, kw_only=True):
    ok: bool
    message: str
    streams: list[StreamInfo]


def vault_name(connection: str, secret: str) -> str:
    return f"connection.{connection}.{secret}"


def answer(row: Any) -> ConnectionOut:
    secrets = [
        SecretInfo(
            name=key,
            source="vault" if reference.startswith("vault:") else reference,
        )
        for key, reference in sorted(row["secrets"].items())
    ]
    return ConnectionOut(
        name=row["name"],
        connector=row["connector"],
        member=row["member"],
        description=row["description"],
        options=row["options"],
        secrets=secrets,
        enabled=row["enabled"],
        managed_by=row["managed_by"],
    )


@api.endpoint(
    "GET",
    "/connections",
    summary="List connections",
    tag=TAG,
    query=Paging,
    response=Page[ConnectionOut],
)
async def list_connections(call: Call) -> Page[ConnectionOut]:
    query = visible(select(connections), connections, call.principal)
    return await listed(call, query, connections.c.name, answer)


async def _stored(call: Call, name: str) -> Any:
    return await visible_row(call, connections, "name", name, "connection")


@api.endpoint(
    "GET",
    "/connections/{name}",
    summary="Show a connection",
    tag=TAG,
    response=ConnectionOut,
    errors=(404,),
)
async def get_connection(call: Call) -> ConnectionOut:
    return answer(await _stored(call, call.path["name"]))


def _split_secrets(
    name: str, given: dict[str, Any]
) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """(references to store, vault values to store) from secrets as the API takes them."""
    references: dict[str, str | None] = {}
    values: dict[str, str | None] = {}
    for key, value in given.items():
        if isinstance(value, SecretReference):
            if not SECRET_REFERENCE.match(value.reference):
                raise ApiError(
                    "invalid", "must be env:NAME or vault:NAME", field=f"secrets.{key}.reference"
                )
            references[key] = value.reference
            values[vault_name(name, key)] = None
        elif value is None:
            references[key] = None
            values[vault_name(name, key)] = None
        else:
            references[key] = f"vault:{vault_name(name, key)}"
            values[vault_name(name, key)] = value
    return references, values


def _checked(call: Call, connection: Connection) -> None:
    """The connector's own verdict on the options and secrets (422 naming the field)."""
    problems = connection_problems(connection, call.runtime.plugins.connectors())
    if problems:
        key, reason = problems[0]
        raise ApiError("invalid", reason, field=key)


async def _check_member(conn: Any, member: str | None) -> None:
    if (
        member is not None
        and await conn.scalar(select(members.c.code).where(members.c.code == member)) is None
    ):
        raise ApiError("invalid", f"no member {member!r}", field="member")


async def _store_secrets(call: Call, values: dict[str, str | None]) -> None:
    if not values:
        return
    try:
        await call.runtime.store_secrets(values)
    except VaultError as error:
        raise ApiError("conflict", f"secret values cannot be stored: {error}") from None


@api.endpoint(
    "POST",
    "/connections",
    summary="Create a connection",
    tag=TAG,
    allow=ADMIN,
    body=ConnectionIn,
    response=ConnectionOut,
    status=201,
    errors=(409, 422),
)
async def create_connection(call: Call) -> ConnectionOut:
    body: ConnectionIn = call.body
    references, values = _split_secrets(body.name, body.secrets)
    connection = Connection(
        connector=body.connector,
        member=body.member,
        description=body.description,
        options=body.options,
        secrets={k: v for k, v in references.items() if v is not None},
        enabled=body.enabled,
    )
    _checked(call, connection)
    row = {
        "name": body.name,
        **msgspec.structs.asdict(connection),
        "base_dir": str(call.request.app[CONFIG_DIR].resolve()),
        "managed_by": "api",
    }
    async with writing(call.runtime.engine) as conn:
        await _check_member(conn, body.member)
        if await conn.scalar(select(connections.c.name).where(connections.c.name == body.name)):
            raise ApiError("conflict", f"connection {body.name!r} exists", field="name")
        await conn.execute(connections.insert().values(row))
        await record(
            conn,
            actor=call.caller.actor,
            action="connection.create",
            target=f"connection {body.name}",
            details={
                "connector": body.connector,
                "member": body.member,
                "secrets_set": sorted(body.secrets),
            },
        )
    await _store_secrets(call, {k: v for k, v in values.items() if v is not None})
    return answer(row)


def _owned(row: Any) -> None:
    if row["managed_by"] != "api":
        raise ApiError(
            "conflict",
            f"connection {row['name']!r} comes from the configuration folder: edit "
            f"connections/{row['name']}.toml and run `cohub apply`",
        )


@api.endpoint(
    "PATCH",
    "/connections/{name}",
    summary="Change a connection",
    tag=TAG,
    allow=ADMIN,
    body=ConnectionPatch,
    response=ConnectionOut,
    errors=(404, 409, 422),
)
async def change_connection(call: Call) -> ConnectionOut:
    row = dict(plain(await _stored(call, call.path["name"])))
    _owned(row)
    patch: ConnectionPatch = call.body
    values: dict[str, str | None] = {}
    if patch.secrets is not msgspec.UNSET:
        references, values = _split_secrets(row["name"], patch.secrets)
        merged = {**row["secrets"], **references}
        row["secrets"] = {k: v for k, v in merged.items() if v is not None}
    for field in ("description", "options", "enabled"):
        if getattr(patch, field) is not msgspec.UNSET:
            row[field] = getattr(patch, field)
    _checked(
        call,
        msgspec.convert(
            {
                k: row[k]
                for k in ("connector", "member", "description", "options", "secrets", "enabled")
            },
            Connection,
        ),
    )
    async with writing(call.runtime.engine) as conn:
        await conn.execute(
            connections.update()
            .where(connections.c.name == row["name"])
            .values({k: row[k] for k in ("description", "options", "secrets", "enabled")})
        )
        await record(
            conn,
            actor=call.caller.actor,
            action="connection.change",
            target=f"connection {row['name']}",
            details={
                "fields": sorted(
                    f
                    for f in ConnectionPatch.__struct_fields__
                    if getattr(patch, f) is not msgspec.UNSET
                ),
                "secrets_changed": sorted(patch.secrets or ()),
            },
        )
    await _store_secrets(call, values)
    return answer(row)


@api.endpoint(
    "DELETE",
    "/connections/{name}",
    summary="Delete a connection",
    tag=TAG,
    allow=ADMIN,
    status=204,
    errors=(404, 409),
)
async def delete_connection(call: Call) -> None:
    row = await _stored(call, call.path["name"])
    _owned(row)
    name = row["name"]
    async with writing(call.runtime.engine) as conn:
        users = (
            await conn.scalars(
                select(routes.c.name).where(
                    (routes.c.source == name) | (routes.c.destination == name)
                )
            )
        ).all()
        if users:
            raise ApiError("conflict", f"routes use connection {name!r}: {', '.join(users)}")
        await conn.execute(connections.delete().where(connections.c.name == name))
        await record(
            conn, actor=call.caller.actor, action="connection.delete", target=f"connection {name}"
        )
    await _store_secrets(
        call,
        {
            vault_name(name, key): None
            for key, reference in row["secrets"].items()
            if reference == f"vault:{vault_name(name, key)}"
        },
    )
    return None


async def _run_check(
    call: Call, row: ConnectionRow, values: dict[str, str] | None = None
) -> CheckResult:
    result, streams = await check_connection(call.runtime.plugins, row, values)
    return CheckResult(
        ok=result == "ok",
        message=result,
        streams=[msgspec.convert(msgspec.structs.asdict(s), StreamInfo) for s in streams],
    )


@api.endpoint(
    "POST",
    "/connections/{name}/check",
    summary="Test a connection",
    tag=TAG,
    allow=OPERATE,
    response=CheckResult,
    errors=(404,),
)
async def check_stored(call: Call) -> CheckResult:
    row = await _stored(call, call.path["name"])
    return await _run_check(call, msgspec.convert(plain(row), ConnectionRow))


@api.endpoint(
    "POST",
    "/connections/test",
    summary="Test a connection before creating it",
    tag=TAG,
    allow=ADMIN,
    body=ConnectionIn,
    response=CheckResult,
    errors=(422,),
)
async def check_unsaved(call: Call) -> CheckResult:
    """The console's "test connection" button: try the values in the form, store nothing.
    Secret values are handed to the connector directly, never to the vault."""
    body: ConnectionIn = call.body
    plain_values = {k: v for k, v in body.secrets.items() if isinstance(v, str)}
    references = {k: v.reference for k, v in body.secrets.items() if isinstance(v, SecretReference)}
    connection = Connection(
        connector=body.connector,
        member=body.member,
        options=body.options,
        secrets={**references, **{k: f"vault:{k}" for k in plain_values}},
    )
    _checked(call, connection)
    row = ConnectionRow(
        name=body.name or "unsaved",
        connector=body.connector,
        member=body.member,
        options=body.options,
        secrets=references,
        base_dir=str(call.request.app[CONFIG_DIR].resolve()),
    )
    return await _run_check(call, row, plain_values)
