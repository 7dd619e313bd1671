"""Control connections to Redis, and waiting for a Redis that is not up yet."""

from __future__ import annotations

import logging
import time

import redis
from redis.asyncio import Redis

log = logging.getLogger("engine.redis")


def control_client(url: str) -> Redis:
    """A redis-py asyncio client (hiredis parser when installed) for metadata and info."""
    return Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def describe(url: str) -> str:
    """The URL without its password, for log lines."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


def wait_until_reachable(url: str, first_delay: float = 0.1, max_delay: float = 5.0) -> None:
    """PING until Redis answers: one log line per failed try, doubling the delay.

    Runs before the server starts (blocking, so SIGINT/SIGTERM end it at once).
    """
    delay = first_delay
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        while True:
            try:
                client.ping()
                return
            except (redis.RedisError, OSError) as error:
                log.warning(
                    "Redis at %s is not reachable (%s); retrying in %.1f s",
                    describe(url),
                    error or type(error).__name__,
                    delay,
                )
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
    finally:
        client.close()
