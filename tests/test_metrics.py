"""``/metrics`` read back with Prometheus's own parser: every figure equals what the database
(or the API) says, on a served, synced example hub; and the request log's one JSON line per
request, without the query string or the token."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from hub import logs
from hub.api import app as api_app
from hub.billing.periods import month_of
from hub.engine.claims import database_now
from hub.engine.connections import route_names
from hub.metering import load_calendar
from hub.store.tables import dead_letters, runs, workers

ROUTES = ["eastview-payroll", "harbor-falls-payroll", "millbrook-payroll"]

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


async def scrape(hub: Any, as_: str | None = "admin") -> tuple[int, str]:
    headers = {} if as_ is None else {"Authorization": f"Bearer {hub.tokens[as_]}"}
    async with hub.session.get(f"{hub.url}/metrics", headers=headers) as response:
        return response.status, await response.text()


def parse(text: str) -> Samples:
    """Every sample by its name, then by its labels (sorted pairs)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


async def metrics(hub: Any, as_: str = "admin") -> Samples:
    status, text = await scrape(hub, as_)
    assert status == 200, text
    return parse(text)


def by_route(samples: Samples, name: str) -> dict[str, float]:
    return {dict(labels)["route"]: value for labels, value in samples.get(name, {}).items()}


async def test_runs_and_records_per_route_equal_the_runs_table(hub):
    samples = await metrics(hub)

    async with hub.runtime.engine.connect() as conn:
        counted = (
            await conn.execute(
                select(runs.c.route, runs.c.status, func.count()).group_by(
                    runs.c.route, runs.c.status
                )
            )
        ).all()
        rows = (
            await conn.execute(
                select(
                    runs.c.route,
                    runs.c.records_read,
                    runs.c.records_written,
                    runs.c.records_rejected,
                )
            )
        ).all()
    assert {(route, status): n for route, status, n in counted} == {
        (route, "succeeded"): 1 for route, _, _, _ in rows
    }
    assert set(ROUTES) < {route for route, _, _, _ in rows}
    assert {
        (dict(labels)["route"], dict(labels)["status"]): value
        for labels, value in samples["cohub_runs_total"].items()
    } == {(route, status): n for route, status, n in counted}
    assert samples.get("cohub_runs_running", {}) == {}

    read = {route: r for route, r, _, _ in rows}
    written = {route: w for route, _, w, _ in rows}
    rejected = {route: x for route, _, _, x in rows}
    assert by_route(samples, "cohub_records_read_total") == read
    assert by_route(samples, "cohub_records_written_total") == written
    assert by_route(samples, "cohub_records_rejected_total") == rejected
    payroll = {route: read[route] for route in ROUTES}
    assert payroll == {"eastview-payroll": 51, "harbor-falls-payroll": 44, "millbrook-payroll": 39}
    assert rejected["harbor-falls-payroll"] == 2
    assert by_route(samples, "cohub_retries_total") == dict.fromkeys(read, 0)


async def test_open_dead_letters_and_the_lag_after_a_successful_run(hub):
    samples = await metrics(hub)

    async with hub.runtime.engine.connect() as conn:
        open_letters = dict(
            (
                await conn.execute(
                    select(dead_letters.c.route, func.count())
                    .where(dead_letters.c.status == "open")
                    .group_by(dead_letters.c.route)
                )
            ).all()
        )
    # Harbor Falls' two bad pay lines, and Eastview's two orders held off contract.
    assert open_letters == {"harbor-falls-payroll": 2, "eastview-orders": 2}
    assert by_route(samples, "cohub_dead_letters_open") == open_letters

    lag = by_route(samples, "cohub_route_lag_seconds")
    async with hub.runtime.engine.connect() as conn:
        assert sorted(lag) == await route_names(conn)
    assert all(0 <= seconds < 120 for seconds in lag.values()), lag


async def test_usage_of_the_current_month_equals_the_usage_api(hub):
    async with hub.runtime.engine.connect() as conn:
        month = month_of((await load_calendar(conn)).day(await database_now(conn)))
    samples = await metrics(hub)
    answer = await hub.call("GET", f"/usage?period={month}&by=total")
    assert answer.status == 200

    scraped = {}
    for labels, value in samples["cohub_usage"].items():
        label = dict(labels)
        assert label["period"] == month
        scraped[(label["member"], label["service"], label["meter"])] = value
    api = {(i["member"], i["service"], i["meter"]): i for i in answer.body["items"]}
    assert set(scraped) == set(api)
    for key, item in api.items():
        quantity = float(Decimal(item["quantity"]))
        if item["aggregation"] == "sum":
            assert scraped[key] == pytest.approx(quantity), key
        else:
            # /metrics sums the daily figures; a unique count over the month counts a subject
            # seen on two days once, so the month's figure is never above the daily sum.
            assert scraped[key] >= quantity, key
    synced = {
        m: v
        for (m, service, meter), v in scraped.items()
        if meter == "records_synced" and service == "cbo-payroll"
    }
    assert synced == {"eastview": 51, "harbor-falls": 42, "millbrook": 39}


