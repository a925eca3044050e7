"""Jira Service Management Cloud: requests and their comments, read by JQL and written back.

Read top to bottom as Atlassian's REST documentation goes:

- **auth**: HTTP Basic with the account's e-mail and an API token (id.atlassian.com). A revoked
  token answers 401; an account without access to the project answers 404 for it.
- **search**: ``GET /rest/api/3/search?jql=…&startAt=0&maxResults=100&fields=…`` answers
  ``{"startAt", "maxResults", "total", "issues": [...]}``. JQL compares dates to the minute
  (``updated >= "2026/09/01 12:00"``) in the account's profile time zone (`time_zone`).
- **requests and comments** (``/rest/servicedeskapi``): ``POST request`` creates a customer
  request (``serviceDeskId``, ``requestTypeId``, ``requestFieldValues``);
  ``GET``/``POST request/{key}/comment`` pages with ``start``/``limit`` and ``isLastPage``.
  Comments there are plain text, public or internal.
- **issues**: ``PUT /rest/api/3/issue/{key}`` edits fields (``description`` in ADF, see
  `connectors.adf`) and adds labels (``update.labels[].add``); 204.
- **errors**: ``{"errorMessages": [...], "errors": {field: message}}`` (the service desk API
  also says ``errorMessage``); rate limiting answers 429 with ``Retry-After`` (and
  ``X-RateLimit-*``), which the toolkit waits out.
- **webhooks**: an admin webhook registered with a secret signs its body with HMAC-SHA256 in
  ``X-Hub-Signature: sha256=<hex>``; `receive` checks it (``inbound_auth = "connector"``).

A read is incremental on ``updated``, which JQL only selects to the minute: the query starts at
the minute of the cursor less the route's lookback (at least a minute), keyset-paged as
`connectors.keyset` explains, and issues older than that are dropped, those inside it
deduplicated by the `sdk.IncrementalCursor`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from connectors import adf
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
from hub.sdk.http import ApiOptions, BasicAuth, HttpAuthError, HttpClient, HttpStatusError

SEARCH = "rest/api/3/search"
ISSUE_FIELDS = (
    "summary,description,status,priority,reporter,created,updated,resolutiondate,issuetype,"
    "labels,project"
)
#: JQL compares dates to the minute: the least lookback that re-reads the minute last read.
JQL_RESOLUTION = timedelta(minutes=1)
#: Label prefix of a request linked to a district ticket: ``cohub:eastview:INC0012345``.
LABEL_PREFIX = "cohub:"
#: Jira's longest label.
LABEL_LENGTH = 255
#: Labels asked for in one search.
LOOKUP_CHUNK = 50
PRIORITIES = {"highest": 1, "critical": 1, "high": 2, "medium": 3, "low": 4, "lowest": 5}
PRIORITY_NAMES = {1: "Highest", 2: "High", 3: "Medium", 4: "Low", 5: "Lowest"}
#: Status names that mean waiting on someone else, or an end without a resolution.
ON_HOLD = frozenset({"pending", "waiting for customer", "on hold", "waiting for approval"})
CANCELED = frozenset({"canceled", "cancelled", "declined", "won't do", "rejected"})

Status = Literal["new", "in_progress", "on_hold", "resolved", "closed", "canceled"]


class JiraOptions(ApiOptions, kw_only=True):
    """Which Jira site, project and service desk; the API token is a secret (``api_token``)."""

    site_url: Annotated[str, msgspec.Meta(description="the site, e.g. https://boces.atlassian.net")]
    email: Annotated[str, msgspec.Meta(description="the Atlassian account the API token is of")]
    project_key: Annotated[
        str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9_]{0,9}$", description="the service project key")
    ]
    service_desk_id: Annotated[
        str | None, msgspec.Meta(description="service desk ID requests are created in (writing)")
    ] = None
    request_type_id: Annotated[
        str | None, msgspec.Meta(description="request type of created requests (writing)")
    ] = None
    system_name: Annotated[
        str | None,
        msgspec.Meta(description="this desk's name in tickets' external_ids (default: connection)"),
    ] = None
    jql_filter: Annotated[
        str, msgspec.Meta(description='JQL AND-ed to the project, e.g. "Organizations" = X')
    ] = ""
    time_zone: Annotated[
        str, msgspec.Meta(description="the account's profile time zone, in which JQL reads dates")
    ] = "UTC"
    page_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 100
    status_map: Annotated[
        dict[str, Status], msgspec.Meta(description="status name (lower case) to a status")
    ] = {}
    priority_map: Annotated[
        dict[str, Annotated[int, msgspec.Meta(ge=1, le=5)]],
        msgspec.Meta(description="priority name (lower case) to 1-5"),
    ] = {}


def error_text(body: Any) -> str:
    """Jira's error body as one line: the messages, then each field's."""
    if not isinstance(body, dict):
        return "no error message given"
    parts = [str(m) for m in body.get("errorMessages") or () if m]
    if body.get("errorMessage"):
        parts.append(str(body["errorMessage"]))
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts += [f"{field}: {message}" for field, message in errors.items()]
    return "; ".join(parts) or "no error message given"


def jira_time(value: Any) -> Any:
    """A Jira time (``2026-09-01T12:00:00.000+0000``) as a datetime; anything else is left for
    validation to report."""
    if isinstance(value, dict):  # the service desk API's {"iso8601", "epochMillis", …}
        value = value.get("iso8601")
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _updated(raw: Any) -> datetime | None:
    fields = raw.get("fields") if isinstance(raw, dict) else None
    value = jira_time(fields.get("updated")) if isinstance(fields, dict) else None
    return value if isinstance(value, datetime) else None


def _created(raw: Any) -> datetime | None:
    value = jira_time(raw.get("created")) if isinstance(raw, dict) else None
    return value if isinstance(value, datetime) else None


def _minute(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(second=0, microsecond=0)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _quoted(value: str) -> str:
    """A JQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def label_of(member: str | None, ticket_id: str) -> str:
    """The label linking a request to a district ticket (a label has no spaces)."""
    return LABEL_PREFIX + link_id(member, ticket_id).replace(" ", "_")


