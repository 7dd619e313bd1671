# The consumer side of a WebSocket: /data/{sid}/pull.
#
# Pull sockets of one process that follow the same set of streams share a
# PullFeed: one blocking XREAD on its own Redis connection, whose entries
# go into one StreamRing per stream. A socket is a cursor per stream over
# those rings, so its queue is bounded by the ring and costs nothing while
# it waits. A socket that falls behind the ring (or starts before it) reads
# from Redis on its own through the process's StreamReader, then rejoins.
#
# A step is written with one writev straight to the socket when the
# transport has nothing queued: the entries' `wire` bytes are sent as they
# are (a one-entry step, onebyone, header=0) or as payload slices after
# one small owned buffer (the step header and the binary frame header).

from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.ref cimport PyObject
from libc.errno cimport EINTR, errno
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.uio cimport iovec, writev

import logging

_pull_log = logging.getLogger("engine.pull")

cdef enum:
    # writev takes at most IOV_MAX (1024 on Linux) buffers per call.
    PULL_IOV_PER_WRITE = 1024

# A ring keeps at most this many entries and bytes per stream (at least one):
# a second of 1 KiB entries at 1000/s, or 8 frames of 1 MiB. Sockets further
# behind read from Redis; latest mode rarely needs more than `count`.
cdef Py_ssize_t RING_MAX_ENTRIES = 1024
cdef Py_ssize_t RING_MAX_BYTES = 8 * 1024 * 1024
# Entries per stream one XREAD of a feed returns at most.
cdef Py_ssize_t FEED_READ_COUNT = 512
# A socket catching up from Redis reads this many entries (or `count`) at once.
cdef Py_ssize_t PULL_CATCH_UP_ENTRIES = 256
# ... and fewer when entries are large: one read (a feed's XREAD, per stream, or
# a catch-up XRANGE) asks for about this many bytes at the ring's mean entry
# size, at least one entry. 1 MiB entries: 1 per read, not 256 or 512.
cdef Py_ssize_t PULL_READ_BYTES = 1024 * 1024
# Steps one socket sends in a row before it lets the loop run other work.
cdef Py_ssize_t PULL_STEPS_PER_TURN = 64
# Steps framed for one socket are written together up to this many bytes.
cdef Py_ssize_t PULL_COALESCE_BYTES = 256 * 1024
cdef uint64_t _UINT64_MAX = 0xFFFFFFFFFFFFFFFF

cdef enum CursorKind:
    CURSOR_ID = 0       # after (ms, seq)
    CURSOR_NOW = 1      # "$": after the newest entry the feed knows when the socket starts
    CURSOR_NEWEST = 2   # "*": begin with the newest `count` entries

cdef dict _CURSOR_KINDS = {"id": CURSOR_ID, "now": CURSOR_NOW, "newest": CURSOR_NEWEST}

cdef struct StreamCursor:
    uint64_t ms
    uint64_t seq
    Py_ssize_t pos          # ring position of the first entry after (ms, seq); -1: unknown
    CursorKind kind

cdef struct Selection:      # what one step takes from one stream
    Py_ssize_t start        # index into the ring's list or the pending list
    Py_ssize_t count
    bint from_pending


cdef inline double monotonic() noexcept nogil:
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec + now.tv_nsec * 1e-9


cdef bytes entry_id_text(uint64_t ms, uint64_t seq):
    cdef char text[MAX_ENTRY_ID_BYTES]
    cdef char* end = write_decimal(text, ms)
    end[0] = c'-'
    end = write_decimal(end + 1, seq)
    return PyBytes_FromStringAndSize(text, end - text)


@cython.final
cdef class StreamRing:
    """The recent entries of one stream of a feed, oldest first. Every entry with
    an id above the floor is in it; older ones were evicted or predate the feed.
    Positions are absolute: entry ``entries[i]`` is at ``base + i``."""

    cdef readonly StreamKey stream
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
                self.floor_ms, self.floor_seq = entry.ms - 1, _UINT64_MAX
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

    # -- Python API (tests, metrics) --------------------------------------

    def __len__(self):
        return len(self.entries)

    @property
    def floor(self):
        return (self.floor_ms, self.floor_seq)

    @property
    def last(self):
        return (self.last_ms, self.last_seq)


