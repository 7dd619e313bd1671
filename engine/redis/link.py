"""A connection to Redis held by the process and reconnected with backoff while it is down."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, urlparse

from hiredis import ReplyError

from engine.redis.connect import describe

log = logging.getLogger("engine.redis")

Connection = TypeVar("Connection")


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
        """Connect ``protocol_factory()`` (a protocol with an awaitable ``call``), log
        in, select the database and PING: a connection that opens is not yet a
        Redis that answers. A connection that fails on the way is closed."""
        loop = asyncio.get_running_loop()
        if self.unix_path is not None:
            _, protocol = await loop.create_unix_connection(protocol_factory, self.unix_path)
        else:
            context = ssl.create_default_context() if self.tls else None
            _, protocol = await loop.create_connection(protocol_factory, self.host, self.port, ssl=context)
        try:
            if self.password is not None:
                credentials = [self.username, self.password]
                await protocol.call("AUTH", *[part for part in credentials if part is not None])
            if self.database:
                await protocol.call("SELECT", self.database)
            await protocol.call("PING")
        except BaseException:
            protocol.close()
            raise
        return protocol


# What a failed attempt to connect raises (RedisUnavailable is a ConnectionError).
CONNECT_ERRORS = (OSError, TimeoutError, ReplyError)


class RedisLink(Generic[Connection]):
    """Holds ``connection`` while Redis is connected (None otherwise) and reconnects it.

    Subclasses say which protocol to open (``_protocol``: it must have a
    settable ``on_lost``) and may mirror ``connection`` under their own name
    (``_hold``).
    """

    role = "a"

    def __init__(self, url: str, first_delay: float = 0.1, max_delay: float = 5.0):
        self.address = RedisAddress(url)
        self.connection: Connection | None = None
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    def _protocol(self) -> Connection:
        raise NotImplementedError

    def _hold(self, connection: Connection | None) -> None:
        self.connection = connection

    async def connect(self, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            connection = await self.address.open(self._protocol)
        # on_lost is set once the connection is proven: a failed attempt is
        # reported by the exception, not as a lost connection.
        connection.on_lost = self._lost
        self._hold(connection)

    def _lost(self, reason: str) -> None:
        self._hold(None)
        if self._closed:
            return
        log.warning("%s connection to Redis lost (%s); reconnecting", self.role, reason)
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = self.first_delay
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await self.connect()
            except CONNECT_ERRORS as error:
                delay = min(delay * 2, self.max_delay)
                log.warning(
                    "Redis at %s is not reachable for %s (%s); retrying in %.1f s",
                    describe(self.address.url),
                    self.role,
                    error,
                    delay,
                )
                continue
            log.info("%s connection to Redis restored", self.role)
            return

    async def close(self) -> None:
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        connection = self.connection
        if connection is not None:
            connection.close()  # type: ignore[attr-defined]
            self._hold(None)
