"""Credentials on requests: basic, bearer token, API key header, OAuth 2.0 client credentials.

Secrets are handed in by the connector (from its resolved connection secrets) and only ever
written into request headers or the token request's form: they are kept out of `repr`, logs and
error messages.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
from yarl import URL

from hub.sdk.errors import AuthError, ConnectorConfigError
from hub.sdk.http.clock import SYSTEM_CLOCK, Clock
from hub.sdk.http.retry import RETRY_STATUSES, Retryable


class FormPoster(Protocol):
    """What an auth helper needs from the client to fetch a token: a form POST."""

    async def post_form(self, url: str, form: Mapping[str, str]) -> tuple[int, bytes]:
        """POST `form` to `url`; the status and body, or `Retryable` on a transport failure."""
        ...


class Auth:
    """No credentials; the base of every auth helper."""

    async def headers(self, client: FormPoster) -> Mapping[str, str]:
        """Headers that authenticate the next request."""
        return {}

    def forget(self) -> bool:
        """Drop a cached credential the server just refused (HTTP 401); whether a fresh one is
        worth one more try."""
        return False


NO_AUTH = Auth()


@dataclass(frozen=True)
class BasicAuth(Auth):
    """HTTP Basic authentication (RFC 7617), UTF-8 encoded.

    Encoded here rather than by aiohttp: aiohttp 3.14 deprecates `aiohttp.BasicAuth`, and its
    replacement, `encode_basic_auth`, is newer than the oldest aiohttp the project allows.
    """

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if ":" in self.username:
            raise ConnectorConfigError("a Basic auth username cannot contain ':' (RFC 7617)")

    async def headers(self, client: FormPoster) -> Mapping[str, str]:
        pair = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {pair}"}


@dataclass(frozen=True)
class BearerToken(Auth):
    """A long-lived bearer token (RFC 6750), as vendor consoles issue for integrations."""

    token: str = field(repr=False)

    async def headers(self, client: FormPoster) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class ApiKeyHeader(Auth):
    """An API key sent in a header of the vendor's choosing (``X-Api-Key`` is common)."""

    key: str = field(repr=False)
    header: str = "X-Api-Key"

    async def headers(self, client: FormPoster) -> Mapping[str, str]:
        return {self.header: self.key}


class _TokenResponse(msgspec.Struct):
    access_token: str
    expires_in: float | None = None


#: An OAuth error code (RFC 6749 section 5.2) is a short word; anything else is not echoed.
_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")


@dataclass(kw_only=True)
class OAuth2ClientCredentials(Auth):
    """OAuth 2.0 client credentials grant (RFC 6749 section 4.4).

    The token is fetched on first use with ``client_id`` and ``client_secret`` in the POST body,
    reused until `refresh_margin` seconds before it expires (or, for a short-lived token, half
    way through its life), and fetched again when it has expired or once the API refuses it.
    Concurrent requests wait for one fetch.
    """

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None
    refresh_margin: float = 60.0
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False)
    #: Tokens fetched so far (for tests and metrics).
    fetches: int = field(default=0, init=False)
    _token: str | None = field(default=None, init=False, repr=False)
    _expires_at: float | None = field(default=None, init=False, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def headers(self, client: FormPoster) -> Mapping[str, str]:
        async with self._lock:
            if self._token is None or (
                self._expires_at is not None and self.clock.monotonic() >= self._expires_at
            ):
                await self._fetch(client)
        return {"Authorization": f"Bearer {self._token}"}

    def forget(self) -> bool:
        self._token = None
        return True

    async def _fetch(self, client: FormPoster) -> None:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        if self.scope:
            form["scope"] = self.scope
        status, body = await client.post_form(self.token_url, form)
        where = f"token endpoint {URL(self.token_url).with_query(None)}"
        if status in RETRY_STATUSES:
            raise Retryable(f"{where} answered HTTP {status}", down=status != 429)
        if status != 200:
            raise AuthError(f"{where} refused the client credentials: HTTP {status}{_code(body)}")
        try:
            token = msgspec.json.decode(body, type=_TokenResponse, strict=False)
        except msgspec.ValidationError as error:  # a subclass of DecodeError: caught first
            raise AuthError(f"{where} answered without a usable token: {error}") from None
        except msgspec.DecodeError:
            raise Retryable(f"{where} answered with a body that is not valid JSON") from None
        self.fetches += 1
        self._token = token.access_token
        self._expires_at = None
        if token.expires_in is not None:
            lifetime = max(token.expires_in - self.refresh_margin, token.expires_in / 2)
            self._expires_at = self.clock.monotonic() + lifetime


def _code(body: bytes) -> str:
    """The OAuth ``error`` code of a refusal, if the body carries a plain one."""
    try:
        code = msgspec.json.decode(body).get("error")
    except (msgspec.DecodeError, AttributeError):
        return ""
    return f" ({code})" if isinstance(code, str) and _ERROR_CODE.match(code) else ""
