"""Control connections to Redis, and waiting for a Redis that is not up yet."""

from __future__ import annotations

import logging
import time

import redis
from redis.asyncio import Redis

from engine.redis.link import Backoff, describe

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
