"""The pull hub: per process, one PullFeed per followed stream, and per Redis
node at most two connections that read them, whatever the number of streams.

Up to MOST_HOT_PER_NODE streams, the node's HotReader reads them all: one
blocking XREAD, re-issued after every reply. Past that, keyspace
notifications take over for the quiet ones: a notification on the node's
subscriber connection (engine._core.KeyspaceListener) queues one
non-blocking XREAD of just that stream; a busy stream, more than
HOT_ENTRIES_PER_SECOND, stays with (or moves to) the HotReader, so its
notifications are not even sent. Why not always one or the other (measured,
bench/sockets.py and bench/loadgen.py): re-issuing one XREAD BLOCK over
10,000 keys costs Redis 3.5 ms every time; turning keyspace events on costs
every XADD about a fifth more Redis CPU (W1 858k -> 651k entries/s), paid
whether anyone follows or not, so they are turned on only when needed.

A feed outlives its last socket by ``linger`` seconds, so a client that
reconnects finds its ring warm. Nothing here is needed by another process.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable

from hiredis import ReplyError
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from engine._core import (
    Counters,
    FeedFollower,
    HotReader,
    KeyspaceListener,
    PullFeed,
    RedisUnavailable,
    Shards,
    StreamKey,
    StreamReader,
    read_feeds,
    stream_read,
    worth_retrying,
)
from engine.memory import compact
from engine.redis.connect import control_client
from engine.redis.link import Backoff, RedisAddress, RedisLink

log = logging.getLogger("engine.pull")

LINGER_SECONDS = 5.0
# A stream read by notifications above this rate moves to the HotReader; one
# there below COLD comes back (apart, so that a stream near one does not flap).
HOT_ENTRIES_PER_SECOND = 200
COLD_ENTRIES_PER_SECOND = 50
# The HotReader's XREAD costs Redis O(streams) every time it is issued.
MOST_HOT_PER_NODE = 64
RATE_SECONDS = 1.0
# Every this many measures, whether the node still publishes keyspace events.
CHECK_EVERY = 10
# Seconds after its slot moved that a followed stream is read once a second.
READS_AFTER_MOVE = 5
# Channels per SUBSCRIBE command (a reconnect subscribes every one again).
SUBSCRIBE_CHUNK = 1000
# Notification flags: K (keyspace channels) and t (stream commands); A covers t.
KEYSPACE_FLAGS = "Kt"

ConfigGet = Callable[[], Awaitable[str]]
ConfigSet = Callable[[str], Awaitable[None]]


def keyspace_channel(database: int, key: bytes) -> bytes:
    return b"__keyspace@%d__:" % database + key


async def enable_keyspace_events(config_get: ConfigGet, config_set: ConfigSet) -> bool:
    """Make Redis publish the keyspace events of streams, adding to the flags it
    has; whether they were off. Raises ReplyError or ResponseError when Redis
    refuses (a managed Redis may not allow CONFIG)."""
    have = set(await config_get())
    if "K" in have and ("t" in have or "A" in have):
        return False
    await config_set("".join(sorted(have | set(KEYSPACE_FLAGS))))
    return True


class NodeFollow:
    """The followed streams of one Redis node, and the two connections that read them."""

    def __init__(self, hub: PullHub, node: int, address: RedisAddress):
        self.hub = hub
        self.node = node
        self.address = address
        self.feeds: set[PullFeed] = set()
        self.channels: dict[bytes, PullFeed] = {}  # the subscribed (cold) feeds; shared with the listener
        self.notify: bool | None = None  # whether the node publishes keyspace events (None: not known yet)
        self.hot = HotReader(hub.counters)
        self.hot.on_issued = self._hot_issued
        self.to_unsubscribe: set[PullFeed] = set()  # hot, unsubscribed once the HotReader reads them
        self.listener: KeyspaceListener | None = None
        self.retry: set[PullFeed] = set()  # reads that could not be sent, sent again soon
        self._to_subscribe: list[PullFeed] = []
        self._retry_timer: asyncio.TimerHandle | None = None
        self._links: list[RedisLink[KeyspaceListener] | RedisLink[StreamReader]] = []
        self._listening: RedisLink[KeyspaceListener] | None = None  # started past most_hot streams
        self._tasks: set[asyncio.Task[None]] = set()
        self._received: dict[PullFeed, int] = {}
        self._control: Redis | None = None  # for CONFIG, made when first needed

    # -- following ---------------------------------------------------------

    def follow(self, feed: PullFeed) -> None:
        if not self._links:
            self._start_hot()
        feed.on_read_failed = self._read_failed
        self.feeds.add(feed)
        self._received[feed] = feed.received
        if self.notify is False or (self._listening is None and len(self.feeds) <= self.hub.notify_past):
            # Few streams: the HotReader reads them all, and Redis publishes no
            # keyspace events, which would cost every XADD about a fifth more.
            self.hot.feeds.append(feed)
            self.catch_up_soon([feed])
            return
        if self._listening is None:
            self._start_listener()
        self.channels[self.channel(feed)] = feed
        if not self._to_subscribe:
            asyncio.get_running_loop().call_soon(self._subscribe_queued)
        self._to_subscribe.append(feed)

    def unfollow(self, feed: PullFeed) -> None:
        self.feeds.discard(feed)
        self._received.pop(feed, None)
        self.retry.discard(feed)
        self.to_unsubscribe.discard(feed)
        if feed in self.hot.feeds:
            self.hot.feeds.remove(feed)
        if self.channels.pop(self.channel(feed), None) is not None and self.listener is not None:
            self.listener.unsubscribe([self.channel(feed)])

    def compact(self) -> None:
        """Shrink the tables a crowd of followed streams grew (engine.memory)."""
        for table in (
            self.feeds,
            self.channels,
            self.to_unsubscribe,
            self.retry,
            self._tasks,
            self._received,
        ):
            compact(table)

    def channel(self, feed: PullFeed) -> bytes:
        return keyspace_channel(self.address.database, feed.key.key)

    def _subscribe_queued(self) -> None:
        feeds, self._to_subscribe = self._to_subscribe, []
        if self.listener is not None:  # else the listener subscribes them once it connects
            self.spawn(self._subscribe_then_read(self.listener, feeds))

    async def _subscribe_then_read(self, listener: KeyspaceListener, feeds: list[PullFeed]) -> None:
        """Subscribe ``feeds``, then read them: whatever was added before Redis
        confirmed is read, whatever comes after is notified."""
        feeds = [feed for feed in feeds if self.channels.get(self.channel(feed)) is feed]
        try:
            for start in range(0, len(feeds), SUBSCRIBE_CHUNK):
                await listener.subscribe(
                    [self.channel(feed) for feed in feeds[start : start + SUBSCRIBE_CHUNK]]
                )
        except RedisUnavailable:
            return  # the listener's next connection subscribes every channel again
        for feed in feeds:
            # A hot feed coming back: notified now, so the HotReader lets it go.
            if feed in self.hot.feeds and self.channels.get(self.channel(feed)) is feed:
                self.hot.feeds.remove(feed)
        await self._catch_up(feeds)

    def catch_up_soon(self, feeds: list[PullFeed]) -> None:
        self.spawn(self._catch_up(feeds))

    async def _catch_up(self, feeds: Iterable[PullFeed]) -> None:
        """Prime the feeds that have not started, then read every one once."""
        feeds = [feed for feed in feeds if feed in self.feeds and not feed.closed]
        reader = self.hub.shards.reader_for_node(self.node)
        if not feeds:
            return
        if reader is None:
            self._retry_later(feeds)
            return
        fresh = [feed for feed in feeds if not feed.started]
        if fresh:
            try:
                newest = await reader.read(
                    [("range", [feed.key], stream_read(feed.key, 1, True)) for feed in fresh]
                )
            except RedisUnavailable:
                self._retry_later(feeds)
                return
            for feed, reply in zip(fresh, newest, strict=True):
                if worth_retrying(reply):
                    self._retry_later([feed])  # the stream's slot moves, or the cluster is down
                elif isinstance(reply, ReplyError):
                    feed.fail(f"Redis refused to read {feed.key.sid!r}: {reply}")
                elif not feed.started and not feed.closed:
                    feed.prime(reply)
        if reader.connected:
            read_feeds([feed for feed in feeds if feed.started and not feed.closed], reader)
        else:
            self._retry_later(feeds)
        self.hot.issue()  # feeds primed just now may be the HotReader's

    def _read_failed(self, feed: PullFeed, reason: str) -> None:
        self._retry_later([feed])

    def _retry_later(self, feeds: Iterable[PullFeed]) -> None:
        self.retry.update(feeds)
        if self.retry and self._retry_timer is None:
            delay = next(self.hub.backoff.waits())
            self._retry_timer = asyncio.get_running_loop().call_later(delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry_timer = None
        feeds, self.retry = list(self.retry), set()
        self.catch_up_soon(feeds)

    # -- busy and quiet ----------------------------------------------------

    def measure(self, seconds: float) -> None:
        """Move streams between notifications and the HotReader by their rate."""
        if self.notify is False or self._listening is None:
            return  # every stream is the HotReader's
        to_cold: list[PullFeed] = []
        for feed in self.feeds:
            rate = (feed.received - self._received.get(feed, 0)) / seconds
            self._received[feed] = feed.received
            hot = feed in self.hot.feeds
            if not hot and rate > HOT_ENTRIES_PER_SECOND and len(self.hot.feeds) < self.hub.most_hot:
                self.hot.feeds.append(feed)
                self.to_unsubscribe.add(feed)
            elif hot and rate < COLD_ENTRIES_PER_SECOND and feed not in self.to_unsubscribe:
                to_cold.append(feed)
        for feed in to_cold:
            # It stays in the HotReader until the subscription is confirmed.
            self.channels[self.channel(feed)] = feed
        if to_cold and self.listener is not None:
            self.spawn(self._subscribe_then_read(self.listener, to_cold))
        if self.to_unsubscribe:
            self.hot.issue()

    def _hot_issued(self, feeds: list[PullFeed]) -> None:
        """The HotReader reads ``feeds`` from now on: their notifications can stop."""
        gone = [feed for feed in feeds if feed in self.to_unsubscribe]
        if not gone:
            return
        channels = []
        for feed in gone:
            self.to_unsubscribe.discard(feed)
            if self.channels.pop(self.channel(feed), None) is not None:
                channels.append(self.channel(feed))
        if self.listener is not None and channels:
            self.listener.unsubscribe(channels)

    # -- connections -------------------------------------------------------

    def _start_hot(self) -> None:
        hot = RedisLink(
            self.address,
            functools.partial(StreamReader, self.hub.counters),
            "busy streams' read",
            publish=self.hot.serve,
            backoff=self.hub.backoff,
            counters=self.hub.counters,
        )
        self._links.append(hot)
        hot.start()

    def _start_listener(self) -> None:
        """More streams than the HotReader takes: from now on quiet ones are
        read when Redis notifies a change (turned on here, if it was off)."""
        hub = self.hub
        self._listening = RedisLink(
            self.address,
            functools.partial(KeyspaceListener, hub.shards, self.node, self.channels, hub.counters),
            "keyspace notifications",
            publish=self._listener_changed,
            prepare=self._enable_notifications,
            backoff=hub.backoff,
            counters=hub.counters,
        )
        self._links.append(self._listening)
        self._listening.start()

    async def _enable_notifications(self, listener: KeyspaceListener) -> None:
        """On every new subscriber connection, before it subscribes (a restarted
        Redis forgot a CONFIG SET)."""

        async def config_get() -> str:
            _, flags = await listener.call("CONFIG", "GET", "notify-keyspace-events")
            return str(flags.decode())

        async def config_set(flags: str) -> None:
            await listener.call("CONFIG", "SET", "notify-keyspace-events", flags)

        try:
            await enable_keyspace_events(config_get, config_set)
        except ReplyError as error:
            self._without_notifications(str(error))
            return
        self.notify = True

    async def check_notifications(self) -> None:
        """Someone may have turned the events off: on again, and every quiet stream
        read once for what was not notified meanwhile. (Not on the subscriber
        connection: a subscribed RESP2 connection takes no CONFIG.)"""
        if self.notify is not True:
            return
        if self._control is None:
            self._control = control_client(self.address.url)
        control = self._control

        async def config_get() -> str:
            flags = await control.config_get("notify-keyspace-events")
            return str(flags.get("notify-keyspace-events", ""))

        async def config_set(flags: str) -> None:
            await control.config_set("notify-keyspace-events", flags)

        try:
            changed = await enable_keyspace_events(config_get, config_set)
        except ResponseError as error:
            self._without_notifications(str(error))
            return
        except (RedisError, OSError):
            return  # Redis is away: the listener subscribes and reads all once it is back
        if changed:
            log.warning(
                "Redis at %s had stopped publishing keyspace events; turned them on again", self.address.url
            )
            await self._catch_up(list(self.channels.values()))

    def _without_notifications(self, reason: str) -> None:
        if self.notify is not False:
            log.warning(
                "Redis at %s will not publish keyspace events (%s): every followed stream of it "
                "is read by one blocking XREAD, which costs Redis O(streams) per wake-up; "
                "set notify-keyspace-events to Kt in its configuration",
                self.address.url,
                reason,
            )
        self.notify = False
        for feed in self.channels.values():
            if feed not in self.hot.feeds:
                self.hot.feeds.append(feed)
        self.channels.clear()
        self.to_unsubscribe.clear()
        self.catch_up_soon(list(self.feeds))

    def _listener_changed(self, listener: KeyspaceListener | None) -> None:
        self.listener = listener
        if listener is None:
            return
        listener.on_unread = lambda feed: self._retry_later([feed])
        # A new connection: every channel again, and every stream read once for
        # what changed while nobody listened.
        self._to_subscribe = []
        self.spawn(self._subscribe_then_read(listener, list(self.channels.values())))

    def reconnect(self) -> None:
        for link in self._links:
            link.reconnect()
        if self._control is not None:  # made again for the new address when needed
            control, self._control = self._control, None
            self.spawn(control.aclose())

    def spawn(self, coroutine: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for link in self._links:
            link.close()
        await asyncio.gather(
            *self._tasks, *(link.wait_closed() for link in self._links), return_exceptions=True
        )
        if self._control is not None:
            await self._control.aclose()


class PullHub:
    """Finds or starts the feeds of a pull socket; stops feeds nobody follows."""

    def __init__(
        self,
        shards: Shards,
        addresses: list[RedisAddress],
        counters: Counters,
        linger: float = LINGER_SECONDS,
        backoff: Backoff | None = None,
        feed_options: dict[str, int] | None = None,
        most_hot: int = MOST_HOT_PER_NODE,
        notify_past: int | None = None,
    ):
        if len(addresses) != shards.nodes:
            raise ValueError(f"{len(addresses)} addresses for a shard map of {shards.nodes} nodes")
        self.shards = shards
        self.counters = counters
        self.linger = linger
        self.backoff = backoff or Backoff()
        self.feed_options = feed_options or {}  # PullFeed keyword arguments (ring sizes, tests)
        # Busy streams read by one blocking XREAD per node; 0 on a Redis Cluster,
        # where one XREAD cannot name keys of different slots.
        self.most_hot = most_hot
        # Keyspace notifications once a node follows more streams than this.
        self.notify_past = most_hot if notify_past is None else notify_past
        self.nodes = [NodeFollow(self, node, address) for node, address in enumerate(addresses)]
        self.feeds: dict[bytes, PullFeed] = {}
        self._followed_on: dict[PullFeed, NodeFollow] = {}
        self._idle: dict[PullFeed, asyncio.TimerHandle] = {}
        self._measuring: asyncio.TimerHandle | None = None
        self._ticks = 0
        self._measured_at = 0.0
        self._closed = False

    def attach(self, follower: FeedFollower, keys: list[StreamKey]) -> list[PullFeed]:
        """The feed of each of ``keys``, started if needed; ``follower`` joins them."""
        feeds = []
        for key in keys:
            feed = self.feeds.get(key.key)
            if feed is None or feed.closed:
                feed = PullFeed(key, self.counters, **self.feed_options)
                self.feeds[key.key] = feed
                if not self._closed:
                    self._follow(feed)
                    self._measure_later()
            timer = self._idle.pop(feed, None)
            if timer is not None:
                timer.cancel()
            feed.followers.add(follower)
            feeds.append(feed)
        return feeds

    def detach(self, follower: FeedFollower, feeds: list[PullFeed]) -> None:
        for feed in feeds:
            feed.followers.discard(follower)
            if feed.followers or feed in self._idle:
                continue
            if feed.closed or self._closed:
                self._stop(feed)
            else:
                self._idle[feed] = asyncio.get_running_loop().call_later(self.linger, self._stop, feed)

    def _follow(self, feed: PullFeed) -> None:
        node = self.nodes[self.shards.node_of_key(feed.key.key)]
        self._followed_on[feed] = node
        node.follow(feed)

    def compact(self) -> None:
        """Shrink the tables a crowd of followers grew, in place (the nodes' too):
        dicts and sets keep their largest size (engine.memory)."""
        for table in (self.feeds, self._followed_on, self._idle):
            compact(table)
        for node in self.nodes:
            node.compact()

    def add_node(self, address: RedisAddress) -> None:
        """A node joined the shard map (a cluster's new master)."""
        self.nodes.append(NodeFollow(self, len(self.nodes), address))

    def master_moved(self, node: int) -> None:
        """The node's master is elsewhere now: its connections go there."""
        self.nodes[node].reconnect()

    def remap(self) -> None:
        """Slots moved between nodes: each stream is followed on its node now
        (subscribed there, and read once for what it missed on the way).
        Moved streams are read again every second for a few seconds: while a
        slot moves, nodes learn it at different moments, and a read sent in
        between may be answered by the old node or refused."""
        moved = []
        for feed in list(self._followed_on):
            node = self.nodes[self.shards.node_of_key(feed.key.key)]
            if self._followed_on[feed] is not node:
                self._followed_on[feed].unfollow(feed)
                self._followed_on[feed] = node
                node.follow(feed)
                moved.append(feed)
        if moved and not self._closed:
            loop = asyncio.get_running_loop()
            for second in range(1, READS_AFTER_MOVE + 1):
                loop.call_later(second, self._read_moved, moved)

    def _read_moved(self, feeds: list[PullFeed]) -> None:
        if self._closed:
            return
        for feed in feeds:
            node = self._followed_on.get(feed)
            if node is not None and not feed.closed:
                node.catch_up_soon([feed])

    def _stop(self, feed: PullFeed) -> None:
        self._idle.pop(feed, None)
        if feed.followers:
            return
        if self.feeds.get(feed.key.key) is feed:
            del self.feeds[feed.key.key]
        feed.close()
        node = self._followed_on.pop(feed, None)
        if node is not None:
            node.unfollow(feed)

    def _measure_later(self) -> None:
        if self._measuring is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._measured_at = loop.time()
            self._measuring = loop.call_later(RATE_SECONDS, self._measure)

    def _measure(self) -> None:
        self._measuring = None
        self._ticks += 1
        seconds = max(asyncio.get_running_loop().time() - self._measured_at, 1e-3)
        for node in self.nodes:
            node.measure(seconds)
            if self._ticks % CHECK_EVERY == 0:
                node.spawn(node.check_notifications())
        if self.feeds:
            self._measure_later()

    async def close(self) -> None:
        self._closed = True
        if self._measuring is not None:
            self._measuring.cancel()
        for timer in self._idle.values():
            timer.cancel()
        self._idle.clear()
        for feed in self.feeds.values():
            feed.close()
        await asyncio.gather(*(node.close() for node in self.nodes))
        self.feeds.clear()
