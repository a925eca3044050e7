"""``/healthz`` and ``/readyz`` of a `cohub run` worker, for a service manager or Kubernetes.

``/healthz`` (liveness) answers 200 while the worker's loop turns and its heartbeat reaches the
database within its lease; restart the process when it answers 503. ``/readyz`` (readiness)
answers 200 while the worker takes new runs: registered, not shutting down, database reachable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy import text

if TYPE_CHECKING:
    from hub.worker import Worker

WORKER_KEY: web.AppKey[Worker] = web.AppKey("worker")


def _facts(worker: Worker) -> dict[str, object]:
    beat = worker.heartbeat_ok_at
    return {
        "worker": worker.id,
        "running": len(worker.running),
        "max_runs": worker.settings.max_runs,
        "stopping": worker.stopping.is_set(),
        "heartbeat_age_seconds": (
            round((datetime.now(UTC) - beat).total_seconds(), 3) if beat else None
        ),
    }


async def healthz(request: web.Request) -> web.Response:
    worker = request.app[WORKER_KEY]
    facts = _facts(worker)
    age = facts["heartbeat_age_seconds"]
    alive = isinstance(age, float) and age < worker.settings.lease_seconds
    return web.json_response(
        {"status": "ok" if alive else "failing", **facts}, status=200 if alive else 503
    )


async def readyz(request: web.Request) -> web.Response:
    worker = request.app[WORKER_KEY]
    problems = []
    if not worker.registered:
        problems.append("not registered yet")
    if worker.stopping.is_set():
        problems.append("shutting down")
    try:
        async with worker.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as error:
        problems.append(f"database unreachable: {type(error).__name__}")
    body = {"status": "ready" if not problems else "not ready", "problems": problems}
    return web.json_response({**body, **_facts(worker)}, status=503 if problems else 200)


def health_app(worker: Worker) -> web.Application:
    app = web.Application()
    app[WORKER_KEY] = worker
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start_health(worker: Worker, host: str, port: int) -> web.AppRunner:
    """Serve the health endpoints alone; the caller cleans the runner up."""
    from hub.cli.serve import start_site

    return await start_site(health_app(worker), host, port)
