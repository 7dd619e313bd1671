"""The pull hub: per process, one PullFeed per set of streams that pull sockets
follow, each with its own Redis connection blocked in XREAD.

Everything here runs once per feed or per socket; the per-entry work (rings,
fan-out, frames) is engine._core.PullFeed and PullSession. A feed outlives
its last socket by ``linger`` seconds, so a client that reconnects finds its
ring warm. Nothing here is needed by another process.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hiredis import ReplyError

from engine._core import PullFeed, StreamKey, StreamReader
from engine.redis.connect import describe
from engine.redis.link import CONNECT_ERRORS, RedisAddress

log = logging.getLogger("engine.pull")

LINGER_SECONDS = 5.0
CONNECT_SECONDS = 5.0


class PullHub:
    """Finds or starts the feed of a pull socket; stops feeds nobody follows."""

    def __init__(
        self,
        url: str,
        linger: float = LINGER_SECONDS,
        first_delay: float = 0.1,
        max_delay: float = 5.0,
        feed_options: dict[str, int] | None = None,
    ):
        self.address = RedisAddress(url)
        self.linger = linger
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.feed_options = feed_options or {}  # PullFeed keyword arguments (ring sizes, tests)
        self.feeds: dict[tuple[bytes, ...], PullFeed] = {}
        self._tasks: dict[PullFeed, asyncio.Task[None]] = {}
        self._idle: dict[PullFeed, asyncio.TimerHandle] = {}
        self._closed = False

    def attach(self, session: Any, keys: list[StreamKey]) -> PullFeed:
        """The feed for ``keys`` (in any order), started if needed; ``session`` joins it."""
        ordered = sorted(keys, key=lambda key: key.key)
        ident = tuple(key.key for key in ordered)
        feed = self.feeds.get(ident)
        if feed is None or feed.closed:
            feed = PullFeed(ordered, **self.feed_options)
            self.feeds[ident] = feed
            if not self._closed:
                self._tasks[feed] = asyncio.get_running_loop().create_task(self._run(feed))
        timer = self._idle.pop(feed, None)
        if timer is not None:
            timer.cancel()
        feed.sessions.add(session)
        return feed

    def detach(self, session: Any, feed: PullFeed) -> None:
        feed.sessions.discard(session)
        if feed.sessions or feed in self._idle:
            return
        if feed.closed or self._closed:
            self._stop(feed)
        else:
            self._idle[feed] = asyncio.get_running_loop().call_later(self.linger, self._stop, feed)

    def _stop(self, feed: PullFeed) -> None:
        self._idle.pop(feed, None)
        if feed.sessions:
            return
        ident = tuple(key.key for key in feed.keys)
        if self.feeds.get(ident) is feed:
            del self.feeds[ident]
        feed.close()
        task = self._tasks.pop(feed, None)
        if task is not None:
            task.cancel()

    async def _run(self, feed: PullFeed) -> None:
        """Connect the feed, start its rings once, and reconnect it while it is followed."""
        loop = asyncio.get_running_loop()
        delay = self.first_delay
        reader: StreamReader | None = None
        try:
            while not feed.closed:
                lost: asyncio.Future[str] = loop.create_future()

                def on_lost(reason: str, lost: asyncio.Future[str] = lost) -> None:
                    if not lost.done():
                        lost.set_result(reason)

                try:
                    async with asyncio.timeout(CONNECT_SECONDS):
                        reader = await self.address.open(StreamReader)
                    assert reader is not None
                    reader.on_lost = on_lost
                    if not feed.started:
                        newest = await reader.read(
                            [
                                ("range", [key], (b"XREVRANGE", key.key, b"+", b"-", b"COUNT", 1))
                                for key in feed.keys
                            ]
                        )
                        refused = [reply for reply in newest if isinstance(reply, ReplyError)]
                        if refused:
                            feed.fail(f"Redis refused to read the streams: {refused[0]}")
                            return
                        feed.prime(newest)
                    feed.serve(reader)
                    delay = self.first_delay
                    reason = await lost
                    feed.stop_serving()
                    if feed.closed:
                        return
                    log.warning("a pull feed lost its Redis connection (%s); reconnecting", reason)
                except CONNECT_ERRORS as error:
                    log.warning(
                        "Redis at %s is not reachable for a pull feed (%s); retrying in %.1f s",
                        describe(self.address.url),
                        error,
                        delay,
                    )
                if reader is not None:
                    reader.close()
                    reader = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)
        finally:
            feed.stop_serving()
            if reader is not None:
                reader.close()

    async def close(self) -> None:
        self._closed = True
        for timer in self._idle.values():
            timer.cancel()
        self._idle.clear()
        for feed in self.feeds.values():
            feed.close()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self.feeds.clear()
