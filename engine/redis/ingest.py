"""The ingest link: one pipelined RedisPipe per process, reconnected with backoff."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any
from urllib.parse import unquote, urlparse

from hiredis import ReplyError

from engine._core import RedisPipe
from engine.redis.connect import describe

log = logging.getLogger("engine.redis")


class RedisAddress:
    """Where and how to connect, read from a redis://, rediss:// or unix:// URL."""

    def __init__(self, url: str):
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {parsed.scheme!r}")
        self.url = url
        self.unix_path = unquote(parsed.path) if parsed.scheme == "unix" else None
        self.host = parsed.hostname or "localhost"
        self.port = parsed.port or 6379
        self.tls = parsed.scheme == "rediss"
        self.username = unquote(parsed.username) if parsed.username else None
        self.password = unquote(parsed.password) if parsed.password else None
        query = dict(part.split("=", 1) for part in parsed.query.split("&") if "=" in part)
        database = query.get("db") or (parsed.path.strip("/") if parsed.scheme != "unix" else "")
        self.database = int(database or 0)

    async def open(self, protocol_factory: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self.unix_path is not None:
            _, protocol = await loop.create_unix_connection(protocol_factory, self.unix_path)
        else:
            context = ssl.create_default_context() if self.tls else None
            _, protocol = await loop.create_connection(protocol_factory, self.host, self.port, ssl=context)
        return protocol


class IngestLink:
    """Holds ``pipe`` while Redis is connected (None otherwise) and reconnects it."""

    def __init__(self, url: str, first_delay: float = 0.1, max_delay: float = 5.0):
        self.address = RedisAddress(url)
        self.pipe: RedisPipe | None = None
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    async def connect(self, timeout: float = 5.0) -> None:
        pipe = None
        try:
            async with asyncio.timeout(timeout):
                # on_lost is set once the connection is proven: a failed attempt is
                # reported by the exception, not as a lost connection.
                pipe = await self.address.open(RedisPipe)
                if self.address.password is not None:
                    credentials = [self.address.username, self.address.password]
                    await pipe.call("AUTH", *[part for part in credentials if part is not None])
                if self.address.database:
                    await pipe.call("SELECT", self.address.database)
                # A connection that opens is not yet a Redis that answers.
                await pipe.call("PING")
        except BaseException:
            if pipe is not None:
                pipe.close()
            raise
        pipe.on_lost = self._lost
        self.pipe = pipe

    def _lost(self, reason: str) -> None:
        self.pipe = None
        if self._closed:
            return
        log.warning("ingest connection to Redis lost (%s); reconnecting", reason)
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = self.first_delay
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await self.connect()
            except (OSError, TimeoutError, ReplyError) as error:
                delay = min(delay * 2, self.max_delay)
                log.warning(
                    "Redis at %s is not reachable for ingest (%s); retrying in %.1f s",
                    describe(self.address.url),
                    error,
                    delay,
                )
                continue
            log.info("ingest connection to Redis restored")
            return

    async def close(self) -> None:
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self.pipe is not None:
            self.pipe.close()
            self.pipe = None
