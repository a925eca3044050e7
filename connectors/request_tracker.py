"""Request Tracker 5 (REST2): a help desk's tickets and comments, read and written.

Read top to bottom as Best Practical's REST2 documentation goes (``RT::REST2``):

- **auth**: ``Authorization: token <token>`` with an auth token the integration user made in
  RT's web UI (the ``token`` secret), or HTTP Basic with the ``user`` option and the
  ``password`` secret. RT answers 401 to a refused credential, 403 where the user lacks a right.
- **paths**: everything is under ``<url>/REST/2.0/``. RT builds the ``_url`` links from its
  ``WebBaseURL``, which behind a proxy (or on a test port) names another host or port, so every
  URL here is built from the configured `url`, never from a link.
- **search**: ``GET tickets?query=<TicketSQL>&orderby=&order=&page=&per_page=&fields=`` answers
  ``{count, page, per_page, pages, total, items, next_page, prev_page}``, at most 100 a page.
  Times in answers are UTC (``2026-11-30T17:20:55Z``); times in TicketSQL are read in the REST
  user's time zone, hence the `timezone` option. ``LastUpdated`` has one-second resolution.
  TicketSQL never finds a deleted ticket: deletions are read as the status transactions that
  made them (``GET transactions?query=<TransactionSQL>``).
- **history**: comments and replies are transactions of type ``Comment`` and ``Correspond``;
  their text is in their attachments (``GET attachments?query=<JSON search>``). A transaction
  search over the queue reads them for every ticket at once, a ticket's ``/history`` would take
  a call per ticket.
- **writes**: ``POST ticket`` with ``{"Queue", "Subject", "Content", "Requestor",
  "CustomFields"}`` answers 201 and the new id; ``PUT ticket/<id>`` updates;
  ``POST ticket/<id>/comment`` and ``/correspond`` add a comment or a reply. A refusal is a 400
  (or 403) with ``{"message": ...}``. RT silently drops a custom field the queue does not have,
  so the link field is checked on the queue before the first write.

A ticket written for a district carries the link ``<member>:<ticket_id>`` in the ``District
Ticket`` custom field (`district_field`); a later write finds it there and updates it, so a batch
delivered twice opens no second ticket. A written comment carries ``cohub <link>#<comment_id>``
as its subject, and one already on the ticket is not posted again.
"""

from __future__ import annotations

import html.parser
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from hub import sdk
from hub.sdk.http import (
    ApiKeyHeader,
    ApiOptions,
    Auth,
    BasicAuth,
    HttpAuthError,
    HttpClient,
    HttpStatusError,
    RetryPolicy,
)

__version__ = "1.0.0"


#: RT's largest page.
MAX_PAGE = 100
#: Links looked up in one TicketSQL search when writing (each is an OR clause).
LOOKUP_CHUNK = 25
#: What RT answers for a date never set.
UNSET = "1970-01-01T00:00:00Z"
#: The member part of a link when the connection belongs to the cooperative itself.
COOPERATIVE = "cooperative"
#: How `check` asks: one quick attempt, so a wrong URL fails in seconds, not minutes.
CHECK_RETRY = RetryPolicy(attempts=2, base=0.2, cap=1.0, deadline=5.0)

TICKET_FIELDS = (
    "Subject,Status,Priority,Created,LastUpdated,Resolved,Due,Requestor,Queue,Owner,CustomFields"
)
TRANSACTION_FIELDS = "Type,Created,Creator,ObjectId,Data"

#: RT's statuses (the default lifecycle) as the canonical ones; ``deleted`` is a delete.
STATUS_FROM_RT = {
    "new": "new",
    "open": "in_progress",
    "stalled": "on_hold",
    "resolved": "resolved",
    "rejected": "canceled",
    "deleted": "canceled",
}
STATUS_TO_RT = {
    "new": "new",
    "in_progress": "open",
    "on_hold": "stalled",
    "resolved": "resolved",
    "closed": "resolved",
    "canceled": "rejected",
}
#: Statuses a ticket may be created in (the default lifecycle's ``create`` transitions); a
#: ticket in another is created new and then moved.
CREATE_STATUSES = frozenset({"new", "open", "resolved"})


