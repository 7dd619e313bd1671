"""Per-stream MAXLEN: the ``max_len`` metadata, cached for the push path.

A stream's first push waits for its metadata once; after that the push path
reads a dict. PUT /streams updates this process at once; other processes
see the change within REFRESH_SECONDS (the cache is refreshed in place).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from engine.meta import META_PREFIX, max_len_of, parse_meta

log = logging.getLogger("engine.maxlen")

REFRESH_SECONDS = 5.0
# Streams whose max_len a process keeps (a '*' producer may name any number).
MAX_STREAMS_CACHED = 10_000


class MaxLenCache:
    """``values`` maps stream keys (UTF-8 bytes) to their MAXLEN; read by PushSession."""

    def __init__(self, redis: Redis, default: int):
        self.redis = redis
        self.default = default
        self.values: dict[bytes, int] = {}
        self._refresher: asyncio.Task[None] | None = None

    async def load(self, keys: list[bytes]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(META_PREFIX.encode() + key)
            raws = await pipe.execute()
        for key, raw in zip(keys, raws, strict=True):
            self.values[key] = max_len_of(None if raw is None else parse_meta(raw), self.default)
        while len(self.values) > MAX_STREAMS_CACHED:
            # Forget the oldest: it is read again from Redis on its next push.
            self.values.pop(next(iter(self.values)))

    def update(self, sid: str, meta: dict[str, Any]) -> None:
        """Called after PUT /streams/{sid} in this process."""
        self.values[sid.encode()] = max_len_of(meta, self.default)

    def forget(self, sid: str) -> None:
        self.values.pop(sid.encode(), None)

    def start(self) -> None:
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            keys = list(self.values)
            if not keys:
                continue
            try:
                await self.load(keys)
            except (RedisError, OSError) as error:
                log.warning("cannot refresh stream max_len metadata: %s", error)
