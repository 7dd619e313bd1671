# A pull feed: per process, one blocking XREAD over a set of streams that
# pull sockets follow, its entries kept in one StreamRing per stream.
#
# The sockets following a feed are FeedFollowers: woken when entries arrive,
# told when the feed fails. A socket is a cursor per stream over the rings
# (io/pull_session.pxi), so the feed holds one copy of each entry however
# many sockets follow it. The hub (engine/ws/hub.py) connects, primes and
# reconnects feeds.
#
# Uses: common.pxi, sansio/entry_id.pxi, sansio/stream_entry.pxi, sansio/reply_parser.pxi,
#       sansio/stream_commands.pxi, io/redis_connection.pxi

_pull_log = logging.getLogger("engine.pull")

# A ring keeps at most this many entries and bytes per stream (at least one):
# a second of 1 KiB entries at 1000/s, or 8 frames of 1 MiB. Sockets further
# behind read from Redis; latest mode rarely needs more than `count`.
cdef Py_ssize_t RING_MAX_ENTRIES = 1024
cdef Py_ssize_t RING_MAX_BYTES = 8 * 1024 * 1024
# Entries per stream one XREAD of a feed returns at most.
cdef Py_ssize_t FEED_READ_COUNT = 512
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
    """A socket following a feed (and owning its own catch-up reads)."""

    cdef bint is_waiting                # in its feed's waiting list

    cdef int entries_arrived(self) except -1:
        """The feed has new entries (the follower was waiting for them)."""
        return 0

    cdef int feed_failed(self, str reason) except -1:
        """The feed cannot go on: the follower closes."""
        return 0


@cython.final
cdef class PullFeed(RedisOwner):
    """One blocking XREAD loop for the pull sockets of a process that follow one
    set of streams. The hub connects it (``serve``); replies fill the rings and
    wake the followers waiting for entries."""

    cdef readonly tuple keys          # StreamKey, in the feed's order
    cdef list rings
    cdef dict ring_by_key
    cdef list waiting                 # FeedFollower waiting for an entry
    cdef readonly set followers
    cdef StreamReader reader
    cdef readonly bint started
    cdef readonly bint closed
    cdef readonly Py_ssize_t read_count     # entries per stream per XREAD at most
    cdef Py_ssize_t read_bytes              # bytes per stream per XREAD, about

    def __init__(self, keys, Py_ssize_t read_count=FEED_READ_COUNT,
                 Py_ssize_t ring_entries=RING_MAX_ENTRIES, Py_ssize_t ring_bytes=RING_MAX_BYTES,
                 Py_ssize_t read_bytes=PULL_READ_BYTES):
        self.keys = tuple(keys)
        self.rings = [StreamRing(key, ring_entries, ring_bytes) for key in self.keys]
        self.ring_by_key = {(<StreamKey>key).key: ring for key, ring in zip(self.keys, self.rings)}
        self.waiting = []
        self.followers = set()
        self.read_count = max(1, read_count)
        self.read_bytes = read_bytes

    def ring(self, bytes key):
        return self.ring_by_key[key]

    def prime(self, list newest):
        """Start the rings from each stream's newest entry (a list of 0 or 1 entries each)."""
        cdef Py_ssize_t i
        for i in range(len(self.rings)):
            (<StreamRing>self.rings[i]).prime(newest[i])
        self.started = True
        self.wake()

    def serve(self, StreamReader reader):
        """Read on ``reader`` (connected) from now on."""
        self.reader = reader
        if not self.closed:
            self._read_next()

    def stop_serving(self):
        self.reader = None

    cdef Py_ssize_t next_read_count(self) except -1:
        """COUNT applies to each stream: the stream of the largest entries sets it."""
        cdef StreamRing ring
        cdef Py_ssize_t count = self.read_count
        for ring in self.rings:
            count = ring.entries_within(self.read_bytes, count)
        return count

    cdef int _read_next(self) except -1:
        cdef StreamRing ring
        cdef list after = [entry_id_bytes(ring.last_ms, ring.last_seq) for ring in self.rings]
        self.reader.send_read(SHAPE_XREAD, list(self.keys), self, 0,
                              blocking_read(list(self.keys), after, self.next_read_count()))
        self.reader.flush()
        return 0

    cdef int request_done(self, RedisRequest request) except -1:
        cdef Py_ssize_t i
        cdef list entries
        cdef object reply = request.reply
        if self.closed:
            return 0
        if type(reply) is ReplyError:
            self.fail(f"Redis refused to read the streams: {reply}")
            return 0
        for i in range(len(self.rings)):
            entries = <list>(<list>reply)[i]
            if entries:
                (<StreamRing>self.rings[i]).extend(entries)
        # Ask for the next entries before fanning these out: Redis works meanwhile.
        if self.reader is not None and self.reader.connected:
            self._read_next()
        self.wake()
        return 0

    cdef int request_error(self, RedisRequest request, object error) except -1:
        # Not one socket's fault (those are caught in wake): the feed cannot go on.
        self.fail("internal error in the pull feed")
        return 0

    cdef int wake(self) except -1:
        cdef FeedFollower follower
        if not self.waiting:
            return 0
        waiting, self.waiting = self.waiting, []
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
        if not follower.is_waiting:
            follower.is_waiting = True
            self.waiting.append(follower)
        return 0

    cdef int forget(self, FeedFollower follower) except -1:
        """A socket that went away stops waiting (a silent stream would keep it)."""
        if follower.is_waiting:
            follower.is_waiting = False
            self.waiting.remove(follower)
        return 0

    def fail(self, str reason):
        """Close every socket of the feed (1011) and stop."""
        cdef FeedFollower follower
        self.closed = True
        self.waiting = []
        for follower in list(self.followers):
            follower.feed_failed(reason)

    def close(self):
        self.closed = True
        self.waiting = []
        if self.reader is not None:
            self.reader.close()
            self.reader = None
