"""ServiceNow Table API: incidents and their journal (comments, work notes), read and written.

Read top to bottom as ServiceNow's REST API reference goes:

- **auth**: HTTP Basic with an integration user, or OAuth 2.0 client credentials at
  ``{instance}/oauth_token.do`` (an OAuth application registry entry; the grant must be enabled
  on the instance, Washington DC and later). The password grant is not offered: it would keep a
  user's password in the hub besides the client secret.
- **tables**: ``GET /api/now/table/{table}`` answers ``{"result": [...]}``, paged with
  ``sysparm_offset``/``sysparm_limit``; the answer's ``Link`` header has ``rel="next"`` unless
  it is the last page, ``X-Total-Count`` counts the query's records. ``sysparm_fields`` names
  what is read (dot-walked references such as ``caller_id.email`` included),
  ``sysparm_display_value=false`` answers codes and UTC times (``2026-09-01 12:00:00``), and
  ``sysparm_exclude_reference_link=true`` leaves out reference links.
- **queries**: ``sysparm_query`` is an encoded query: conditions joined by ``^``,
  ``ORDERBYfield``; a date written as text is UTC.
- **writes**: ``POST /api/now/table/incident`` creates (201), ``PATCH .../incident/{sys_id}``
  updates; writing ``comments`` or ``work_notes`` adds a journal entry.
- **errors**: ``{"error": {"message", "detail"}, "status": "failure"}``; rate limit rules answer
  429 with ``Retry-After`` (and ``X-RateLimit-Limit``/``-Reset``), which the toolkit waits out.

A read is incremental on ``sys_updated_on`` (journal entries: ``sys_created_on``), which has
one-second resolution: each page's query starts at the last second read (``>=``), ordered by
that stamp and ``sys_id``, and an `sdk.IncrementalCursor` drops what was already delivered at
that second and in the route's lookback (see `connectors.keyset`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from connectors.keyset import admit_rejects, keyset_pages
from connectors.ticket_links import (
    comment_marker,
    comment_text,
    external_ids,
    link_id,
    marker_of,
)
from connectors.vendor_rows import MapsRows, RowMapping
from hub import sdk
from hub.model.ticketing import Comment, Ticket
from hub.sdk.http import (
    ApiOptions,
    BasicAuth,
    HttpAuthError,
    HttpClient,
    HttpStatusError,
    OAuth2ClientCredentials,
    OAuthError,
    Retryable,
)

TABLE = "api/now/table/"
#: Incident fields read, as ``sysparm_fields`` (references dot-walked to what is mapped).
INCIDENT_FIELDS = (
    "sys_id",
    "number",
    "short_description",
    "description",
    "state",
    "priority",
    "impact",
    "urgency",
    "category",
    "caller_id.name",
    "caller_id.user_name",
    "caller_id.email",
    "opened_by.name",
    "assignment_group.name",
    "opened_at",
    "resolved_at",
    "sla_due",
    "made_sla",
    "correlation_id",
    "correlation_display",
    "sys_updated_on",
)
JOURNAL_FIELDS = ("sys_id", "element", "element_id", "value", "sys_created_on", "sys_created_by")
#: Journal elements that are comments (public) and work notes (internal).
JOURNAL_ELEMENTS = "comments,work_notes"

#: The incident ``state`` codes of the base system.
STATES = {
    "1": "new",
    "2": "in_progress",
    "3": "on_hold",
    "6": "resolved",
    "7": "closed",
    "8": "canceled",
}
#: The base system's priority lookup: (impact, urgency) → priority, when priority is empty.
PRIORITY_MATRIX = {
    ("1", "1"): 1,
    ("1", "2"): 2,
    ("2", "1"): 2,
    ("1", "3"): 3,
    ("2", "2"): 3,
    ("3", "1"): 3,
    ("2", "3"): 4,
    ("3", "2"): 4,
    ("3", "3"): 5,
}
#: Priority → the (impact, urgency) written, which the base priority lookup turns back into it:
#: ServiceNow computes ``priority`` from these two and ignores a priority written directly.
IMPACT_URGENCY = {1: ("1", "1"), 2: ("1", "2"), 3: ("2", "2"), 4: ("2", "3"), 5: ("3", "3")}
#: ServiceNow's ``correlation_id`` is a string of 100.
CORRELATION_LENGTH = 100
#: Record IDs in one ``fieldIN`` condition.
LOOKUP_CHUNK = 100


class ServiceNowOptions(ApiOptions, kw_only=True):
    """Which instance, how to sign in, and which incidents this connection reads; the password
    (``basic``) or the OAuth client secret are secrets."""

    instance_url: Annotated[
        str, msgspec.Meta(description="the instance, e.g. https://district.service-now.com")
    ]
    auth: Annotated[
        Literal["basic", "oauth_client_credentials"],
        msgspec.Meta(
            description="HTTP Basic (username + password secret) or OAuth client credentials"
        ),
    ] = "basic"
    username: Annotated[str | None, msgspec.Meta(description="integration user (basic)")] = None
    client_id: Annotated[
        str | None, msgspec.Meta(description="OAuth application registry client ID")
    ] = None
    system_name: Annotated[
        str | None,
        msgspec.Meta(description="this desk's name in tickets' external_ids (default: connection)"),
    ] = None
    incident_query: Annotated[
        str,
        msgspec.Meta(description="encoded query selecting the incidents read, e.g. company=…"),
    ] = ""
    page_size: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 1000
    state_map: Annotated[
        dict[str, Literal["new", "in_progress", "on_hold", "resolved", "closed", "canceled"]],
        msgspec.Meta(description="incident state codes besides the base system's, to a status"),
    ] = {}


def sn_time(value: Any) -> Any:
    """A ServiceNow UTC time (``2026-09-01 12:00:00``) as ISO 8601; empty is None. Anything
    else is left for validation to report."""
    if value == "" or value is None:
        return None
    if isinstance(value, str) and len(value) == 19 and value[10] == " ":
        return value.replace(" ", "T") + "Z"
    return value


def query_time(moment: datetime) -> str:
    """A time as an encoded query compares it: UTC text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def stamp_of(field: str) -> Callable[[Any], datetime | None]:
    """A row's `field` (a ServiceNow UTC time) as a datetime, None if it has none."""

    def stamp(raw: Any) -> datetime | None:
        value = sn_time(raw.get(field)) if isinstance(raw, dict) else None
        try:
            return datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            return None

    return stamp


