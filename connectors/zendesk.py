"""Zendesk Support (API v2): tickets and comments read incrementally, written idempotently.

Read top to bottom as Zendesk's documentation goes:

- **auth**: an API token as HTTP Basic ``{email}/token:{api_token}``, or an OAuth access token as
  ``Authorization: Bearer``. ``GET /api/v2/users/me.json`` names the user and its role; the
  incremental exports need an admin.
- **incremental ticket export, cursor based**: ``GET /api/v2/incremental/tickets/cursor.json``
  with ``start_time`` (Unix seconds) the first time, then ``cursor={after_cursor}``; each answer
  is ``{"tickets", "after_cursor", "after_url", "before_cursor", "before_url", "end_of_stream"}``
  and the walk follows ``after_cursor`` until ``end_of_stream`` is true. The last
  ``after_cursor`` is where the next export starts. ``include=users`` sideloads the requesters.
  Deleted tickets come back with ``status: "deleted"``.
- **rate limit**: the incremental exports allow **10 requests a minute** (429 with
  ``Retry-After`` beyond that): their requests are paced client-side by a budget of their own,
  apart from the account's general limit (`requests_per_second`), and a 429 is still honoured.
- **comments**: ``GET /api/v2/tickets/{id}/comments`` with cursor pagination (``page[size]``,
  ``meta.has_more``, ``links.next``).
- **writes**: ``POST /api/v2/tickets`` creates (with an ``Idempotency-Key`` header, so a retried
  creation answers the first one's ticket), ``PUT /api/v2/tickets/{id}`` updates, a comment is
  an update carrying ``comment: {body, public}``. ``GET /api/v2/tickets?external_id=...``
  finds the ticket a district ticket was written to: its ``external_id`` is
  ``{member}:{source system}:{district ticket id}``.
- **errors**: ``{"error": "...", "description": "..."}``; a record Zendesk refuses is
  ``422 {"error": "RecordInvalid", "details": {...}}``, a dead letter with Zendesk's reasons.
- **webhooks**: signed with ``X-Zendesk-Webhook-Signature`` = base64(HMAC-SHA256(signing
  secret, ``X-Zendesk-Webhook-Signature-Timestamp`` + body)), checked in `receive`.

The ``tickets`` state is ``{"cursor": after_cursor}`` (or ``{"start_time": N}`` before Zendesk
handed out a cursor); ``comments`` adds ``watermark``, the newest ticket update an earlier
complete read saw: comments older than it were delivered then.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec

from connectors.writes import write_each
from hub import sdk
from hub.sdk.http import (
    ApiOptions,
    Auth,
    BasicAuth,
    BearerToken,
    HttpAuthError,
    HttpClient,
    HttpStatusError,
    RateLimit,
)
from hub.sdk.http.clock import SYSTEM_CLOCK, Clock

EXPORT = "api/v2/incremental/tickets/cursor.json"
#: What Zendesk allows the incremental exports, per minute.
EXPORT_LIMIT_PER_MINUTE = 10
#: Zendesk's most comments a cursor page.
COMMENT_PAGE = 100

#: Zendesk status → canonical status, and back (a district's canceled ticket is solved here).
STATUSES = {
    "new": "new",
    "open": "in_progress",
    "pending": "on_hold",
    "hold": "on_hold",
    "solved": "resolved",
    "closed": "closed",
}
WRITTEN_STATUSES = {
    "new": "new",
    "in_progress": "open",
    "on_hold": "hold",
    "resolved": "solved",
    "closed": "solved",
    "canceled": "solved",
}
#: Zendesk priority → ITIL priority (1 critical .. 5 planning), and back.
PRIORITIES = {"urgent": 1, "high": 2, "normal": 3, "low": 4}
WRITTEN_PRIORITIES = {1: "urgent", 2: "high", 3: "normal", 4: "low", 5: "low"}


class ZendeskOptions(ApiOptions, kw_only=True):
    """Which Zendesk Support account to reach and how; the API token (``api_token``) or OAuth
    access token (``oauth_token``) and the webhook signing secret (``webhook_secret``) are
    secrets."""

    subdomain: (
        Annotated[
            str,
            msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]*$", description="{subdomain}.zendesk.com"),
        ]
        | None
    ) = None
    base_url: Annotated[
        str | None, msgspec.Meta(description="API host instead of the subdomain's")
    ] = None
    email: Annotated[
        str | None, msgspec.Meta(description="the agent's email, for API token auth")
    ] = None
    start_time: Annotated[
        datetime | None,
        msgspec.Meta(description="a first export starts here (default: everything)"),
    ] = None
    page_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000
    export_requests_per_minute: Annotated[
        float,
        msgspec.Meta(gt=0, le=10, description="pace of the incremental exports (Zendesk: 10)"),
    ] = EXPORT_LIMIT_PER_MINUTE
    source_system: Annotated[
        str | None,
        msgspec.Meta(
            description="system written tickets come from when a record does not say, and "
            "always for comments (e.g. incident_iq)"
        ),
    ] = None
    webhook_tolerance_seconds: Annotated[int, msgspec.Meta(ge=1)] = 300


class ZendeskError(msgspec.Struct, frozen=True):
    """Zendesk's explanation of a refusal: its error code and what it says."""

    code: str
    text: str


