"""API tokens through the API (admins only): list, create (the token is shown once), revoke."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from sqlalchemy import select

from hub.api.auth import ADMIN, Role, TokenError, create_token, revoke_token
from hub.api.endpoints import Call, Page, Paging, api, listed
from hub.api.errors import ApiError, not_found
from hub.store.tables import api_tokens

TAG = "tokens"


class TokenOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    role: Role
    member: str | None
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    role: Role
    #: The member a viewer token may see (viewer tokens only).
    member: str | None = None
    expires_in_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] | None = None


class NewToken(TokenOut, kw_only=True):
    #: The token itself: shown this once, stored only as a hash.
    token: str


def answer(row: object) -> TokenOut:
    return TokenOut(**{name: row[name] for name in TokenOut.__struct_fields__})  # type: ignore[index]


@api.endpoint(
    "GET",
    "/tokens",
    summary="List API tokens",
    tag=TAG,
    allow=ADMIN,
    query=Paging,
    response=Page[TokenOut],
)
async def list_tokens(call: Call) -> Page[TokenOut]:
    return await listed(call, select(api_tokens), api_tokens.c.id, answer)


@api.endpoint(
    "POST",
    "/tokens",
    summary="Create an API token",
    tag=TAG,
    allow=ADMIN,
    body=TokenIn,
    response=NewToken,
    status=201,
    errors=(422,),
)
async def new_token(call: Call) -> NewToken:
    body: TokenIn = call.body
    try:
        principal, token = await create_token(
            call.runtime.engine,
            name=body.name,
            role=body.role,
            member=body.member,
            created_by=call.caller.actor,
            expires_in=timedelta(days=body.expires_in_days) if body.expires_in_days else None,
        )
    except TokenError as error:
        raise ApiError(
            "invalid", str(error), field="member" if "member" in str(error) else None
        ) from None
    async with call.runtime.engine.connect() as conn:
        row = (
            (await conn.execute(select(api_tokens).where(api_tokens.c.id == principal.token)))
            .mappings()
            .one()
        )
    return NewToken(**msgspec.structs.asdict(answer(row)), token=token)


@api.endpoint(
    "DELETE",
    "/tokens/{id}",
    summary="Revoke an API token",
    tag=TAG,
    allow=ADMIN,
    status=204,
    errors=(404,),
)
async def delete_token(call: Call) -> None:
    if not await revoke_token(call.runtime.engine, call.path["id"], call.caller.actor):
        raise not_found("live token", call.path["id"])
