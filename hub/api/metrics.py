"""``/metrics`` in Prometheus's text format, read from the database at each scrape, so every
server shows the whole hub (all workers) the same, plus this process's own request counts.

Needs a token of the agency's staff (Prometheus: ``authorization: {credentials: TOKEN}``); a
district viewer's token is refused, the figures being every member's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select

from hub.api.auth import METER
from hub.api.endpoints import PRINCIPAL, RUNTIME
from hub.api.errors import ApiError
from hub.billing.periods import month_of
from hub.engine.claims import database_now
from hub.metering import load_calendar
from hub.store.tables import dead_letters, routes, runs, usage_daily, workers
from hub.worker import is_live

#: This process's requests, by route template and status (the request log's figures).
REQUESTS = Counter("cohub_http_requests", "HTTP requests this server answered", ["route", "status"])
LATENCY = Histogram(
    "cohub_http_request_seconds",
    "Time to answer a request",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class _Snapshot:
    """Metric families computed before rendering (the collector protocol is synchronous)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


async def hub_families(request: web.Request) -> list[Metric]:
    engine = request.app[RUNTIME].engine
    async with engine.connect() as conn:
        now = await database_now(conn)
        calendar = await load_calendar(conn)
        month = month_of(calendar.day(now))
        per_route = (
            await conn.execute(
                select(
                    runs.c.route,
                    runs.c.status,
                    func.count(),
                    func.sum(runs.c.records_read),
                    func.sum(runs.c.records_written),
                    func.sum(runs.c.records_rejected),
                    func.sum(runs.c.retries),
                ).group_by(runs.c.route, runs.c.status)
            )
        ).all()
        succeeded = dict(
            (
                await conn.execute(
                    select(runs.c.route, func.max(runs.c.finished_at))
                    .where(runs.c.status == "succeeded")
                    .group_by(runs.c.route)
                )
            ).all()
        )
        route_names = list((await conn.scalars(select(routes.c.name))).all())
        letters = dict(
            (
                await conn.execute(
                    select(dead_letters.c.route, func.count())
                    .where(dead_letters.c.status == "open")
                    .group_by(dead_letters.c.route)
                )
            ).all()
        )
        live = [
            row for row in (await conn.execute(select(workers))).mappings() if is_live(row, now)
        ]
        usage = (
            await conn.execute(
                select(
                    usage_daily.c.member,
                    usage_daily.c.service,
                    usage_daily.c.meter,
                    func.sum(usage_daily.c.quantity),
                )
                .where(usage_daily.c.period == month)
                .group_by(usage_daily.c.member, usage_daily.c.service, usage_daily.c.meter)
            )
        ).all()
    run_count = CounterMetricFamily(
        "cohub_runs", "Runs by route and how they ended", labels=["route", "status"]
    )
    running = GaugeMetricFamily("cohub_runs_running", "Runs in progress", labels=["route"])
    totals = {
        name: CounterMetricFamily(
            f"cohub_records_{name}", f"Records {name} by route's runs", labels=["route"]
        )
        for name in ("read", "written", "rejected")
    }
    retries = CounterMetricFamily(
        "cohub_retries", "Vendor calls retried by route's runs", labels=["route"]
    )
    sums: dict[str, list[Any]] = {}
    for route, status, count, read, written, rejected, retried in per_route:
        run_count.add_metric([route, status], count)
        if status == "running":
            running.add_metric([route], count)
        acc = sums.setdefault(route, [0, 0, 0, 0])
        for i, value in enumerate((read, written, rejected, retried)):
            acc[i] += value or 0
    for route, (read, written, rejected, retried) in sorted(sums.items()):
        totals["read"].add_metric([route], read)
        totals["written"].add_metric([route], written)
        totals["rejected"].add_metric([route], rejected)
        retries.add_metric([route], retried)
    lag = GaugeMetricFamily(
        "cohub_route_lag_seconds",
        "Seconds since the route's last successful run finished (absent: never succeeded)",
        labels=["route"],
    )
    for route in route_names:
        if succeeded.get(route) is not None:
            lag.add_metric([route], (now - succeeded[route]).total_seconds())
    open_letters = GaugeMetricFamily(
        "cohub_dead_letters_open", "Open dead letters", labels=["route"]
    )
    for route, count in sorted(letters.items()):
        open_letters.add_metric([route], count)
    queue = GaugeMetricFamily(
        "cohub_queue_depth", "Runs due and waiting for room, all live workers"
    )
    queue.add_metric([], sum(row["queued"] for row in live))
    workers_live = GaugeMetricFamily("cohub_workers", "Live `cohub run` workers")
    workers_live.add_metric([], len(live))
    used = GaugeMetricFamily(
        "cohub_usage",
        "Usage billed in the current month (summed; see /api/v1/usage for each meter's own aggregation)",
        labels=["member", "service", "meter", "period"],
    )
    for member, service, meter, quantity in usage:
        used.add_metric([member, service, meter, month], float(quantity))
    return [
        run_count,
        running,
        *totals.values(),
        retries,
        lag,
        open_letters,
        queue,
        workers_live,
        used,
    ]


async def metrics(request: web.Request) -> web.Response:
    principal = request.get(PRINCIPAL)
    if principal is None:
        raise ApiError("unauthorized", "send an API token: Authorization: Bearer TOKEN")
    if principal.role not in METER:
        raise ApiError("forbidden", f"a {principal.role} token may not read /metrics")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(await hub_families(request)))
    body = generate_latest(registry) + generate_latest()  # the hub's, then this process's
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def observe(route: str | None, status: int, seconds: float) -> None:
    """Count a request in this process's metrics (the request log calls this)."""
    label = route or "unmatched"
    REQUESTS.labels(label, str(status)).inc()
    LATENCY.labels(label).observe(seconds)
