"""`HttpClient`: one connection's view of a vendor's JSON API, with every safeguard applied.

A connector builds one client per connection and calls `get_json`; the client resolves the path
against the base URL, authenticates, waits its turn under the system's rate limit, asks the
system's circuit breaker, sends the request on the worker's shared session and retries what is
transient. What comes back is decoded JSON or one of the SDK's errors, each naming the request
(method and URL without its query string, which may carry a key) and never a credential.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any, NamedTuple

import aiohttp
import msgspec
from multidict import CIMultiDictProxy, MultiDictProxy
from yarl import URL

from hub.sdk.errors import AuthError, ConnectorConfigError, ConnectorError
from hub.sdk.http.auth import NO_AUTH, Auth
from hub.sdk.http.breaker import DEFAULT_BREAKER, BreakerPolicy, CircuitBreaker, shared_breaker
from hub.sdk.http.clock import SYSTEM_CLOCK, Clock
from hub.sdk.http.ratelimit import UNLIMITED, Limiter, RateLimit, shared_limiter
from hub.sdk.http.retry import (
    DEFAULT_RETRY,
    RETRY_STATUSES,
    Retryable,
    RetryPolicy,
    parse_retry_after,
    with_retries,
)
from hub.sdk.http.session import DEFAULT_POOL, DEFAULT_TIMEOUT, PoolLimits, shared_session
from hub.sdk.http.tls import checked
from hub.sdk.lifecycle import count_api_call

#: Methods whose repetition changes nothing (RFC 9110 section 9.2.2): safe to retry after any
#: transient failure. Others are retried only when the server certainly did not act.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

#: Statuses that say the server did not act on the request.
UNSENT_STATUSES = frozenset({408, 429, 503})

Params = Mapping[str, str | int | float]


#: Vendor JSON decoded with numbers that have a fraction as `Decimal`, exactly as written: an
#: amount never passes through a binary float on its way to a `Money` field.
JSON = msgspec.json.Decoder(float_hook=Decimal)


class HttpStatusError(ConnectorError):
    """The vendor system refused the request with a status retrying cannot change (404, 422,
    501, …; 401 and 403 are `HttpAuthError`s); `status` is that status and `body` the JSON the
    vendor explained it with (None if it sent none), for the vendor's own error message."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class HttpAuthError(AuthError):
    """The vendor system refused the credentials (401, after one fresh credential) or the access
    (403); `status` and `body` as for `HttpStatusError`."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class JsonResponse(NamedTuple):
    """A response with its body decoded (None when empty); `links` are its ``Link`` header
    entries by relation, as aiohttp parses them."""

    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    data: Any
    url: URL
    links: MultiDictProxy[MultiDictProxy[str | URL]]


@dataclass
class ClientCounts:
    """Requests sent (attempts, retries included) and retries made by one client."""

    requests: int = 0
    retries: int = 0


class HttpClient:
    """A vendor JSON API as one connection reaches it.

    `system` names the vendor system whose rate limit and circuit breaker this connection
    shares (default: the base URL's origin, ``https://api.example.org:443``): give every
    connection to one regional API the same `system` if they use different hosts for it.
    `rate_limit` and `breaker` take effect for the first connection that reaches the system in
    this worker. `tls` is True (verify certificates against the system's authorities) or an
    `ssl.SSLContext` that also trusts a district's own authority (`tls.trusting(ca_bundle)`);
    one that does not verify is refused (`tls.checked`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth = NO_AUTH,
        system: str | None = None,
        rate_limit: RateLimit = UNLIMITED,
        retry: RetryPolicy = DEFAULT_RETRY,
        breaker: BreakerPolicy = DEFAULT_BREAKER,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        pool: PoolLimits = DEFAULT_POOL,
        tls: ssl.SSLContext | bool | None = True,
        headers: Mapping[str, str] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        base = URL(base_url)
        if not (base.absolute and base.scheme in ("http", "https")):
            raise ConnectorConfigError(f"base URL {base_url!r} is not an http(s) URL")
        if base.user or base.password:
            raise ConnectorConfigError("the base URL must not carry credentials: use secrets")
        self.base_url = base if base.path.endswith("/") else base.with_path(base.path + "/")
        self.system = system or str(base.origin())
        self.auth = auth
        self.rate_limit = rate_limit
        self.retry = retry
        self.breaker_policy = breaker
        self.timeout = timeout
        self.pool = pool
        self.tls = checked(tls)
        self.headers = {"Accept": "application/json", **(headers or {})}
        self.clock = clock
        self.counts = ClientCounts()

    @property
    def limiter(self) -> Limiter:
        """The rate limit budget of this client's system, shared in this worker."""
        return shared_limiter(self.system, self.rate_limit, self.clock)

    @property
    def circuit(self) -> CircuitBreaker:
        """The circuit breaker of this client's system, shared in this worker."""
        return shared_breaker(self.system, self.breaker_policy, self.clock)

    def url(self, path: str) -> URL:
        """`path` resolved against the base URL (a leading slash stays under the base path). An
        absolute URL (a next-page link) must be on the base URL's origin: credentials are sent
        to the configured system only."""
        target = URL(path)
        if target.absolute:
            if target.origin() != self.base_url.origin():
                raise ConnectorError(
                    f"refusing to send credentials to {target.origin()}: "
                    f"the connection is for {self.base_url.origin()}"
                )
            return target
        return self.base_url.join(URL(path.lstrip("/")))

    async def get_json(self, path: str, *, params: Params | None = None) -> Any:
        """GET `path` and return its decoded JSON body."""
        return (await self.request("GET", path, params=params)).data

    async def post_json(
        self, path: str, body: Any, *, params: Params | None = None, idempotent: bool = False
    ) -> Any:
        """POST `body` as JSON and return the decoded answer. Pass `idempotent` when the vendor
        deduplicates (an idempotency key), so ambiguous failures are retried too."""
        return (
            await self.request("POST", path, params=params, json=body, idempotent=idempotent)
        ).data

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> JsonResponse:
        """Send one request with retries; the response if its status is below 400.

        Raises `TransientError` when the attempts run out or the system's breaker is open
        (`SystemDown`), `AuthError` on 401 (after one fresh credential) or 403,
        `HttpStatusError` on any other status from 400 up that retrying cannot change, and
        `ConnectorConfigError` when the server's certificate is not trusted.
        """
        url = self.url(path)
        name = f"{method} {url.with_query(None).with_fragment(None)}"
        body = None if json is None else msgspec.json.encode(json)
        extra = dict(headers or {})
        if body is not None:
            extra["Content-Type"] = "application/json"
        attempt = partial(self._attempt, method, url, params, body, extra)
        refreshed = False
        while True:
            reply = await with_retries(
                attempt,
                request=name,
                policy=self.retry,
                idempotent=method in IDEMPOTENT_METHODS if idempotent is None else idempotent,
                clock=self.clock,
                on_retry=self._count_retry,
            )
            if reply.status == 401 and not refreshed and self.auth.forget():
                refreshed = True
                continue
            break
        if reply.status in (401, 403):
            raise HttpAuthError(
                reply.status, f"{name} refused the credentials: HTTP {reply.status}", reply.data
            )
        if reply.status >= 400:
            raise HttpStatusError(
                reply.status,
                f"{name} failed: HTTP {reply.status} {reply.reason}".rstrip(),
                reply.data,
            )
        return reply

    async def post_form(
        self, url: str, form: Mapping[str, str], headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        """POST a form (an OAuth token request) outside the rate limit; the status and body."""
        reply, body = await self._send(
            "POST", URL(url), data=dict(form), headers={**self.headers, **(headers or {})}
        )
        return reply.status, body

    def _count_retry(self) -> None:
        self.counts.retries += 1

    async def _attempt(
        self,
        method: str,
        url: URL,
        params: Params | None,
        body: bytes | None,
        headers: dict[str, str],
    ) -> JsonResponse:
        with self.circuit.call():
            try:
                credentials = await self.auth.headers(self)
            except Retryable as failure:
                failure.unsent = True  # the token fetch failed; the request itself never left
                raise
            async with self.limiter.slot():
                self.counts.requests += 1
                reply, raw = await self._send(
                    method,
                    url,
                    params=params,
                    data=body,
                    headers={**self.headers, **headers, **credentials},
                )
            if reply.status in RETRY_STATUSES:
                raise Retryable(
                    f"HTTP {reply.status} {reply.reason}".rstrip(),
                    retry_after=parse_retry_after(
                        reply.headers.get("Retry-After"), self.clock.now()
                    ),
                    down=reply.status != 429,
                    unsent=reply.status in UNSENT_STATUSES,
                )
            if 200 <= reply.status < 300 and raw:
                try:
                    return reply._replace(data=JSON.decode(raw))
                except msgspec.DecodeError:
                    raise Retryable(
                        f"HTTP {reply.status} with a body that is not valid JSON "
                        f"({len(raw)} bytes, truncated or malformed)"
                    ) from None
            if reply.status >= 400 and raw:
                return reply._replace(data=_error_body(raw))
        return reply

    async def _send(
        self,
        method: str,
        url: URL,
        *,
        params: Params | None = None,
        data: bytes | dict[str, str] | None = None,
        headers: Mapping[str, str],
    ) -> tuple[JsonResponse, bytes]:
        """One exchange on the shared session; transport failures become `Retryable`.

        Every exchange begun here is one API call of the run in progress (`count_api_call`):
        each attempt, retries and token requests included, whether or not an answer came.
        """
        count_api_call()
        try:
            async with shared_session(self.pool).request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=self.timeout,
                ssl=self.tls,
            ) as response:
                raw = await response.read()
                reply = JsonResponse(
                    status=response.status,
                    reason=response.reason or "",
                    headers=response.headers,
                    data=None,
                    url=response.url,
                    links=response.links,
                )
                return reply, raw
        except aiohttp.ClientConnectorCertificateError as error:
            raise ConnectorConfigError(
                f"{url.origin()}: the server's TLS certificate is not trusted "
                f"({error.certificate_error})"
            ) from None
        except aiohttp.ConnectionTimeoutError:
            raise Retryable(
                f"no connection to {url.host}:{url.port} in time", unsent=True
            ) from None
        except aiohttp.ClientConnectorError as error:
            raise Retryable(
                f"cannot connect to {url.host}:{url.port}: {error.os_error.strerror or error.os_error}",
                unsent=True,
            ) from None
        except TimeoutError:
            raise Retryable(
                f"no complete answer in time (timeouts: {_timeouts(self.timeout)})"
            ) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
            raise Retryable(f"{type(error).__name__}: {error}") from None


def _error_body(raw: bytes) -> Any:
    """The JSON a refusal explains itself with, or None if it is not JSON (an HTML error page)."""
    try:
        return JSON.decode(raw)
    except msgspec.DecodeError:
        return None


def _timeouts(timeout: aiohttp.ClientTimeout) -> str:
    """The timeouts that are set, as ``total 0.2 s, connect 10 s``."""
    limits = {"total": timeout.total, "connect": timeout.connect, "read": timeout.sock_read}
    return ", ".join(f"{name} {seconds:g} s" for name, seconds in limits.items() if seconds)
