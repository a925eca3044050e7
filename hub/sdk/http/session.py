"""One aiohttp client session per worker, with a bounded connection pool and explicit timeouts.

A session owns a connection pool; opening one per request or per connection throws keep-alive
connections away and lets a busy worker open sockets without bound. Every connection on the
worker's event loop shares the session for its pool limits; the engine calls `close_sessions` at
shutdown.
"""

from __future__ import annotations

from typing import NamedTuple

import aiohttp

from hub.sdk.http.per_loop import PerLoop

#: aiohttp's own default waits five minutes for a whole request; a stalled vendor system should
#: fail sooner and be retried.
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10)


class PoolLimits(NamedTuple):
    """How many connections a session keeps open: in all, and to one host (host, port, TLS)."""

    limit: int = 100
    limit_per_host: int = 10


DEFAULT_POOL = PoolLimits()

_sessions: PerLoop[PoolLimits, aiohttp.ClientSession] = PerLoop()


def shared_session(limits: PoolLimits = DEFAULT_POOL) -> aiohttp.ClientSession:
    """The running loop's session for `limits`, opened on first use.

    TLS certificates are verified (``ssl=True``); a request may pass its own SSL context.
    """
    return _sessions.get(limits, lambda: _open(limits))


def _open(limits: PoolLimits) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=limits.limit, limit_per_host=limits.limit_per_host, ssl=True
    )
    return aiohttp.ClientSession(connector=connector, timeout=DEFAULT_TIMEOUT)


async def close_sessions() -> None:
    """Close every session the running loop opened (at worker shutdown)."""
    for session in _sessions.pop_all():
        await session.close()
