"""The pull hub: per process, one PullFeed per set of streams that pull sockets
follow, each with its own Redis connection blocked in XREAD.

Everything here runs once per feed or per socket; the per-entry work (rings,
fan-out, frames) is engine._core.PullFeed and PullSession. A feed outlives
its last socket by ``linger`` seconds, so a client that reconnects finds its
ring warm. Nothing here is needed by another process.
"""

from __future__ import annotations

import asyncio
import functools

from hiredis import ReplyError

from engine._core import Counters, FeedFollower, PullFeed, StreamKey, StreamReader, stream_read
from engine.redis.link import Backoff, GiveUp, RedisAddress, RedisLink

LINGER_SECONDS = 5.0


class PullHub:
    """Finds or starts the feed of a pull socket; stops feeds nobody follows."""

    def __init__(
        self,
        address: RedisAddress,
        counters: Counters,
        linger: float = LINGER_SECONDS,
        backoff: Backoff | None = None,
        feed_options: dict[str, int] | None = None,
    ):
        self.address = address
        self.counters = counters
        self.linger = linger
        self.backoff = backoff or Backoff()
        self.feed_options = feed_options or {}  # PullFeed keyword arguments (ring sizes, tests)
        self.feeds: dict[tuple[bytes, ...], PullFeed] = {}
        self._links: dict[PullFeed, RedisLink[StreamReader]] = {}
        self._idle: dict[PullFeed, asyncio.TimerHandle] = {}
        self._closed = False

    def attach(self, follower: FeedFollower, keys: list[StreamKey]) -> PullFeed:
        """The feed for ``keys`` (in any order), started if needed; ``follower`` joins it."""
        ordered = sorted(keys, key=lambda key: key.key)
        ident = tuple(key.key for key in ordered)
        feed = self.feeds.get(ident)
        if feed is None or feed.closed:
            feed = PullFeed(ordered, **self.feed_options)
            self.feeds[ident] = feed
            if not self._closed:
                self._links[feed] = self._connect(feed)
        timer = self._idle.pop(feed, None)
        if timer is not None:
            timer.cancel()
        feed.followers.add(follower)
        return feed

    def detach(self, follower: FeedFollower, feed: PullFeed) -> None:
        feed.followers.discard(follower)
        if feed.followers or feed in self._idle:
            return
        if feed.closed or self._closed:
            self._stop(feed)
        else:
            self._idle[feed] = asyncio.get_running_loop().call_later(self.linger, self._stop, feed)

    def _connect(self, feed: PullFeed) -> RedisLink[StreamReader]:
        """The feed's own connection: primed once, served while it is up."""

        async def prime(reader: StreamReader) -> None:
            if feed.started:
                return
            newest = await reader.read([("range", [key], stream_read(key, 1, True)) for key in feed.keys])
            refused = [reply for reply in newest if isinstance(reply, ReplyError)]
            if refused:
                feed.fail(f"Redis refused to read the streams: {refused[0]}")
                raise GiveUp
            feed.prime(newest)

        def serve(reader: StreamReader | None) -> None:
            if reader is None:
                feed.stop_serving()
            else:
                feed.serve(reader)

        link = RedisLink(
            self.address,
            functools.partial(StreamReader, self.counters),
            "pull feed",
            publish=serve,
            prepare=prime,
            backoff=self.backoff,
            counters=self.counters,
        )
        link.start()
        return link

    def _stop(self, feed: PullFeed) -> None:
        self._idle.pop(feed, None)
        if feed.followers:
            return
        ident = tuple(key.key for key in feed.keys)
        if self.feeds.get(ident) is feed:
            del self.feeds[ident]
        feed.close()
        link = self._links.pop(feed, None)
        if link is not None:
            link.close()

    async def close(self) -> None:
        self._closed = True
        for timer in self._idle.values():
            timer.cancel()
        self._idle.clear()
        for feed in self.feeds.values():
            feed.close()
        links = list(self._links.values())
        for link in links:
            link.close()
        await asyncio.gather(*(link.wait_closed() for link in links))
        self._links.clear()
        self.feeds.clear()
