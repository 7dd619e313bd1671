# The producer side of a WebSocket: /data/{sid}/push.
#
# Every complete message becomes XADD commands framed straight from picows'
# read buffer into the ingest connection of each entry's key (io/shards.pxi);
# payloads of at least the writer's threshold are passed by reference and so
# written before on_ws_frame returns (picows reuses its buffer afterwards).
# A message is acked when Redis confirmed every entry of it, on whichever
# connections they went; acks leave in the order the messages came.
#
# Uses: common.pxi, counters.pxi, sansio/entry_id.pxi, sansio/ws_frame.pxi, io/close_log.pxi,
#       sansio/header_scanner.pxi, sansio/batch_header.pxi, io/redis_connection.pxi,
#       io/shards.pxi


cdef enum HandleResult:
    HANDLED = 0
    NEEDS_MAXLEN = 1     # a stream whose max_len is not known yet: wait for it
    NEEDS_DRAIN = 2      # the slot map changed: wait until what is in flight is stored

cdef bytes _COMMA = b","
cdef double CLOSE_GRACE_SECONDS = 2.0
cdef double CLOSE_ACK_TIMEOUT_SECONDS = 10.0
# Parsed headers take up to 4x their text in C arrays.
cdef Py_ssize_t MAX_HEADER_BYTES = 8 * 1024 * 1024
cdef Py_ssize_t DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
# A "*" socket holds at most this many streams in the max_len cache; past it a
# stream it names may be forgotten by a refresh and read again on its next use.
cdef Py_ssize_t MAX_HELD_STREAMS = 10000


@cython.final
cdef class PushOptions:
    """A producer socket's settings: where its entries go (``route``), batch mode,
    acks, how batch headers give offsets, and the largest message it may send."""

    cdef readonly BatchRoute route
    cdef readonly bint batch
    cdef readonly bint ack
    cdef OffsetsMode offsets_mode
    cdef readonly Py_ssize_t max_message_size
    cdef readonly str lacks_ms_any_seq  # why Redis cannot take "ms-*" ids, or None
    cdef readonly bint wait_fsync       # acks wait for Redis' append-only file on disk
    cdef readonly int wait_replicas     # ... and for this many replicas

    def __init__(self, BatchRoute route, *, bint batch=False, bint ack=False, str offsets="auto",
                 Py_ssize_t max_message_size=DEFAULT_MAX_MESSAGE_SIZE, str lacks_ms_any_seq=None,
                 bint wait_fsync=False, int wait_replicas=0):
        self.route = route
        # Several streams in the path need a header to say which entry goes where.
        self.batch = batch or route._mode != ROUTE_SINGLE
        self.ack = ack
        self.offsets_mode = offsets_mode_from_name(offsets)
        self.max_message_size = max_message_size
        self.lacks_ms_any_seq = lacks_ms_any_seq
        if wait_replicas < 0:
            raise ValueError("wait_replicas must not be negative")
        self.wait_fsync = wait_fsync
        self.wait_replicas = wait_replicas

    @property
    def offsets(self):
        return ("auto", "start", "end")[self.offsets_mode]

    @property
    def durable(self):
        """Whether acks wait for more than Redis' reply."""
        return self.wait_fsync or self.wait_replicas > 0


@cython.final
@cython.freelist(64)
@cython.no_gc
cdef class PushMessage:
    """A producer message in flight (in single mode, the messages of one read
    pass, one entry each): one part per connection it went to.

    Nothing it holds refers back to it (a request refers to its message, not
    the other way round), so it stays out of the cyclic GC."""

    cdef Py_ssize_t parts_left
    cdef list part_replies          # each part's replies, by the part's request slot
    cdef Py_ssize_t entries
    cdef Py_ssize_t stored          # entries Redis confirmed, in the parts answered
    cdef Py_ssize_t nbytes
    cdef double arrived_at          # monotonic seconds, for the push-to-ack latency
    cdef bint done
    cdef object error               # the first error reply of any part
    cdef str failure                # a part's connection was lost
    # With several parts: which part stored each entry, to put the ids in order.
    cdef BatchHeader header
    cdef list part_of_key

    cdef list entry_ids(self):
        """The ids Redis gave the entries, in entry order."""
        cdef list ids, taken, replies
        cdef Py_ssize_t i, k
        if len(self.part_replies) == 1:
            return self.part_replies[0]
        ids = []
        taken = [0] * len(self.part_replies)
        for i in range(self.entries):
            k = self.part_of_key[self.header.key_index(i)]
            replies = <list>self.part_replies[k]
            ids.append(replies[taken[k]])
            taken[k] += 1
        return ids