@cython.final
cdef class PullFeed(ReadOwner):
    """One blocking XREAD loop for the pull sockets of a process that follow one
    set of streams. The hub connects it (``serve``); replies fill the rings and
    wake the sockets waiting for entries."""

    cdef readonly tuple keys          # StreamKey, in the feed's order
    cdef readonly list rings
    cdef dict ring_by_key
    cdef list waiting                 # PullSession waiting for an entry
    cdef readonly set sessions
    cdef StreamReader reader
    cdef readonly bint started
    cdef readonly bint closed
    cdef readonly Py_ssize_t read_count     # entries per stream per XREAD at most
    cdef readonly Py_ssize_t read_bytes     # bytes per stream per XREAD, about
    cdef readonly Py_ssize_t replies
    cdef readonly Py_ssize_t entries_read

    def __init__(self, keys, Py_ssize_t read_count=FEED_READ_COUNT,
                 Py_ssize_t ring_entries=RING_MAX_ENTRIES, Py_ssize_t ring_bytes=RING_MAX_BYTES,
                 Py_ssize_t read_bytes=PULL_READ_BYTES):
        self.keys = tuple(keys)
        self.rings = [StreamRing(key, ring_entries, ring_bytes) for key in self.keys]
        self.ring_by_key = {(<StreamKey>key).key: ring for key, ring in zip(self.keys, self.rings)}
        self.waiting = []
        self.sessions = set()
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

    cdef Py_ssize_t _next_read_count(self) except -1:
        """COUNT applies to each stream: the stream of the largest entries sets it."""
        cdef StreamRing ring
        cdef Py_ssize_t count = self.read_count
        for ring in self.rings:
            count = ring.entries_within(self.read_bytes, count)
        return count

    cdef int _read_next(self) except -1:
        cdef StreamRing ring
        arguments = [b"XREAD", b"COUNT", self._next_read_count(), b"BLOCK", b"0", b"STREAMS"]
        for ring in self.rings:
            arguments.append(ring.stream.key)
        for ring in self.rings:
            arguments.append(entry_id_text(ring.last_ms, ring.last_seq))
        self.reader.send(SHAPE_XREAD, list(self.keys), self, 0, tuple(arguments))
        self.reader.flush()
        return 0

    cdef int on_reply(self, ReadRequest request, object reply) except -1:
        cdef Py_ssize_t i
        cdef list entries
        if self.closed:
            return 0
        if isinstance(reply, ReplyError):
            self.fail(f"Redis refused to read the streams: {reply}")
            return 0
        self.replies += 1
        for i in range(len(self.rings)):
            entries = <list>(<list>reply)[i]
            if entries:
                (<StreamRing>self.rings[i]).extend(entries)
                self.entries_read += len(entries)
        # Ask for the next entries before fanning these out: Redis works meanwhile.
        if self.reader is not None and self.reader.connected:
            self._read_next()
        self.wake()
        return 0

    cdef int wake(self) except -1:
        cdef PullSession session
        if not self.waiting:
            return 0
        waiting, self.waiting = self.waiting, []
        for session in waiting:
            session.is_waiting = False
        for session in waiting:
            # One socket's failure closes that socket; the others still get woken.
            try:
                session.advance()
            except Exception:
                session.fail_internally("while woken by its feed")
        return 0

    cdef int forget(self, PullSession session) except -1:
        """A socket that went away stops waiting (a silent stream would keep it)."""
        if session.is_waiting:
            session.is_waiting = False
            self.waiting.remove(session)
        return 0

    cdef int on_error(self, ReadRequest request, object error) except -1:
        # Not one socket's fault (those are caught in wake): the feed cannot go on.
        self.fail("internal error in the pull feed")
        return 0

    def fail(self, str reason):
        """Close every socket of the feed (1011) and stop."""
        cdef PullSession session
        self.closed = True
        self.waiting = []
        for session in list(self.sessions):
            session.close(WSCloseCode.INTERNAL_ERROR, reason)

    def close(self):
        self.closed = True
        self.waiting = []
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    @property
    def waiting_sessions(self):
        return len(self.waiting)

    @property
    def next_read_count(self):
        """The COUNT of the feed's next XREAD."""
        return self._next_read_count()


@cython.final
cdef class _CatchUp(ReadOwner):
    """Routes a socket's own Redis reads back to it."""

    cdef PullSession session

    cdef int on_reply(self, ReadRequest request, object reply) except -1:
        if self.session is not None:
            try:
                self.session.caught_up(request.slot, reply, request.tag is True)
            except Exception:
                # Only this socket fails; the process's reader and its other requests go on.
                self.session.fail_internally("while catching up")
        return 0

    cdef int on_lost(self, ReadRequest request, str reason) except -1:
        if self.session is not None:
            self.session.reads_in_flight -= 1
            self.session.close(WSCloseCode.INTERNAL_ERROR, reason)
        return 0


