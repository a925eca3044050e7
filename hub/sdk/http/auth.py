"""Credentials on requests: basic, bearer token, API key header, OAuth 2.0 client credentials and
refresh tokens.

Secrets are handed in by the connector (from its resolved connection secrets) and only ever
written into request headers or the token request's form: they are kept out of `repr`, logs and
error messages.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
from yarl import URL

from hub.sdk.errors import AuthError, ConnectorConfigError
from hub.sdk.http.clock import SYSTEM_CLOCK, Clock
from hub.sdk.http.retry import RETRY_STATUSES, Retryable


class FormPoster(Protocol):
    """What an auth helper needs from the client to fetch a token: a form POST."""

    async def post_form(
        self, url: str, form: Mapping[str, str], headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        """POST `form` to `url` (with extra `headers`); the status and body, or `Retryable` on a
        transport failure."""
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
    refresh_token: str | None = None
    #: Seconds the refresh token lives: Intuit's name, then the one Xero and others use.
    x_refresh_token_expires_in: float | None = None
    refresh_token_expires_in: float | None = None


#: An OAuth error code (RFC 6749 section 5.2) is a short word; anything else is not echoed.
_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")


class OAuthError(AuthError):
    """The token endpoint refused the grant. `code` is its OAuth error code (RFC 6749 section
    5.2: ``invalid_client``, ``invalid_grant``, ...) when it gave a plain one, so a connector can
    tell the admin which credential to fix."""

    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(kw_only=True)
class _OAuth2Token(Auth):
    """A bearer token from an OAuth 2.0 token endpoint, fetched on first use, reused until
    `refresh_margin` seconds before it expires (or, for a short-lived token, half way through its
    life), and fetched again when it has expired or once the API refuses it. Concurrent requests
    wait for one fetch. Subclasses say which grant the form carries."""

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

    #: What a refusal says was refused.
    refused = "the client credentials"

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

    def _grant(self) -> tuple[dict[str, str], dict[str, str]]:
        """The token request's form and extra headers."""
        raise NotImplementedError

    async def _accept(self, token: _TokenResponse) -> None:
        """Take what the token endpoint answered besides the access token, before it is used."""

    async def _fetch(self, client: FormPoster) -> None:
        form, headers = self._grant()
        if self.scope:
            form["scope"] = self.scope
        status, body = await client.post_form(self.token_url, form, headers)
        where = f"token endpoint {URL(self.token_url).with_query(None)}"
        if status in RETRY_STATUSES:
            raise Retryable(f"{where} answered HTTP {status}", down=status != 429)
        if status != 200:
            code = _code(body)
            shown = f" ({code})" if code else ""
            raise OAuthError(f"{where} refused {self.refused}: HTTP {status}{shown}", code)
        try:
            token = msgspec.json.decode(body, type=_TokenResponse, strict=False)
        except msgspec.ValidationError as error:  # a subclass of DecodeError: caught first
            raise AuthError(f"{where} answered without a usable token: {error}") from None
        except msgspec.DecodeError:
            raise Retryable(f"{where} answered with a body that is not valid JSON") from None
        await self._accept(token)
        self.fetches += 1
        self._token = token.access_token
        self._expires_at = None
        if token.expires_in is not None:
            lifetime = max(token.expires_in - self.refresh_margin, token.expires_in / 2)
            self._expires_at = self.clock.monotonic() + lifetime


@dataclass(kw_only=True)
class OAuth2ClientCredentials(_OAuth2Token):
    """OAuth 2.0 client credentials grant (RFC 6749 section 4.4), ``client_id`` and
    ``client_secret`` in the POST body."""

    def _grant(self) -> tuple[dict[str, str], dict[str, str]]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        return form, {}


#: Called with a refresh token the server issued in place of the one used, and how many
#: seconds it lives if the server said.
OnRotate = Callable[[str, float | None], Awaitable[None]]


@dataclass(kw_only=True)
class OAuth2RefreshToken(_OAuth2Token):
    """OAuth 2.0 refresh token grant (RFC 6749 section 6), for APIs where a user authorized the
    app once and the hub holds the refresh token (Intuit, Xero).

    The client authenticates with HTTP Basic (RFC 6749 section 2.3.1, which Intuit requires), or
    with `basic` False in the form. Servers that rotate refresh tokens answer each refresh with a
    new one and refuse the old one after: `on_rotate` is awaited with it before the access token
    is used, so a new refresh token that cannot be stored fails the fetch instead of being lost
    silently. Without `on_rotate` the new token is only kept in memory.
    """

    refresh_token: str = field(repr=False)
    on_rotate: OnRotate | None = field(default=None, repr=False)
    basic: bool = True

    refused = "the refresh token or the client credentials"

    def _grant(self) -> tuple[dict[str, str], dict[str, str]]:
        form = {"grant_type": "refresh_token", "refresh_token": self.refresh_token}
        if not self.basic:
            return {**form, "client_id": self.client_id, "client_secret": self.client_secret}, {}
        pair = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode("ascii")
        return form, {"Authorization": f"Basic {pair}"}

    async def _accept(self, token: _TokenResponse) -> None:
        new = token.refresh_token
        if not new or new == self.refresh_token:
            return
        if self.on_rotate is not None:
            lives = token.x_refresh_token_expires_in or token.refresh_token_expires_in
            await self.on_rotate(new, lives)
        self.refresh_token = new


def _code(body: bytes) -> str | None:
    """The OAuth ``error`` code of a refusal, if the body carries a plain one."""
    try:
        code = msgspec.json.decode(body).get("error")
    except (msgspec.DecodeError, AttributeError):
        return None
    return code if isinstance(code, str) and _ERROR_CODE.match(code) else None
