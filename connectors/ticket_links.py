"""How a ticket written into a shared help desk stays linked to the district ticket it came from.

The shared desk's ticket carries a link to the district's: ``{member}:{ticket_id}`` (ServiceNow's
``correlation_id``, a Jira label ``cohub:{member}:{ticket_id}``), the member code naming the
district's desk. A write finds the ticket by its link and updates it, so a batch delivered twice,
or a retry after an answer that was lost, never opens a second ticket. Reading the shared desk
gives the link back in ``external_ids`` (``{"eastview": "INC0012345"}``) beside the shared
desk's own ID, so the mapping holds both ways.

Comments are journal entries that cannot be looked up by a field, so each one written carries a
marker line naming its origin; a comment whose marker the ticket already holds is not posted
again.
"""

from __future__ import annotations

import re

from hub import sdk

#: The member part of a link when the connection belongs to the cooperative itself.
COOPERATIVE = "cooperative"

_MARKER = re.compile(r"\[cohub ([^\]\s]+)\]\s*$")


def link_id(member: str | None, ticket_id: str) -> str:
    """The link of the ticket `ticket_id` of `member`'s desk: ``eastview:INC0012345``."""
    return f"{member or COOPERATIVE}:{ticket_id}"


def parse_link(link: object) -> tuple[str, str] | None:
    """(member, ticket ID) of a link, or None if `link` is not one."""
    if not isinstance(link, str) or ":" not in link:
        return None
    member, ticket = link.split(":", 1)
    return (member, ticket) if member and ticket else None


def external_ids(system: str, own_id: str, link: object) -> dict[str, str]:
    """A read ticket's `external_ids`: its ID in this desk, and the linked ticket if any."""
    ids = {system: own_id}
    linked = parse_link(link)
    if linked is not None and linked[0] != system:
        ids[linked[0]] = linked[1]
    return ids


def comment_marker(member: str | None, comment: sdk.Record) -> str:
    """The marker line a written comment ends with: ``[cohub eastview:INC0012345#<id>]``."""
    token = f"{link_id(member, comment.ticket_id)}#{comment.comment_id}".replace(" ", "_")
    return f"[cohub {token}]"


def comment_text(member: str | None, comment: sdk.Record) -> str:
    """A comment's body as written into the shared desk: who wrote it where, and its marker."""
    origin = f"{comment.author} on {link_id(member, comment.ticket_id)}"
    return f"{comment.body}\n\n— {origin} {comment_marker(member, comment)}"


def marker_of(text: str | None) -> str | None:
    """The marker a comment body ends with, as `comment_marker` wrote it, or None."""
    if not text:
        return None
    found = _MARKER.search(text)
    return f"[cohub {found.group(1)}]" if found else None