def failure_text(body: Any) -> str:
    """ServiceNow's error body as one line: ``message: detail``."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "no error message given"
    parts = [str(error[k]) for k in ("message", "detail") if error.get(k)]
    return ": ".join(dict.fromkeys(parts)) or "no error message given"


def _priority(raw: Mapping[str, Any]) -> int | None:
    priority = str(raw.get("priority") or "")
    if priority in ("1", "2", "3", "4", "5"):
        return int(priority)
    return PRIORITY_MATRIX.get((str(raw.get("impact")), str(raw.get("urgency"))))


def _in_list(values: Iterable[str]) -> str:
    return ",".join(values)


def _queryable(value: str) -> bool:
    """Whether `value` can be matched by an encoded query's ``=`` and ``IN``."""
    return not any(c in value for c in ",^\n")


class ServiceNow(MapsRows, sdk.Connector[ServiceNowOptions]):
    """A ServiceNow instance's incidents and journal: read incrementally, written by link."""

    name = "servicenow"
    title = "ServiceNow (Table API): incidents"
    options = ServiceNowOptions
    secrets = ("password", "client_secret", "webhook_secret")

    def __init__(
        self,
        options: ServiceNowOptions,
        secrets: Mapping[str, str],
        context: sdk.ConnectionContext,
    ) -> None:
        super().__init__(options, secrets, context)
        if "^NQ" in options.incident_query:
            raise sdk.ConnectorConfigError(
                "incident_query cannot hold ^NQ (a second query): the connector adds its own "
                "conditions with ^, which would apply to the last query only"
            )
        self.states = {**STATES, **options.state_map}
        self.system = options.system_name or context.connection
        self._client: HttpClient | None = None
        self._auth: BasicAuth | OAuth2ClientCredentials | None = None

    # auth and the client

    def _base(self) -> str:
        return self.config.instance_url.rstrip("/") + "/"

    def _credentials(self) -> BasicAuth | OAuth2ClientCredentials:
        if self.config.auth == "basic":
            if not self.config.username or "password" not in self.secret_values:
                raise sdk.ConnectorConfigError(
                    "basic auth needs options.username and the password secret"
                )
            return BasicAuth(self.config.username, self.secret_values["password"])
        if not self.config.client_id or "client_secret" not in self.secret_values:
            raise sdk.ConnectorConfigError(
                "oauth_client_credentials needs options.client_id and the client_secret secret"
            )
        return OAuth2ClientCredentials(
            token_url=self._base() + "oauth_token.do",
            client_id=self.config.client_id,
            client_secret=self.secret_values["client_secret"],
        )

    @property
    def client(self) -> HttpClient:
        """The authenticated client, built on first use."""
        if self._client is None:
            self._auth = self._credentials()
            self._client = self.config.client(self._base(), self.context, auth=self._auth)
        return self._client

    def _who(self) -> str:
        if self.config.auth == "basic":
            return f"user {self.config.username!r} and its password"
        return f"OAuth client {self.config.client_id!r} and its secret"

    # check and streams

    async def check(self) -> None:
        """The URL is a ServiceNow instance, it takes the credentials, and they may read
        incidents and the journal; each failure says which and what to do."""
        base = self._base()
        probe = self.config.client(base, self.context)
        try:
            await probe.get_json(TABLE + "incident", params={"sysparm_limit": 1})
        except HttpAuthError as error:
            if error.status != 401 or failure_text(error.body) == "no error message given":
                raise sdk.ConnectorConfigError(
                    f"{base} does not answer as a ServiceNow instance: HTTP {error.status} "
                    "(check instance_url)"
                ) from None
        except HttpStatusError as error:
            raise sdk.ConnectorConfigError(
                f"{base} does not answer as a ServiceNow instance: HTTP {error.status} "
                "(check instance_url)"
            ) from None
        except sdk.TransientError as error:
            raise sdk.TransientError(f"cannot reach ServiceNow at {base}: {error}") from None
        client = self.client
        assert self._auth is not None
        try:
            await self._auth.headers(client)
        except Retryable as error:
            raise sdk.TransientError(f"cannot reach {base}oauth_token.do: {error.reason}") from None
        except OAuthError as error:
            raise sdk.AuthError(f"ServiceNow refused {self._who()}: {error}") from None
        for table, fields, role in (
            ("incident", INCIDENT_FIELDS, "the itil role"),
            ("sys_journal_field", JOURNAL_FIELDS, "read access to sys_journal_field"),
        ):
            try:
                await client.get_json(
                    TABLE + table,
                    params={"sysparm_limit": 1, "sysparm_fields": ",".join(fields)},
                )
            except HttpAuthError as error:
                if error.status == 401:
                    raise sdk.AuthError(
                        f"ServiceNow refused {self._who()} (HTTP 401: {failure_text(error.body)})"
                    ) from None
                raise sdk.AuthError(
                    f"the integration user may not read {table} (HTTP 403: "
                    f"{failure_text(error.body)}): give it {role}"
                ) from None
            except HttpStatusError as error:
                raise sdk.ConnectorConfigError(
                    f"ServiceNow answered {table} with HTTP {error.status}: "
                    f"{failure_text(error.body)}"
                ) from None

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(
                name="tickets",
                record=Ticket.record_name,
                description="incidents (/api/now/table/incident), by sys_updated_on",
                writable=True,
            ),
            sdk.StreamSpec(
                name="comments",
                record=Comment.record_name,
                description="incident comments and work notes (sys_journal_field)",
                writable=True,
            ),
        ]

    def _stream(self, stream: str) -> None:
        if stream not in ("tickets", "comments"):
            raise sdk.ConnectorConfigError(
                f"no stream {stream!r}; servicenow offers tickets, comments"
            )

    # mapping

    def map_incident(self, raw: dict[str, Any]) -> dict[str, Any]:
        """An incident (as read with `INCIDENT_FIELDS`) as `ticketing.ticket` fields."""
        state = str(raw.get("state"))
        if state not in self.states:
            raise sdk.BadRecord(
                f"incident state {state!r} has no status: map it in options.state_map"
            )
        number = raw.get("number")
        mapped: dict[str, Any] = {
            "ticket_id": number,
            # An incident opened for nobody in particular (or written by the hub for a district
            # user the instance does not know) was requested by whoever opened it.
            "requester": raw.get("caller_id.name")
            or raw.get("caller_id.user_name")
            or raw.get("opened_by.name")
            or None,
            "requester_email": raw.get("caller_id.email") or None,
            "category": raw.get("category") or None,
            "status": self.states[state],
            "subject": raw.get("short_description"),
            "description": raw.get("description") or None,
            "opened_at": sn_time(raw.get("opened_at")),
            "resolved_at": sn_time(raw.get("resolved_at")),
            "assigned_group": raw.get("assignment_group.name") or None,
            "sla_due_at": sn_time(raw.get("sla_due")),
            "sla_breached": raw.get("made_sla") == "false",
            "source_system": self.system,
            "external_ids": external_ids(self.system, str(number), raw.get("correlation_id")),
            "updated_at": sn_time(raw.get("sys_updated_on")),
        }
        priority = _priority(raw)
        if priority is not None:
            mapped["priority"] = priority
        return mapped

    @staticmethod
    def map_journal(raw: dict[str, Any]) -> dict[str, Any]:
        """A journal entry, with its incident's number added as ``incident_number``, as
        `ticketing.comment` fields: comments are public, work notes are not."""
        created = sn_time(raw.get("sys_created_on"))
        return {
            "ticket_id": raw.get("incident_number"),
            "comment_id": raw.get("sys_id"),
            "author": raw.get("sys_created_by"),
            "body": raw.get("value"),
            "public": raw.get("element") == "comments",
            "created_at": created,
            "updated_at": created,
        }

    def _mapping(self, stream: str) -> RowMapping:
        if stream == "tickets":
            return Ticket, self.map_incident, "an incident is an object"
        return Comment, self.map_journal, "a journal entry is an object"

    @staticmethod
    def _position(stream: str) -> Callable[[Any], str]:
        def position(raw: Any) -> str:
            if not isinstance(raw, dict):
                return "incident" if stream == "tickets" else "sys_journal_field"
            if stream == "tickets":
                return f"incident {raw.get('number')} sys_id {raw.get('sys_id')}"
            return f"sys_journal_field sys_id {raw.get('sys_id')}"

        return position

    # read

    async def _page(
        self,
        table: str,
        conditions: list[str],
        order: str,
        fields: Iterable[str],
        offset: int,
        limit: int,
    ) -> tuple[list[Any], bool]:
        """One page of `table` for the conditions, ordered by `order` then ``sys_id``; its rows
        and whether the instance says more follow (``Link: rel="next"``, else
        ``X-Total-Count``, else a full page)."""
        query = "^".join([c for c in conditions if c] + [f"ORDERBY{order}", "ORDERBYsys_id"])
        response = await self.client.request(
            "GET",
            TABLE + table,
            params={
                "sysparm_query": query,
                "sysparm_fields": ",".join(fields),
                "sysparm_display_value": "false",
                "sysparm_exclude_reference_link": "true",
                "sysparm_offset": offset,
                "sysparm_limit": limit,
            },
        )
        rows = response.data.get("result") if isinstance(response.data, dict) else None
        if not isinstance(rows, list):
            raise sdk.ConnectorError(
                f"ServiceNow {table}: the answer has no result list "
                f"({type(response.data).__name__} {failure_text(response.data)})"
            )
        if "Link" in response.headers:
            more = "next" in response.links
        elif (total := response.headers.get("X-Total-Count", "")).isdigit():
            more = offset + len(rows) < int(total)
        else:
            more = len(rows) >= limit
        return rows, more

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        self._stream(stream)
        cursor = sdk.IncrementalCursor(state, self.lookback)
        if stream == "tickets":
            table, order, fields = "incident", "sys_updated_on", INCIDENT_FIELDS
            scope = self.config.incident_query
        else:
            table, order, fields = "sys_journal_field", "sys_created_on", JOURNAL_FIELDS
            scope = f"name=incident^elementIN{JOURNAL_ELEMENTS}"
        size = self.config.page_size

        async def fetch(since: datetime | None, offset: int) -> tuple[list[Any], bool]:
            window = f"{order}>={query_time(since)}" if since is not None else ""
            return await self._page(table, [scope, window], order, fields, offset, size)

        stamp = stamp_of(order)
        async for rows in keyset_pages(fetch, stamp, cursor.since()):
            if stream == "comments":
                rows = await self._with_numbers(rows)
            for start in range(0, len(rows), self.batch_size):
                records, rejects = self.map_rows(stream, rows[start : start + self.batch_size])
                yield sdk.Batch(
                    records=cursor.admit(records),
                    rejects=admit_rejects(cursor, rejects, stamp, "sys_id"),
                    state=cursor.state(),
                )

    async def _with_numbers(self, rows: list[Any]) -> list[Any]:
        """Journal rows with their incident's number; entries of incidents this connection
        does not read (outside `incident_query`, or deleted) are left out."""
        ids = {str(r.get("element_id")) for r in rows if isinstance(r, dict)}
        numbers = await self._incidents("sys_id", ids, "number", scoped=True)
        return [
            {**row, "incident_number": numbers[str(row.get("element_id"))]}
            if isinstance(row, dict)
            else row
            for row in rows
            if not isinstance(row, dict) or str(row.get("element_id")) in numbers
        ]

    async def _incidents(
        self, field: str, values: Iterable[str], answer: str, *, scoped: bool = False
    ) -> dict[str, str]:
        """`field` value → `answer` field of the incidents having one of `values`; `scoped`,
        of those this connection reads only (`incident_query`). Writes look everywhere: an
        incident moved out of the read scope is still the one a ticket is linked to."""
        wanted = sorted(v for v in set(values) if _queryable(v))
        scope = self.config.incident_query if scoped else ""
        found: dict[str, str] = {}
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            rows, _ = await self._page(
                "incident",
                [scope, f"{field}IN{_in_list(chunk)}"],
                "sys_created_on",
                {field, answer},
                0,
                len(chunk) * 2,
            )
            for row in rows:
                if isinstance(row, dict) and row.get(field) and row.get(answer):
                    found.setdefault(str(row[field]), str(row[answer]))
        return found

    # write

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        """Tickets: update the incident the ticket is linked to (its number in `external_ids`,
        else its ``correlation_id``), or create it. Comments: add each to its ticket's incident
        once (its marker line says it is there)."""
        self._stream(stream)
        if stream == "tickets":
            return await self._write_tickets(batch.records, member)
        return await self._write_comments(batch.records, member)

    async def _linked(self, member: str | None, records: list[Any]) -> dict[str, str]:
        """Link (``member:ticket_id``) → sys_id of the incidents these records are linked to."""
        links = [link_id(member, r.ticket_id) for r in records]
        return await self._incidents("correlation_id", links, "sys_id")

    async def _callers(self, records: list[Any]) -> dict[str, str]:
        """Requester e-mail (lower case) → sys_id of the instance's users with that e-mail."""
        emails = {r.requester_email.lower() for r in records if r.requester_email}
        wanted = sorted(e for e in emails if _queryable(e))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            rows, _ = await self._page(
                "sys_user",
                [f"emailIN{_in_list(chunk)}"],
                "sys_created_on",
                ("sys_id", "email"),
                0,
                len(chunk) * 2,
            )
            for row in rows:
                if isinstance(row, dict) and row.get("email") and row.get("sys_id"):
                    found.setdefault(str(row["email"]).lower(), str(row["sys_id"]))
        return found

    async def _write_tickets(self, records: list[Any], member: str | None) -> sdk.WriteResult:
        linked = await self._linked(member, records)
        callers = await self._callers(records)
        own = await self._incidents(
            "number",
            [r.external_ids[self.system] for r in records if self.system in r.external_ids],
            "sys_id",
        )
        written, rejects = 0, []
        for record in records:
            link = link_id(member, record.ticket_id)
            reason = _unwritable(link)
            if reason is None:
                target = own.get(record.external_ids.get(self.system, "")) or linked.get(link)
                caller = callers.get((record.requester_email or "").lower())
                reason, created = await self._write_incident(record, link, member, target, caller)
                if created is not None:
                    linked[link] = created
            if reason is None:
                written += 1
            else:
                rejects.append(
                    sdk.Reject(
                        position=f"ticket {record.key}",
                        reason=reason,
                        raw=msgspec.to_builtins(record),
                    )
                )
        return sdk.WriteResult(written=written, rejects=rejects)

    async def _write_incident(
        self, record: Any, link: str, member: str | None, sys_id: str | None, caller: str | None
    ) -> tuple[str | None, str | None]:
        """PATCH the incident `sys_id`, or POST a new one; (why ServiceNow refused it, the new
        incident's sys_id). The caller is the instance's user with the requester's e-mail."""
        body = incident_body(record, link, member)
        if caller is not None:
            body["caller_id"] = caller
        try:
            if sys_id is not None:
                await self.client.request(
                    "PATCH", f"{TABLE}incident/{sys_id}", json=body, idempotent=True
                )
                return None, None
            # Not idempotent: a POST whose answer is lost fails the batch, and its retry finds
            # the incident by its correlation_id instead of creating a second one.
            answer = await self.client.post_json(TABLE + "incident", body)
        except HttpAuthError as error:
            # A data policy or a business rule aborting the write answers 403 "Operation
            # Failed": a refusal of this incident, not of the credentials.
            text = failure_text(error.body)
            if error.status == 403 and ("Operation Failed" in text or "Data Policy" in text):
                return f"ServiceNow refused incident for {link}: {text}", None
            raise
        except HttpStatusError as error:
            if error.status in (400, 404, 422):
                return f"ServiceNow refused incident for {link}: {failure_text(error.body)}", None
            raise sdk.ConnectorError(f"{error}: {failure_text(error.body)}") from None
        result = answer.get("result") if isinstance(answer, dict) else None
        if not (isinstance(result, dict) and result.get("sys_id")):
            raise sdk.ConnectorError("ServiceNow answered an incident POST without its sys_id")
        return None, str(result["sys_id"])

    async def _write_comments(self, records: list[Any], member: str | None) -> sdk.WriteResult:
        linked = await self._linked(member, records)
        markers: dict[str, set[str]] = {}
        written, rejects = 0, []
        for comment in records:
            link = link_id(member, comment.ticket_id)
            sys_id = linked.get(link)
            if sys_id is None:
                rejects.append(
                    sdk.Reject(
                        position=f"comment {comment.key}",
                        reason=f"no incident is linked to {link} yet: write its ticket first, "
                        "then replay this comment",
                        raw=msgspec.to_builtins(comment),
                    )
                )
                continue
            if sys_id not in markers:
                markers[sys_id] = await self._markers(sys_id)
            marker = comment_marker(member, comment)
            if marker not in markers[sys_id]:
                element = "comments" if comment.public else "work_notes"
                # A journal entry added twice is two entries: not retried when the answer is
                # lost; the batch's retry finds the marker.
                await self.client.request(
                    "PATCH",
                    f"{TABLE}incident/{sys_id}",
                    json={element: comment_text(member, comment)},
                )
                markers[sys_id].add(marker)
            written += 1
        return sdk.WriteResult(written=written, rejects=rejects)

    async def _markers(self, sys_id: str) -> set[str]:
        """The markers of the comments already in an incident's journal."""
        found: set[str] = set()
        offset, size = 0, self.config.page_size
        conditions = [f"element_id={sys_id}", f"elementIN{JOURNAL_ELEMENTS}"]
        while True:
            rows, more = await self._page(
                "sys_journal_field", conditions, "sys_created_on", ("sys_id", "value"), offset, size
            )
            found.update(
                m for r in rows if isinstance(r, dict) and (m := marker_of(r.get("value")))
            )
            if not rows or not more:
                return found
            offset += len(rows)

    # pushed incidents

    async def receive(self, request: sdk.Inbound) -> sdk.Received:
        """An incident a business rule or outbound REST message POSTed, as the Table API gives
        it (``{"result": {...}}``, the incident object, or a list of them), with the fields of
        `INCIDENT_FIELDS`: the raws of the tickets stream."""
        try:
            body = msgspec.json.decode(request.body)
        except msgspec.DecodeError:
            raise sdk.BadRecord("the pushed request is not JSON") from None
        if isinstance(body, dict) and "result" in body:
            body = body["result"]
        incidents = body if isinstance(body, list) else [body]
        if not incidents or not all(isinstance(i, dict) for i in incidents):
            raise sdk.BadRecord("the pushed request is not an incident object (or a list of them)")
        return sdk.Received(stream="tickets", raws=incidents)

    async def close(self) -> None:
        self._client = None


def incident_body(record: Any, link: str, member: str | None) -> dict[str, Any]:
    """A `ticketing.ticket` as the incident fields written: the subject and description (the
    requester first, who may not be a user of this instance), impact and urgency giving its
    priority, its category, and the link. State is left to the shared desk's own workflow."""
    impact, urgency = IMPACT_URGENCY[record.priority]
    requester = record.requester + (
        f" <{record.requester_email}>" if record.requester_email else ""
    )
    body: dict[str, Any] = {
        "short_description": record.subject,
        "description": f"Requested by {requester}\n\n{record.description or ''}".rstrip(),
        "impact": impact,
        "urgency": urgency,
        "correlation_id": link,
        "correlation_display": record.source_system or member or "cohub",
    }
    if record.category:
        body["category"] = record.category
    return body


def _unwritable(link: str) -> str | None:
    """Why a ticket cannot be linked in ServiceNow, or None."""
    if len(link) > CORRELATION_LENGTH:
        return f"its link {link!r} is longer than correlation_id's {CORRELATION_LENGTH} characters"
    if not _queryable(link):
        return (
            f"its link {link!r} holds ',' '^' or a line break, which an encoded query cannot match"
        )
    return None