async def test_queue_depth_counts_live_workers_only(hub):
    async with hub.runtime.engine.begin() as conn:
        now = await database_now(conn)
        common = {"pid": 1, "started_at": now - timedelta(hours=1), "max_runs": 4, "running": 1}
        await conn.execute(
            workers.insert(),
            [
                # live: heartbeat just now, within its 30 s lease
                {**common, "id": "live:1", "host": "live", "status": "running",
                 "heartbeat_at": now, "queued": 3, "lease_seconds": 30.0},
                # gone: its heartbeat is older than its lease
                {**common, "id": "stale:1", "host": "stale", "status": "running",
                 "heartbeat_at": now - timedelta(seconds=120), "queued": 5, "lease_seconds": 30.0},
                # stopped cleanly: its last row stays, but it queues nothing
                {**common, "id": "stopped:1", "host": "stopped", "status": "stopped",
                 "heartbeat_at": now, "queued": 7, "lease_seconds": 30.0},
            ],
        )  # fmt: skip

    samples = await metrics(hub)

    assert samples["cohub_queue_depth"] == {(): 3}
    assert samples["cohub_workers"] == {(): 1}


async def test_the_process_counts_a_request_it_answered(hub):
    key = (("route", "/api/v1/status"), ("status", "200"))
    timed = (("route", "/api/v1/status"),)
    before = await metrics(hub)
    counted = before.get("cohub_http_requests_total", {}).get(key, 0)
    observed = before.get("cohub_http_request_seconds_count", {}).get(timed, 0)

    assert (await hub.call("GET", "/status", as_="operator")).status == 200

    after = await metrics(hub)
    assert after["cohub_http_requests_total"][key] == counted + 1
    assert after["cohub_http_request_seconds_count"][timed] == observed + 1


async def test_metrics_needs_a_staff_token(hub):
    status, text = await scrape(hub, None)
    assert status == 401
    assert json.loads(text)["error"]["code"] == "unauthorized"

    status, text = await scrape(hub, "eastview")
    assert status == 403
    assert json.loads(text)["error"]["code"] == "forbidden"
    assert "cohub_usage" not in text

    for role in ("operator", "billing"):
        status, text = await scrape(hub, role)
        assert status == 200
        assert "cohub_runs_total" in text


async def test_the_request_log_writes_one_json_line_per_request_without_query_or_token(
    hub, monkeypatch
):
    stream = io.StringIO()
    structlog.reset_defaults()
    logs.configure(json=True, stream=stream)
    # The module's logger may have been bound (and cached) by an earlier test's request: a
    # fresh one follows the configuration just set.
    monkeypatch.setattr(api_app, "log", structlog.get_logger("hub.api"))
    try:
        first = await hub.call(
            "GET",
            "/usage?member=eastview&by=month",
            as_="billing",
            headers={"X-Request-Id": "trace-0001"},
        )
        second = await hub.call("GET", "/status", as_=None)
    finally:
        structlog.reset_defaults()
    assert (first.status, second.status) == (200, 401)

    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    requests = [line for line in lines if line["event"] == "http.request"]
    assert len(requests) == 2, text
    usage, status = requests
    assert usage["method"] == "GET"
    assert usage["path"] == "/api/v1/usage"
    assert usage["status"] == 200
    assert usage["request_id"] == "trace-0001" == first.headers["X-Request-Id"]
    assert isinstance(usage["duration_ms"], float | int) and usage["duration_ms"] >= 0
    assert usage["role"] == "billing"
    assert (status["path"], status["status"]) == ("/api/v1/status", 401)
    assert status["request_id"] and status["request_id"] != usage["request_id"]

    assert "eastview" not in text and "by=month" not in text and "?" not in text
    assert "Bearer" not in text and "authorization" not in text.lower()
    assert hub.tokens["billing"] not in text
    assert hub.tokens["billing"].rpartition("_")[2] not in text  # the secret part