def error_of(body: Any) -> ZendeskError | None:
    """``{"error", "description", "details"}`` as one text (details: field → descriptions)."""
    if not isinstance(body, dict) or "error" not in body:
        return None
    error = body["error"]
    if isinstance(error, dict):  # some endpoints nest {"title", "message"}
        code = str(error.get("title") or "error")
        parts = [str(error.get("message") or "")]
    else:
        code = str(error)
        parts = [str(body.get("description") or body.get("error_description") or "")]
    details = body.get("details")
    if isinstance(details, dict):
        for field, problems in details.items():
            for problem in problems if isinstance(problems, list) else [problems]:
                said = problem.get("description") if isinstance(problem, dict) else problem
                parts.append(f"{field}: {said}")
    return ZendeskError(code=code, text="; ".join(p for p in parts if p) or code)


# --- links between desks -------------------------------------------------------------------


def link_of(member: str | None, system: str, ticket_id: str) -> str:
    """The ``external_id`` of the shared desk's ticket for a district's ticket."""
    return f"{member or 'cooperative'}:{system}:{ticket_id}"


def parse_link(external_id: Any) -> tuple[str, str] | None:
    """(system, ticket id) of an ``external_id`` written by `link_of`, else None."""
    if not isinstance(external_id, str) or external_id.count(":") < 2:
        return None
    _, system, ticket = external_id.split(":", 2)
    return (system, ticket) if system and ticket else None


# --- mapping ---------------------------------------------------------------------------------


def _lower(value: Any) -> str | None:
    """Event webhooks spell statuses in capitals (``OPEN``); the API in lower case."""
    return value.lower() if isinstance(value, str) else None


def _user(users: Mapping[Any, Mapping[str, Any]], identifier: Any) -> Mapping[str, Any]:
    found = users.get(identifier) if isinstance(identifier, int | str) else None
    return found if isinstance(found, dict) else {}


