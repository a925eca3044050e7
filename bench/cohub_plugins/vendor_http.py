"""A bench-only Cohub plugin: ``bench_vendor_http``, a source reading staff from a JSON API.

bench/schedule_load.py lists this folder in its generated configuration's ``[plugins] paths``
and starts a local server that answers as below, 50 ms after each request, so that thousands of
scheduled routes can be run against a vendor system without a network. Each run reads one small
page: the benchmark measures scheduling, not data volume. It is not a product connector.

The API, as the (fictional) vendor documents it::

    GET {base_url}{stream}?modified_since=2026-11-24T12:00:00+00:00&limit=5
    200 {"data": [{"staffId": "E0001", "givenName": "Maria", "familyName": "Lopez",
                   "status": "A", "modified": "2026-11-24T12:00:03.120000+00:00"}, ...],
         "next_cursor": null}

Every stream name is a list of staff (one district's system has one per building, say), the
records come oldest first, and ``next_cursor``, when not null, is passed back as ``cursor``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from hub import sdk

EMPLOYEE = sdk.record_type("hr.employee")

#: The vendor's staff fields → canonical ``hr.employee`` fields.
FIELDS = {
    "staffId": "employee_id",
    "givenName": "first_name",
    "familyName": "last_name",
    "modified": "updated_at",
}
STATUSES = {"A": "active", "L": "on_leave", "T": "terminated"}


class VendorHttpOptions(sdk.Options, kw_only=True):
    """Where the API is, how much to ask for, and how many connections to keep to it."""

    #: The district's API root, e.g. ``http://127.0.0.1:8080/v1/d01/``.
    base_url: str
    #: Records per request.
    page_size: int = 5
    #: The shared session's connection pool to the vendor (the SDK's default is 10 per host,
    #: which would cap a worker's concurrent runs against one host at 10).
    max_connections: int = 200


class VendorHttpSource(sdk.Connector[VendorHttpOptions]):
    """Staff lists of the bench vendor's API, read incrementally by ``modified``."""

    name = "bench_vendor_http"
    title = "Bench vendor HR API (bench only)"
    options = VendorHttpOptions

    def _client(self) -> Any:
        http = sdk.http
        limit = self.config.max_connections
        return http.HttpClient(
            self.config.base_url, pool=http.PoolLimits(limit=limit, limit_per_host=limit)
        )

    async def check(self) -> None:
        await self._client().get_json("health")

    async def streams(self) -> list[sdk.StreamSpec]:
        # The API takes any list name: one staff list per building, say.
        return [sdk.StreamSpec(name="staff", record="hr.employee", description="any list name")]

    async def read(self, stream: str, state: sdk.State | None) -> AsyncIterator[sdk.Batch]:
        cursor = sdk.IncrementalCursor(state, self.lookback)
        since = cursor.since()
        params = {"limit": self.config.page_size}
        if since is not None:
            params["modified_since"] = since.isoformat()
        pages = sdk.http.cursor_pages(
            self._client(),
            stream,
            items="data",
            next_cursor=lambda body: body.get("next_cursor"),
            params=params,
        )
        delivered = False
        async for page in pages:
            records, rejects = map_staff(page.items)
            yield sdk.Batch(records=cursor.admit(records), rejects=rejects, state=cursor.state())
            delivered = True
        if not delivered:  # nothing new: the state stays as it was
            yield sdk.Batch(records=[], state=cursor.state())


def map_staff(items: list[dict[str, Any]]) -> tuple[list[sdk.Record], list[sdk.Reject]]:
    """Staff objects as ``hr.employee`` records, validated together; rejects name the staff ID."""
    mapped = []
    for raw in items:
        fields = {canonical: raw.get(vendor) for vendor, canonical in FIELDS.items()}
        fields["status"] = STATUSES.get(raw.get("status"), raw.get("status"))
        mapped.append(fields)
    records, failures = sdk.convert_rows(EMPLOYEE, mapped)
    rejects = [
        sdk.Reject(position=str(items[index].get("staffId")), reason=reason, raw=items[index])
        for index, reason in failures
    ]
    return records, rejects


@sdk.hookimpl
def cohub_register_connectors(register):
    register(VendorHttpSource)
