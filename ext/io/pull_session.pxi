# The consumer side of a WebSocket: /data/{sid}/pull.
#
# A socket follows the PullFeed of each of its streams (io/pull_feed.pxi) as
# one cursor per stream over the feeds' rings, so its queue is bounded by the
# rings and costs nothing while it waits. A socket that falls behind a ring
# (or starts before it) reads from Redis on its own, through the read
# connection of the stream's node (``readers``: the shard map, io/shards.pxi),
# then rejoins.
#
# Steps are framed by StepFrames (the entries' ready frames by reference)
# and written with one writev straight to the socket when the transport has
# nothing queued.
#
# Uses: common.pxi, counters.pxi, sansio/decimal.pxi, sansio/entry_id.pxi, sansio/ws_frame.pxi, io/close_log.pxi,
#       sansio/stream_entry.pxi, sansio/reply_parser.pxi, sansio/stream_commands.pxi,
#       sansio/step_frames.pxi, io/vectored_write.pxi, io/redis_connection.pxi,
#       io/pull_feed.pxi


# A socket catching up from Redis reads this many entries (or `count`) at once,
# fewer when entries are large (PULL_READ_BYTES).
cdef Py_ssize_t PULL_CATCH_UP_ENTRIES = 256
# After a cluster's MOVED or ASK, a socket reads Redis again this much later
# (engine/redis/cluster.py reads the slot map again within 50 ms).
cdef double REDIRECT_RETRY_SECONDS = 0.1

# Steps one socket sends in a row before it lets the loop run other work.
cdef Py_ssize_t PULL_STEPS_PER_TURN = 64
# Steps framed for one socket are written together up to this many bytes.
cdef Py_ssize_t PULL_COALESCE_BYTES = 256 * 1024

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


@cython.final
cdef class PullOptions:
    """A consumer socket's settings (PROTOCOL.md, "WebSocket pull"): its streams,
    where each starts (``cursors``: ``("id", ms, seq)``, ``("now", 0, 0)`` for
    ``$`` or ``("newest", 0, 0)`` for ``*``) and how steps are made."""

    cdef readonly list keys             # StreamKey per stream of the path, in its order
    cdef readonly list cursors
    cdef readonly Py_ssize_t count      # entries per stream per step, at most
    cdef readonly bint latest           # skip to the newest entries
    cdef readonly bint onebyone         # one entry per step
    cdef readonly bint header           # a text header before each step's binary message
    cdef readonly bint ack              # wait for a message from the client after each step
    cdef readonly double timeout        # seconds without data before closing; 0: never
    cdef readonly Py_ssize_t sync_index # -1: no time sync
    cdef readonly double min_interval   # seconds between steps

    def __init__(self, list keys, list cursors, *, Py_ssize_t count=1, bint latest=True,
                 bint onebyone=False, bint header=True, bint ack=False, double timeout=0.0,
                 Py_ssize_t sync_index=-1, double min_interval=0.0):
        if not keys or len(cursors) != len(keys):
            raise ValueError("one cursor per stream is needed")
        if count < 1:
            raise ValueError("count must be at least 1")
        for kind, ms, seq in cursors:
            if kind not in _CURSOR_KINDS:
                raise ValueError(f"a cursor is 'id', 'now' or 'newest', not {kind!r}")
        self.keys = keys
        self.cursors = cursors
        self.count = count
        self.latest = latest
        self.onebyone = onebyone
        self.header = header
        self.ack = ack
        self.timeout = timeout
        self.sync_index = sync_index
        self.min_interval = min_interval


@cython.final
cdef class _PullHandle(FeedFollower):
    """A socket as its feed and its own Redis reads see it."""

    cdef PullSession session

    cdef int entries_arrived(self) except -1:
        if self.session is not None:
            try:
                self.session.advance()
            except Exception:
                self.session.fail_internally("while woken by its feed")
        return 0

    cdef int feed_failed(self, str reason) except -1:
        if self.session is not None:
            self.session.close(CLOSE_INTERNAL_ERROR, reason)
        return 0

    cdef int request_done(self, RedisRequest request) except -1:
        if self.session is not None:
            try:
                self.session.caught_up(request.slot, request.reply, request.tag is True)
            except Exception:
                # Only this socket fails; the read connection and its other requests go on.
                self.session.fail_internally("while catching up")
        return 0

    cdef int request_failed(self, RedisRequest request, str reason) except -1:
        if self.session is not None:
            self.session.reads_in_flight -= 1
            self.session.close(CLOSE_INTERNAL_ERROR, reason)
        return 0


