"""Per-stream MAXLEN: the ``max_len`` metadata, cached for the push path.

A stream's first push waits for its metadata once; after that the push path
reads a dict. Loads are single-flight and batched: however many sockets ask
at once, one pipelined read per event loop turn, on one connection.

A change (PUT or DELETE /streams/{sid}) updates the process that served it at
once and is published on CHANGES_CHANNEL: every engine process subscribed to
it reloads that stream (within milliseconds). A refresh every REFRESH_SECONDS
catches what a process missed while its subscription was down.

Open producer sockets hold the streams they push to (``hold``/``release``);
the refresh forgets the streams no socket has held since the one before, and
so does the memory trimmer once a crowd of sockets left: the cache holds the
streams in use, not every stream a process ever saw, and the refresh reads
only those. That is the cache's only bound: a read never evicts, because a
message or upload waiting for the streams just read would find them gone and
read them again (a '*' message naming more streams than a fixed limit did so
for ever). Streams nobody holds (uploads, a '*' socket past its held limit)
last until the second refresh after their read, at most a minute.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from engine.memory import compact
from engine.meta import META_PREFIX, max_len_of, parse_meta
from engine.redis.link import Backoff

log = logging.getLogger("engine.maxlen")

REFRESH_SECONDS = 30.0
# Every engine process in front of the same Redis listens here for metadata changes.
CHANGES_CHANNEL = "ptg-engine:metadata-changed"
_REDIS_TROUBLE = (RedisError, OSError)
# How long stopping may wait for the subscription's next look at its socket.
STOP_POLL_SECONDS = 0.5


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class MaxLenCache:
    """``values`` maps stream keys (UTF-8 bytes) to their MAXLEN; read by PushSession."""

    def __init__(self, redis: Redis | RedisCluster, default: int, subscriber: Redis):
        """``subscriber``: a client of its own for the subscription (a pub/sub
        connection returned to a shared pool after an outage broke later requests)."""
        self.redis = redis
        self.subscriber = subscriber
        self.default = default
        self.values: dict[bytes, int] = {}
        self.holders: dict[bytes, int] = {}  # stream key -> open producer sockets holding it
        self._released: set[bytes] = set()  # held since the last refresh, held no more
        self._loading: dict[bytes, asyncio.Future[None]] = {}
        self._queued: list[bytes] = []
        self._tasks: list[asyncio.Task[None]] = []
        # One read at a time: a crowd's reads then share one connection of the
        # pool instead of opening more (their objects outlive the crowd).
        self._reading = asyncio.Lock()
        self._stopping = False

    async def load(self, keys: list[bytes]) -> None:
        """Read ``keys``' max_len into ``values``: joined to a load already under way,
        and sent with every other key asked for in this turn of the loop."""
        # Shielded: cancelling one caller must not cancel the reads others share.
        await asyncio.shield(self.loaded(keys))

    def loaded(self, keys: list[bytes]) -> asyncio.Future[list[None]]:
        """``load`` without a coroutine: a future done once ``keys``' max_len are read
        (or failed to be). Cancelling it would cancel reads other callers share."""
        waits = []
        for key in keys:
            future = self._loading.get(key)
            if future is None:
                future = asyncio.get_running_loop().create_future()
                self._loading[key] = future
                if not self._queued:
                    asyncio.get_running_loop().call_soon(self._send_queued)
                self._queued.append(key)
            waits.append(future)
        gathered = asyncio.gather(*waits)
        # A socket that went away leaves its failed read unread; asyncio would log
        # "exception never retrieved" for each.
        gathered.add_done_callback(_retrieve)
        return gathered

    async def values_of(self, keys: set[bytes]) -> dict[bytes, int]:
        """``keys``' max_len, read first where not cached (a stream forgotten while
        another was read is read again)."""
        while True:
            missing = [key for key in keys if key not in self.values]
            if missing:
                await self.load(missing)
            found = {key: self.values.get(key) for key in keys}
            if all(value is not None for value in found.values()):
                return found  # type: ignore[return-value]

    def _send_queued(self) -> None:
        keys, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._read(keys))
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _read(self, keys: list[bytes]) -> None:
        futures = [self._loading.pop(key) for key in keys]
        try:
            async with self._reading, self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(META_PREFIX.encode() + key)
                raws = await pipe.execute()
        except BaseException as error:
            for future in futures:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for key, raw in zip(keys, raws, strict=True):
            self.values[key] = max_len_of(None if raw is None else parse_meta(raw), self.default)
        for future in futures:
            if not future.done():
                future.set_result(None)

    def hold(self, keys: list[bytes]) -> None:
        """A producer socket pushes to ``keys``: keep their max_len while it is open."""
        for key in keys:
            self.holders[key] = self.holders.get(key, 0) + 1

    def release(self, keys: list[bytes]) -> None:
        """A producer socket that held ``keys`` went away."""
        for key in keys:
            left = self.holders.get(key, 0) - 1
            if left > 0:
                self.holders[key] = left
            else:
                self.holders.pop(key, None)
                self._released.add(key)

    def forget_unheld(self, keep_released: bool = True) -> int:
        """Drop the streams no socket holds, and (``keep_released``) none held since
        the last call (POST /data's streams among them: read again on their next
        upload); how many were dropped."""
        released, self._released = self._released, set()
        if not keep_released:
            released = set()
        unheld = [key for key in self.values if key not in self.holders and key not in released]
        for key in unheld:
            del self.values[key]
        if len(unheld) > len(self.values):
            # PushSession keeps ``values`` itself: compacted in place.
            compact(self.values)
            compact(self.holders)
            compact(self._loading)
        return len(unheld)

    async def changed(self, sid: str, meta: dict[str, Any] | None) -> None:
        """``sid``'s metadata was just written (None: deleted): apply it here, tell the others."""
        key = sid.encode()
        if meta is None:
            self.values.pop(key, None)
        else:
            self.values[key] = max_len_of(meta, self.default)
        await self.redis.publish(CHANGES_CHANNEL, key)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks += [loop.create_task(self._follow_changes()), loop.create_task(self._refresh_forever())]

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.subscriber.aclose()

    async def _follow_changes(self) -> None:
        waits = Backoff().waits()
        while not self._stopping:
            pubsub = self.subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANGES_CHANNEL)
                waits = Backoff().waits()
                # Polled, not listen(): redis-py's listen() swallows a task's cancellation.
                while not self._stopping:
                    message = await pubsub.get_message(timeout=STOP_POLL_SECONDS)
                    key = message.get("data") if message else None
                    if isinstance(key, bytes) and key in self.values:
                        self._reload_soon(key)
            except _REDIS_TROUBLE as error:
                log.warning("not following metadata changes (%s); retrying", error)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            if not self._stopping:
                await asyncio.sleep(next(waits))

    def _reload_soon(self, key: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._reload(key))
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _reload(self, key: bytes) -> None:
        try:
            await self.load([key])
        except _REDIS_TROUBLE as error:
            # The cached value stays: the periodic refresh tries again.
            log.warning("cannot reload the max_len of %r: %s", key, error)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            await self._refresh()

    async def _refresh(self) -> None:
        # A function of its own: a list of the keys kept in the loop above stayed
        # alive through the next sleep, after the sockets that held them left.
        self.forget_unheld()
        keys = list(self.values)
        if not keys:
            return
        try:
            await self.load(keys)
        except _REDIS_TROUBLE as error:
            log.warning("cannot refresh stream max_len metadata: %s", error)
