"""The process's Redis client: one connection pool, timeouts that suit blocking stream reads."""

from __future__ import annotations

import redis.asyncio as redis

# XREADGROUP BLOCK must stay well below the socket timeout, or idle reads fail as timeouts.
SOCKET_TIMEOUT_SECONDS = 10.0
MAX_BLOCK_MS = 2_000


def create_redis(url: str, *, max_connections: int = 50) -> redis.Redis:
    """A client for ``url`` (``redis://host:port/db``); share it across the process."""
    return redis.Redis.from_url(
        url,
        max_connections=max_connections,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=2.0,
        health_check_interval=30,
        decode_responses=False,
    )
