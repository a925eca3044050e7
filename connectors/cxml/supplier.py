"""The HTTP exchange with a supplier's cXML endpoint: POST a document, read the ``Response``.

cXML answers on the same HTTP exchange: a ``Response`` whose ``Status`` code says what became
of the request, whatever the HTTP status (most suppliers answer HTTP 200 with a cXML 4xx
refusal; some answer HTTP 4xx or 5xx with the ``Response`` as the body). cXML 5xx codes are
transient (the reference guide: "the client may retry"), so they are retried as the toolkit
retries HTTP 5xx, 429 and timeouts; 2xx and 4xx are answers.

The toolkit's `HttpClient` speaks JSON; `SupplierClient` adds a document exchange on the same
machinery (the worker's shared session, the system's rate limit and circuit breaker, retries
with backoff and ``Retry-After``, verified TLS), so nothing here talks to aiohttp directly.
"""

from __future__ import annotations

from typing import NamedTuple
from xml.etree.ElementTree import Element

from connectors.cxml.documents import NotCxml, Status, read_response
from hub.sdk.http import RETRY_STATUSES, HttpClient, Retryable, parse_retry_after, with_retries

HEADERS = {"Content-Type": "text/xml; charset=UTF-8", "Accept": "text/xml, application/xml"}


class Answer(NamedTuple):
    """A supplier's answer: the HTTP status, the cXML ``Status``, the ``Response`` element."""

    http_status: int
    status: Status
    response: Element


class SupplierClient(HttpClient):
    """One supplier endpoint taking cXML documents, paced, retried and verified as
    `configured` (the client the connection's `ApiOptions` describe) would be."""

    def __init__(self, endpoint: str, configured: HttpClient, *, max_bytes: int) -> None:
        super().__init__(
            endpoint,
            rate_limit=configured.rate_limit,
            retry=configured.retry,
            breaker=configured.breaker_policy,
            timeout=configured.timeout,
            pool=configured.pool,
            tls=configured.tls,
            clock=configured.clock,
        )
        #: The URL exactly as configured (the base URL gains a trailing slash).
        self.endpoint = endpoint
        self.max_bytes = max_bytes

    async def post_document(self, document: bytes, *, idempotent: bool) -> Answer:
        """POST `document` to the endpoint and read the answer, retrying what is transient.

        `idempotent` says the supplier recognizes the document again (its payloadID is stable),
        so a failure after which it may have been taken is retried too. Raises `NotCxml` for an
        answer that is no cXML ``Response``, `TransientError` once retries run out.
        """
        target = self.url(self.endpoint)
        name = f"POST {target.with_query(None).with_fragment(None)}"

        async def attempt() -> Answer:
            with self.circuit.call():
                async with self.limiter.slot():
                    self.counts.requests += 1
                    reply, raw = await self._send(
                        "POST", target, data=document, headers={**self.headers, **HEADERS}
                    )
                if reply.status in RETRY_STATUSES:
                    raise Retryable(
                        f"HTTP {reply.status} {reply.reason}".rstrip(),
                        retry_after=parse_retry_after(
                            reply.headers.get("Retry-After"), self.clock.now()
                        ),
                        down=reply.status != 429,
                        unsent=reply.status in (408, 429),
                    )
                try:
                    status, response = read_response(raw, self.max_bytes)
                except NotCxml as error:
                    media = reply.headers.get("Content-Type", "no media type").split(";")[0]
                    raise NotCxml(f"HTTP {reply.status} ({media}): {error}") from None
                if status.code >= 500:
                    raise Retryable(status.describe()[:300])
                return Answer(reply.status, status, response)

        return await with_retries(
            attempt,
            request=name,
            policy=self.retry,
            idempotent=idempotent,
            clock=self.clock,
            on_retry=self._count_retry,
        )
