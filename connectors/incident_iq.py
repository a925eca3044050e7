"""Incident IQ (API v1.0): a K-12 district's help-desk tickets and comments, both ways.

Read top to bottom as Incident IQ's API hub goes (where it is thin, docs/connectors/incident-iq.md
says what is assumed):

- **auth**: every request carries ``Authorization: Bearer {api token}`` (Administration >
  Developer Tools), ``SiteId: {site GUID}`` and ``Client: ApiClient``; the API root is
  ``https://{district}.incidentiq.com/api/v1.0/``.
- **lists** go through saved views: ``POST tickets?$p={page}&$s={size}&$o=...&$d=...`` with a
  body naming the view (``Schema``) and ``Filters`` (``{"Facet", "Value"}``); the answer is
  ``{"Items": [...], "Paging": {"PageIndex", "PageSize", "TotalRows", "PageCount"}}``, pages
  counted from 0. ``OnlyShowDeleted: true`` lists the (soft-)deleted tickets.
- **activities**: ``GET tickets/{TicketId}/activities`` lists a ticket's timeline; activity
  type 6 is a comment. ``POST tickets/{TicketId}/activities/new`` adds one.
- **writes**: ``POST tickets/new`` creates (``Subject``, ``IssueDescription``, ``IssueId``,
  ``ForId``, ``CustomFieldValues``), ``POST tickets/{TicketId}`` updates, ``.../close`` resolves
  and ``.../cancel`` cancels. The district ticket a shared-desk ticket stands for is kept in a
  ticket custom field (`link_field_id`), ``{member}:{source system}:{ticket id}``, and found
  again by a ``CustomField`` filter before each write.
- **rate limits**: unpublished ("fair balance"); a 429 carries ``Retry-After``, which the
  toolkit obeys; `requests_per_second` paces a connection below it.

Reads are incremental on ``ModifiedDate`` with the route's lookback (`sdk.IncrementalCursor`),
walked in ``ModifiedDate`` order and restarted from the last page's stamp, so a ticket modified
during the walk cannot shift another out of it. After the first read each read also lists the
tickets deleted since ``deleted_since`` and delivers them as `Batch.deletes`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec

from connectors.writes import write_each
from hub import sdk
from hub.sdk.http import ApiOptions, BearerToken, HttpAuthError, HttpClient, HttpStatusError

GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
#: ``ActivityType`` of a comment in a ticket's timeline.
COMMENT_ACTIVITY = 6
#: The filter facet of a ticket's last modification (see the docs page's known limits).
MODIFIED_FACET = "ModifiedDate"
#: iiQ's JSON.NET type of a comment item in a new activity.
COMMENT_ITEM = "IncidentIQ.Tickets.TicketActivityCommentItem, IncidentIQ.Tickets"

#: Canonical priority → whether iiQ marks the ticket urgent (iiQ has priority levels per site;
#: only "urgent" is common to all).
URGENT = 1
PRIORITIES = {"urgent": 1, "critical": 1, "high": 2, "medium": 3, "normal": 3, "low": 4}


class IncidentIqOptions(ApiOptions, kw_only=True):
    """Which Incident IQ site to reach and how; the API token is the ``api_token`` secret."""

    district: (
        Annotated[
            str,
            msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]*$", description="{district}.incidentiq.com"),
        ]
        | None
    ) = None
    base_url: Annotated[
        str | None, msgspec.Meta(description="API root instead of the district's")
    ] = None
    site_id: Annotated[str, msgspec.Meta(pattern=GUID, description="the SiteId (a GUID)")]
    view: Annotated[
        str | None, msgspec.Meta(description="saved ticket view the reads list (Schema)")
    ] = None
    page_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    link_field_id: (
        Annotated[
            str, msgspec.Meta(pattern=GUID, description="ticket custom field holding the link")
        ]
        | None
    ) = None
    issue_id: (
        Annotated[str, msgspec.Meta(pattern=GUID, description="IssueId of tickets created")] | None
    ) = None
    requester_id: (
        Annotated[str, msgspec.Meta(pattern=GUID, description="ForId of tickets created")] | None
    ) = None
    source_system: Annotated[
        str | None,
        msgspec.Meta(description="system written records come from when they do not say"),
    ] = None


# --- errors and links ------------------------------------------------------------------------


def message_of(body: Any) -> str | None:
    """What an iiQ refusal says: its ``Message`` and each ``Errors[]`` entry's message."""
    if not isinstance(body, dict):
        return None
    parts = [str(body[k]) for k in ("Message", "ErrorMessage") if body.get(k)]
    for error in body.get("Errors") or ():
        if isinstance(error, dict):
            parts.append(str(error.get("Message") or error.get("Error") or error))
    return "; ".join(parts) or None


