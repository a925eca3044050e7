"""``POST /inbound/{connection}``: requests vendor systems push to the hub (webhooks, cXML
documents), authenticated per request, their records kept in the inbox for the connection's
inbound routes (`hub.engine.inbox`), whose runs `hub.api.deliveries` starts.

No API token: a push proves itself by signature. With ``inbound_auth = "hmac"`` the hub checks
its own scheme (`hub.api.signatures`, headers `TIMESTAMP_HEADER` and `SIGNATURE_HEADER`) with
the connection's ``webhook_secret``, and refuses a signature it accepted before (a replay);
with ``"connector"`` the connector's `receive` checks the vendor's own. A refused request is
answered 401 and logged (``inbound.refused``) with the connection, the reason, the address and
the size, never the body, a signature or a secret; failures count against the address like
failed API tokens (`hub.api.ratelimit`).

An unknown connection, a disabled one, one whose connector takes no pushes and one no inbound
route reads all answer the same 404, so connection names cannot be probed from outside; the
log says which it was.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from hub.api.deliveries import DELIVERIES
from hub.api.endpoints import RUNTIME
from hub.api.errors import ApiError
from hub.api.signatures import TOLERANCE_SECONDS, BadSignature, verify
from hub.config import WEBHOOK_SECRET, hub_verifies, takes_pushes
from hub.engine import inbox
from hub.engine.connections import ConnectionRow, open_connector, stored_connections
from hub.plugins import TookTooLong, describe, within
from hub.redaction import redact_text
from hub.sdk.connector import Connector, Inbound, Received
from hub.sdk.errors import AuthError, BadRecord

log = structlog.get_logger("hub.api.inbound")

PREFIX = "/inbound/"
PATH = PREFIX + "{connection}"
TIMESTAMP_HEADER = "x-cohub-timestamp"
SIGNATURE_HEADER = "x-cohub-signature"
#: The largest pushed body taken (a cXML order with hundreds of lines fits many times over).
MAX_BODY = 5 * 1024 * 1024
#: Seconds a connector's `receive` may take.
RECEIVE_SECONDS = 30.0
CHUNK = 64 * 1024


def is_inbound(request: web.Request) -> bool:
    return request.path.startswith(PREFIX)


class Push:
    """One request being received: what `inbound.refused` and `inbound.accepted` report."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.connection = request.match_info.get("connection", "")
        self.size = request.content_length or 0

    def refuse(self, reason: str, message: str, *, code: str = "unauthorized") -> ApiError:
        """The error answering a refused push, logged without the body."""
        log.warning(
            "inbound.refused",
            connection=self.connection,
            reason=reason,
            remote=self.request.remote,
            size=self.size,
        )
        return ApiError(code, message)

    def not_found(self, reason: str) -> ApiError:
        return self.refuse(reason, f"no inbound endpoint {self.request.path}", code="not_found")


async def receive(request: web.Request) -> web.StreamResponse:
    push = Push(request)
    if push.size > MAX_BODY:
        raise push.refuse("too_large", _too_large(), code="too_large")
    runtime = request.app[RUNTIME]
    row = await _target(request, push)
    try:
        cls = runtime.plugins.connector(row.connector)
    except KeyError:
        raise push.not_found("unknown_connector") from None
    if not takes_pushes(cls):
        raise push.not_found("takes_no_pushes")
    body = await _body(request, push)
    await runtime.unlock_vault_if_changed()
    try:
        connector = open_connector(runtime.plugins, row)
    except Exception as error:
        log.error("inbound.failed", connection=row.name, error=redact_text(describe(error)))
        raise ApiError("unavailable", "the connection cannot take pushes now") from None
    try:
        return await _received(request, push, row, connector, body)
    finally:
        await connector.close()


