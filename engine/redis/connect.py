"""Control connections to Redis, and waiting for a Redis that is not up yet."""

from __future__ import annotations

import logging
import time

import redis
from redis.asyncio import Redis

from engine.redis.link import Backoff, describe
from engine.redis.servers import ServerVersion

log = logging.getLogger("engine.redis")


def control_client(url: str) -> Redis:
    """A redis-py asyncio client (hiredis parser when installed) for metadata and info."""
    return Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def wait_until_reachable(url: str, backoff: Backoff | None = None) -> None:
    """PING until Redis answers: one log line per failed try, waiting as ``backoff`` says.

    Runs before the server starts (blocking, so SIGINT/SIGTERM end it at once).
    """
    waits = (backoff or Backoff()).waits()
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        while True:
            try:
                client.ping()
                return
            except (redis.RedisError, OSError) as error:
                wait = next(waits)
                log.warning(
                    "Redis at %s is not reachable (%s); retrying in %.1f s",
                    describe(url),
                    error or type(error).__name__,
                    wait,
                )
            time.sleep(wait)
    finally:
        client.close()


async def server_of(control: Redis) -> ServerVersion:
    """What the Redis behind ``control`` is: Valkey says so, everything else is Redis."""
    info = await control.info("server")
    if "valkey_version" in info:
        found = ServerVersion.parse(f"Valkey {info['valkey_version']}")
    else:
        found = ServerVersion.parse(f"Redis {info.get('redis_version', '0.0.0')}")
    return found or ServerVersion("Redis", (0, 0, 0))
