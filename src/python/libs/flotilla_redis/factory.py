"""The pooled Redis client a process shares: one connection pool, timeouts that suit stream reads."""

from __future__ import annotations

import redis.asyncio as redis

# XREADGROUP BLOCK must stay well below the socket timeout, or idle reads fail as timeouts.
SOCKET_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 2.0
# Enough for a process's consumers' blocking reads, the discovery subscription and its requests.
MAX_CONNECTIONS = 50
# A burst beyond MAX_CONNECTIONS waits this long for a connection to come back, then fails.
POOL_WAIT_SECONDS = 5.0


def create_redis(url: str, *, max_connections: int = MAX_CONNECTIONS) -> redis.Redis:
    """A pooled client for ``url`` (``redis://``, ``rediss://`` or ``unix://``); make one per process and share it.

    Replies are bytes (``decode_responses`` off). Connects lazily: building it never touches the
    network. The pool blocks: with ``max_connections`` in use, a command waits up to
    POOL_WAIT_SECONDS for one to come back (redis-py's default pool raises MaxConnectionsError at
    once, which turns a burst into errors). Raises ValueError for a URL redis-py cannot use. The
    caller closes it (``aclose``), which closes the pool too.
    """
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        health_check_interval=30,
        decode_responses=False,
    )
    return redis.Redis.from_pool(pool)