@cython.final
cdef class _PushOwner(RedisOwner):
    """Routes the Redis outcomes of a producer socket's requests back to it (None
    once the socket is gone and nothing of it is in flight: no cycle remains)."""

    cdef PushSession session

    cdef int request_done(self, RedisRequest request) except -1:
        if self.session is not None:
            self.session.part_done(<PushMessage>request.tag, request, None)
        return 0

    cdef int request_failed(self, RedisRequest request, str reason) except -1:
        if self.session is not None:
            self.session.part_done(<PushMessage>request.tag, request, reason)
        return 0

    cdef int request_error(self, RedisRequest request, object error) except -1:
        # Handling the outcome failed (already logged): this socket cannot go on.
        if self.session is not None:
            self.session.close(CLOSE_INTERNAL_ERROR, "internal error")
        return 0

    cdef int replies_done(self) except -1:
        if self.session is not None:
            self.session.send_acks()
        return 0

    cdef int set_held(self, bint held) except -1:
        # Each connection holds and releases on its own: pause while any holds.
        if self.session is not None:
            self.session.holds += 1 if held else -1
            if self.session.holds == 0:
                self.session.replay_if_ready()
            self.session.update_reading()
        return 0


cdef class PushSession(WSListener):
    """One producer socket: its messages become entries in Redis, acked in order."""

    cdef PushOptions options
    cdef BatchRoute route
    cdef bint batch_mode
    cdef bint ack
    cdef bint durable
    cdef bytes single_key
    cdef Shards shards
    cdef Counters counters
    cdef dict maxlens                # stream key -> MAXLEN: maxlen_cache.values
    cdef object maxlen_cache         # loaded(keys), hold(keys), release(keys)
    cdef set held_keys               # what it holds ("*": the streams its headers named)
    cdef _PushOwner owner
    cdef WSTransport transport
    cdef bytes header                # batch mode: the header waiting for its blob
    cdef bytearray fragments         # a fragmented message being reassembled
    cdef WSMsgType fragments_type
    cdef list backlog                # messages (type, bytes, arrival time) held while max_len loads
    cdef double replaying_arrived_at # while a held message is replayed: when it arrived
    cdef bint waiting                # for max_len metadata
    cdef bint draining               # for the messages in flight (the slot map changed)
    cdef uint64_t sent_with_map      # the shard map's version the messages in flight went by
    cdef Py_ssize_t holds            # connections that asked to stop reading (Redis is behind)
    cdef bint reading_paused
    cdef bint client_closed          # the client sent its close frame first
    cdef object waiting_for          # the future of the max_len read waited for
    cdef object in_flight            # deque[PushMessage], in the order they came (None before the first)
    cdef int close_code              # non-zero once the session decided to close
    cdef str close_reason
    cdef bytearray ack_frames        # acks waiting for the end of this read of replies
    cdef Py_ssize_t acks_queued      # how many

    def __init__(self, PushOptions options, Shards shards, maxlens, Counters counters):
        """``maxlens`` has ``values`` (stream key -> MAXLEN) and ``loaded(keys)``,
        a future done once they are filled in (engine.maxlen.MaxLenCache)."""
        self.options = options
        self.route = options.route
        self.batch_mode = options.batch
        self.ack = options.ack
        self.durable = options.durable
        self.single_key = self.route._keys[0] if self.route._mode == ROUTE_SINGLE else None
        self.shards = shards
        self.counters = counters
        self.maxlens = maxlens.values
        self.maxlen_cache = maxlens
        self.held_keys = set()
        self.owner = _PushOwner.__new__(_PushOwner)
        self.owner.session = self
        self.backlog = []
        self.in_flight = None  # made by the first message: 0.6 KiB an idle socket does without

    # -- picows callbacks ----------------------------------------------

    cpdef on_ws_connected(self, WSTransport transport):
        self.transport = transport
        self.counters.socket_opened(True)
        if self.route._mode != ROUTE_ANY:
            self._hold_keys(list(self.route._keys))
        if self.single_key is not None and self.single_key not in self.maxlens:
            self._wait_for_maxlens([self.single_key])
        elif self.route._mode == ROUTE_LISTED:
            missing = [key for key in self.route._keys if key not in self.maxlens]
            if missing:
                self._wait_for_maxlens(missing)

    cpdef on_ws_disconnected(self, WSTransport transport):
        self.counters.push_sockets -= 1
        if self.held_keys:
            self.maxlen_cache.release(list(self.held_keys))
            self.held_keys = set()
        self.backlog = []
        self.fragments = None
        self.header = None
        self._let_go_if_done()
        if self.waiting_for is not None:
            # Not cancelled: other sockets may be waiting for the same read.
            self.waiting_for.remove_done_callback(self._on_maxlens_loaded)
            self.waiting_for = None

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        try:
            self._on_frame(frame)
        finally:
            # One write per read pass; at once when a chunk points into picows'
            # buffer, which is reused after this callback.
            self.shards.flush_framed(frame.last_in_buffer)

    cdef int _on_frame(self, WSFrame frame) except -1:
        cdef WSMsgType msg_type = frame.msg_type
        # Nothing after a close is taken: ours, or picows' for a protocol error.
        if self.close_code != 0 or self.transport.is_close_frame_sent:
            if msg_type == WSMsgType.CLOSE and self.transport.is_close_frame_sent:
                self.transport.disconnect()
            return 0
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            self.close(CLOSE_PROTOCOL_ERROR, "reserved bits set, but no extension was negotiated")
            return 0
        if msg_type == WSMsgType.CLOSE:
            if self.waiting or self.backlog:
                # Messages before the close still get stored: answer it after them.
                self._hold(msg_type, frame.get_payload_as_bytes())
            else:
                self._answer_close(frame.get_payload_as_bytes())
            return 0
        if msg_type == WSMsgType.PING or msg_type == WSMsgType.PONG:
            return 0
        if msg_type == WSMsgType.CONTINUATION or not frame.fin:
            self._on_fragment(frame)
            return 0
        if frame.payload_size > self.options.max_message_size:
            # picows refuses such frames too, but only after delivering them.
            self.close(CLOSE_MESSAGE_TOO_BIG,
                       f"message larger than the limit of {self.options.max_message_size} bytes")
            return 0
        if self.fragments is not None:
            self.close(CLOSE_PROTOCOL_ERROR, "a new message began inside a fragmented one")
            return 0
        self.counters.push_messages += 1
        if self.waiting or self.backlog:
            self._hold(msg_type, frame.get_payload_as_bytes())
            return 0
        self._handle(msg_type, frame.payload_ptr, frame.payload_size, None, frame)
        return 0

    # -- messages ---------------------------------------------------------

    cdef int _on_fragment(self, WSFrame frame) except -1:
        if frame.msg_type != WSMsgType.CONTINUATION:
            if self.fragments is not None:
                self.close(CLOSE_PROTOCOL_ERROR, "a new message began inside a fragmented one")
                return 0
            self.fragments = bytearray()
            self.fragments_type = frame.msg_type
        elif self.fragments is None:
            self.close(CLOSE_PROTOCOL_ERROR, "continuation frame without a first frame")
            return 0
        if len(self.fragments) + frame.payload_size > self.options.max_message_size:
            self.close(CLOSE_MESSAGE_TOO_BIG,
                       f"message larger than the limit of {self.options.max_message_size} bytes")
            return 0
        self.fragments += frame.get_payload_as_memoryview()
        if not frame.fin:
            return 0
        message = bytes(self.fragments)
        self.fragments = None
        self.counters.push_messages += 1
        if self.waiting or self.backlog:
            self._hold(self.fragments_type, message)
        else:
            self._handle(self.fragments_type, message, len(message), message, None)
        return 0

    cdef HandleResult _handle(self, WSMsgType msg_type, const char* data, Py_ssize_t size,
                              object owner, WSFrame frame) except *:
        """One complete message. ``owner`` is a stable object holding ``data``
        (bytes), or None when ``data`` lives in ``frame``'s read buffer."""
        if not self.batch_mode:
            return self._store_single(data, size, owner, frame)
        if msg_type == WSMsgType.TEXT:
            if self.header is not None:
                self.close(CLOSE_INVALID_DATA, "expected the binary batch after its header, got another header")
                return HANDLED
            if size > MAX_HEADER_BYTES:
                self.close(CLOSE_MESSAGE_TOO_BIG, f"batch header larger than {MAX_HEADER_BYTES} bytes")
                return HANDLED
            self.header = data[:size]
            return HANDLED
        if self.header is None:
            self.close(CLOSE_INVALID_DATA, "binary message with no header before it (batch mode)")
            return HANDLED
        return self._store_batch(data, size, owner, frame)

    cdef HandleResult _store_single(self, const char* data, Py_ssize_t size, object owner,
                                    WSFrame frame) except *:
        cdef RedisPipe pipe
        cdef RedisRequest request
        cdef PushMessage message
        maxlen = self.maxlens.get(self.single_key)
        if maxlen is None:
            self._hold(WSMsgType.BINARY, data[:size])
            self._wait_for_maxlens([self.single_key])
            return NEEDS_MAXLEN
        if self._must_drain():
            self._hold(WSMsgType.BINARY, data[:size])
            return NEEDS_DRAIN
        pipe = self.shards.pipe_for(self.single_key, self.durable)
        if pipe is None:
            self.close(CLOSE_INTERNAL_ERROR, "Redis is unavailable")
            return HANDLED
        if owner is None and size >= pipe.writer.by_reference_threshold:
            owner = frame.get_payload_as_memoryview()
        # Messages of one read pass share a request: one record and one callback.
        request = pipe.open_request(self.owner, self.ack, True)
        if request.expected == 0:
            message = self._new_message(1)
            request.tag = message
            request.wait_local = self.options.wait_fsync
            request.wait_replicas = self.options.wait_replicas
        else:
            message = <PushMessage>request.tag
        pipe.xadd(request, self.single_key, len(self.single_key), b"*", 1, maxlen,
                  data, size, owner, 0)
        message.entries += 1
        message.nbytes += size
        self.shards.framed_into(pipe)
        if pipe.overloaded:
            pipe.hold(self.owner)
        return HANDLED

    cdef HandleResult _store_batch(self, const char* blob, Py_ssize_t size, object owner,
                                   WSFrame frame) except *:
        cdef BatchHeader parsed
        cdef PushMessage message
        cdef RedisPipe pipe
        cdef RedisRequest request
        cdef Py_ssize_t i, k, start, end, id_length, key_count
        cdef bytes key
        cdef char entry_id[MAX_ENTRY_ID_BYTES]
        cdef list keys, pipes, requests, parts, part_pipes, part_of_key
        cdef Py_ssize_t* maxlen_of_key
        try:
            parsed = parse_batch_header_c(self.header, len(self.header), size,
                                          self.options.offsets_mode, self.route)
        except BatchHeaderError as error:
            self.close(error.close_code, error.reason)
            return HANDLED
        reason = parsed.first_decreasing_id()
        if reason is not None:
            self.close(CLOSE_INVALID_DATA, reason)
            return HANDLED
        if self.options.lacks_ms_any_seq is not None and parsed.asks_for(ID_MS_ANY_SEQ):
            # The server's limit, not the client's mistake: 1011, not 1007.
            self.close(CLOSE_INTERNAL_ERROR, self.options.lacks_ms_any_seq)
            return HANDLED
        keys = parsed._keys
        key_count = len(keys)
        if self.route._mode == ROUTE_ANY and len(self.held_keys) < MAX_HELD_STREAMS:
            # "*": the streams are the headers' to name; each one is held from its first.
            new_keys = [key for key in keys if key not in self.held_keys]
            if new_keys:
                self._hold_keys(new_keys[:MAX_HELD_STREAMS - len(self.held_keys)])
        missing = [key for key in keys if key not in self.maxlens]
        if missing:
            self._hold(WSMsgType.TEXT, self.header)
            self.header = None
            self._hold(WSMsgType.BINARY, blob[:size])
            self._wait_for_maxlens(missing)
            return NEEDS_MAXLEN
        if self._must_drain():
            self._hold(WSMsgType.TEXT, self.header)
            self.header = None
            self._hold(WSMsgType.BINARY, blob[:size])
            return NEEDS_DRAIN
        # Each stream's connection, checked before anything is framed.
        pipes = [self.shards.pipe_for(key, self.durable) for key in keys]
        if None in pipes:
            self.close(CLOSE_INTERNAL_ERROR, "Redis is unavailable")
            return HANDLED
        if owner is None and size >= (<RedisPipe>pipes[0]).writer.by_reference_threshold:
            owner = frame.get_payload_as_memoryview()
        # One request per connection (one ack per message): requests[k] of keys[k].
        parts = []
        part_pipes = []
        part_of_key = []
        requests = []
        for k in range(key_count):
            pipe = <RedisPipe>pipes[k]
            request = pipe.open_request(self.owner, self.ack, True)
            if request not in parts:
                request.slot = len(parts)
                request.wait_local = self.options.wait_fsync
                request.wait_replicas = self.options.wait_replicas
                parts.append(request)
                part_pipes.append(pipe)
            requests.append(request)
            part_of_key.append(request.slot)
        message = self._new_message(len(parts))
        for request in parts:
            request.tag = message
        if len(parts) > 1 or self.counters.streams is not None:
            message.header = parsed
            message.part_of_key = part_of_key
        maxlen_of_key = <Py_ssize_t*>PyMem_Malloc(key_count * sizeof(Py_ssize_t))
        if maxlen_of_key == NULL:
            raise MemoryError()
        try:
            for k in range(key_count):
                maxlen_of_key[k] = self.maxlens[keys[k]]
            for i in range(parsed.count):
                start = parsed.entry_start(i)
                end = parsed.entry_end(i)
                k = parsed.key_index(i)
                key = <bytes>keys[k]
                id_length = parsed.write_entry_id(i, entry_id)
                # Counted per command: a failure mid-loop leaves no command unowned.
                (<RedisPipe>pipes[k]).xadd(<RedisRequest>requests[k], key, len(key), entry_id, id_length,
                                           maxlen_of_key[k], blob + start, end - start, owner, start)
                message.nbytes += end - start
            message.entries = parsed.count
        finally:
            PyMem_Free(maxlen_of_key)
        self.header = None
        for pipe in part_pipes:
            pipe.end_request()
            self.shards.framed_into(pipe)
            if pipe.overloaded:
                pipe.hold(self.owner)
        return HANDLED

    cdef bint _must_drain(self) except -1:
        """Whether the next message must wait for those in flight: the cluster's
        slot map changed since they were sent, so it may go to another node than
        they did and be stored before them (or before their resends)."""
        if self.shards.version == self.sent_with_map:
            return False
        if self.in_flight:
            self.draining = True
            self.update_reading()
            return True
        self.sent_with_map = self.shards.version
        return False

    cdef int _hold_keys(self, list keys) except -1:
        self.held_keys.update(keys)
        self.maxlen_cache.hold(keys)
        return 0

    cdef PushMessage _new_message(self, Py_ssize_t parts):
        cdef PushMessage message = PushMessage.__new__(PushMessage)
        message.parts_left = parts
        message.part_replies = [None] * parts
        if self.ack:
            # A message replayed from the backlog arrived when it was held.
            message.arrived_at = self.replaying_arrived_at or monotonic()
        if self.in_flight is None:
            self.in_flight = deque()
        self.in_flight.append(message)
        return message

    # -- reading the socket ------------------------------------------------

    cdef int update_reading(self) except -1:
        """Read the socket only when nothing asks to pause: Redis behind, stream
        metadata loading, or a close waiting for its acks. One place decides,
        so no reason to pause is lifted by another one ending."""
        cdef bint pause
        if self.transport is None or self.transport.is_disconnected:
            return 0
        pause = self.holds > 0 or self.waiting or self.draining or (
            self.close_code != 0 and not self.transport.is_close_frame_sent)
        if pause != self.reading_paused:
            self.reading_paused = pause
            if pause:
                self.transport.underlying_transport.pause_reading()
            else:
                self.transport.underlying_transport.resume_reading()
        return 0

    # -- Redis replies (through _PushOwner) -------------------------------

    cdef int part_done(self, PushMessage message, RedisRequest part, str failure) except -1:
        """A part of ``message`` was answered (or lost, with ``failure``)."""
        if failure is not None:
            if message.failure is None:
                message.failure = failure
        else:
            message.part_replies[part.slot] = part.replies
            message.stored += part.expected - part.errors
            if part.error is not None and message.error is None:
                message.error = part.error
        message.parts_left -= 1
        if message.parts_left > 0:
            return 0
        message.done = True
        # Messages finish in the order they came, whichever connection answers first.
        while self.in_flight and (<PushMessage>self.in_flight[0]).done:
            self._finish(<PushMessage>self.in_flight.popleft())
        if self.draining and not self.in_flight:
            self.draining = False
            self.replay_if_ready()
            self.update_reading()
        self._maybe_finish_close()
        self._let_go_if_done()
        return 0

    cdef int _let_go_if_done(self) except -1:
        """Once the socket is gone and nothing of it is in flight, its owner lets go
        of it (the owner may still be queued for a read's replies_done)."""
        if not self.in_flight and (self.transport is None or self.transport.is_disconnected):
            self.owner.session = None
        return 0

    cdef int _finish(self, PushMessage message) except -1:
        # What Redis stored is counted, refused or not (it has no rollback).
        self.counters.push_entries += message.stored
        if message.failure is not None:
            self.close(CLOSE_INTERNAL_ERROR, message.failure)
            return 0
        if message.error is not None:
            if self.ack and not self.batch_mode:
                # Single messages framed together: ack those stored before the refusal.
                for entry_id in message.part_replies[0]:
                    if type(entry_id) is ReplyError:
                        break
                    self._queue_ack(entry_id)
            reason = str(message.error)
            code = CLOSE_INVALID_DATA if "ID" in reason else CLOSE_INTERNAL_ERROR
            self.close(code, f"Redis refused an entry: {reason}")
            return 0
        # Messages sent before a refused one are stored: they are acked too.
        self.counters.push_bytes += message.nbytes
        if self.counters.streams is not None:
            self._tally(message)
        if self.ack:
            if self.batch_mode:
                self._queue_ack(_COMMA.join(message.entry_ids()))
            else:
                for entry_id in message.part_replies[0]:
                    self._queue_ack(entry_id)
            # Written in this same turn (send_acks, after this read of replies).
            self.counters.count_ack_latency(monotonic() - message.arrived_at,
                                            message.entries if not self.batch_mode else 1)
        return 0

    cdef int _tally(self, PushMessage message) except -1:
        """Per-stream counts of a stored message (only with --metrics-streams)."""
        cdef StreamTally tally = self.counters.streams
        cdef BatchHeader header = message.header
        cdef Py_ssize_t i
        if header is None:
            tally.add(self.single_key, message.entries, message.nbytes)
            return 0
        for i in range(header.count):
            tally.add(header._keys[header.key_index(i)], 1, header.entry_end(i) - header.entry_start(i))
        return 0

    cdef int _queue_ack(self, bytes text) except -1:
        if self.ack_frames is None:
            self.ack_frames = bytearray()
        append_text_frame(self.ack_frames, text)
        self.acks_queued += 1
        return 0

    cdef int send_acks(self) except -1:
        frames, self.ack_frames = self.ack_frames, None
        if frames and not self.transport.is_disconnected and not self.transport.is_close_frame_sent:
            # The transport may keep the buffer queued: a fresh one is used next time.
            self.transport.underlying_transport.write(frames)
            self.counters.push_acks += self.acks_queued
        self.acks_queued = 0
        return 0

    # -- waiting for max_len ----------------------------------------------

    cdef int _hold(self, WSMsgType msg_type, bytes payload) except -1:
        # A message held again while it is replayed keeps its first arrival.
        self.backlog.append((msg_type, payload, self.replaying_arrived_at or monotonic()))
        return 0

    cdef int _wait_for_maxlens(self, list keys) except -1:
        if self.waiting:
            return 0
        self.waiting = True
        self.update_reading()
        # A callback, not a task per socket: a crowd of new producers made as many
        # tasks, whose registry table stayed at its peak size (1 MiB for 9,000).
        self.waiting_for = self.maxlen_cache.loaded(keys)
        self.waiting_for.add_done_callback(self._on_maxlens_loaded)
        return 0

    def _on_maxlens_loaded(self, future):
        if future is not self.waiting_for:
            return  # done in the turn the socket went away, after it went
        self.waiting_for = None
        self.waiting = False
        if future.cancelled() or isinstance(future.exception(), asyncio.CancelledError):
            # The engine is stopping.
            self.close(CLOSE_INTERNAL_ERROR, "cannot read stream metadata: the read was cancelled")
            return
        error = future.exception()
        if error is not None:  # Redis down or refusing: nothing was written
            self.close(CLOSE_INTERNAL_ERROR, f"cannot read stream metadata: {error}")
            return
        self.replay_if_ready()
        self.update_reading()

    cdef int replay_if_ready(self) except -1:
        """Replay the held messages once nothing holds them: metadata loaded, the
        messages of an older slot map stored, and no connection holding this
        socket (a command of it being resent, or Redis behind), so none of them
        can be stored before one sent earlier."""
        if self.backlog and not self.waiting and not self.draining and self.holds == 0 and self.close_code == 0:
            self._replay()
        return 0

    cdef int _replay(self) except -1:
        cdef WSMsgType msg_type
        cdef bytes payload
        cdef HandleResult handled
        backlog, self.backlog = self.backlog, []
        for position, (msg_type, payload, arrived_at) in enumerate(backlog):
            if self.close_code != 0:
                break  # what was framed before the refusal must still be written
            if msg_type == WSMsgType.CLOSE:
                self._answer_close(payload)
                break
            self.replaying_arrived_at = arrived_at
            try:
                handled = self._handle(msg_type, payload, len(payload), payload, None)
            finally:
                self.replaying_arrived_at = 0.0
            if handled != HANDLED:
                # _handle put this message back on the backlog: keep the rest after it.
                self.backlog.extend(backlog[position + 1:])
                break
        self.shards.flush_framed(True)
        return 0

    # -- closing ----------------------------------------------------------

    cdef int _answer_close(self, bytes close_payload) except -1:
        """The client closed: echo its close code (RFC 6455 5.5.1) once the acks
        of what it sent before are out (1002 for a code no peer may send)."""
        cdef int code = answer_to_close(close_payload, len(close_payload))
        self.client_closed = True
        if code == 0:
            self.close(CLOSE_PROTOCOL_ERROR, "invalid close code")
        else:
            self.close(code, "")
        return 0

    cpdef close(self, int code, str reason, double ack_timeout=CLOSE_ACK_TIMEOUT_SECONDS):
        """Stop taking messages; close once every message already sent is confirmed
        (its ack is sent first), so the client knows exactly what was stored.
        Redis normally confirms within milliseconds: after ``ack_timeout`` seconds
        the socket closes 1011 without the acks still missing."""
        if self.close_code != 0:
            return
        self.close_code = code
        self.close_reason = reason
        self.backlog = []
        self.update_reading()
        if self.in_flight:
            asyncio.get_running_loop().call_later(ack_timeout, self._give_up_on_acks)
        self._maybe_finish_close()

    def _give_up_on_acks(self):
        if self.transport.is_disconnected or self.transport.is_close_frame_sent:
            return
        self.send_acks()
        self._send_close(CLOSE_INTERNAL_ERROR, "Redis did not confirm in time")
        self.transport.disconnect()

    cdef int _send_close(self, int code, str reason) except -1:
        self.counters.count_close(code)
        log_close("push", code, reason, self.transport, self.options.route._keys)
        self.transport.send_close(<WSCloseCode>code, fit_close_reason(reason))
        return 0

    cdef int _maybe_finish_close(self) except -1:
        if (self.close_code == 0 or self.in_flight or self.transport.is_disconnected
                or self.transport.is_close_frame_sent):
            return 0
        self.send_acks()  # the acks go out before the close frame
        self._send_close(self.close_code, self.close_reason)
        if self.client_closed:
            self.transport.disconnect()  # the closing handshake is complete
            return 0
        # Hanging up at once would reset a client that is still sending, and
        # it would never read the close frame: read on (discarding) until its
        # own close frame arrives, for a short while.
        self.update_reading()
        asyncio.get_running_loop().call_later(CLOSE_GRACE_SECONDS, (<object>self.transport).disconnect)
        return 0
