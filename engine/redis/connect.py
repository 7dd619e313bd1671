"""Control connections to Redis, and waiting for a Redis that is not up yet."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

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


async def wait_until_reachable(
    redis: Redis, url: str, first_delay: float = 0.1, max_delay: float = 5.0
) -> None:
    """PING until Redis answers: one log line per failed try, doubling the delay."""
    delay = first_delay
    while True:
        try:
            await redis.ping()
            return
        except (RedisError, OSError) as error:
            log.warning(
                "Redis at %s is not reachable (%s); retrying in %.1f s",
                describe(url), error or type(error).__name__, delay,
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)