def link_of(member: str | None, system: str, ticket_id: str) -> str:
    """The custom-field value naming the district ticket a shared-desk ticket stands for."""
    return f"{member or 'cooperative'}:{system}:{ticket_id}"


def _link_value(raw: Mapping[str, Any], field: str | None) -> str | None:
    values = raw.get("CustomFieldValues")
    for value in values if isinstance(values, list) else ():
        if isinstance(value, dict) and field and value.get("CustomFieldTypeId") == field:
            return value.get("Value")
    return None


# --- mapping ---------------------------------------------------------------------------------


def _utc(value: Any) -> Any:
    """iiQ dates are UTC, some written without a zone: give them one."""
    if isinstance(value, str) and "T" in value and not value.endswith("Z") and "+" not in value:
        return value + "Z"
    return value


def _name(raw: Mapping[str, Any], key: str, field: str = "Name") -> Any:
    value = raw.get(key)
    return value.get(field) if isinstance(value, dict) else None


def status_of(raw: Mapping[str, Any]) -> str:
    """A ticket's workflow step as a canonical status."""
    step = str(_name(raw, "WorkflowStep", "StatusName") or "").lower()
    if "cancel" in step:
        return "canceled"
    if raw.get("IsClosed"):
        return "closed" if step == "closed" else "resolved"
    if "wait" in step or "hold" in step or "defer" in step:
        return "on_hold"
    if not step or step in ("new", "submitted", "unassigned"):
        return "new"
    return "in_progress"


def map_ticket(raw: Mapping[str, Any], link_field: str | None) -> dict[str, Any]:
    """An iiQ ticket as `ticketing.ticket` fields; its number is the ticket ID."""
    number = raw.get("TicketNumber")
    external = {"incident_iq": str(number)}
    link = _link_value(raw, link_field)
    if isinstance(link, str) and link.count(":") >= 2:
        _, system, ticket = link.split(":", 2)
        external[system] = ticket
    priority = (
        1 if raw.get("IsUrgent") else PRIORITIES.get(str(raw.get("Priority") or "").lower(), 3)
    )
    return {
        "ticket_id": None if number is None else str(number),
        "requester": _name(raw, "For") or _name(raw, "Owner"),
        "requester_email": _name(raw, "For", "Email"),
        "category": _name(raw, "Issue"),
        "priority": priority,
        "status": status_of(raw),
        "subject": raw.get("Subject"),
        "description": raw.get("IssueDescription"),
        "opened_at": _utc(raw.get("CreatedDate")),
        "resolved_at": _utc(raw.get("ClosedDate")),
        "assigned_group": _name(raw, "AssignedToTeam", "TeamName"),
        "sla_due_at": _utc(raw.get("DueDate")),
        "source_system": "incident_iq",
        "external_ids": external,
        "updated_at": _utc(raw.get("ModifiedDate")),
    }


def map_activity(raw: Mapping[str, Any], ticket_number: Any) -> dict[str, Any]:
    """A comment activity as `ticketing.comment` fields."""
    return {
        "ticket_id": str(ticket_number),
        "comment_id": raw.get("ActivityId") or raw.get("TicketActivityId"),
        "author": _name(raw, "User") or raw.get("UserId"),
        "body": raw.get("Details"),
        "public": raw.get("IsPublic", True),
        "created_at": _utc(raw.get("ActivityDate")),
        "updated_at": _utc(raw.get("ActivityDate")),
    }


def _stamp(raw: Any) -> datetime | None:
    value = _utc(raw.get("ModifiedDate")) if isinstance(raw, dict) else None
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _after(raw: Any, start: datetime | None) -> bool:
    """Whether a deleted ticket is news: modified after `start`, which the read that ended
    there already reported (one without a stamp is reported, deleting twice changes nothing)."""
    if not isinstance(raw, dict):
        return False
    stamp = _stamp(raw)
    return start is None or stamp is None or stamp > start


# --- the connector ---------------------------------------------------------------------------


