"""The HTTP toolkit connectors use to reach vendor APIs, instead of raw aiohttp sessions.

One `HttpClient` per connection ties together the worker's shared session (bounded pool,
explicit timeouts, verified TLS), authentication, the vendor system's shared rate limit and
circuit breaker, retries with full-jitter backoff, and JSON decoding; the paging helpers walk
long lists page by page. A connector module reads::

    client = HttpClient(
        options.base_url,
        auth=OAuth2ClientCredentials(token_url=..., client_id=..., client_secret=secret),
        rate_limit=RateLimit(per_second=10, max_concurrent=4),
    )
    async for page in cursor_pages(client, "employees", items="data",
                                   next_cursor=lambda body: body["next_cursor"]):
        ...
"""

from hub.sdk.http.auth import (
    ApiKeyHeader,
    Auth,
    BasicAuth,
    BearerToken,
    OAuth2ClientCredentials,
    OAuth2RefreshToken,
    OAuthError,
)
from hub.sdk.http.breaker import BreakerPolicy, CircuitBreaker, SystemDown, shared_breaker
from hub.sdk.http.client import (
    ClientCounts,
    HttpAuthError,
    HttpClient,
    HttpStatusError,
    JsonResponse,
)
from hub.sdk.http.clock import Clock, ManualClock
from hub.sdk.http.options import ApiOptions
from hub.sdk.http.paging import Page, cursor_pages, link_pages, offset_pages, page_number_pages
from hub.sdk.http.ratelimit import Limiter, RateLimit, shared_limiter
from hub.sdk.http.retry import (
    RETRY_STATUSES,
    Retryable,
    RetryPolicy,
    parse_retry_after,
    with_retries,
)
from hub.sdk.http.session import DEFAULT_TIMEOUT, PoolLimits, close_sessions, shared_session
from hub.sdk.http.tls import TlsOptions, trusting

__all__ = [
    "DEFAULT_TIMEOUT",
    "RETRY_STATUSES",
    "ApiKeyHeader",
    "ApiOptions",
    "Auth",
    "BasicAuth",
    "BearerToken",
    "BreakerPolicy",
    "CircuitBreaker",
    "ClientCounts",
    "Clock",
    "HttpAuthError",
    "HttpClient",
    "HttpStatusError",
    "JsonResponse",
    "Limiter",
    "ManualClock",
    "OAuth2ClientCredentials",
    "OAuth2RefreshToken",
    "OAuthError",
    "Page",
    "PoolLimits",
    "RateLimit",
    "RetryPolicy",
    "Retryable",
    "SystemDown",
    "TlsOptions",
    "close_sessions",
    "cursor_pages",
    "link_pages",
    "offset_pages",
    "page_number_pages",
    "parse_retry_after",
    "shared_breaker",
    "shared_limiter",
    "shared_session",
    "trusting",
    "with_retries",
]
