"""A connector for a vendor API that signs in with OAuth 2.0 client credentials at a token path
under its root (Ed-Fi, Skyward Qmlativ): its options name `base_url`, `client_id` and
`token_path`, the ``client_secret`` comes from the vault, and the client is built on first use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from hub import sdk
from hub.sdk.http import ApiOptions, HttpClient, OAuth2ClientCredentials

OptionsT = TypeVar("OptionsT", bound=ApiOptions)


class ClientCredentialsApi(sdk.Connector[OptionsT]):
    """The signed-in client of an API at ``config.base_url`` (options with `base_url`,
    `client_id` and `token_path`)."""

    secrets = ("client_secret",)

    def __init__(
        self, options: OptionsT, secrets: Mapping[str, str], context: sdk.ConnectionContext
    ) -> None:
        super().__init__(options, secrets, context)
        self._client: HttpClient | None = None
        self._auth: OAuth2ClientCredentials | None = None

    def _base(self) -> str:
        config: Any = self.config
        return config.base_url.rstrip("/") + "/"

    @property
    def client(self) -> HttpClient:
        """The authenticated client, built on first use."""
        if self._client is None:
            if "client_secret" not in self.secret_values:
                raise sdk.ConnectorConfigError("the connection gives no client_secret secret")
            config: Any = self.config
            self._auth = OAuth2ClientCredentials(
                token_url=self._base() + config.token_path.lstrip("/"),
                client_id=config.client_id,
                client_secret=self.secret_values["client_secret"],
            )
            self._client = self._make_client(self._auth)
        return self._client

    def _make_client(self, auth: OAuth2ClientCredentials | None = None) -> HttpClient:
        """A client for the API root, signed in with `auth` (none: to probe the root)."""
        return self.config.client(self._base(), self.context, auth=auth)

    async def close(self) -> None:
        self._client = None
