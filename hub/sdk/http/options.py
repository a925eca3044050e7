"""Options every connector for a vendor HTTP API offers, and the client they describe: a
connector's options inherit `ApiOptions`, and `options.client(...)` builds its `HttpClient`."""

from __future__ import annotations

import aiohttp

from hub.sdk.connector import ConnectionContext
from hub.sdk.http.auth import NO_AUTH, Auth
from hub.sdk.http.client import HttpClient
from hub.sdk.http.ratelimit import RateLimit
from hub.sdk.http.retry import RetryPolicy
from hub.sdk.http.tls import TlsOptions, trusting


class ApiOptions(TlsOptions, kw_only=True):
    """Timeouts, retries and pace for calls to the vendor's API, and `ca_bundle`."""

    timeout_seconds: float = 60.0
    retry_attempts: int = 5
    retry_base_seconds: float = 0.5
    retry_cap_seconds: float = 30.0
    max_retry_after_seconds: float = 120.0
    requests_per_second: float | None = None

    def client(
        self, base_url: str, context: ConnectionContext, *, auth: Auth | None = None
    ) -> HttpClient:
        """An `HttpClient` for `base_url` as these options say (`ca_bundle` resolved against
        the connection's configuration folder), signing in with `auth` if given."""
        bundle = self.ca_bundle
        return HttpClient(
            base_url,
            auth=auth or NO_AUTH,
            rate_limit=RateLimit(per_second=self.requests_per_second),
            retry=RetryPolicy(
                attempts=self.retry_attempts,
                base=self.retry_base_seconds,
                cap=self.retry_cap_seconds,
                max_retry_after=self.max_retry_after_seconds,
            ),
            timeout=aiohttp.ClientTimeout(total=self.timeout_seconds, connect=self.timeout_seconds),
            tls=trusting(context.resolve_path(bundle) if bundle else None),
        )