def map_ticket(raw: Mapping[str, Any], users: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
    """A Zendesk ticket as `ticketing.ticket` fields; the requester named from `users`."""
    requester = _user(users, raw.get("requester_id"))
    external = {"zendesk": str(raw.get("id"))}
    linked = parse_link(raw.get("external_id"))
    if linked is not None:
        external[linked[0]] = linked[1]
    status = STATUSES.get(_lower(raw.get("status")) or "", raw.get("status"))
    requester_id = raw.get("requester_id")
    return {
        "ticket_id": None if raw.get("id") is None else str(raw["id"]),
        "requester": requester.get("name") or (None if requester_id is None else str(requester_id)),
        "requester_email": requester.get("email"),
        "category": raw.get("type"),
        "priority": PRIORITIES.get(_lower(raw.get("priority")) or "normal", 3)
        if isinstance(raw.get("priority"), str | None)
        else raw.get("priority"),
        "status": status,
        "subject": raw.get("subject") or raw.get("raw_subject"),
        "description": raw.get("description"),
        "opened_at": raw.get("created_at"),
        "resolved_at": raw.get("updated_at") if status in ("resolved", "closed") else None,
        "assigned_group": None if raw.get("group_id") is None else str(raw["group_id"]),
        "sla_due_at": raw.get("due_at"),
        "source_system": "zendesk",
        "external_ids": external,
        "updated_at": raw.get("updated_at"),
    }


def map_comment(
    raw: Mapping[str, Any], ticket_id: Any, users: Mapping[Any, Mapping[str, Any]]
) -> dict[str, Any]:
    """A Zendesk ticket comment as `ticketing.comment` fields."""
    author = _user(users, raw.get("author_id"))
    return {
        "ticket_id": str(ticket_id),
        "comment_id": None if raw.get("id") is None else str(raw["id"]),
        "author": author.get("name") or str(raw.get("author_id")),
        "body": raw.get("plain_body") or raw.get("body"),
        "public": raw.get("public", True),
        "created_at": raw.get("created_at"),
        "updated_at": raw.get("created_at"),
    }


def _users(body: Mapping[str, Any]) -> dict[Any, Mapping[str, Any]]:
    return {u.get("id"): u for u in body.get("users") or () if isinstance(u, dict)}


def map_tickets(
    rows: list[Any], users: Mapping[Any, Mapping[str, Any]]
) -> tuple[list[sdk.Record], list[sdk.Reject]]:
    """Tickets as canonical records, and the ones that cannot be, with the reason."""

    def position(index: int, raw: Any) -> str:
        identifier = raw.get("id") if isinstance(raw, dict) else None
        return f"ticket {identifier}"

    return sdk.map_objects(
        sdk.record_type("ticketing.ticket"),
        rows,
        lambda raw: map_ticket(raw, users),
        position,
        "a Zendesk ticket is an object",
    )


def _stamp(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


# --- the connector ---------------------------------------------------------------------------


class Zendesk(sdk.Connector[ZendeskOptions]):
    """A Zendesk Support account: tickets and comments, read by incremental export and written
    by external id."""

    name = "zendesk"
    title = "Zendesk Support (API v2)"
    options = ZendeskOptions
    secrets = ("api_token", "oauth_token", "webhook_secret")
    inbound_auth: ClassVar[str] = "connector"
    #: Time as pacing, retries and webhook freshness see it; tests put a `ManualClock` here.
    clock: Clock = SYSTEM_CLOCK

    STREAMS: ClassVar[dict[str, str]] = {
        "tickets": "ticketing.ticket",
        "comments": "ticketing.comment",
    }

    def __init__(
        self,
        options: ZendeskOptions,
        secrets: Mapping[str, str],
        context: sdk.ConnectionContext,
    ) -> None:
        super().__init__(options, secrets, context)
        if not (options.subdomain or options.base_url):
            raise sdk.ConnectorConfigError("zendesk needs options.subdomain (or base_url)")
        self._client: HttpClient | None = None
        self._export: HttpClient | None = None

    # auth and the clients

    def _base(self) -> str:
        if self.config.base_url:
            return self.config.base_url.rstrip("/") + "/"
        return f"https://{self.config.subdomain}.zendesk.com/"

    def _auth(self) -> Auth:
        if self.secret_values.get("oauth_token"):
            return BearerToken(self.secret_values["oauth_token"])
        if self.secret_values.get("api_token"):
            if not self.config.email:
                raise sdk.ConnectorConfigError(
                    "an api_token needs options.email, the agent it belongs to"
                )
            return BasicAuth(f"{self.config.email}/token", self.secret_values["api_token"])
        raise sdk.ConnectorConfigError(
            "the connection gives neither an api_token nor an oauth_token secret"
        )

    def _make_client(self, auth: Auth | None = None) -> HttpClient:
        client = self.config.client(self._base(), self.context, auth=auth)
        client.clock = self.clock
        return client

    @property
    def client(self) -> HttpClient:
        """The client for every endpoint but the incremental exports, built on first use."""
        if self._client is None:
            self._client = self._make_client(self._auth())
        return self._client

    @property
    def export_client(self) -> HttpClient:
        """The client for the incremental exports: their own budget of 10 requests a minute,
        shared by every connection to this account in this worker."""
        if self._export is None:
            client = self._make_client(self._auth())
            client.system = f"{client.system} incremental exports"
            client.rate_limit = RateLimit(per_second=self.config.export_requests_per_minute / 60)
            self._export = client
        return self._export

    # check and streams

    async def check(self) -> None:
        """The URL answers as Zendesk, the credentials are taken, and the user is an admin
        (the incremental exports are for admins only)."""
        base = self._base()
        try:
            body = await self.client.get_json("api/v2/users/me.json")
        except HttpAuthError as error:
            said = error_of(error.body)
            who = self.config.email or "the OAuth token"
            raise sdk.AuthError(
                f"Zendesk refused the credentials of {who} (HTTP {error.status}"
                f"{': ' + said.text if said else ''}): check email and api_token, or the token"
            ) from None
        except HttpStatusError as error:
            raise sdk.ConnectorConfigError(
                f"{base} is not a Zendesk Support API: users/me answered HTTP {error.status} "
                "(check subdomain or base_url)"
            ) from None
        except sdk.TransientError as error:
            raise sdk.TransientError(f"cannot reach Zendesk at {base}: {error}") from None
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, dict):
            raise sdk.ConnectorConfigError(
                f"{base} is not a Zendesk Support API: users/me answered without a user"
            )
        if user.get("id") is None:  # Zendesk answers the anonymous user to no credentials
            raise sdk.AuthError("Zendesk did not sign in: it answered the anonymous user")
        if user.get("role") != "admin":
            raise sdk.AuthError(
                f"the Zendesk user {user.get('email')} is {user.get('role')}, not admin: the "
                "incremental exports are for admins only"
            )

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(
                name=name,
                record=record,
                description=f"Zendesk {name} (incremental ticket export)",
                writable=True,
            )
            for name, record in self.STREAMS.items()
        ]

    def _stream(self, stream: str) -> str:
        self.offered(stream, self.STREAMS)
        return stream

    # read

    async def _export_pages(
        self, state: sdk.State
    ) -> AsyncIterator[tuple[dict[str, Any], sdk.State, bool]]:
        """Each page of the incremental ticket export from `state`, with the state that resumes
        after it and whether it ends the stream."""
        base = {"per_page": self.config.page_size, "include": "users"}
        if state.get("cursor"):
            params: dict[str, str | int] = {**base, "cursor": state["cursor"]}
        else:
            start = state.get("start_time")
            if start is None:
                first = self.config.start_time
                start = int(first.timestamp()) if first else 0
            params = {**base, "start_time": start}
        while True:
            body = await self.export_client.get_json(EXPORT, params=params)
            if not (isinstance(body, dict) and isinstance(body.get("tickets"), list)):
                raise sdk.ConnectorError(
                    f"{EXPORT}: the answer has no list of tickets (a {type(body).__name__})"
                )
            end = body.get("end_of_stream")
            after = body.get("after_cursor")
            if not isinstance(end, bool):
                raise sdk.ConnectorError(f"{EXPORT}: the answer has no end_of_stream flag")
            if not end and not after:
                raise sdk.ConnectorError(f"{EXPORT}: the stream goes on but gives no after_cursor")
            resume: sdk.State = (
                {"cursor": after} if after else {"start_time": params.get("start_time", 0)}
            )
            yield body, resume, end
            if end:
                return
            params = {**base, "cursor": after}

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        if self._stream(stream) == "tickets":
            async for body, resume, _ in self._export_pages(state or {}):
                rows = body["tickets"]
                deleted = [t for t in rows if isinstance(t, dict) and t.get("status") == "deleted"]
                live = [
                    t for t in rows if not (isinstance(t, dict) and t.get("status") == "deleted")
                ]
                records, rejects = map_tickets(live, _users(body))
                yield sdk.Batch(
                    records=records,
                    rejects=rejects,
                    deletes=[str(t.get("id")) for t in deleted],
                    state=resume,
                )
        else:
            async for batch in self._read_comments(state or {}):
                yield batch

    async def _read_comments(self, state: sdk.State) -> AsyncIterator[sdk.Batch]:
        """The comments of each ticket the export reports changed, those newer than the
        watermark (less the lookback) only: older ones were delivered with an earlier change."""
        watermark = _stamp(state.get("watermark"))
        since = None if watermark is None else watermark - self.lookback
        newest = watermark
        record = sdk.record_type("ticketing.comment")
        position = {k: v for k, v in state.items() if k != "watermark"}
        async for body, resume, end in self._export_pages(position):
            mapped: list[dict[str, Any]] = []
            raws: list[dict[str, Any]] = []
            for ticket in body["tickets"]:
                if not isinstance(ticket, dict) or ticket.get("status") == "deleted":
                    continue
                updated = _stamp(ticket.get("updated_at"))
                if updated is not None and (newest is None or updated > newest):
                    newest = updated
                async for comment, users in self._comments(ticket.get("id")):
                    created = _stamp(comment.get("created_at"))
                    if since is not None and created is not None and created < since:
                        continue
                    mapped.append(map_comment(comment, ticket.get("id"), users))
                    raws.append(comment)
            records, failures = sdk.convert_rows(record, mapped)
            rejects = [
                sdk.Reject(
                    position=f"ticket {mapped[i]['ticket_id']} comment {raws[i].get('id')}",
                    reason=reason,
                    raw={**raws[i], "ticket_id": mapped[i]["ticket_id"]},
                )
                for i, reason in failures
            ]
            mark = watermark if not end else newest
            after = {**resume, "watermark": mark.isoformat() if mark else None}
            yield sdk.Batch(records=records, rejects=rejects, state=after)

    async def _comments(
        self, ticket_id: Any
    ) -> AsyncIterator[tuple[dict[str, Any], dict[Any, Mapping[str, Any]]]]:
        """Every comment of a ticket, following cursor pagination, with the sideloaded users."""
        path = f"api/v2/tickets/{ticket_id}/comments"
        params: dict[str, str | int] | None = {
            "page[size]": COMMENT_PAGE,
            "include": "users",
        }
        while True:
            body = await self.client.get_json(path, params=params)
            comments = body.get("comments") if isinstance(body, dict) else None
            if not isinstance(comments, list):
                raise sdk.ConnectorError(f"{path}: the answer has no list of comments")
            users = _users(body)
            for comment in comments:
                if isinstance(comment, dict):
                    yield comment, users
            meta, links = body.get("meta") or {}, body.get("links") or {}
            if not (meta.get("has_more") and links.get("next")):
                return
            path, params = links["next"], None

    def map_raw(self, stream: str, raw: dict[str, Any]) -> sdk.Record:
        if self._stream(stream) == "tickets":
            records, rejects = map_tickets([raw], {})
            if rejects:
                raise sdk.BadRecord(rejects[0].reason, position=rejects[0].position)
            return records[0]
        try:
            return msgspec.convert(
                map_comment(raw, raw.get("ticket_id"), {}),
                sdk.record_type("ticketing.comment"),
                strict=False,
            )
        except msgspec.ValidationError as error:
            raise sdk.BadRecord(str(error), position=f"comment {raw.get('id')}") from None

    def pii_columns(self, stream: str) -> frozenset[str]:
        return frozenset()

    # webhooks

    async def receive(self, request: sdk.Inbound) -> sdk.Received:
        """A Zendesk webhook: its signature checked (constant time, fresh timestamp), the
        ticket it carries returned as a raw ticket: a trigger's ``{"ticket": {...}}`` body or
        an event subscription's ``{"type": "zen:event-type:ticket...", "detail": {...}}``."""
        secret = self.secret_values.get("webhook_secret")
        if not secret:
            raise sdk.ConnectorConfigError(
                "the connection gives no webhook_secret (the webhook's signing secret)"
            )
        signature = request.headers.get("x-zendesk-webhook-signature", "")
        timestamp = request.headers.get("x-zendesk-webhook-signature-timestamp", "")
        if not signature or not timestamp:
            raise sdk.AuthError("the request carries no Zendesk webhook signature")
        expected = base64.b64encode(
            hmac.new(secret.encode(), timestamp.encode() + request.body, hashlib.sha256).digest()
        ).decode("ascii")
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise sdk.AuthError("the Zendesk webhook signature does not match the body")
        sent = _stamp(timestamp.replace("Z", "+00:00"))
        if sent is None or sent.tzinfo is None:
            raise sdk.AuthError(f"the Zendesk webhook timestamp {timestamp!r} is not a time")
        skew = abs((self.clock.now() - sent).total_seconds())
        if skew > self.config.webhook_tolerance_seconds:
            raise sdk.AuthError(
                f"the Zendesk webhook is stale: signed {int(skew)} s from now, more than "
                f"{self.config.webhook_tolerance_seconds} s (a replay?)"
            )
        try:
            body = msgspec.json.decode(request.body)
        except msgspec.DecodeError:
            raise sdk.BadRecord("the Zendesk webhook body is not JSON") from None
        ticket = None
        if isinstance(body, dict):
            ticket = body.get("ticket") if "ticket" in body else body.get("detail")
        if not isinstance(ticket, dict):
            raise sdk.BadRecord("the Zendesk webhook carries no ticket (nor event detail)")
        return sdk.Received(stream="tickets", raws=[ticket])

    # write

    def _system(self, record: Any) -> str:
        system = getattr(record, "source_system", None) or self.config.source_system
        if not system:
            raise sdk.BadRecord(
                f"ticket {record.ticket_id} names no source_system, and options.source_system "
                "is not set: the shared desk's ticket could not be linked back"
            )
        return system

    async def _find(self, external_id: str) -> dict[str, Any] | None:
        """The ticket written for a district ticket, by its external id."""
        body = await self.client.get_json("api/v2/tickets", params={"external_id": external_id})
        tickets = body.get("tickets") if isinstance(body, dict) else None
        if not isinstance(tickets, list):
            raise sdk.ConnectorError("api/v2/tickets?external_id answered no list of tickets")
        found = [t for t in tickets if isinstance(t, dict) and t.get("external_id") == external_id]
        return min(found, key=lambda t: t.get("id") or 0) if found else None

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        """Create or update each ticket by its external id (a retried creation carries the same
        ``Idempotency-Key``), or add each comment once; what Zendesk refuses is a reject."""
        self._stream(stream)
        one = self._write_ticket if stream == "tickets" else self._write_comment
        return await write_each(stream, batch.records, lambda record: one(record, member))

    async def _send(self, method: str, path: str, body: Any, key: str | None = None) -> Any:
        """One write; Zendesk's refusal of the record (RecordInvalid, 422) is a BadRecord."""
        headers = {"Idempotency-Key": key} if key else None
        try:
            reply = await self.client.request(
                method, path, json=body, headers=headers, idempotent=True if key else None
            )
        except HttpStatusError as error:
            said = error_of(error.body)
            if error.status == 422 or (said is not None and said.code == "RecordInvalid"):
                text = said.text if said else "no description"
                raise sdk.BadRecord(f"Zendesk refused it: {text}") from None
            raise sdk.ConnectorError(
                f"{error}: {said.code + ': ' + said.text if said else 'no explanation'}"
            ) from None
        return reply.data

    async def _write_ticket(self, record: Any, member: str | None) -> None:
        link = link_of(member, self._system(record), record.ticket_id)
        fields: dict[str, Any] = {
            "subject": record.subject,
            "status": WRITTEN_STATUSES[record.status],
            "priority": WRITTEN_PRIORITIES[record.priority],
            "external_id": link,
            "tags": ["cohub", f"member_{member or 'cooperative'}"],
        }
        existing = await self._find(link)
        if existing is not None:
            await self._send("PUT", f"api/v2/tickets/{existing['id']}", {"ticket": fields})
            return
        fields["comment"] = {"body": record.description or record.subject, "public": False}
        if record.requester_email:
            fields["requester"] = {"name": record.requester, "email": record.requester_email}
        body = {"ticket": fields}
        digest = hashlib.sha256(
            f"{self.context.connection}\0".encode() + msgspec.json.encode(body)
        ).hexdigest()
        await self._send("POST", "api/v2/tickets", body, key=digest)

    async def _write_comment(self, record: Any, member: str | None) -> None:
        system = self.config.source_system
        if not system:
            raise sdk.ConnectorConfigError(
                "writing comments needs options.source_system: the system the district's "
                "tickets come from, which names the shared desk's ticket"
            )
        link = link_of(member, system, record.ticket_id)
        ticket = await self._find(link)
        if ticket is None:
            raise sdk.BadRecord(
                f"no Zendesk ticket has external_id {link!r} yet: write the ticket first, then "
                "replay this comment"
            )
        marker = f"{link}#{record.comment_id}"
        async for comment, _ in self._comments(ticket["id"]):
            custom = (comment.get("metadata") or {}).get("custom") or {}
            if custom.get("cohub_comment") == marker:
                return  # written before: a retry changes nothing
        await self._send(
            "PUT",
            f"api/v2/tickets/{ticket['id']}",
            {
                "ticket": {
                    "comment": {
                        "body": f"{record.author}: {record.body}",
                        "public": record.public,
                    },
                    "metadata": {"cohub_comment": marker},
                }
            },
        )

    async def delete(self, stream: str, keys: list[str], member: str | None) -> int:
        """Zendesk keeps deleted tickets for 30 days; a district ticket deleted at its source is
        closed here instead (solved, tagged ``deleted_at_source``), so the agency keeps its
        record of the work done."""
        if self._stream(stream) != "tickets":
            raise sdk.ConnectorConfigError("zendesk deletes tickets only, not comments")
        system = self.config.source_system
        if not system:
            raise sdk.ConnectorConfigError(
                "deleting needs options.source_system, which names the shared desk's tickets"
            )
        done = 0
        for key in keys:
            ticket = await self._find(link_of(member, system, key))
            if ticket is None or "deleted_at_source" in (ticket.get("tags") or ()):
                continue
            tags = [*(ticket.get("tags") or ()), "deleted_at_source"]
            try:
                await self._send(
                    "PUT",
                    f"api/v2/tickets/{ticket['id']}",
                    {"ticket": {"status": "solved", "tags": tags}},
                )
            except sdk.BadRecord:
                continue  # closed tickets cannot change: it is settled already
            done += 1
        return done

    async def close(self) -> None:
        self._client = self._export = None
