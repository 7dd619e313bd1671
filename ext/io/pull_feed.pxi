# Pull feeds: per process, one PullFeed per stream that pull sockets follow,
# its recent entries in a StreamRing. A socket is a cursor over the ring of
# each of its streams (io/pull_session.pxi), so a process holds one copy of
# each entry however many sockets follow it.
#
# What a feed reads, and when, the hub decides (engine/ws/hub.py): a quiet
# stream is read when Redis notifies that it changed (keyspace notifications,
# one subscriber connection per node), a busy one by its node's HotReader,
# one blocking XREAD over the few busiest streams. Neither costs a
# connection per stream.
#
# The sockets following a feed are FeedFollowers: woken when entries arrive,
# told when the feed fails.
#
# Uses: common.pxi, counters.pxi, sansio/entry_id.pxi, sansio/stream_entry.pxi,
#       sansio/reply_parser.pxi, sansio/stream_commands.pxi, io/redis_connection.pxi

_pull_log = logging.getLogger("engine.pull")

# A ring keeps at most this many entries and bytes per stream (at least one):
# a second of 1 KiB entries at 1000/s, or 8 frames of 1 MiB. Sockets further
# behind read from Redis; latest mode rarely needs more than `count`.
cdef Py_ssize_t RING_MAX_ENTRIES = 1024
cdef Py_ssize_t RING_MAX_BYTES = 8 * 1024 * 1024
# Entries per stream one XREAD of a feed returns at most.
cdef Py_ssize_t FEED_READ_COUNT = 512
# The HotReader's XREAD returns after this long without entries, so that
# streams join and leave its set within it.
cdef int HOT_BLOCK_MS = 100
# One read (a feed's XREAD, per stream, or a socket's catch-up XRANGE) asks
# for about this many bytes at the ring's mean entry size, at least one
# entry. 1 MiB entries: 1 per read, not 256 or 512.
cdef Py_ssize_t PULL_READ_BYTES = 1024 * 1024


