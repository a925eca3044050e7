"""Ticketing records: service-desk tickets and their comments, after ITIL / ServiceNow incidents.

Field meanings follow the ServiceNow ``incident`` table, which most K-12 help desks either run or
imitate: ``number`` is `ticket_id`, ``caller_id`` the requester, ``short_description`` the
subject, ``assignment_group`` the assigned group, and priority runs 1 (critical) to 5 (planning).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

import msgspec

from hub.model.base import Record

TicketStatus = Annotated[
    str, msgspec.Meta(pattern="^(new|in_progress|on_hold|resolved|closed|canceled)$")
]

#: ITIL priority: 1 critical, 2 high, 3 moderate, 4 low, 5 planning.
Priority = Annotated[int, msgspec.Meta(ge=1, le=5)]


class Ticket(Record, frozen=True, kw_only=True):
    """One service-desk ticket, with the fields of an ITIL / ServiceNow incident.

    `sla_due_at` is when the resolution SLA runs out and `sla_breached` whether it did (ServiceNow
    ``made_sla`` inverted). `source_system` names the desk the ticket came from;
    `external_ids` holds its IDs in other systems (``{"servicenow": "INC0012345"}``).
    """

    record_name: ClassVar[str] = "ticketing.ticket"
    key_fields: ClassVar[tuple[str, ...]] = ("ticket_id",)

    ticket_id: str
    requester: str
    requester_email: str | None = None
    category: str | None = None
    priority: Priority = 3
    status: TicketStatus = "new"
    subject: str
    description: str | None = None
    opened_at: datetime
    resolved_at: datetime | None = None
    assigned_group: str | None = None
    sla_due_at: datetime | None = None
    sla_breached: bool = False
    source_system: str | None = None
    external_ids: dict[str, str] = msgspec.field(default_factory=dict)


class Comment(Record, frozen=True, kw_only=True):
    """One comment on a ticket, a ServiceNow journal entry.

    `public` comments are visible to the requester (ServiceNow ``comments``); the others are
    internal work notes (``work_notes``).
    """

    record_name: ClassVar[str] = "ticketing.comment"
    key_fields: ClassVar[tuple[str, ...]] = ("ticket_id", "comment_id")

    ticket_id: str
    comment_id: str
    author: str
    body: str
    public: bool = True
    created_at: datetime
