"""Control connections to Redis, and finding one that answers: of several seeds, or one not up yet."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import redis
from redis.asyncio import Redis

from engine.redis.link import CONNECT_SECONDS, Backoff, describe
from engine.redis.servers import ServerVersion

log = logging.getLogger("engine.redis")


def control_client(url: str) -> Redis:
    """A redis-py asyncio client (hiredis parser when installed) for metadata and info."""
    return Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def wait_until_reachable(urls: Sequence[str], backoff: Backoff | None = None) -> None:
    """PING each of ``urls`` (one Redis, or seeds of one cluster) until one answers:
    one log line per failed round, waiting as ``backoff`` says.

    Runs before the server starts (blocking, so SIGINT/SIGTERM end it at once).
    """
    waits = (backoff or Backoff()).waits()
    clients = [redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2) for url in urls]
    try:
        while True:
            failures: list[tuple[str, BaseException]] = []
            for url, client in zip(urls, clients, strict=True):
                try:
                    client.ping()
                    return
                except (redis.RedisError, OSError) as error:
                    failures.append((url, error))
            wait = next(waits)
            log.warning("%s; retrying in %.1f s", unreachable(failures), wait)
            time.sleep(wait)
    finally:
        for client in clients:
            client.close()


async def first_answering(urls: Sequence[str]) -> str:
    """The first of ``urls``, tried in order, whose Redis answers PING. Raises
    ConnectionError, naming every failure, when none does."""
    failures: list[tuple[str, BaseException]] = []
    for url in urls:
        client = control_client(url)
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                await client.ping()
            return url
        except (redis.RedisError, OSError) as error:  # TimeoutError is an OSError
            failures.append((url, error))
        finally:
            await client.aclose()
    raise ConnectionError(unreachable(failures))


def unreachable(failures: Sequence[tuple[str, BaseException]]) -> str:
    """What to log when no Redis of ``failures`` (url, error) answered."""
    reasons = [(describe(url), str(error) or type(error).__name__) for url, error in failures]
    if len(reasons) == 1:
        [(url, reason)] = reasons
        return f"Redis at {url} is not reachable ({reason})"
    listed = "; ".join(f"{url}: {reason}" for url, reason in reasons)
    return f"no seed of the Redis Cluster is reachable ({listed})"


async def server_of(control: Redis) -> ServerVersion:
    """What the Redis behind ``control`` is: Valkey says so, everything else is Redis."""
    info = await control.info("server")
    if "valkey_version" in info:
        found = ServerVersion.parse(f"Valkey {info['valkey_version']}")
    else:
        found = ServerVersion.parse(f"Redis {info.get('redis_version', '0.0.0')}")
    return found or ServerVersion("Redis", (0, 0, 0))