def _nested(raw: Mapping[str, Any], *path: str) -> Any:
    for name in path:
        if not isinstance(raw, dict):
            return None
        raw = raw.get(name)  # type: ignore[assignment]
    return raw


class JiraServiceManagement(MapsRows, sdk.Connector[JiraOptions]):
    """A Jira Service Management project's requests and comments: read by JQL, written by
    label."""

    name = "jira_service_management"
    title = "Jira Service Management (Cloud REST API)"
    options = JiraOptions
    secrets = ("api_token", "webhook_secret")
    inbound_auth = "connector"

    def __init__(
        self, options: JiraOptions, secrets: Mapping[str, str], context: sdk.ConnectionContext
    ) -> None:
        super().__init__(options, secrets, context)
        try:
            self.zone = ZoneInfo(options.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise sdk.ConnectorConfigError(
                f"time_zone {options.time_zone!r} is not an IANA time zone (e.g. America/New_York)"
            ) from None
        self.system = options.system_name or context.connection
        self.priorities = {**PRIORITIES, **options.priority_map}
        self._client: HttpClient | None = None

    # auth and the client

    def _base(self) -> str:
        return self.config.site_url.rstrip("/") + "/"

    @property
    def client(self) -> HttpClient:
        """The client signing in with the e-mail and API token, built on first use."""
        if self._client is None:
            if "api_token" not in self.secret_values:
                raise sdk.ConnectorConfigError("the connection gives no api_token secret")
            auth = BasicAuth(self.config.email, self.secret_values["api_token"])
            self._client = self.config.client(self._base(), self.context, auth=auth)
        return self._client

    # check and streams

    async def check(self) -> None:
        """The URL is a Jira Cloud site, it takes the e-mail and token, the account may browse
        the project and, when writing is configured, reach the service desk."""
        base = self._base()
        try:
            info = await self.config.client(base, self.context).get_json("rest/api/3/serverInfo")
        except (HttpStatusError, HttpAuthError) as error:
            raise sdk.ConnectorConfigError(
                f"{base} does not answer as a Jira Cloud site: HTTP {error.status} (check site_url)"
            ) from None
        except sdk.TransientError as error:
            raise sdk.TransientError(f"cannot reach Jira at {base}: {error}") from None
        if not (isinstance(info, dict) and "baseUrl" in info and "deploymentType" in info):
            raise sdk.ConnectorConfigError(f"{base}: serverInfo does not answer as Jira")
        try:
            await self.client.get_json("rest/api/3/myself")
        except HttpAuthError as error:
            raise sdk.AuthError(
                f"Jira refused {self.config.email!r} and its API token (HTTP {error.status}: "
                f"{error_text(error.body)}): create a new token at id.atlassian.com"
            ) from None
        key = self.config.project_key
        try:
            await self.client.get_json(f"rest/api/3/project/{key}")
        except (HttpStatusError, HttpAuthError) as error:
            raise sdk.AuthError(
                f"project {key} does not exist or {self.config.email!r} may not browse it "
                f"(HTTP {error.status}: {error_text(error.body)})"
            ) from None
        desk = self.config.service_desk_id
        if desk is not None:
            try:
                await self.client.get_json(f"rest/servicedeskapi/servicedesk/{desk}")
            except (HttpStatusError, HttpAuthError) as error:
                raise sdk.AuthError(
                    f"service desk {desk} does not exist or {self.config.email!r} is not one of "
                    f"its agents (HTTP {error.status}: {error_text(error.body)})"
                ) from None

    async def streams(self) -> list[sdk.StreamSpec]:
        return [
            sdk.StreamSpec(
                name="tickets",
                record=Ticket.record_name,
                description=f"requests of project {self.config.project_key}, by updated",
                writable=True,
            ),
            sdk.StreamSpec(
                name="comments",
                record=Comment.record_name,
                description="request comments, public and internal (servicedeskapi)",
                writable=True,
            ),
        ]

    def _stream(self, stream: str) -> None:
        if stream not in ("tickets", "comments"):
            raise sdk.ConnectorConfigError(
                f"no stream {stream!r}; jira_service_management offers tickets, comments"
            )

    # mapping

    def status(self, name: str, category: str | None) -> str:
        """A Jira status as a canonical one: `status_map` first, then the status category
        (``new``, ``indeterminate``, ``done``) refined by the usual names."""
        lowered = name.lower()
        if lowered in self.config.status_map:
            return self.config.status_map[lowered]
        if category == "new":
            return "new"
        if category == "indeterminate":
            return "on_hold" if lowered in ON_HOLD else "in_progress"
        if category == "done":
            if lowered in CANCELED:
                return "canceled"
            return "closed" if lowered == "closed" else "resolved"
        raise sdk.BadRecord(
            f"status {name!r} (category {category!r}) has no status: map it in options.status_map"
        )

    def map_issue(self, raw: dict[str, Any]) -> dict[str, Any]:
        """An issue (as searched with `ISSUE_FIELDS`) as `ticketing.ticket` fields."""
        fields = raw.get("fields")
        if not isinstance(fields, dict):
            raise sdk.BadRecord("the issue has no fields object")
        status = fields.get("status") or {}
        status_name = str(_nested(status, "name") or "")
        priority_name = _nested(fields, "priority", "name")
        labels = [str(label) for label in _listed(fields.get("labels"))]
        link = next((lb[len(LABEL_PREFIX) :] for lb in labels if lb.startswith(LABEL_PREFIX)), None)
        try:
            description = adf.to_text(fields.get("description"))
        except ValueError as error:
            raise sdk.BadRecord(f"description: {error}") from None
        key = raw.get("key")
        mapped: dict[str, Any] = {
            "ticket_id": key,
            "requester": _nested(fields, "reporter", "displayName"),
            "requester_email": _nested(fields, "reporter", "emailAddress") or None,
            "category": _nested(fields, "issuetype", "name"),
            "status": self.status(status_name, _nested(status, "statusCategory", "key")),
            "subject": fields.get("summary"),
            "description": description or None,
            "opened_at": jira_time(fields.get("created")),
            "resolved_at": jira_time(fields.get("resolutiondate")),
            "source_system": self.system,
            "external_ids": external_ids(self.system, str(key), link),
            "updated_at": jira_time(fields.get("updated")),
        }
        if priority_name is not None:
            if str(priority_name).lower() not in self.priorities:
                raise sdk.BadRecord(
                    f"priority {priority_name!r} has no 1-5 value: map it in options.priority_map"
                )
            mapped["priority"] = self.priorities[str(priority_name).lower()]
        return mapped

    @staticmethod
    def map_comment(raw: dict[str, Any]) -> dict[str, Any]:
        """A request comment, with its request's key added as ``issueKey``, as
        `ticketing.comment` fields; a webhook's comment (ADF or text, no ``public``) too."""
        try:
            body = adf.to_text(raw.get("body"))
        except ValueError as error:
            raise sdk.BadRecord(f"body: {error}") from None
        created = jira_time(raw.get("created"))
        return {
            "ticket_id": raw.get("issueKey"),
            "comment_id": raw.get("id"),
            "author": _nested(raw, "author", "displayName"),
            "body": body,
            "public": raw["public"] if "public" in raw else raw.get("jsdPublic", True),
            "created_at": created,
            "updated_at": created,
        }

    def _mapping(self, stream: str) -> RowMapping:
        if stream == "tickets":
            return Ticket, self.map_issue, "an issue is an object"
        return Comment, self.map_comment, "a comment is an object"

    @staticmethod
    def _position(stream: str) -> Callable[[Any], str]:
        def position(raw: Any) -> str:
            if not isinstance(raw, dict):
                return "issue" if stream == "tickets" else "comment"
            if stream == "tickets":
                return f"issue {raw.get('key')} id {raw.get('id')}"
            return f"issue {raw.get('issueKey')} comment {raw.get('id')}"

        return position

    # read

    def _jql(self, *conditions: str) -> str:
        parts = [f"project = {_quoted(self.config.project_key)}"]
        if self.config.jql_filter:
            parts.append(f"({self.config.jql_filter})")
        parts += [c for c in conditions if c]
        return " AND ".join(parts)

    async def _search(self, jql: str, fields: str, start: int) -> tuple[list[Any], bool]:
        """One page of a JQL search: its issues and whether ``total`` says more follow."""
        body = await self.client.get_json(
            SEARCH,
            params={
                "jql": jql,
                "startAt": start,
                "maxResults": self.config.page_size,
                "fields": fields,
            },
        )
        issues = body.get("issues") if isinstance(body, dict) else None
        if not isinstance(issues, list):
            raise sdk.ConnectorError(
                f"Jira search: the answer has no issues list ({type(body).__name__})"
            )
        total = body.get("total")
        more = start + len(issues) < total if isinstance(total, int) else bool(issues)
        return issues, more

    async def _issue_pages(self, since: datetime | None, fields: str) -> AsyncIterator[list[Any]]:
        """Pages of the project's issues updated from `since` (to the minute) on, oldest first,
        issues older than `since` left out."""

        async def fetch(start_at: datetime | None, offset: int) -> tuple[list[Any], bool]:
            window = ""
            if start_at is not None:
                window = f'updated >= "{start_at.astimezone(self.zone):%Y/%m/%d %H:%M}"'
            return await self._search(
                self._jql(window) + " ORDER BY updated ASC, key ASC", fields, offset
            )

        def minute(raw: Any) -> datetime | None:
            return _minute(_updated(raw))

        async for rows in keyset_pages(fetch, minute, _minute(since)):
            kept = [r for r in rows if since is None or (_updated(r) or since) >= since]
            if kept:
                yield kept

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        self._stream(stream)
        cursor = sdk.IncrementalCursor(state, max(self.lookback, JQL_RESOLUTION))
        since = cursor.since()
        if stream == "tickets":
            async for rows in self._issue_pages(since, ISSUE_FIELDS):
                for start in range(0, len(rows), self.batch_size):
                    records, rejects = self.map_rows(
                        "tickets", rows[start : start + self.batch_size]
                    )
                    yield sdk.Batch(
                        records=cursor.admit(records),
                        rejects=admit_rejects(cursor, rejects, _updated, "id"),
                        state=cursor.state(),
                    )
            return
        seen: set[str] = set()
        async for rows in self._issue_pages(since, "updated"):
            for issue in rows:
                key = issue.get("key") if isinstance(issue, dict) else None
                if not isinstance(key, str) or key in seen:
                    continue
                seen.add(key)
                comments = [
                    c
                    for c in await self._comments(key)
                    if since is None or (_created(c) or since) >= since
                ]
                records, rejects = self.map_rows("comments", comments)
                yield sdk.Batch(
                    records=cursor.admit(records),
                    rejects=admit_rejects(cursor, rejects, _created, "id"),
                    state=cursor.state(),
                )

    async def _comments(self, key: str) -> list[dict[str, Any]]:
        """Every comment of a request (``start``/``limit`` until ``isLastPage``), each with
        ``issueKey``; one that is not an object is kept as it is, to be rejected."""
        found: list[Any] = []
        start = 0
        while True:
            page = await self.client.get_json(
                f"rest/servicedeskapi/request/{key}/comment",
                params={"start": start, "limit": self.config.page_size},
            )
            values = page.get("values") if isinstance(page, dict) else None
            if not isinstance(values, list):
                raise sdk.ConnectorError(
                    f"Jira request {key} comments: the answer has no values list"
                )
            found += [{**c, "issueKey": key} if isinstance(c, dict) else c for c in values]
            if page.get("isLastPage", True) or not values:
                return found
            start += len(values)

    # write

    async def write(self, stream: str, batch: sdk.Batch, member: str | None) -> sdk.WriteResult:
        """Tickets: update the request the ticket is linked to (its key in `external_ids`,
        else its label), or create it; comments: add each to its request once."""
        self._stream(stream)
        if stream == "tickets":
            return await self._write_tickets(batch.records, member)
        return await self._write_comments(batch.records, member)

    async def _labeled(self, labels: Iterable[str]) -> dict[str, str]:
        """Label → key of the project's issues carrying one of `labels`."""
        wanted = sorted(set(labels))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            listed = ", ".join(_quoted(label) for label in chunk)
            issues, _ = await self._search(self._jql(f"labels in ({listed})"), "labels", 0)
            for issue in issues:
                for label in _listed(_nested(issue, "fields", "labels")):
                    if label in chunk:
                        found.setdefault(label, str(issue.get("key")))
        return found

    def _reject(self, record: Any, what: str, reason: str) -> sdk.Reject:
        return sdk.Reject(
            position=f"{what} {record.key}", reason=reason, raw=msgspec.to_builtins(record)
        )

    async def _write_tickets(self, records: list[Any], member: str | None) -> sdk.WriteResult:
        labels = {r.ticket_id: label_of(member, r.ticket_id) for r in records}
        linked = await self._labeled(labels.values())
        written, rejects = 0, []
        for record in records:
            label = labels[record.ticket_id]
            if len(label) > LABEL_LENGTH:
                rejects.append(
                    self._reject(record, "ticket", f"its label is longer than {LABEL_LENGTH}")
                )
                continue
            key = record.external_ids.get(self.system) or linked.get(label)
            try:
                if key is None:
                    key = await self._create(record, member)
                    linked[label] = key
                await self._edit(key, record, label)
            except HttpStatusError as error:
                if error.status not in (400, 404):
                    raise sdk.ConnectorError(f"{error}: {error_text(error.body)}") from None
                reason = f"Jira refused request for {link_id(member, record.ticket_id)}"
                rejects.append(
                    self._reject(record, "ticket", f"{reason}: {error_text(error.body)}")
                )
                continue
            written += 1
        return sdk.WriteResult(written=written, rejects=rejects)

    async def _create(self, record: Any, member: str | None) -> str:
        """A new customer request for the ticket; its key."""
        desk, kind = self.config.service_desk_id, self.config.request_type_id
        if desk is None or kind is None:
            raise sdk.ConnectorConfigError(
                "writing tickets needs options.service_desk_id and options.request_type_id"
            )
        requester = record.requester + (
            f" <{record.requester_email}>" if record.requester_email else ""
        )
        # Not idempotent: a POST whose answer is lost fails the batch; the retry finds the
        # request by its label, which `_edit` adds right after.
        answer = await self.client.post_json(
            "rest/servicedeskapi/request",
            {
                "serviceDeskId": desk,
                "requestTypeId": kind,
                "requestFieldValues": {
                    "summary": record.subject,
                    "description": f"Requested by {requester}\n\n{record.description or ''}".rstrip(),
                },
            },
        )
        key = answer.get("issueKey") if isinstance(answer, dict) else None
        if not isinstance(key, str):
            raise sdk.ConnectorError("Jira answered a request POST without its issueKey")
        return key

    async def _edit(self, key: str, record: Any, label: str) -> None:
        """Set the issue's summary, description and priority, and its link label."""
        requester = record.requester + (
            f" <{record.requester_email}>" if record.requester_email else ""
        )
        text = f"Requested by {requester}\n\n{record.description or ''}".rstrip()
        await self.client.request(
            "PUT",
            f"rest/api/3/issue/{key}",
            json={
                "fields": {
                    "summary": record.subject,
                    "description": adf.from_text(text),
                    "priority": {"name": PRIORITY_NAMES[record.priority]},
                },
                "update": {"labels": [{"add": label}]},
            },
        )

    async def _write_comments(self, records: list[Any], member: str | None) -> sdk.WriteResult:
        linked = await self._labeled(label_of(member, r.ticket_id) for r in records)
        markers: dict[str, set[str]] = {}
        written, rejects = 0, []
        for comment in records:
            key = linked.get(label_of(member, comment.ticket_id))
            if key is None:
                link = link_id(member, comment.ticket_id)
                rejects.append(
                    self._reject(
                        comment,
                        "comment",
                        f"no request is linked to {link} yet: write its ticket first, then "
                        "replay this comment",
                    )
                )
                continue
            if key not in markers:
                markers[key] = {
                    m for c in await self._comments(key) if (m := marker_of(c.get("body")))
                }
            marker = comment_marker(member, comment)
            if marker not in markers[key]:
                await self.client.post_json(
                    f"rest/servicedeskapi/request/{key}/comment",
                    {"body": comment_text(member, comment), "public": comment.public},
                )
                markers[key].add(marker)
            written += 1
        return sdk.WriteResult(written=written, rejects=rejects)

    # webhooks

    async def receive(self, request: sdk.Inbound) -> sdk.Received:
        """A webhook of this project, signed with the ``webhook_secret`` (``X-Hub-Signature:
        sha256=<hex>``): an issue created or updated gives a raw of the tickets stream, a
        comment created or updated one of the comments stream; other events give nothing."""
        secret = self.secret_values.get("webhook_secret")
        if not secret:
            raise sdk.AuthError("the connection has no webhook_secret to check Jira's signature")
        given = request.headers.get("x-hub-signature", "")
        expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise sdk.AuthError("the webhook's X-Hub-Signature does not match the webhook_secret")
        try:
            event = msgspec.json.decode(request.body)
        except msgspec.DecodeError:
            raise sdk.BadRecord("the webhook body is not JSON") from None
        if not isinstance(event, dict) or not isinstance(event.get("issue"), dict):
            raise sdk.BadRecord("the webhook body has no issue object")
        issue = event["issue"]
        if _nested(issue, "fields", "project", "key") not in (None, self.config.project_key):
            return sdk.Received()
        kind = event.get("webhookEvent")
        if kind in ("jira:issue_created", "jira:issue_updated"):
            return sdk.Received(stream="tickets", raws=[issue])
        if kind in ("comment_created", "comment_updated") and isinstance(
            event.get("comment"), dict
        ):
            return sdk.Received(
                stream="comments", raws=[{**event["comment"], "issueKey": issue.get("key")}]
            )
        return sdk.Received()

    async def close(self) -> None:
        self._client = None
