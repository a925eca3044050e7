"""The one place a district viewer's reads are limited to its member.

Every query that serves a caller goes through `visible`, which knows for each table how a row
belongs to a member; an endpoint never writes its own member filter.
"""

from __future__ import annotations

from sqlalchemy import Select, Table, false, select, true
from sqlalchemy.sql.elements import ColumnElement

from hub.api.auth import Principal
from hub.store.tables import (
    connections,
    dead_letters,
    members,
    routes,
    runs,
    services,
    statements,
    usage_daily,
    usage_events,
)


def member_condition(table: Table, member: str) -> ColumnElement[bool]:
    """Rows of `table` that belong to `member`."""
    if table is members:
        return members.c.code == member
    if table is routes:  # a route serves its source connection's member
        return routes.c.source.in_(select(connections.c.name).where(connections.c.member == member))
    if table is services:  # the catalogue every member buys from
        return true()
    if table in (connections, runs, dead_letters, usage_daily, usage_events, statements):
        return table.c.member == member
    return false()  # a table this module does not know is nobody's to read


def visible(query: Select, table: Table, principal: Principal | None) -> Select:
    """`query` limited to what `principal` may read from `table`."""
    member = principal.member_scope if principal else None
    return query if member is None else query.where(member_condition(table, member))


def may_see_member(principal: Principal, member: str | None) -> bool:
    """Whether `principal` may see data of `member` (None: the cooperative's own)."""
    scope = principal.member_scope
    return scope is None or scope == member