def priority_from_rt(value: Any) -> int:
    """RT's priority (0 lowest to 99 highest) in bands of 20 as ITIL's 1 (critical) to 5
    (planning): 80-99 → 1, 60-79 → 2, 40-59 → 3, 20-39 → 4, 0-19 → 5; above 99 counts as 99."""
    number = min(max(int(value), 0), 99)
    return 5 - number // 20


def priority_to_rt(priority: int) -> int:
    """ITIL's priority as the middle of its RT band (1 → 90 … 5 → 10): read back, it is the
    same priority, so a round trip changes nothing."""
    return 90 - (priority - 1) * 20


class RequestTrackerOptions(ApiOptions, kw_only=True):
    """Which RT and queue; the credential is the ``token`` secret, or ``user`` with the
    ``password`` secret."""

    url: Annotated[str, msgspec.Meta(description="RT's base URL, e.g. https://help.example.org/")]
    queue: Annotated[str, msgspec.Meta(description="the queue read, and written by default")]
    queues: Annotated[
        dict[str, str],
        msgspec.Meta(description="a written ticket's assigned_group to the RT queue it goes to"),
    ] = {}
    user: Annotated[
        str | None,
        msgspec.Meta(description="sign in with HTTP Basic as this RT user (password secret)"),
    ] = None
    timezone: Annotated[
        str,
        msgspec.Meta(description="the RT user's time zone, in which TicketSQL reads times"),
    ] = "UTC"
    district_field: Annotated[
        str,
        msgspec.Meta(description="ticket custom field holding the district ticket's link"),
    ] = "District Ticket"
    category_field: Annotated[
        str, msgspec.Meta(description="ticket custom field read and written as the category")
    ] = "Category"
    page_size: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)] = MAX_PAGE


# --- values ------------------------------------------------------------------------------------


def _stamp(value: Any) -> datetime | None:
    """An RT time as an aware datetime; None for a date never set (1970) or no date."""
    if not isinstance(value, str) or not value or value == UNSET:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def quoted(value: str) -> str:
    """A TicketSQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def link_id(member: str | None, ticket_id: str) -> str:
    """The link of `member`'s ticket `ticket_id`: ``eastview:INC0012345``."""
    return f"{member or COOPERATIVE}:{ticket_id}"


def _custom_field(raw: dict[str, Any], name: str) -> str | None:
    """The first value of the custom field `name` in a search item (a list of ``{name,
    values}``; RT answers an empty string when the ticket has none)."""
    fields = raw.get("CustomFields")
    if not isinstance(fields, list):
        return None
    for field in fields:
        if isinstance(field, dict) and field.get("name") == name:
            values = field.get("values") or []
            return str(values[0]) if values else None
    return None