cdef class PullSession(WSListener):
    """One consumer socket. ``hub.attach(follower, keys)`` returns the PullFeed of each
    of its streams and ``hub.detach(follower, feeds)`` lets them go (engine.ws.hub.PullHub);
    ``readers.reader_for_key(key)`` is the StreamReader of a stream (Shards)."""

    cdef PullOptions options
    cdef object hub
    cdef object readers             # reader_for_key(key): one call per catch-up read
    cdef Counters counters
    cdef list keys                  # StreamKey per stream of the path, in its order
    cdef list rings                 # StreamRing per stream of the path
    cdef list feeds                 # PullFeed per stream of the path
    cdef _PullHandle handle
    cdef Py_ssize_t nstreams
    cdef StreamCursor* cursors
    cdef Selection* selection
    cdef list pending               # per stream: entries read from Redis, oldest first
    cdef Py_ssize_t count
    cdef bint latest
    cdef WSTransport transport
    cdef object underlying
    cdef object write_buffer_size
    cdef int fd                     # for direct writes; -1 when not allowed (TLS)
    cdef object loop
    cdef bint write_paused
    cdef bint awaiting_ack
    cdef bint closing
    cdef bint turn_scheduled
    cdef Py_ssize_t reads_in_flight
    cdef object step_timer
    cdef object timeout_timer
    cdef double next_step_at
    cdef double last_data_at
    cdef StepFrames frames          # steps framed and not written yet

    def __init__(self, PullOptions options, hub, readers, Counters counters):
        cdef Py_ssize_t i
        self.options = options
        self.hub = hub
        self.readers = readers
        self.counters = counters
        self.keys = options.keys
        self.nstreams = len(self.keys)
        self.count = options.count
        self.latest = options.latest
        self.fd = -1
        self.pending = [[] for i in range(self.nstreams)]
        self.cursors = <StreamCursor*>PyMem_Malloc(self.nstreams * sizeof(StreamCursor))
        self.selection = <Selection*>PyMem_Malloc(self.nstreams * sizeof(Selection))
        if self.cursors == NULL or self.selection == NULL:
            raise MemoryError()
        for i in range(self.nstreams):
            kind, ms, seq = options.cursors[i]
            self.cursors[i].kind = <CursorKind>_CURSOR_KINDS[kind]
            self.cursors[i].ms = ms
            self.cursors[i].seq = seq
            self.cursors[i].pos = -1
        self.frames = StepFrames()
        self.handle = _PullHandle.__new__(_PullHandle)
        self.handle.session = self

    def __dealloc__(self):
        PyMem_Free(self.cursors)
        PyMem_Free(self.selection)

    # -- picows callbacks ----------------------------------------------

    cpdef on_ws_connected(self, WSTransport transport):
        self.transport = transport
        self.counters.socket_opened(False)
        self.underlying = transport.underlying_transport
        self.write_buffer_size = self.underlying.get_write_buffer_size
        if not transport.is_secure:
            sock = self.underlying.get_extra_info("socket")
            if sock is not None:
                self.fd = sock.fileno()
        self.loop = asyncio.get_running_loop()
        self.last_data_at = monotonic()
        self.feeds = list(self.hub.attach(self.handle, self.keys))
        self.rings = [(<PullFeed>feed).ring for feed in self.feeds]
        self.advance()

    cpdef on_ws_disconnected(self, WSTransport transport):
        self.counters.pull_sockets -= 1
        self.closing = True
        self._cancel_timers()
        self.pending = None
        self.handle.session = None
        if self.feeds is not None:
            for feed in self.feeds:
                (<PullFeed>feed).forget(self.handle)
            self.hub.detach(self.handle, self.feeds)

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef WSMsgType msg_type = frame.msg_type
        cdef int code
        if transport.is_close_frame_sent:
            if msg_type == WSMsgType.CLOSE:
                transport.disconnect()
            return
        if msg_type == WSMsgType.CLOSE:
            self.closing = True
            self._cancel_timers()
            # The client's code back (1000 when it gave none), or 1002 for one no peer may send.
            code = answer_to_close(frame.payload_ptr, frame.payload_size)
            if code == 0:
                self._send_close(CLOSE_PROTOCOL_ERROR, b"invalid close code")
            elif frame.payload_size < 2:
                self._send_close(code, b"")
            else:
                self._send_close(code, frame.get_close_message())
            transport.disconnect()
            return
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            self.close(CLOSE_PROTOCOL_ERROR, "reserved bits set, but no extension was negotiated")
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
            if self.frames.count:
                self._flush()
        return 0

    cdef int _advance(self) except -1:
        cdef Py_ssize_t total, steps = 0
        cdef double now
        cdef double min_interval = self.options.min_interval
        while True:
            if (self.closing or self.write_paused or self.awaiting_ack or self.handle.is_waiting
                    or self.reads_in_flight or self.turn_scheduled or self.step_timer is not None):
                return 0
            if not self._started():
                self._wait()
                return 0
            if min_interval > 0:
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
            self._frame_step(total)
            self._move_cursors()
            if self.frames.count >= IOV_PER_WRITE // 2 or self.frames.nbytes >= PULL_COALESCE_BYTES:
                self._flush()
            now = monotonic()
            self.last_data_at = now
            if min_interval > 0:
                self.next_step_at = now + min_interval
            if self.options.ack:
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

    def _read_again(self):
        if not self.closing:
            self.advance()

    def _step_due(self):
        self.step_timer = None
        self.advance()

    cdef bint _started(self) noexcept:
        cdef PullFeed feed
        for feed in self.feeds:
            if not feed.started:
                return False
        return True

    cdef int _wait(self) except -1:
        cdef PullFeed feed
        for feed in self.feeds:
            feed.wait(self.handle)
        if self.options.timeout > 0 and self.timeout_timer is None:
            self.timeout_timer = self.loop.call_later(
                max(0.0, self.last_data_at + self.options.timeout - monotonic()), self._timeout_due)
        return 0

    def _timeout_due(self):
        cdef double left
        self.timeout_timer = None
        if self.closing or not self.handle.is_waiting:
            return  # data came; the next wait arms the timer again
        left = self.last_data_at + self.options.timeout - monotonic()
        if left > 0.0005:
            self.timeout_timer = self.loop.call_later(left, self._timeout_due)
            return
        self.close(CLOSE_OK, "timeout: no data")

    cdef Py_ssize_t _choose(self) except -2:
        """Fill `selection` for the next step: the number of entries, or -1 when
        Redis reads were started first."""
        cdef Py_ssize_t i, k, n, total = 0
        cdef bint newest, reading = False
        cdef StreamCursor* cursor
        cdef Selection* chosen
        cdef StreamRing ring
        cdef list pending
        cdef list readers = []
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
                reader = self._read_from_redis(i, newest)
                if reader is None:
                    break  # closed: Redis is unavailable (what was queued still goes out)
                if reader not in readers:
                    readers.append(reader)
                reading = True
                continue
            chosen.count = k
            total += k
        for reader in readers:
            (<StreamReader>reader).flush()
        if reading or self.closing:
            return -1
        return total

    cdef StreamReader _read_from_redis(self, Py_ssize_t i, bint newest):
        """Read stream i's next entries (the newest, with ``newest``) from Redis;
        returns the reader to flush, or None when it is down (the socket closes)."""
        cdef StreamCursor* cursor = &self.cursors[i]
        cdef StreamKey key = <StreamKey>self.keys[i]
        cdef StreamReader reader = self.readers.reader_for_key(key.key)
        cdef RedisRequest request
        cdef tuple arguments
        if reader is None:
            self.close(CLOSE_INTERNAL_ERROR, "Redis is unavailable")
            return None
        if newest:
            arguments = newest_entries(key.key, self.count, cursor.kind != CURSOR_NEWEST,
                                       cursor.ms, cursor.seq)
        else:
            arguments = range_after(key.key, cursor.ms, cursor.seq,
                                    (<StreamRing>self.rings[i]).entries_within(
                                        PULL_READ_BYTES, max(self.count, PULL_CATCH_UP_ENTRIES)))
        request = reader.send_read(SHAPE_RANGE, [key], self.handle, i, arguments)
        request.tag = newest
        self.reads_in_flight += 1
        self.counters.pull_catch_up_reads += 1
        return reader

    cdef int caught_up(self, Py_ssize_t i, object reply, bint newest_first) except -1:
        cdef StreamCursor* cursor
        cdef StreamRing ring
        cdef list entries
        self.reads_in_flight -= 1
        if self.closing:
            return 0
        if is_retryable(reply):
            # A cluster moves the stream's slot (or is down): read again a little later.
            if self.reads_in_flight == 0:
                self.loop.call_later(REDIRECT_RETRY_SECONDS, self._read_again)
            return 0
        if type(reply) is ReplyError:
            self.close(CLOSE_INTERNAL_ERROR, f"Redis refused to read {self.keys[i].sid!r}: {reply}")
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
        cdef Py_ssize_t sync_index = self.options.sync_index
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
            if i == sync_index:
                sync = last
        if sync is not None:
            # time_sync_id: every stream goes on from the sync stream's last id.
            for i in range(self.nstreams):
                cursor = &self.cursors[i]
                cursor.ms, cursor.seq = sync.ms, sync.seq
                cursor.kind = CURSOR_ID
                cursor.pos = -1
                if i != sync_index:
                    self.pending[i] = []
        return 0

    # -- writing ----------------------------------------------------------

    cdef int _frame_step(self, Py_ssize_t total) except -1:
        """Frame the selected entries after the steps already framed: one entry's
        own frames, or a step header and the entries' payloads in one message."""
        cdef Py_ssize_t i, j, text_bound = 2, payload_size = 0, offset = 0
        cdef Selection* chosen
        cdef StreamEntry entry
        cdef list source
        cdef StepFrames frames = self.frames
        cdef bint whole_entries = self.options.onebyone or not self.options.header or total == 1
        cdef char* out = NULL
        frames.reserve(total)
        if not whole_entries:
            for i in range(self.nstreams):
                chosen = &self.selection[i]
                source = <list>self.pending[i] if chosen.from_pending else (<StreamRing>self.rings[i]).entries
                for j in range(chosen.start, chosen.start + chosen.count):
                    entry = <StreamEntry>source[j]
                    text_bound += PyBytes_GET_SIZE(entry.stream.json) + entry.id_size + MAX_DECIMAL_DIGITS + 7
            out = frames.open_step(text_bound)
            out[0] = c'['
            out += 1
        for i in range(self.nstreams):
            chosen = &self.selection[i]
            source = <list>self.pending[i] if chosen.from_pending else (<StreamRing>self.rings[i]).entries
            for j in range(chosen.start, chosen.start + chosen.count):
                entry = <StreamEntry>source[j]
                # `pending` lets go of its entries before the flush; the ring keeps its own.
                if whole_entries:
                    frames.add_entry(entry, self.options.header, chosen.from_pending)
                else:
                    out = write_offset_item(out, entry, offset)
                    out[0] = c','
                    out += 1
                    offset += entry.payload_size
                    payload_size += entry.payload_size
                    frames.add_payload(entry, chosen.from_pending)
        if not whole_entries:
            (out - 1)[0] = c']'  # over the last comma
            frames.close_step(out, payload_size)
        self.counters.pull_steps += 1
        self.counters.pull_entries += total
        return 0

    cdef int _flush(self) except -1:
        """Write the steps framed so far: straight to the socket when nothing is
        queued before them; what the kernel does not take goes to the transport,
        entries by reference."""
        cdef StepFrames frames = self.frames
        cdef Py_ssize_t written = 0
        cdef iovec* vectors = frames.vectors()
        try:
            if not self.closing:
                self.counters.pull_bytes += frames.nbytes
                if self.fd >= 0 and self.write_buffer_size() == 0:
                    written = write_vectors(self.fd, vectors, frames.count)
                if written < frames.nbytes:
                    self.underlying.writelines(frames.rest_after(written))
        finally:
            frames.reset()
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

    cdef int _send_close(self, int code, bytes reason) except -1:
        self.counters.count_close(code)
        log_close("pull", code, reason, self.transport, [(<StreamKey>key).key for key in self.keys])
        self.transport.send_close(<WSCloseCode>code, reason)
        return 0

    cdef int fail_internally(self, str where) except -1:
        """Log the exception being handled and close this socket only (1011).
        Called from an except clause."""
        _pull_log.exception("pull socket failed %s", where)
        try:
            self.close(CLOSE_INTERNAL_ERROR, "internal error")
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
            self._send_close(code, fit_close_reason(reason))
            self.transport.disconnect()
