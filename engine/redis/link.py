"""Connections to Redis held by the process: opened, published to whoever uses
them, and reconnected with one backoff policy while Redis is down.

Every connection of the engine (ingest and read connections, each pull feed's
blocking reader) is a RedisLink; the per-reply work is engine._core's
RedisConnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from hiredis import ReplyError
from redis.asyncio.connection import SSLConnection
from redis.connection import parse_url

from engine._core import Counters, RedisConnection

log = logging.getLogger("engine.redis")

Connection = TypeVar("Connection", bound=RedisConnection)

# What a failed attempt to connect raises (RedisUnavailable is a ConnectionError).
CONNECT_ERRORS = (OSError, TimeoutError, ReplyError)
CONNECT_SECONDS = 5.0


# Several URLs in one --redis-url are the seeds of one Redis Cluster. Only a
# comma before a scheme separates them: a comma inside a URL's options stays.
SEED_SEPARATOR = re.compile(r",\s*(?=(?:redis|rediss|unix)://)")


def seed_urls(value: str) -> list[str]:
    """The URLs of ``--redis-url``: one, or several comma-separated seeds of one
    Redis Cluster, in order. Raises ValueError for an empty one."""
    urls = [item.strip() for item in SEED_SEPARATOR.split(value)]
    for number, url in enumerate(urls, 1):
        where = f"Redis URL {number} of {len(urls)}" if len(urls) > 1 else "the Redis URL"
        if not url:
            raise ValueError(f"{where} is empty")
        # Not split off, since no scheme follows: two commas, or one at the end.
        if url.endswith(","):
            raise ValueError(f"{where} ends with a comma, and no URL follows it")
    return urls


def describe(url: str) -> str:
    """The URL (or each of comma-separated seed URLs) without its password, for log lines."""
    return ", ".join(_without_password(item.strip()) for item in SEED_SEPARATOR.split(url))


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


class RedisAddress:
    """Where and how to connect: a redis://, rediss:// or unix:// URL read by
    redis-py's own parser, so its TLS options (``ssl_cert_reqs``,
    ``ssl_ca_certs``, ``ssl_certfile``, ...) mean what they mean there."""

    def __init__(self, url: str):
        options = parse_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        self.url = url
        self.unix_path: str | None = options.get("path")
        self.host: str = options.get("host", "localhost")
        self.port: int = options.get("port", 6379)
        self.username: str | None = options.get("username")
        self.password: str | None = options.get("password")
        self.database: int = options.get("db", 0)
        self.tls: ssl.SSLContext | None = None
        if url.startswith("rediss://"):
            tls_options = {name: value for name, value in options.items() if name.startswith("ssl_")}
            self.tls = SSLConnection(**tls_options).ssl_context.get()

    def move_to(self, host: str, port: int) -> None:
        """Point at another TCP address (a cluster shard's new master); the next
        connection opened goes there."""
        self.host, self.port = host, port
        self.url = url_at(self.url, host, port)

    async def open(self, factory: Callable[[], Connection], name: str | None = None) -> Connection:
        """Connect ``factory()``, log in, select the database, name the connection
        (what CLIENT LIST shows) and PING: a connection that opens is not yet a
        Redis that answers. One that fails on the way is closed."""
        loop = asyncio.get_running_loop()
        if self.unix_path is not None:
            _, connection = await loop.create_unix_connection(factory, self.unix_path)
        else:
            _, connection = await loop.create_connection(factory, self.host, self.port, ssl=self.tls)
        try:
            if self.password is not None:
                credentials = [self.username, self.password]
                await connection.call("AUTH", *[part for part in credentials if part is not None])
            if self.database:
                await connection.call("SELECT", self.database)
            if name is not None:
                # A managed Redis may not allow it; the name only helps operators.
                with contextlib.suppress(ReplyError):
                    await connection.call("CLIENT", "SETNAME", name)
            await connection.call("PING")
        except BaseException:
            connection.close()
            raise
        return connection


def url_at(url: str, host: str, port: int) -> str:
    """``url`` (redis:// or rediss://) pointing at ``host:port``: the same scheme,
    credentials and options."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, "", parts.query, ""))


def client_name(role: str) -> str:
    """What CLIENT LIST calls a connection of this process: ptg-engine-<pid>-<role>."""
    return f"ptg-engine-{os.getpid()}-" + "-".join(role.replace("'", "").split())


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts to reach Redis: doubling from ``first`` up to ``most``
    seconds, each drawn from the upper half of its step so that many engines
    (or feeds) that lost Redis together do not retry in step."""

    first: float = 0.1
    most: float = 5.0

    def waits(self) -> Iterator[float]:
        step = self.first
        while True:
            yield random.uniform(step / 2, step)
            step = min(step * 2, self.most)


class GiveUp(Exception):
    """Raised by a link's ``prepare``: this connection's user is gone; stop reconnecting."""


class RedisLink(Generic[Connection]):
    """One connection to one Redis node: held while it is up and published to
    ``publish`` (None while it is down), reconnected with ``backoff`` after it
    was lost. ``prepare``, if given, runs on every new connection before it is
    published (a pull feed reads where its streams stand)."""

    def __init__(
        self,
        address: RedisAddress,
        factory: Callable[[], Connection],
        role: str,
        publish: Callable[[Connection | None], Any] | None = None,
        prepare: Callable[[Connection], Awaitable[None]] | None = None,
        backoff: Backoff | None = None,
        counters: Counters | None = None,
    ):
        self.address = address
        self.factory = factory
        self.role = role
        self.publish = publish
        self.prepare = prepare
        self.backoff = backoff or Backoff()
        self.counters = counters
        self.connection: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def connect(self, timeout: float = CONNECT_SECONDS) -> None:
        """Connect once; raises what the attempt raised (CONNECT_ERRORS, GiveUp)."""
        async with asyncio.timeout(timeout):
            connection = await self.address.open(self.factory, client_name(self.role))
            try:
                if self.prepare is not None:
                    await self.prepare(connection)
            except BaseException:
                connection.close()
                raise
        # on_lost is set once the connection is proven: a failed attempt is
        # reported by the exception, not as a lost connection.
        connection.on_lost = self._lost
        if not connection.connected:
            raise ConnectionResetError("the connection to Redis was lost while it opened")
        self._hold(connection)

    def start(self) -> None:
        """Connect in the background, retrying until it works."""
        self._task = asyncio.get_running_loop().create_task(self._reconnect(wait_first=False))

    def _hold(self, connection: Connection | None) -> None:
        self.connection = connection
        if self.publish is not None:
            self.publish(connection)

    def _lost(self, reason: str) -> None:
        self._hold(None)
        if self._closed:
            return
        log.warning("%s connection to Redis lost (%s); reconnecting", self.role, reason)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._reconnect(wait_first=True))

    async def _reconnect(self, wait_first: bool) -> None:
        waits = self.backoff.waits()
        wait = next(waits)
        if wait_first:
            await asyncio.sleep(wait)
        while not self._closed:
            try:
                await self.connect()
            except GiveUp:
                return
            except CONNECT_ERRORS as error:
                wait = next(waits)
                log.warning(
                    "Redis at %s is not reachable for %s (%s); retrying in %.1f s",
                    describe(self.address.url),
                    self.role,
                    error,
                    wait,
                )
                await asyncio.sleep(wait)
                continue
            if wait_first:
                log.info("%s connection to Redis restored", self.role)
                if self.counters is not None:
                    self.counters.redis_reconnects += 1
            return

    def in_flight_bytes(self) -> int:
        """Payload bytes sent on the connection and not yet answered."""
        return self.connection.in_flight_bytes if self.connection is not None else 0

    def reconnect(self) -> None:
        """Drop the connection, to open one again (to where the address points now)."""
        if self.connection is not None:
            self.connection.close()

    def close(self) -> None:
        """Stop reconnecting and close the connection (``wait_closed`` to be sure it stopped)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        connection = self.connection
        if connection is not None:
            connection.close()
            self._hold(None)

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