class _Text(html.parser.HTMLParser):
    """The text of an HTML comment (RT's web UI writes HTML): tags dropped, paragraphs kept."""

    BREAKS = frozenset({"p", "br", "div", "li", "tr", "pre", "blockquote"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    return "\n".join(line.strip() for line in "".join(parser.parts).splitlines()).strip()


def message_text(attachments: Iterable[dict[str, Any]]) -> str | None:
    """A transaction's message: its first non-empty text/plain part, else its first HTML part
    as text (a reply by mail has both, one made in the web UI only HTML)."""
    parts = [a for a in attachments if isinstance(a.get("Content"), str) and a["Content"].strip()]
    for kind, convert in (("text/plain", str.strip), ("text/html", html_text)):
        for part in parts:
            if str(part.get("ContentType", "")).startswith(kind):
                return convert(part["Content"])
    return None


# --- mapping -----------------------------------------------------------------------------------


def map_ticket(raw: dict[str, Any], options: RequestTrackerOptions) -> dict[str, Any]:
    """A search item (with the ``Description`` read from its Create transaction) as the
    canonical ticket's fields."""
    requestors = [r for r in raw.get("Requestor") or () if isinstance(r, dict)]
    first = requestors[0] if requestors else {}
    email = first.get("EmailAddress") or (first.get("id") if "@" in str(first.get("id")) else None)
    queue = raw.get("Queue")
    link = _custom_field(raw, options.district_field)
    external = {"rt": str(raw.get("id"))}
    if link and ":" in link:
        member, ticket = link.split(":", 1)
        external[member] = ticket
    due, resolved = _stamp(raw.get("Due")), _stamp(raw.get("Resolved"))
    status = raw.get("Status")
    priority = raw.get("Priority")
    return {
        "ticket_id": raw.get("id"),
        "requester": first.get("RealName") or first.get("Name") or first.get("id"),
        "requester_email": email or None,
        "category": _custom_field(raw, options.category_field),
        "priority": priority_from_rt(priority) if str(priority).isdigit() else priority,
        "status": STATUS_FROM_RT.get(status, status),
        "subject": raw.get("Subject"),
        "description": raw.get("Description"),
        "opened_at": raw.get("Created"),
        "resolved_at": resolved,
        "assigned_group": queue.get("Name") if isinstance(queue, dict) else None,
        "sla_due_at": due,
        "sla_breached": due is not None and (resolved or datetime.now(UTC)) > due,
        "source_system": "rt",
        "external_ids": external,
        "updated_at": raw.get("LastUpdated"),
    }


def map_comment(raw: dict[str, Any]) -> dict[str, Any]:
    """A Comment or Correspond transaction (with its ``Body``) as a canonical comment: a reply
    (Correspond) reaches the requester, a comment stays internal."""
    creator = raw.get("Creator")
    return {
        "ticket_id": raw.get("ObjectId"),
        "comment_id": raw.get("id"),
        "author": creator.get("id") if isinstance(creator, dict) else creator,
        "body": raw.get("Body"),
        "public": raw.get("Type") == "Correspond",
        "created_at": raw.get("Created"),
        "updated_at": raw.get("Created"),
    }


# --- the connector -----------------------------------------------------------------------------


class RequestTracker(sdk.Connector[RequestTrackerOptions]):
    """Request Tracker 5 over REST2: one queue's tickets and comments read incrementally
    (deletions as deletes), district tickets and comments written without duplicates."""

    name = "request_tracker"
    title = "Request Tracker 5 (REST2)"
    options = RequestTrackerOptions
    secrets = ("token", "password")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: HttpClient | None = None
        self._linked_queues: set[str] = set()
        try:
            self.zone = ZoneInfo(self.config.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise sdk.ConnectorConfigError(
                f"timezone {self.config.timezone!r} is not an IANA time zone name"
            ) from None

    # connection

    def _auth(self) -> Auth:
        if self.config.user:
            password = self.secret_values.get("password")
            if not password:
                raise sdk.ConnectorConfigError("options.user is set but no 'password' secret")
            return BasicAuth(self.config.user, password)
        token = self.secret_values.get("token")
        if not token:
            raise sdk.ConnectorConfigError(
                "the connection gives no 'token' secret (an RT auth token), nor options.user"
            )
        return ApiKeyHeader(key=f"token {token}", header="Authorization")

    def _base(self) -> str:
        return self.config.url.rstrip("/") + "/REST/2.0/"

    @property
    def client(self) -> HttpClient:
        if self._client is None:
            self._client = self.config.client(self._base(), self.context, auth=self._auth())
        return self._client

    def _rt_time(self, moment: datetime) -> str:
        """`moment` as TicketSQL reads it: in the REST user's time zone, to the second."""
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")

    # check and streams

    async def check(self) -> None:
        base = self._base()
        probe = HttpClient(base, auth=self._auth(), retry=CHECK_RETRY, tls=self.client.tls)
        try:
            about = await probe.get_json("rt")
        except HttpAuthError as error:
            raise sdk.AuthError(
                f"RT at {self.config.url} refused the credentials (HTTP {error.status}): "
                + (
                    "check the user and password"
                    if self.config.user
                    else "the auth token is wrong or revoked"
                )
            ) from None
        except HttpStatusError as error:
            raise sdk.ConnectorConfigError(
                f"{self.config.url} is not a Request Tracker: GET /REST/2.0/rt answered "
                f"HTTP {error.status}"
            ) from None
        except sdk.TransientError as error:
            if "not valid JSON" in str(error):
                raise sdk.ConnectorConfigError(
                    f"{self.config.url} is not a Request Tracker: GET /REST/2.0/rt answered no JSON"
                ) from None
            raise sdk.TransientError(f"cannot reach RT at {self.config.url}: {error}") from None
        if not (isinstance(about, dict) and "Version" in about):
            raise sdk.ConnectorConfigError(
                f"{self.config.url} is not a Request Tracker: /REST/2.0/rt gave no Version"
            )
        for queue in dict.fromkeys([self.config.queue, *self.config.queues.values()]):
            await self._queue_links(probe, queue)

    async def _queue_links(self, client: HttpClient, queue: str) -> None:
        """Make sure the user sees `queue` and that it has the link custom field."""
        try:
            found = await client.get_json(f"queue/{_path(queue)}")
        except HttpAuthError as error:
            if error.status == 401:
                raise
            raise sdk.AuthError(
                f"the RT user may not see queue {queue!r} (HTTP 403): grant it SeeQueue and "
                "ShowTicket there (docs/connectors/request-tracker.md lists every right)"
            ) from None
        except HttpStatusError as error:
            if error.status == 404:
                raise sdk.ConnectorConfigError(f"RT has no queue {queue!r}") from None
            raise
        fields = await client.get_json(
            f"queue/{found['id']}/customfields", params={"fields": "Name", "per_page": MAX_PAGE}
        )
        names = {item.get("Name") for item in (fields or {}).get("items") or ()}
        if self.config.district_field not in names:
            raise sdk.ConnectorConfigError(
                f"RT queue {queue!r} has no custom field {self.config.district_field!r} (or the "
                "user may not see it): create it as a single free-form ticket field applied to "
                "the queue, and grant SeeCustomField and ModifyCustomField"
            )
        self._linked_queues.add(queue)

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(
                name="tickets",
                record="ticketing.ticket",
                description=f"tickets of queue {self.config.queue}; deletions as deletes",
                writable=True,
            ),
            sdk.StreamSpec(
                name="comments",
                record="ticketing.comment",
                description="comments (internal) and replies (public) on the queue's tickets",
                writable=True,
            ),
        ]

    def _stream(self, stream: str) -> str:
        if stream not in ("tickets", "comments"):
            raise sdk.ConnectorConfigError(
                f"no stream {stream!r}; request_tracker offers tickets, comments"
            )
        return stream

    # searching

    async def _search(
        self, resource: str, query: str, stamp: str, since: datetime | None, fields: str
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of a search oldest change first, keyset-paged on `stamp`: each page asks again
        from the last stamp it saw (so an item changed while paging is not skipped), and goes
        on by page number only while a whole page shares one second. Items seen already in
        this search are left out."""
        size = min(self.config.page_size, max(self.batch_size, 1))
        bound, page = since, 1
        seen: set[tuple[str, str]] = set()
        while True:
            clause = (
                query if bound is None else f"{query} AND {stamp} >= {quoted(self._rt_time(bound))}"
            )
            params = {
                "query": clause, "orderby": stamp, "order": "ASC", "page": page,
                "per_page": size, "fields": fields,
                "fields[Requestor]": "EmailAddress,RealName,Name", "fields[Queue]": "Name",
            }  # fmt: skip
            body = await self.client.get_json(resource, params=params)
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise sdk.ConnectorError(f"RT answered GET {resource} without a list of items")
            fresh = []
            for item in items:
                key = (str(item.get("id")), str(item.get(stamp)))
                if key not in seen:
                    seen.add(key)
                    fresh.append(item)
            if fresh:
                yield fresh
            if len(items) < size:
                return
            last = _stamp(items[-1].get(stamp))
            if last is None or (bound is not None and last <= bound):
                page += 1
            else:
                bound, page = last, 1

    async def _attachments(self, transactions: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The attachments of these transactions with their content, by transaction id."""
        found: dict[str, list[dict[str, Any]]] = {}
        query = msgspec.json.encode(
            [{"field": "TransactionId", "operator": "IN", "value": [int(t) for t in transactions]}]
        ).decode()
        page = 1
        while True:
            body = await self.client.get_json(
                "attachments",
                params={"query": query, "fields": "TransactionId,ContentType,Content",
                        "orderby": "id", "page": page, "per_page": MAX_PAGE},
            )  # fmt: skip
            for item in body.get("items") or ():
                found.setdefault(str(item.get("TransactionId")), []).append(item)
            if page >= int(body.get("pages") or 1):
                return found
            page += 1

    async def _descriptions(self, tickets: list[dict[str, Any]]) -> None:
        """Set each ticket's ``Description``: the message its Create transaction carries."""
        ids = " OR ".join(f"ObjectId = {int(t['id'])}" for t in tickets)
        body = await self.client.get_json(
            "transactions",
            params={"query": f"ObjectType = 'RT::Ticket' AND Type = 'Create' AND ({ids})",
                    "fields": "ObjectId", "per_page": MAX_PAGE},
        )  # fmt: skip
        created = {str(t["ObjectId"]): str(t["id"]) for t in body.get("items") or ()}
        content = await self._attachments(list(created.values())) if created else {}
        for ticket in tickets:
            transaction = created.get(str(ticket["id"]))
            ticket["Description"] = message_text(content.get(transaction or "", []))

    # reading

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        cursor = sdk.IncrementalCursor(state, self.lookback)
        since = cursor.since()
        if self._stream(stream) == "tickets":
            pages = self._search("tickets", f"Queue = {quoted(self.config.queue)}",
                                 "LastUpdated", since, TICKET_FIELDS)  # fmt: skip
            read: dict[str, datetime] = {}
            async for items in pages:
                await self._descriptions(items)
                records, rejects = self._map("tickets", items)
                for record in records:
                    read[record.key] = record.updated_at
                yield sdk.Batch(
                    records=cursor.admit(records), rejects=rejects, state=cursor.state()
                )
            deletes = await self._deletions(cursor, since, read)
            if deletes:
                yield sdk.Batch(records=[], deletes=deletes, state=cursor.state())
            return
        query = (
            f"ObjectType = 'RT::Ticket' AND TicketQueue = {quoted(self.config.queue)} "
            "AND (Type = 'Comment' OR Type = 'Correspond')"
        )
        async for items in self._search(
            "transactions", query, "Created", since, TRANSACTION_FIELDS
        ):
            content = await self._attachments([str(item["id"]) for item in items])
            for item in items:
                item["Body"] = message_text(content.get(str(item["id"]), []))
            records, rejects = self._map("comments", items)
            yield sdk.Batch(records=cursor.admit(records), rejects=rejects, state=cursor.state())

    async def _deletions(
        self, cursor: sdk.IncrementalCursor, since: datetime | None, read: dict[str, datetime]
    ) -> list[str]:
        """The queue's tickets deleted since `since`, not delivered before at that moment and
        not read back afterwards (a ticket deleted, then restored); the cursor moves past them
        as past a delivered record, so a deletion is reported once."""
        query = (
            f"ObjectType = 'RT::Ticket' AND TicketQueue = {quoted(self.config.queue)} "
            "AND Type = 'Status' AND NewValue = 'deleted'"
        )
        deleted: list[str] = []
        async for items in self._search(
            "transactions", query, "Created", since, "ObjectId,Created"
        ):
            for item in items:
                key, moment = str(item.get("ObjectId")), _stamp(item.get("Created"))
                if moment is None or (key in read and read[key] >= moment):
                    continue
                if cursor.recent.get(key) == moment.isoformat():
                    continue
                cursor.recent[key] = moment.isoformat()
                cursor.cursor = max(cursor.cursor or moment, moment)
                deleted.append(key)
        return list(dict.fromkeys(deleted))

    def _map(
        self, stream: str, items: list[dict[str, Any]]
    ) -> tuple[list[sdk.Record], list[sdk.Reject]]:
        if stream == "tickets":
            record, label = sdk.record_type("ticketing.ticket"), "ticket"
            mapper: Callable[[dict[str, Any]], dict[str, Any]] = partial(
                map_ticket, options=self.config
            )
        else:
            record, label, mapper = sdk.record_type("ticketing.comment"), "transaction", map_comment
        return sdk.map_objects(
            record, items, mapper, lambda _, raw: f"RT {label} {raw.get('id')}", f"an RT {label}"
        )

    def map_raw(self, stream: str, raw: dict[str, Any]) -> sdk.Record:
        records, rejects = self._map(self._stream(stream), [raw])
        if rejects:
            raise sdk.BadRecord(rejects[0].reason, position=rejects[0].position)
        return records[0]

    # pushed tickets

    async def receive(self, request: sdk.Inbound) -> sdk.Received:
        """A scrip's ``{"id": <ticket id>, ...}`` (docs/connectors/request-tracker.md): the
        ticket read back from RT as a search item, so a pushed ticket is mapped exactly as a
        read one and the body needs to carry only the id."""
        try:
            body = msgspec.json.decode(request.body)
        except msgspec.DecodeError:
            raise sdk.BadRecord("the RT scrip's body is not JSON") from None
        ticket = body.get("id") if isinstance(body, dict) else None
        if not str(ticket or "").isdigit():
            raise sdk.BadRecord('the RT scrip\'s body carries no ticket id ({"id": ...})')
        answer = await self.client.get_json(
            "tickets",
            params={"query": f"id = {int(ticket)}", "fields": TICKET_FIELDS,
                    "fields[Requestor]": "EmailAddress,RealName,Name", "fields[Queue]": "Name"},
        )  # fmt: skip
        items = [i for i in answer.get("items") or () if isinstance(i, dict)]
        if not items:  # deleted (no search finds it) or not visible: the ticket itself
            items = [await self.client.get_json(f"ticket/{int(ticket)}")]
        await self._descriptions(items)
        return sdk.Received(stream="tickets", raws=items)

    # writing

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        if self._stream(stream) == "tickets":
            return await self._write_tickets(batch.records, member)
        return await self._write_comments(batch.records, member)

    def _queue_of(self, record: Any) -> str:
        return self.config.queues.get(record.assigned_group or "", self.config.queue)

    async def _find(self, links: list[str]) -> dict[str, dict[str, Any]]:
        """The tickets carrying these links in the link custom field, in any queue."""
        field = f"'CF.{{{self.config.district_field}}}'"
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(links), LOOKUP_CHUNK):
            chunk = links[start : start + LOOKUP_CHUNK]
            query = " OR ".join(f"{field} = {quoted(link)}" for link in chunk)
            page = 1
            while True:
                body = await self.client.get_json(
                    "tickets",
                    params={"query": query, "fields": "Subject,Status,Priority,CustomFields",
                            "page": page, "per_page": MAX_PAGE},
                )  # fmt: skip
                for item in body.get("items") or ():
                    link = _custom_field(item, self.config.district_field)
                    if link in chunk:
                        found.setdefault(link, item)
                if page >= int(body.get("pages") or 1):
                    break
                page += 1
        return found

    async def _write_tickets(self, records: list[Any], member: str | None) -> sdk.WriteResult:
        tickets = {link_id(member, r.ticket_id): r for r in records}  # the last copy wins
        rejects: list[sdk.Reject] = []
        for queue in {self._queue_of(r) for r in tickets.values()} - self._linked_queues:
            try:
                await self._queue_links(self.client, queue)
            except sdk.ConnectorConfigError as error:
                if f"no queue {queue!r}" not in str(error):
                    raise  # a queue without the link field would get duplicates: stop
        existing = await self._find(list(tickets))
        written = 0
        for link, record in tickets.items():
            try:
                if link in existing:
                    await self._update(existing[link], record)
                else:
                    await self._create(link, record)
                written += 1
            except (HttpStatusError, HttpAuthError) as error:
                if error.status == 401:
                    raise
                rejects.append(
                    sdk.Reject(
                        position=f"ticket {link}",
                        reason=f"RT refused the ticket (HTTP {error.status}): {_message(error)}",
                        raw=msgspec.to_builtins(record),
                    )
                )
        return sdk.WriteResult(written=written, rejects=rejects)

    def _fields(self, record: Any) -> dict[str, Any]:
        fields = {
            "Subject": record.subject,
            "Priority": priority_to_rt(record.priority),
            "Status": STATUS_TO_RT[record.status],
        }
        if record.category:
            fields["CustomFields"] = {self.config.category_field: record.category}
        return fields

    async def _create(self, link: str, record: Any) -> None:
        fields = self._fields(record)
        status = fields.pop("Status")
        body = {
            "Queue": self._queue_of(record),
            **fields,
            "Content": record.description or record.subject,
            "ContentType": "text/plain",
            "Requestor": record.requester_email or record.requester,
            "CustomFields": {**fields.get("CustomFields", {}), self.config.district_field: link},
        }
        if status in CREATE_STATUSES:
            body["Status"] = status
        created = await self.client.post_json("ticket", body)
        if status not in CREATE_STATUSES:
            await self.client.request("PUT", f"ticket/{created['id']}", json={"Status": status})

    async def _update(self, found: dict[str, Any], record: Any) -> None:
        """Send what differs from RT's ticket (nothing: no call, no transaction in RT)."""
        wanted = self._fields(record)
        current = {
            "Subject": found.get("Subject"),
            "Priority": int(found.get("Priority") or 0),
            "Status": found.get("Status"),
        }
        changes = {k: v for k, v in wanted.items() if k != "CustomFields" and current[k] != v}
        category = wanted.get("CustomFields", {}).get(self.config.category_field)
        if category and category != _custom_field(found, self.config.category_field):
            changes["CustomFields"] = wanted["CustomFields"]
        if changes:
            await self.client.request("PUT", f"ticket/{found['id']}", json=changes)

    async def _write_comments(self, records: list[Any], member: str | None) -> sdk.WriteResult:
        comments = {(link_id(member, c.ticket_id), c.comment_id): c for c in records}
        tickets = await self._find(list(dict.fromkeys(link for link, _ in comments)))
        posted = await self._subjects([str(t["id"]) for t in tickets.values()])
        written, rejects = 0, []
        for (link, comment_id), comment in comments.items():
            position = f"comment {link}#{comment_id}"
            ticket = tickets.get(link)
            if ticket is None:
                rejects.append(
                    sdk.Reject(
                        position=position,
                        reason=f"no RT ticket carries {self.config.district_field} {link!r}: "
                        "its ticket was not written yet",
                        raw=msgspec.to_builtins(comment),
                    )
                )
                continue
            subject = f"cohub {link}#{comment_id}"
            if subject not in posted.get(str(ticket["id"]), set()):
                kind = "correspond" if comment.public else "comment"
                body = {"Subject": subject, "Content": comment.body, "ContentType": "text/plain"}
                try:
                    await self.client.post_json(f"ticket/{ticket['id']}/{kind}", body)
                except (HttpStatusError, HttpAuthError) as error:
                    if error.status == 401:
                        raise
                    rejects.append(
                        sdk.Reject(
                            position=position,
                            reason=f"RT refused the comment (HTTP {error.status}): {_message(error)}",
                            raw=msgspec.to_builtins(comment),
                        )
                    )
                    continue
            written += 1
        return sdk.WriteResult(written=written, rejects=rejects)

    async def _subjects(self, tickets: list[str]) -> dict[str, set[str]]:
        """The subjects of the comments and replies on these tickets, by ticket."""
        subjects: dict[str, set[str]] = {}
        for start in range(0, len(tickets), LOOKUP_CHUNK):
            ids = " OR ".join(f"ObjectId = {int(t)}" for t in tickets[start : start + LOOKUP_CHUNK])
            query = (
                "ObjectType = 'RT::Ticket' AND (Type = 'Comment' OR Type = 'Correspond') "
                f"AND ({ids})"
            )
            page = 1
            while True:
                body = await self.client.get_json(
                    "transactions",
                    params={"query": query, "fields": "ObjectId,Data", "page": page,
                            "per_page": MAX_PAGE},
                )  # fmt: skip
                for item in body.get("items") or ():
                    subjects.setdefault(str(item["ObjectId"]), set()).add(
                        str(item.get("Data") or "").strip()
                    )
                if page >= int(body.get("pages") or 1):
                    break
                page += 1
        return subjects

    async def close(self) -> None:
        self._client = None


def _path(name: str) -> str:
    """A queue name as one path segment."""
    return quote(name, safe="")


def _message(error: HttpStatusError | HttpAuthError) -> str:
    """RT's own explanation of a refusal (``{"message": ...}``), or the status line."""
    body = error.body
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(error)