class IncidentIq(sdk.Connector[IncidentIqOptions]):
    """An Incident IQ site: tickets and comments read by ModifiedDate, tickets written by link."""

    name = "incident_iq"
    title = "Incident IQ (API v1.0)"
    options = IncidentIqOptions
    secrets = ("api_token",)

    STREAMS: ClassVar[dict[str, str]] = {
        "tickets": "ticketing.ticket",
        "comments": "ticketing.comment",
    }

    def __init__(
        self,
        options: IncidentIqOptions,
        secrets: Mapping[str, str],
        context: sdk.ConnectionContext,
    ) -> None:
        super().__init__(options, secrets, context)
        if not (options.district or options.base_url):
            raise sdk.ConnectorConfigError("incident_iq needs options.district (or base_url)")
        self._client: HttpClient | None = None

    def _base(self) -> str:
        if self.config.base_url:
            return self.config.base_url.rstrip("/") + "/"
        return f"https://{self.config.district}.incidentiq.com/api/v1.0/"

    @property
    def client(self) -> HttpClient:
        """The client with iiQ's three headers, built on first use."""
        if self._client is None:
            token = self.secret_values.get("api_token")
            if not token:
                raise sdk.ConnectorConfigError("the connection gives no api_token secret")
            client = self.config.client(self._base(), self.context, auth=BearerToken(token))
            client.headers.update({"SiteId": self.config.site_id, "Client": "ApiClient"})
            self._client = client
        return self._client

    # check and streams

    async def check(self) -> None:
        """The root answers as iiQ, the token is taken for the site, and tickets can be listed."""
        base = self._base()
        try:
            await self._list(0, 1, [], deleted=False)
        except HttpAuthError as error:
            said = message_of(error.body) or "no message"
            if error.status == 403:
                raise sdk.AuthError(
                    f"Incident IQ refused to list tickets of site {self.config.site_id} "
                    f"(HTTP 403: {said}): check site_id, and that the token's user may view tickets"
                ) from None
            raise sdk.AuthError(
                f"Incident IQ refused the api_token (HTTP {error.status}: {said}): create a new "
                "one in Administration > Developer Tools"
            ) from None
        except HttpStatusError as error:
            raise sdk.ConnectorConfigError(
                f"{base} is not an Incident IQ API root: POST tickets answered HTTP "
                f"{error.status} (check district or base_url)"
            ) from None
        except sdk.TransientError as error:
            raise sdk.TransientError(f"cannot reach Incident IQ at {base}: {error}") from None

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(
                name=name,
                record=record,
                description=f"Incident IQ {name}",
                writable=True,
            )
            for name, record in self.STREAMS.items()
        ]

    def _stream(self, stream: str) -> str:
        self.offered(stream, self.STREAMS)
        return stream

    # listing

    async def _list(
        self, page: int, size: int, filters: list[dict[str, Any]], *, deleted: bool
    ) -> list[Any]:
        """One page of tickets, oldest modification first."""
        body: dict[str, Any] = {
            "OnlyShowDeleted": deleted,
            "FilterByViewPermission": False,
            "Filters": filters,
        }
        if self.config.view:
            body["Schema"] = self.config.view
        params = {"$p": page, "$s": size, "$o": MODIFIED_FACET, "$d": "Ascending"}
        # A listing changes nothing: safe to retry whatever went wrong.
        reply = await self.client.request(
            "POST", "tickets", params=params, json=body, idempotent=True
        )
        answer = reply.data
        if not (isinstance(answer, dict) and isinstance(answer.get("Items"), list)):
            raise sdk.ConnectorError(
                f"POST tickets: the answer has no Items list (a {type(answer).__name__})"
            )
        if not isinstance(answer.get("Paging"), dict):
            raise sdk.ConnectorError("POST tickets: the answer has no Paging")
        return answer["Items"]

    async def _walk(self, since: datetime | None, *, deleted: bool) -> AsyncIterator[list[Any]]:
        """Pages of tickets modified at or after `since`, keyset-walked on ``ModifiedDate``:
        each page restarts at the last page's stamp, so none is shifted out by a change."""
        size, page = self.config.page_size, 0
        while True:
            filters = (
                []
                if since is None
                else [{"Facet": MODIFIED_FACET, "Value": f">={since.isoformat()}"}]
            )
            items = await self._list(page, size, filters, deleted=deleted)
            if items:
                yield items
            if len(items) < size:
                return
            last = _stamp(items[-1])
            if last is None or (since is not None and last <= since):
                page += 1  # a page of one stamp: step past it
            else:
                since, page = last, 0

    # read

    def _map(self, rows: list[Any]) -> tuple[list[sdk.Record], list[sdk.Reject]]:
        def position(index: int, raw: Any) -> str:
            number = raw.get("TicketNumber") if isinstance(raw, dict) else None
            return f"ticket {number}"

        return sdk.map_objects(
            sdk.record_type("ticketing.ticket"),
            rows,
            lambda raw: map_ticket(raw, self.config.link_field_id),
            position,
            "an Incident IQ ticket is an object",
        )

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        self._stream(stream)
        state = state or {}
        cursor = sdk.IncrementalCursor(state, self.lookback)
        first_read = cursor.cursor is None
        since = cursor.since()
        deleted_since = state.get("deleted_since")

        def position() -> sdk.State:
            return {**cursor.state(), "deleted_since": deleted_since}

        async for rows in self._walk(since, deleted=False):
            records, rejects = self._map(rows)
            delivered = dict(cursor.recent)  # ticket → the version delivered, in the window
            fresh = cursor.admit(records)
            if stream == "comments":
                changed = {r.key: delivered.get(r.key) for r in fresh}
                fresh, rejects = await self._comments(rows, changed, since)
            yield sdk.Batch(records=fresh, rejects=rejects, state=position())
        newest = cursor.cursor
        if not first_read and stream == "tickets":
            start = datetime.fromisoformat(deleted_since) if deleted_since else since
            start = start - self.lookback if start and deleted_since else start
            async for rows in self._walk(start, deleted=True):
                stamps = [s for s in map(_stamp, rows) if s is not None]
                if stamps and (newest is None or max(stamps) > newest):
                    newest = max(stamps)
                keys = [str(r.get("TicketNumber")) for r in rows if _after(r, start)]
                yield sdk.Batch(records=[], deletes=keys, state=position())
        deleted_since = newest.isoformat() if newest else deleted_since
        yield sdk.Batch(records=[], state=position())

    async def _comments(
        self, rows: list[Any], changed: dict[str, str | None], since: datetime | None
    ) -> tuple[list[sdk.Record], list[sdk.Reject]]:
        """The comments of the changed tickets among `rows` (ticket → the stamp of its version
        delivered before, if known): those after it, else those at or after `since`. Older
        ones were delivered with an earlier version of their ticket."""
        mapped: list[dict[str, Any]] = []
        raws: list[dict[str, Any]] = []
        for ticket in rows:
            if not isinstance(ticket, dict) or str(ticket.get("TicketNumber")) not in changed:
                continue
            for activity in await self._activities(ticket["TicketId"]):
                if activity.get("ActivityType") != COMMENT_ACTIVITY:
                    continue
                fields = map_activity(activity, ticket.get("TicketNumber"))
                try:
                    created = datetime.fromisoformat(fields["created_at"])
                except (TypeError, ValueError):
                    created = None
                before = changed[str(ticket.get("TicketNumber"))]
                if created is not None and (
                    (before is not None and created <= datetime.fromisoformat(before))
                    or (since is not None and created < since)
                ):
                    continue
                mapped.append(fields)
                raws.append({**activity, "TicketNumber": ticket.get("TicketNumber")})
        records, failures = sdk.convert_rows(sdk.record_type("ticketing.comment"), mapped)
        rejects = [
            sdk.Reject(
                position=f"ticket {raws[i]['TicketNumber']} activity {raws[i].get('ActivityId')}",
                reason=reason,
                raw=raws[i],
            )
            for i, reason in failures
        ]
        return records, rejects

    async def _activities(self, ticket_id: str) -> list[dict[str, Any]]:
        path = f"tickets/{ticket_id}/activities"
        body = await self.client.get_json(path)
        items = body.get("Items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise sdk.ConnectorError(f"{path}: the answer has no Items list")
        return [a for a in items if isinstance(a, dict)]

    def map_raw(self, stream: str, raw: dict[str, Any]) -> sdk.Record:
        if self._stream(stream) == "tickets":
            records, rejects = self._map([raw])
            if rejects:
                raise sdk.BadRecord(rejects[0].reason, position=rejects[0].position)
            return records[0]
        try:
            return msgspec.convert(
                map_activity(raw, raw.get("TicketNumber")),
                sdk.record_type("ticketing.comment"),
                strict=False,
            )
        except msgspec.ValidationError as error:
            raise sdk.BadRecord(str(error), position=f"activity {raw.get('ActivityId')}") from None

    # write

    def _link_field(self) -> str:
        if not self.config.link_field_id:
            raise sdk.ConnectorConfigError(
                "writing to Incident IQ needs options.link_field_id: the ticket custom field "
                "(CustomFieldTypeId) that holds the district ticket's link"
            )
        return self.config.link_field_id

    async def _find(self, link: str) -> dict[str, Any] | None:
        """The ticket whose link field holds `link`, deleted ones left out."""
        field = self._link_field()
        items = await self._list(
            0, 10, [{"Facet": "CustomField", "Id": field, "Value": link}], deleted=False
        )
        found = [t for t in items if isinstance(t, dict) and _link_value(t, field) == link]
        return min(found, key=lambda t: t.get("TicketNumber") or 0) if found else None

    async def _send(self, path: str, body: Any) -> Any:
        """One write; iiQ's refusal of the record (HTTP 400/422) is a BadRecord."""
        try:
            reply = await self.client.request(
                "POST", path, json=body, headers={"ApiFlags": "OnlySetMappedProperties"}
            )
        except HttpStatusError as error:
            said = message_of(error.body) or "no message"
            if error.status in (400, 422):
                raise sdk.BadRecord(f"Incident IQ refused it: {said}") from None
            raise sdk.ConnectorError(f"{error}: {said}") from None
        return reply.data

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        """Create or update each ticket found by its link, or add each comment once. iiQ has no
        idempotency key: a creation whose answer is lost is not retried (the run fails), and
        the next run finds the ticket by its link and updates it instead."""
        self._stream(stream)
        one = self._write_ticket if stream == "tickets" else self._write_comment
        return await write_each(stream, batch.records, lambda record: one(record, member))

    def _system(self, record: Any) -> str:
        system = getattr(record, "source_system", None) or self.config.source_system
        if not system:
            raise sdk.BadRecord(
                f"{record.key} names no source_system and options.source_system is not set"
            )
        return system

    async def _write_ticket(self, record: Any, member: str | None) -> None:
        field = self._link_field()
        link = link_of(member, self._system(record), record.ticket_id)
        existing = await self._find(link)
        fields = {
            "Subject": record.subject,
            "IssueDescription": record.description or record.subject,
            "IsUrgent": record.priority == URGENT,
        }
        if existing is None:
            if not (self.config.issue_id and self.config.requester_id):
                raise sdk.ConnectorConfigError(
                    "creating Incident IQ tickets needs options.issue_id and options.requester_id"
                )
            answer = await self._send(
                "tickets/new",
                {
                    **fields,
                    "IssueId": self.config.issue_id,
                    "ForId": self.config.requester_id,
                    "CustomFieldValues": [{"CustomFieldTypeId": field, "Value": link}],
                },
            )
            existing = answer.get("Item") if isinstance(answer, dict) else None
            if not isinstance(existing, dict) or not existing.get("TicketId"):
                raise sdk.ConnectorError("POST tickets/new answered without the ticket (Item)")
        else:
            await self._send(f"tickets/{existing['TicketId']}", fields)
        if record.status in ("resolved", "closed", "canceled") and not existing.get("IsClosed"):
            action = "cancel" if record.status == "canceled" else "close"
            await self._send(f"tickets/{existing['TicketId']}/{action}", {})

    async def _write_comment(self, record: Any, member: str | None) -> None:
        system = self.config.source_system
        if not system:
            raise sdk.ConnectorConfigError(
                "writing comments needs options.source_system, which names the linked ticket"
            )
        link = link_of(member, system, record.ticket_id)
        ticket = await self._find(link)
        if ticket is None:
            raise sdk.BadRecord(
                f"no Incident IQ ticket is linked to {link!r} yet: write the ticket first, then "
                "replay this comment"
            )
        marker = f"[cohub {link}#{record.comment_id}]"
        for activity in await self._activities(ticket["TicketId"]):
            if marker in str(activity.get("Details") or ""):
                return  # written before: a retry changes nothing
        await self._send(
            f"tickets/{ticket['TicketId']}/activities/new",
            {
                "IsPublic": record.public,
                "ActivityItems": [
                    {
                        "$type": COMMENT_ITEM,
                        "ActivityTypeId": COMMENT_ACTIVITY,
                        "Comments": f"{record.author}: {record.body}\n\n{marker}",
                    }
                ],
            },
        )

    async def delete(self, stream: str, keys: list[str], member: str | None) -> int:
        """A district ticket deleted at its source is canceled here (iiQ's record of the work
        stays); one already closed or gone counts nothing."""
        if self._stream(stream) != "tickets":
            raise sdk.ConnectorConfigError("incident_iq deletes tickets only, not comments")
        system = self.config.source_system
        if not system:
            raise sdk.ConnectorConfigError("deleting needs options.source_system")
        done = 0
        for key in keys:
            ticket = await self._find(link_of(member, system, key))
            if ticket is None or ticket.get("IsClosed"):
                continue
            await self._send(f"tickets/{ticket['TicketId']}/cancel", {})
            done += 1
        return done

    async def close(self) -> None:
        self._client = None