@cython.final
cdef class StreamRing:
    """The recent entries of one stream of a feed, oldest first. Every entry with
    an id above the floor is in it; older ones were evicted or predate the feed.
    Positions are absolute: entry ``entries[i]`` is at ``base + i``."""

    cdef StreamKey stream
    cdef list entries
    cdef Py_ssize_t base
    cdef uint64_t floor_ms
    cdef uint64_t floor_seq
    cdef uint64_t last_ms           # the newest id known: the feed reads after it
    cdef uint64_t last_seq
    cdef Py_ssize_t nbytes
    cdef Py_ssize_t max_entries
    cdef Py_ssize_t max_bytes

    def __init__(self, StreamKey stream, Py_ssize_t max_entries=RING_MAX_ENTRIES,
                 Py_ssize_t max_bytes=RING_MAX_BYTES):
        self.stream = stream
        self.entries = []
        self.max_entries = max(1, max_entries)
        self.max_bytes = max_bytes

    cdef inline Py_ssize_t end(self) noexcept:
        return self.base + len(self.entries)

    cdef Py_ssize_t entries_within(self, Py_ssize_t budget, Py_ssize_t most) noexcept:
        """How many entries of the ring's mean size fit in ``budget`` bytes: from 1
        to ``most`` (``most`` when the ring knows no entry yet)."""
        cdef Py_ssize_t n = len(self.entries), mean
        if n == 0 or self.nbytes <= 0:
            return max(1, most)
        mean = (self.nbytes + n - 1) // n
        return max(1, min(most, budget // mean))

    cdef inline bint covers(self, uint64_t ms, uint64_t seq) noexcept:
        """Whether every entry after (ms, seq) is in the ring."""
        return not id_less(ms, seq, self.floor_ms, self.floor_seq)

    cdef Py_ssize_t position_after(self, uint64_t ms, uint64_t seq) noexcept:
        cdef Py_ssize_t low = 0, high = len(self.entries), middle
        cdef StreamEntry entry
        while low < high:
            middle = (low + high) // 2
            entry = <StreamEntry>self.entries[middle]
            if id_less(ms, seq, entry.ms, entry.seq):
                high = middle
            else:
                low = middle + 1
        return self.base + low

    cdef int prime(self, list newest) except -1:
        """Start from the stream's newest entry (or from 0-0 for an empty stream)."""
        cdef StreamEntry entry
        if newest:
            entry = <StreamEntry>newest[len(newest) - 1]
            self.entries = [entry]
            self.nbytes = entry.payload_size
            self.last_ms, self.last_seq = entry.ms, entry.seq
            # The ring holds everything after the id just before this entry.
            if entry.seq > 0:
                self.floor_ms, self.floor_seq = entry.ms, entry.seq - 1
            elif entry.ms > 0:
                self.floor_ms, self.floor_seq = entry.ms - 1, UINT64_MAX
        return 0

    cdef int extend(self, list new) except -1:
        cdef StreamEntry entry
        cdef Py_ssize_t evict = 0, size = len(self.entries) + len(new)
        for entry in new:
            self.nbytes += entry.payload_size
        self.entries.extend(new)
        entry = <StreamEntry>new[len(new) - 1]
        self.last_ms, self.last_seq = entry.ms, entry.seq
        if size <= self.max_entries and self.nbytes <= self.max_bytes:
            return 0
        # Evict down to 7/8 of the limit at once: one list move per many entries.
        while size - evict > 1 and (size - evict > self.max_entries - self.max_entries // 8
                                    or self.nbytes > self.max_bytes - self.max_bytes // 8):
            self.nbytes -= (<StreamEntry>self.entries[evict]).payload_size
            evict += 1
        entry = <StreamEntry>self.entries[evict - 1]
        self.floor_ms, self.floor_seq = entry.ms, entry.seq
        del self.entries[:evict]
        self.base += evict
        return 0


cdef class FeedFollower(RedisOwner):
    """A socket following feeds (and owning its own catch-up reads)."""

    cdef bint is_waiting                # asked its feeds to wake it

    cdef int entries_arrived(self) except -1:
        """A feed the follower waited on has new entries."""
        return 0

    cdef int feed_failed(self, str reason) except -1:
        """A feed cannot go on: the follower closes."""
        return 0


@cython.final
cdef class PullFeed(RedisOwner):
    """The stream ``key`` as the pull sockets of one process follow it: its ring,
    its followers, and its reads from Redis, which the hub asks for."""

    cdef readonly StreamKey key
    cdef readonly StreamRing ring
    cdef dict waiting                 # FeedFollower -> None, in the order they came
    cdef readonly set followers
    cdef readonly bint started
    cdef readonly bint closed
    cdef readonly Py_ssize_t read_count     # entries per XREAD at most
    cdef Py_ssize_t read_bytes              # bytes per XREAD, about
    cdef Counters counters
    cdef StreamReader reader          # of the read in flight
    cdef bint read_again              # Redis said it changed while that read was out
    cdef public object on_read_failed # callable(feed, reason): the hub tries again later
    cdef readonly uint64_t received   # entries taken, for the hub's measure of how busy it is

    def __init__(self, StreamKey key, Counters counters=None, Py_ssize_t read_count=FEED_READ_COUNT,
                 Py_ssize_t ring_entries=RING_MAX_ENTRIES, Py_ssize_t ring_bytes=RING_MAX_BYTES,
                 Py_ssize_t read_bytes=PULL_READ_BYTES):
        self.key = key
        self.ring = StreamRing(key, ring_entries, ring_bytes)
        self.waiting = {}
        self.followers = set()
        self.read_count = max(1, read_count)
        self.read_bytes = read_bytes
        self.counters = counters if counters is not None else Counters()

    def prime(self, list newest):
        """Start the ring from the stream's newest entry (a list of 0 or 1 entries)."""
        self.ring.prime(newest)
        self.started = True
        self.wake()

    cdef inline Py_ssize_t next_read_count(self) noexcept:
        return self.ring.entries_within(self.read_bytes, self.read_count)

    cdef inline bytes after(self):
        return entry_id_bytes(self.ring.last_ms, self.ring.last_seq)

    def read(self, StreamReader reader):
        """Queue a read of what the stream got after the ring's newest entry on
        ``reader`` (the caller flushes it); with a read already out, read once more
        when it is back. False when nothing was queued."""
        return self.request_read(reader)

    cdef bint request_read(self, StreamReader reader) except -1:
        if self.closed or not self.started:
            return False
        if self.reader is not None:
            self.read_again = True
            return False
        return self._read(reader)

    cdef bint _read(self, StreamReader reader) except -1:
        cdef Py_ssize_t count = self.next_read_count()
        if not reader.connected:
            return False
        self.reader = reader
        self.read_again = False
        # The request's slot keeps the COUNT asked for: a full reply means read on.
        reader.send_read(SHAPE_XREAD, [self.key], self, count,
                         streams_after([self.key], [self.after()], count, -1))
        self.counters.feed_reads += 1
        return True

    cdef int request_done(self, RedisRequest request) except -1:
        cdef object reply = request.reply
        cdef StreamReader reader = self.reader
        cdef list entries
        self.reader = None
        if self.closed:
            return 0
        if is_retryable(reply):
            # A cluster moves the stream's slot (or is down): read again a little later.
            if self.on_read_failed is not None:
                self.on_read_failed(self, str(reply))
            return 0
        if type(reply) is ReplyError:
            self.fail(f"Redis refused to read {self.key.sid!r}: {reply}")
            return 0
        entries = <list>(<list>reply)[0]
        if entries:
            self.take(entries)
        # More may be there: a full read, or a change noticed meanwhile.
        if self.read_again or len(entries) >= request.slot:
            if self._read(reader):
                reader.flush()
        return 0

    cdef int request_failed(self, RedisRequest request, str reason) except -1:
        self.reader = None
        if not self.closed and self.on_read_failed is not None:
            self.on_read_failed(self, reason)
        return 0

    cdef int request_error(self, RedisRequest request, object error) except -1:
        # Not one socket's fault (those are caught where it is woken): the feed cannot go on.
        self.fail("internal error in the pull feed")
        return 0

    cdef int take(self, list entries) except -1:
        """Entries read after the ring's newest; those it has already (two reads
        that crossed) are skipped."""
        cdef StreamEntry first = <StreamEntry>entries[0]
        cdef Py_ssize_t skip = 0
        if not id_less(self.ring.last_ms, self.ring.last_seq, first.ms, first.seq):
            while skip < len(entries) and not id_less(
                    self.ring.last_ms, self.ring.last_seq,
                    (<StreamEntry>entries[skip]).ms, (<StreamEntry>entries[skip]).seq):
                skip += 1
            if skip == len(entries):
                return 0
            entries = entries[skip:]
        self.ring.extend(entries)
        self.received += len(entries)
        self.counters.feed_entries += len(entries)
        self.wake()
        return 0

    cdef int wake(self) except -1:
        cdef FeedFollower follower
        if not self.waiting:
            return 0
        waiting = list(self.waiting)
        self.waiting = {}
        for follower in waiting:
            follower.is_waiting = False
        for follower in waiting:
            # One socket's failure closes that socket; the others still get woken.
            try:
                follower.entries_arrived()
            except Exception:
                _pull_log.exception("a pull socket failed when woken by its feed")
        return 0

    cdef int wait(self, FeedFollower follower) except -1:
        """``follower`` waits for the next entries."""
        follower.is_waiting = True
        self.waiting[follower] = None
        return 0

    cdef int forget(self, FeedFollower follower) except -1:
        """A socket that went away stops waiting (a silent stream would keep it)."""
        self.waiting.pop(follower, None)
        return 0

    def fail(self, str reason):
        """Close every socket of the feed (1011) and stop."""
        cdef FeedFollower follower
        self.closed = True
        self.waiting = {}
        for follower in list(self.followers):
            follower.feed_failed(reason)

    def close(self):
        self.closed = True
        self.waiting = {}


@cython.final
cdef class HotReader(RedisOwner):
    """The busiest streams of one node, read with one blocking XREAD over all of
    them on a connection of its own: for a stream taking thousands of entries a
    second, a notification per entry would cost more than the read. Issued
    again after every reply, at least every HOT_BLOCK_MS, so that streams join
    and leave the set (``feeds``) at once."""

    cdef public list feeds              # PullFeed: the set, as of the next XREAD
    cdef StreamReader reader
    cdef bint reading
    cdef Counters counters
    cdef public object on_issued        # callable(feeds): the set an XREAD went out with

    def __init__(self, Counters counters=None):
        self.feeds = []
        self.counters = counters if counters is not None else Counters()

    def serve(self, StreamReader reader):
        """Read on ``reader`` (connected; None: it went away)."""
        self.reader = reader
        self.reading = False
        self.issue()

    def issue(self):
        """Send the next XREAD, unless one is out or there is nothing to read."""
        cdef PullFeed feed
        cdef list feeds = [feed for feed in self.feeds if feed.started and not feed.closed]
        cdef Py_ssize_t count = FEED_READ_COUNT
        if self.reading or self.reader is None or not self.reader.connected or not feeds:
            return
        for feed in feeds:
            count = min(count, feed.next_read_count())
        request = self.reader.send_read(
            SHAPE_XREAD, [feed.key for feed in feeds], self, 0,
            streams_after([feed.key for feed in feeds], [feed.after() for feed in feeds],
                          count, HOT_BLOCK_MS))
        request.tag = feeds
        self.reading = True
        self.counters.feed_reads += 1
        self.reader.flush()
        if self.on_issued is not None:
            self.on_issued(feeds)

    cdef int request_done(self, RedisRequest request) except -1:
        cdef list feeds = <list>request.tag
        cdef object reply = request.reply
        cdef Py_ssize_t i
        self.reading = False
        if type(reply) is ReplyError:
            _pull_log.error("Redis refused the busy streams' read: %s", reply)
        else:
            for i in range(len(feeds)):
                entries = (<list>reply)[i]
                if entries and not (<PullFeed>feeds[i]).closed:
                    (<PullFeed>feeds[i]).take(<list>entries)
        self.issue()
        return 0

    cdef int request_failed(self, RedisRequest request, str reason) except -1:
        self.reading = False   # the link reconnects and serves again
        return 0


def read_feeds(list feeds, StreamReader reader):
    """Queue a read of each of ``feeds`` (PullFeed) on ``reader`` and write them
    together; returns how many were queued."""
    cdef PullFeed feed
    cdef Py_ssize_t queued = 0
    for feed in feeds:
        if feed.request_read(reader):
            queued += 1
    if queued:
        reader.flush()
    return queued