cdef class PullSession(WSListener):
    """One consumer socket. ``hub.attach(session, keys)`` returns its PullFeed and
    ``hub.detach(session, feed)`` lets it go; ``reads.reader`` is the process's
    StreamReader (None while Redis is down), used to catch up."""

    cdef object hub
    cdef object reads
    cdef list keys                  # StreamKey per stream of the path, in its order
    cdef list rings                 # StreamRing per stream of the path
    cdef PullFeed feed
    cdef _CatchUp catch_up
    cdef Py_ssize_t nstreams
    cdef StreamCursor* cursors
    cdef Selection* selection
    cdef list pending               # per stream: entries read from Redis, oldest first
    cdef Py_ssize_t count
    cdef bint latest
    cdef bint onebyone
    cdef bint header
    cdef bint ack
    cdef double timeout             # seconds without data before closing; 0: never
    cdef Py_ssize_t sync_index      # -1: no time sync
    cdef double min_interval        # seconds between steps
    cdef WSTransport transport
    cdef object underlying
    cdef object write_buffer_size
    cdef int fd                     # for direct writes; -1 when not allowed (TLS)
    cdef object loop
    cdef bint is_waiting            # in the feed's waiting list
    cdef bint write_paused
    cdef bint awaiting_ack
    cdef bint closing
    cdef bint turn_scheduled
    cdef Py_ssize_t reads_in_flight
    cdef object step_timer
    cdef object timeout_timer
    cdef double next_step_at
    cdef double last_data_at
    cdef char* scratch
    cdef Py_ssize_t scratch_capacity
    cdef Py_ssize_t scratch_used
    cdef iovec* iov                 # steps framed and not written yet
    cdef PyObject** iov_owner       # the bytes each iov points into; NULL: scratch
    cdef Py_ssize_t iov_count
    cdef Py_ssize_t iov_bytes
    cdef list iov_keep              # entries from `pending`: alive until written
    cdef Py_ssize_t iov_capacity
    cdef readonly Py_ssize_t steps_sent
    cdef readonly Py_ssize_t entries_sent
    cdef readonly Py_ssize_t bytes_sent
    cdef readonly Py_ssize_t redis_reads

    def __init__(self, hub, reads, list keys, list cursors, Py_ssize_t count, bint latest,
                 bint onebyone, bint header, bint ack, double timeout, Py_ssize_t sync_index,
                 double min_interval):
        cdef Py_ssize_t i
        if not keys or len(cursors) != len(keys):
            raise ValueError("one cursor per stream is needed")
        if count < 1:
            raise ValueError("count must be at least 1")
        self.hub = hub
        self.reads = reads
        self.keys = keys
        self.nstreams = len(keys)
        self.count = count
        self.latest = latest
        self.onebyone = onebyone
        self.header = header
        self.ack = ack
        self.timeout = timeout
        self.sync_index = sync_index
        self.min_interval = min_interval
        self.fd = -1
        self.pending = [[] for i in range(self.nstreams)]
        self.cursors = <StreamCursor*>PyMem_Malloc(self.nstreams * sizeof(StreamCursor))
        self.selection = <Selection*>PyMem_Malloc(self.nstreams * sizeof(Selection))
        if self.cursors == NULL or self.selection == NULL:
            raise MemoryError()
        for i in range(self.nstreams):
            kind, ms, seq = cursors[i]
            self.cursors[i].kind = <CursorKind>_CURSOR_KINDS[kind]
            self.cursors[i].ms = ms
            self.cursors[i].seq = seq
            self.cursors[i].pos = -1
        self.iov_keep = []
        self.catch_up = _CatchUp.__new__(_CatchUp)
        self.catch_up.session = self

    def __dealloc__(self):
        PyMem_Free(self.cursors)
        PyMem_Free(self.selection)
        PyMem_Free(self.scratch)
        PyMem_Free(self.iov)
        PyMem_Free(self.iov_owner)

    # -- picows callbacks ----------------------------------------------

    cpdef on_ws_connected(self, WSTransport transport):
        self.transport = transport
        self.underlying = transport.underlying_transport
        self.write_buffer_size = self.underlying.get_write_buffer_size
        if not transport.is_secure:
            sock = self.underlying.get_extra_info("socket")
            if sock is not None:
                self.fd = sock.fileno()
        self.loop = asyncio.get_running_loop()
        self.last_data_at = monotonic()
        self.feed = <PullFeed>self.hub.attach(self, self.keys)
        self.rings = [self.feed.ring((<StreamKey>key).key) for key in self.keys]
        self.advance()

    cpdef on_ws_disconnected(self, WSTransport transport):
        self.closing = True
        self._cancel_timers()
        self.pending = None
        self.catch_up.session = None
        if self.feed is not None:
            self.feed.forget(self)
            self.hub.detach(self, self.feed)

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef WSMsgType msg_type = frame.msg_type
        if msg_type == WSMsgType.CLOSE:
            self.closing = True
            self._cancel_timers()
            if frame.payload_size < 2:
                # No status code: answer 1000 (0 is no code at all, RFC 6455 §7.4).
                transport.send_close(WSCloseCode.OK, b"")
            else:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if msg_type == WSMsgType.PING or msg_type == WSMsgType.PONG:
            return
        # Any message (its last frame) acknowledges the step before it.
        if self.awaiting_ack and frame.fin:
            self.awaiting_ack = False
            self.advance()

    cpdef pause_writing(self):
        self.write_paused = True

    cpdef resume_writing(self):
        self.write_paused = False
        self.advance()

    # -- steps ------------------------------------------------------------

    cdef int advance(self) except -1:
        """Send steps while the socket may and entries are there; otherwise wait
        (for the feed, the client, a timer or a Redis read). Steps due together
        (a socket behind by several entries) leave in one writev."""
        try:
            self._advance()
        finally:
            if self.iov_count:
                self._flush()
        return 0

    cdef int _advance(self) except -1:
        cdef Py_ssize_t total, steps = 0
        cdef double now
        while True:
            if (self.closing or self.write_paused or self.awaiting_ack or self.is_waiting
                    or self.reads_in_flight or self.turn_scheduled or self.step_timer is not None):
                return 0
            if not self.feed.started:
                self._wait()
                return 0
            if self.min_interval > 0:
                now = monotonic()
                if now < self.next_step_at:
                    self.step_timer = self.loop.call_later(self.next_step_at - now, self._step_due)
                    return 0
            total = self._choose()
            if total < 0:
                return 0
            if total == 0:
                self._wait()
                return 0
            self._send_step(total)
            self._move_cursors()
            if self.iov_count >= PULL_IOV_PER_WRITE // 2 or self.iov_bytes >= PULL_COALESCE_BYTES:
                self._flush()
            now = monotonic()
            self.last_data_at = now
            if self.min_interval > 0:
                self.next_step_at = now + self.min_interval
            if self.ack:
                self.awaiting_ack = True
                return 0
            steps += 1
            if steps >= PULL_STEPS_PER_TURN:
                self.turn_scheduled = True
                self.loop.call_soon(self._next_turn)
                return 0

    def _next_turn(self):
        self.turn_scheduled = False
        self.advance()

    def _step_due(self):
        self.step_timer = None
        self.advance()

    cdef int _wait(self) except -1:
        self.is_waiting = True
        self.feed.waiting.append(self)
        if self.timeout > 0 and self.timeout_timer is None:
            self.timeout_timer = self.loop.call_later(
                max(0.0, self.last_data_at + self.timeout - monotonic()), self._timeout_due)
        return 0

    def _timeout_due(self):
        cdef double left
        self.timeout_timer = None
        if self.closing or not self.is_waiting:
            return  # data came; the next wait arms the timer again
        left = self.last_data_at + self.timeout - monotonic()
        if left > 0.0005:
            self.timeout_timer = self.loop.call_later(left, self._timeout_due)
            return
        self.close(WSCloseCode.OK, "timeout: no data")

    cdef Py_ssize_t _choose(self) except -2:
        """Fill `selection` for the next step: the number of entries, or -1 when
        Redis reads were started first."""
        cdef Py_ssize_t i, k, n, total = 0
        cdef bint newest, reading = False
        cdef StreamCursor* cursor
        cdef Selection* chosen
        cdef StreamRing ring
        cdef list pending
        for i in range(self.nstreams):
            cursor = &self.cursors[i]
            chosen = &self.selection[i]
            chosen.count = 0
            chosen.from_pending = False
            ring = <StreamRing>self.rings[i]
            if cursor.kind == CURSOR_NOW:
                cursor.ms, cursor.seq = ring.last_ms, ring.last_seq
                cursor.pos = ring.end()
                cursor.kind = CURSOR_ID
            newest = self.latest or cursor.kind == CURSOR_NEWEST
            pending = <list>self.pending[i]
            n = len(pending)
            if n:
                k = min(self.count, n)
                chosen.start = n - k if newest else 0
                chosen.count = k
                chosen.from_pending = True
                total += k
                continue
            if cursor.pos < ring.base:  # unknown, or evicted before this socket read it
                cursor.pos = ring.position_after(cursor.ms, cursor.seq) \
                    if ring.covers(cursor.ms, cursor.seq) else -1
            n = len(ring.entries)
            if cursor.pos >= 0:
                k = min(self.count, ring.end() - cursor.pos)
                chosen.start = (n - k) if newest else (cursor.pos - ring.base)
                if k == 0 and cursor.kind == CURSOR_NEWEST and not self.latest:
                    cursor.kind = CURSOR_ID  # "*" on an empty stream: everything from now on
            elif newest and n >= self.count:
                k = self.count
                chosen.start = n - k
            else:
                self._read_from_redis(i, newest)
                reading = True
                continue
            chosen.count = k
            total += k
        if reading:
            reader = self.reads.reader
            if reader is not None:
                (<StreamReader>reader).flush()
            return -1
        return total

    cdef int _read_from_redis(self, Py_ssize_t i, bint newest) except -1:
        cdef StreamCursor* cursor = &self.cursors[i]
        cdef StreamKey key = <StreamKey>self.keys[i]
        cdef ReadRequest request
        reader = self.reads.reader
        if reader is None or not (<StreamReader>reader).connected:
            self.close(WSCloseCode.INTERNAL_ERROR, "Redis is unavailable")
            return 0
        after = b"(" + entry_id_text(cursor.ms, cursor.seq)
        if newest:
            start = b"-" if cursor.kind == CURSOR_NEWEST else after
            arguments = (b"XREVRANGE", key.key, b"+", start, b"COUNT", self.count)
        else:
            arguments = (b"XRANGE", key.key, after, b"+", b"COUNT",
                         (<StreamRing>self.rings[i]).entries_within(
                             PULL_READ_BYTES, max(self.count, PULL_CATCH_UP_ENTRIES)))
        request = (<StreamReader>reader).send(SHAPE_RANGE, [key], self.catch_up, i, arguments)
        request.tag = newest
        self.reads_in_flight += 1
        self.redis_reads += 1
        return 0

    cdef int caught_up(self, Py_ssize_t i, object reply, bint newest_first) except -1:
        cdef StreamCursor* cursor
        cdef StreamRing ring
        cdef list entries
        self.reads_in_flight -= 1
        if self.closing:
            return 0
        if isinstance(reply, ReplyError):
            self.close(WSCloseCode.INTERNAL_ERROR, f"Redis refused to read {self.keys[i].sid!r}: {reply}")
            return 0
        entries = <list>reply
        cursor = &self.cursors[i]
        if newest_first:
            entries.reverse()
        if entries:
            self.pending[i] = entries
        else:
            # Nothing after the cursor in Redis: whatever the ring lacks is gone
            # (trimmed or deleted), so go on from the ring's floor.
            ring = <StreamRing>self.rings[i]
            if id_less(cursor.ms, cursor.seq, ring.floor_ms, ring.floor_seq):
                cursor.ms, cursor.seq = ring.floor_ms, ring.floor_seq
            cursor.pos = -1
            if cursor.kind == CURSOR_NEWEST:
                cursor.kind = CURSOR_ID
        if self.reads_in_flight == 0:
            self.advance()
        return 0

    cdef int _move_cursors(self) except -1:
        cdef Py_ssize_t i
        cdef StreamCursor* cursor
        cdef Selection* chosen
        cdef StreamRing ring
        cdef StreamEntry last, sync = None
        cdef list source
        for i in range(self.nstreams):
            chosen = &self.selection[i]
            if chosen.count == 0:
                continue
            cursor = &self.cursors[i]
            ring = <StreamRing>self.rings[i]
            source = <list>self.pending[i] if chosen.from_pending else ring.entries
            last = <StreamEntry>source[chosen.start + chosen.count - 1]
            cursor.ms, cursor.seq = last.ms, last.seq
            if chosen.from_pending:
                if self.latest or cursor.kind == CURSOR_NEWEST:
                    self.pending[i] = []
                else:
                    del source[:chosen.count]
                cursor.pos = -1
            else:
                cursor.pos = ring.base + chosen.start + chosen.count
            cursor.kind = CURSOR_ID
            if i == self.sync_index:
                sync = last
        if sync is not None:
            # time_sync_id: every stream goes on from the sync stream's last id.
            for i in range(self.nstreams):
                cursor = &self.cursors[i]
                cursor.ms, cursor.seq = sync.ms, sync.seq
                cursor.kind = CURSOR_ID
                cursor.pos = -1
                if i != self.sync_index:
                    self.pending[i] = []
        return 0

    # -- writing ----------------------------------------------------------

    cdef int _reserve_iov(self, Py_ssize_t n) except -1:
        cdef iovec* iov
        cdef PyObject** owners
        if n <= self.iov_capacity:
            return 0
        n = max(n, 2 * self.iov_capacity, 8)
        iov = <iovec*>PyMem_Realloc(self.iov, n * sizeof(iovec))
        if iov == NULL:
            raise MemoryError()
        self.iov = iov
        owners = <PyObject**>PyMem_Realloc(self.iov_owner, n * sizeof(PyObject*))
        if owners == NULL:
            raise MemoryError()
        self.iov_owner = owners
        self.iov_capacity = n
        return 0

    cdef int _reserve_scratch(self, Py_ssize_t n) except -1:
        cdef char* grown
        if n <= self.scratch_capacity:
            return 0
        n = max(n, 2 * self.scratch_capacity, 256)
        grown = <char*>PyMem_Realloc(self.scratch, n)
        if grown == NULL:
            raise MemoryError()
        self.scratch = grown
        self.scratch_capacity = n
        return 0

    cdef int _send_step(self, Py_ssize_t total) except -1:
        """Frame the selected entries after the steps already framed. Entries are
        referenced, not copied; a step header goes into `scratch`, whose iovs hold
        offsets until `_flush` (scratch may move when it grows)."""
        cdef Py_ssize_t i, j, n, skip, text_size = 2, payload_size = 0
        cdef Py_ssize_t head_size, offset = 0, header_iov = -1
        cdef Selection* chosen
        cdef StreamEntry entry
        cdef list source
        cdef bint whole_entries = self.onebyone or not self.header or total == 1
        cdef char* out = NULL
        cdef char* json_start = NULL
        self._reserve_iov(self.iov_count + total + 1)
        n = self.iov_count
        if not whole_entries:
            # The step header, then the binary frame header, in the scratch buffer.
            for i in range(self.nstreams):
                chosen = &self.selection[i]
                source = <list>self.pending[i] if chosen.from_pending else (<StreamRing>self.rings[i]).entries
                for j in range(chosen.start, chosen.start + chosen.count):
                    entry = <StreamEntry>source[j]
                    payload_size += entry.payload_size
                    text_size += PyBytes_GET_SIZE(entry.stream.json) + entry.id_size + MAX_DECIMAL_DIGITS + 7
            self._reserve_scratch(self.scratch_used + 2 * WS_MAX_FRAME_HEADER + text_size)
            json_start = out = self.scratch + self.scratch_used + WS_MAX_FRAME_HEADER
            out[0] = c'['
            out += 1
            header_iov = n
            n += 1
        for i in range(self.nstreams):
            chosen = &self.selection[i]
            source = <list>self.pending[i] if chosen.from_pending else (<StreamRing>self.rings[i]).entries
            for j in range(chosen.start, chosen.start + chosen.count):
                entry = <StreamEntry>source[j]
                if whole_entries:
                    skip = 0 if self.header else entry.head_size
                    self.iov[n].iov_base = PyBytes_AS_STRING(entry.wire) + skip
                    self.iov[n].iov_len = <size_t>(PyBytes_GET_SIZE(entry.wire) - skip)
                else:
                    out = _write_offset_item(out, entry, offset)
                    out[0] = c','
                    out += 1
                    offset += entry.payload_size
                    self.iov[n].iov_base = <void*>entry.payload_ptr()
                    self.iov[n].iov_len = <size_t>entry.payload_size
                self.iov_owner[n] = <PyObject*>entry.wire
                if chosen.from_pending:
                    # `pending` lets go of it before the flush; the ring keeps its own.
                    self.iov_keep.append(entry)
                self.iov_bytes += self.iov[n].iov_len
                n += 1
        if not whole_entries:
            (out - 1)[0] = c']'  # over the last comma
            text_size = out - json_start
            head_size = ws_header_size(text_size)
            write_ws_header(json_start - head_size, WS_FIN_TEXT, text_size)
            out = write_ws_header(out, WS_FIN_BINARY, payload_size)
            self.iov[header_iov].iov_base = <void*>(json_start - head_size - self.scratch)
            self.iov[header_iov].iov_len = <size_t>(out - (json_start - head_size))
            self.iov_owner[header_iov] = NULL
            self.iov_bytes += self.iov[header_iov].iov_len
            self.scratch_used = out - self.scratch
        self.iov_count = n
        self.steps_sent += 1
        self.entries_sent += total
        return 0

    cdef int _flush(self) except -1:
        """Write the steps framed so far."""
        cdef Py_ssize_t i, n = self.iov_count
        for i in range(n):
            if self.iov_owner[i] == NULL:
                self.iov[i].iov_base = self.scratch + <size_t>self.iov[i].iov_base
        self.bytes_sent += self.iov_bytes
        self.iov_count = 0
        self.iov_bytes = 0
        self.scratch_used = 0
        try:
            if not self.closing:
                self._write(n)
        finally:
            if self.iov_keep:
                self.iov_keep = []
        return 0

    cdef int _write(self, Py_ssize_t n) except -1:
        """Write iov[0:n]: straight to the socket when nothing is queued before it;
        whatever the kernel does not take goes to the transport, entries by reference."""
        cdef Py_ssize_t i = 0, batch_end
        cdef ssize_t written
        cdef iovec* part
        if self.fd >= 0 and self.write_buffer_size() == 0:
            while i < n:
                batch_end = min(n, i + PULL_IOV_PER_WRITE)
                written = writev(self.fd, self.iov + i, <int>(batch_end - i))
                if written < 0:
                    if errno == EINTR:
                        continue
                    break  # EAGAIN, or an error the transport will see and report
                while i < batch_end and written >= <ssize_t>self.iov[i].iov_len:
                    written -= self.iov[i].iov_len
                    i += 1
                if i < batch_end:  # the kernel took part of this batch only
                    part = &self.iov[i]
                    part.iov_base = <char*>part.iov_base + written
                    part.iov_len -= written
                    break
            if i == n:
                return 0
        rest = []
        for i in range(i, n):
            part = &self.iov[i]
            owner = self.iov_owner[i]
            if owner == NULL:
                rest.append(PyBytes_FromStringAndSize(<char*>part.iov_base, <Py_ssize_t>part.iov_len))
            else:
                start = <char*>part.iov_base - PyBytes_AS_STRING(<bytes>owner)
                rest.append(memoryview(<bytes>owner)[start:start + <Py_ssize_t>part.iov_len])
        self.underlying.writelines(rest)
        return 0

    # -- closing ----------------------------------------------------------

    cdef int _cancel_timers(self) except -1:
        if self.step_timer is not None:
            self.step_timer.cancel()
            self.step_timer = None
        if self.timeout_timer is not None:
            self.timeout_timer.cancel()
            self.timeout_timer = None
        return 0

    cdef int fail_internally(self, str where) except -1:
        """Log the exception being handled and close this socket only (1011).
        Called from an except clause."""
        _pull_log.exception("pull socket failed %s", where)
        try:
            self.close(WSCloseCode.INTERNAL_ERROR, "internal error")
        except Exception:
            _pull_log.exception("closing a failed pull socket failed")
        return 0

    cpdef close(self, int code, str reason):
        """Close the socket with ``code`` and ``reason`` (once)."""
        if self.closing or self.transport is None:
            return
        self.closing = True
        self._cancel_timers()
        if not self.transport.is_disconnected:
            self.transport.send_close(<WSCloseCode>code,
                                      reason.encode("utf-8")[:MAX_CLOSE_REASON_BYTES])
            self.transport.disconnect()

    # -- Python API (tests, metrics) --------------------------------------

    @property
    def cursor_ids(self):
        """The (ms, seq) after which each stream goes on, in the path's order."""
        return [(self.cursors[i].ms, self.cursors[i].seq) for i in range(self.nstreams)]