async def _received(
    request: web.Request, push: Push, row: ConnectionRow, connector: Connector, body: bytes
) -> web.StreamResponse:
    engine = request.app[RUNTIME].engine
    headers = {name.lower(): value for name, value in request.headers.items()}
    seen = None
    if hub_verifies(type(connector)):
        seen = await _verified(push, connector, body, headers)
        if await inbox.replayed(engine, seen):
            raise push.refuse("replayed", "this signed request was received already (a replay?)")
    received = await _parsed(push, connector, body, headers, request.content_type)
    stream, raws = received.stream, received.raws if received.status < 400 else []
    if raws and stream is None:
        log.error("inbound.failed", connection=row.name, error="receive named no stream")
        raise ApiError("internal", "the connector could not read the request")
    async with engine.connect() as conn:
        routed = bool(await inbox.inbound_routes(conn, row.name, stream)) if raws else False
    if raws and not routed:
        log.warning("inbound.unrouted", connection=row.name, stream=stream, records=len(raws))
    stored = inbox.Stored(None)
    if routed or seen is not None:
        try:
            stored = await inbox.store(
                engine,
                connection=row.name,
                member=row.member,
                stream=stream if routed else None,
                raws=raws if routed else [],
                digest=await inbox.body_digest(engine, row.name, row.member, body),
                seen=seen,
            )
        except inbox.Replayed:
            raise push.refuse("replayed", "this signed request was received already") from None
        except inbox.Unknown:
            raise push.not_found("unknown_connection") from None
    log.info(
        "inbound.accepted",
        connection=row.name,
        stream=stream,
        records=len(raws),
        inbox=stored.row,
        duplicate=stored.duplicate,
        size=push.size,
        status=received.status,
    )
    if stored.row is not None and not stored.duplicate:
        request.app[DELIVERIES].wake()
    return web.Response(
        status=received.status,
        body=received.reply,
        headers={"Content-Type": received.reply_type} if received.reply else None,
    )


async def _target(request: web.Request, push: Push) -> ConnectionRow:
    """The enabled connection an inbound route reads; the one 404 otherwise."""
    engine = request.app[RUNTIME].engine
    async with engine.connect() as conn:
        found = await stored_connections(conn, [push.connection])
        if not found:
            raise push.not_found("unknown_connection")
        if not found[0].enabled:
            raise push.not_found("connection_disabled")
        if not await inbox.inbound_routes(conn, push.connection):
            raise push.not_found("no_inbound_route")
    return found[0]


def _too_large() -> str:
    return f"the body is larger than {MAX_BODY} bytes"


async def _body(request: web.Request, push: Push) -> bytes:
    """The body, read up to `MAX_BODY` (a sender without Content-Length is cut off there)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > MAX_BODY:
            push.size = size
            raise push.refuse("too_large", _too_large(), code="too_large")
        chunks.append(chunk)
    push.size = size
    return b"".join(chunks)


async def _verified(
    push: Push, connector: Connector, body: bytes, headers: dict[str, str]
) -> inbox.Seen:
    """Check the hub's signature; what to keep of it against replays."""
    secret = connector.secret_values.get(WEBHOOK_SECRET)
    if not secret:
        log.error("inbound.no_webhook_secret", connection=push.connection)
        raise push.refuse("no_webhook_secret", "the hub cannot verify pushes to this connection")
    timestamp, signature = headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
    try:
        verify(secret.encode(), body, timestamp=timestamp, signature=signature)
    except BadSignature as bad:
        raise push.refuse(_reason(str(bad)), str(bad)) from None
    assert timestamp is not None and signature is not None  # verify() said so
    return inbox.signature_seen(push.connection, signature, int(timestamp), TOLERANCE_SECONDS)


def _reason(message: str) -> str:
    """A short, stable reason for the log, from `BadSignature`'s message."""
    if message.startswith("unsigned"):
        return "unsigned"
    if message.startswith("stale"):
        return "stale_timestamp"
    if "timestamp" in message:
        return "bad_timestamp"
    return "bad_signature"


async def _parsed(
    push: Push, connector: Connector, body: bytes, headers: dict[str, str], content_type: str
) -> Received:
    """The connector's reading of the request: 401 if it refuses it (its own authentication),
    400 if it cannot read it, 404 if it takes no pushes after all."""
    request = Inbound(body=body, headers=headers, content_type=content_type)
    try:
        received = await within(connector.receive(request), RECEIVE_SECONDS)
    except AuthError:
        # Its message is the connector's, and may quote the request: not logged, not answered.
        raise push.refuse("connector_refused", "the request's credentials were refused") from None
    except BadRecord as bad:
        raise ApiError("bad_request", redact_text(bad.reason)) from None
    except NotImplementedError:
        raise push.not_found("takes_no_pushes") from None
    except TookTooLong:
        log.error("inbound.failed", connection=push.connection, error="receive took too long")
        raise ApiError("unavailable", "the request could not be read in time") from None
    except Exception as error:
        log.error("inbound.failed", connection=push.connection, error=type(error).__name__)
        raise ApiError("internal", "the connector could not read the request") from None
    if not isinstance(received, Received) or not 200 <= received.status <= 599:
        log.error("inbound.failed", connection=push.connection, error="receive answered badly")
        raise ApiError("internal", "the connector could not read the request")
    return received
