"""roster_api: a district HR system's JSON roster API, read through the SDK's HTTP toolkit.

The vendor (see `tests.vendor.fault_server`) authenticates with an API key in ``X-Api-Key``
and pages with a cursor: the id of the last employee read, handed back as ``next_cursor``.
One stream, ``employees``, maps to ``hr.employee``. The state is the cursor after the last
page delivered, so the next run asks only for employees added since.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from hub import sdk
from hub.sdk.http import ApiKeyHeader, HttpClient, RateLimit, RetryPolicy, cursor_pages

#: Vendor field → `hr.employee` field.
FIELDS = {
    "id": "employee_id",
    "givenName": "first_name",
    "familyName": "last_name",
    "employmentStatus": "status",
    "hireDate": "hire_date",
    "email": "work_email",
    "lastModified": "updated_at",
}


class RosterOptions(sdk.Options, kw_only=True):
    """Where the API is, and how patient to be with it."""

    base_url: str
    page_size: int = 100
    timeout_seconds: float = 30.0
    retry_attempts: int = 5
    retry_base_seconds: float = 0.5
    retry_cap_seconds: float = 30.0
    max_retry_after_seconds: float = 60.0
    requests_per_second: float | None = None


class RosterApi(sdk.Connector[RosterOptions]):
    """A district HR roster API (JSON, API key, cursor paging)."""

    name = "roster_api"
    title = "District HR roster API"
    options = RosterOptions
    secrets = ("api_key",)

    def __init__(
        self,
        options: RosterOptions,
        secrets: Mapping[str, str],
        context: sdk.ConnectionContext,
    ) -> None:
        super().__init__(options, secrets, context)
        self.client = HttpClient(
            options.base_url,
            auth=ApiKeyHeader(self.secret_values["api_key"]),
            rate_limit=RateLimit(per_second=options.requests_per_second),
            retry=RetryPolicy(
                attempts=options.retry_attempts,
                base=options.retry_base_seconds,
                cap=options.retry_cap_seconds,
                max_retry_after=options.max_retry_after_seconds,
            ),
            timeout=aiohttp.ClientTimeout(
                total=options.timeout_seconds, connect=options.timeout_seconds
            ),
        )

    async def check(self) -> None:
        await self.client.get_json("v1/employees", params={"limit": 1})

    async def streams(self) -> list[sdk.StreamSpec]:
        return [sdk.StreamSpec(name="employees", record="hr.employee")]

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        if stream != "employees":
            raise sdk.ConnectorConfigError(f"no stream {stream!r}; this connection has employees")
        record = sdk.record_type("hr.employee")
        pages = cursor_pages(
            self.client,
            "v1/employees",
            items="data",
            next_cursor=lambda body: body["next_cursor"],
            params={"limit": self.config.page_size},
            start=(state or {}).get("cursor"),
        )
        async for page in pages:
            records, failures = sdk.convert_rows(record, [_mapped(raw) for raw in page.items])
            where = page.position or "start"
            rejects = [
                sdk.Reject(position=f"{where}:{index}", reason=reason, raw=page.items[index])
                for index, reason in failures
            ]
            yield sdk.Batch(records=records, rejects=rejects, state={"cursor": page.next})


def _mapped(raw: dict[str, Any]) -> dict[str, Any]:
    return {FIELDS[key]: value for key, value in raw.items() if key in FIELDS}


@sdk.hookimpl
def cohub_register_connectors(register):
    register(RosterApi)
