# The producer side of a WebSocket: /data/{sid}/push.
#
# Every complete message becomes XADD commands framed straight from picows'
# read buffer into the shared RedisPipe; payloads of at least the writer's
# threshold are passed by reference and so written before on_ws_frame
# returns (picows reuses its buffer afterwards). Acks are sent when Redis
# confirmed every entry of the message, in order.

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from picows.picows cimport WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

cdef enum HandleResult:
    HANDLED = 0
    NEEDS_MAXLEN = 1     # a stream whose max_len is not known yet: wait for it

cdef bytes _COMMA = b","
cdef double CLOSE_GRACE_SECONDS = 2.0
cdef double CLOSE_ACK_TIMEOUT_SECONDS = 10.0
cdef Py_ssize_t PUSH_FLUSH_BYTES = 256 * 1024
cdef Py_ssize_t MAX_HEADER_BYTES = 8 * 1024 * 1024


cdef str _decreasing_entry_id(BatchHeader parsed):
    """Why Redis would refuse part of this batch, if its explicit entry ids do
    not increase within a stream; None otherwise. Checked before framing, so
    a refused batch writes nothing (ids at or below what a stream already
    holds can only be refused by Redis, after the earlier entries)."""
    cdef Py_ssize_t i, key
    cdef EntryId* entry_id
    cdef dict last = {}
    if parsed._entry_ids == NULL:
        return None
    for i in range(parsed.count):
        entry_id = &parsed._entry_ids[i]
        if entry_id.kind == ENTRY_ID_SERVER_TIME:
            continue
        key = parsed.key_index(i)
        previous = last.get(key)
        exact = entry_id.kind == ENTRY_ID_EXACT
        if previous is not None:
            previous_ms, previous_seq, previous_exact = previous
            if exact and previous_exact:
                refused = (entry_id.ms, entry_id.seq) <= (previous_ms, previous_seq)
            else:
                # "ms-*" takes the next sequence of that millisecond: only a smaller ms fails.
                refused = entry_id.ms < previous_ms
            if refused:
                return f"entry {i}: entry ids must increase within a stream"
        last[key] = (entry_id.ms, entry_id.seq, exact)
    return None


cdef class PushSession(WSListener):
    """One producer socket. ``link.pipe`` is the current RedisPipe (None while
    Redis is down); ``maxlens`` maps stream keys to their MAXLEN and
    ``load_maxlens(keys)`` is a coroutine function that fills it in."""

    cdef object link
    cdef dict maxlens
    cdef object load_maxlens
    cdef BatchRoute route
    cdef bytes single_key
    cdef bint batch_mode
    cdef bint ack
    cdef OffsetsMode offsets_mode
    cdef Py_ssize_t max_message_size
    cdef WSTransport transport
    cdef bytes header                # batch mode: the header waiting for its blob
    cdef bytearray fragments         # a fragmented message being reassembled
    cdef WSMsgType fragments_type
    cdef list backlog                # messages (type, bytes) held while max_len loads
    cdef bint waiting                # for max_len metadata
    cdef bint held                   # by RedisPipe: Redis is behind
    cdef bint reading_paused
    cdef bint client_closed          # the client sent its close frame first
    cdef object waiting_task
    cdef Py_ssize_t in_flight        # batches sent and not yet confirmed
    cdef int close_code              # non-zero once the session decided to close
    cdef str close_reason
    cdef bytearray ack_frames        # acks waiting for the end of this read of replies
    cdef readonly Py_ssize_t entries_stored
    cdef readonly Py_ssize_t bytes_stored

    def __init__(self, link, dict maxlens, load_maxlens, BatchRoute route, bint batch_mode,
                 bint ack, str offsets, Py_ssize_t max_message_size):
        self.link = link
        self.maxlens = maxlens
        self.load_maxlens = load_maxlens
        self.route = route
        self.batch_mode = batch_mode or route._mode != ROUTE_SINGLE
        self.single_key = route._keys[0] if route._mode == ROUTE_SINGLE else None
        self.ack = ack
        self.offsets_mode = offsets_mode_from_name(offsets)
        self.max_message_size = max_message_size
        self.backlog = []

    # -- picows callbacks ----------------------------------------------

    cpdef on_ws_connected(self, WSTransport transport):
        self.transport = transport
        if self.single_key is not None and self.single_key not in self.maxlens:
            self._wait_for_maxlens([self.single_key])
        elif self.route._mode == ROUTE_LISTED:
            missing = [key for key in self.route._keys if key not in self.maxlens]
            if missing:
                self._wait_for_maxlens(missing)

    cpdef on_ws_disconnected(self, WSTransport transport):
        self.backlog = []
        self.fragments = None
        if self.waiting_task is not None:
            self.waiting_task.cancel()
            self.waiting_task = None

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef RedisPipe pipe
        self._on_frame(frame)
        # One write per read pass (or per PUSH_FLUSH_BYTES, so the buffer never
        # has to grow); at once when a chunk points into picows' buffer, which
        # is reused after this callback.
        pipe = self.link.pipe
        if pipe is not None and (frame.last_in_buffer or pipe.writer.has_references()
                                 or pipe.writer.pending() >= PUSH_FLUSH_BYTES):
            pipe.flush()

    cdef int _on_frame(self, WSFrame frame) except -1:
        cdef WSMsgType msg_type = frame.msg_type
        if self.close_code != 0:
            if msg_type == WSMsgType.CLOSE and self.transport.is_close_frame_sent:
                self.transport.disconnect()
            return 0
        if msg_type == WSMsgType.CLOSE:
            if self.waiting or self.backlog:
                # Messages before the close still get stored: answer it after them.
                self.backlog.append((msg_type, frame.get_payload_as_bytes()))
            else:
                self._answer_close(frame.get_payload_as_bytes())
            return 0
        if msg_type == WSMsgType.PING or msg_type == WSMsgType.PONG:
            return 0
        if msg_type == WSMsgType.CONTINUATION or not frame.fin:
            self._on_fragment(frame)
            return 0
        if frame.payload_size > self.max_message_size:
            # picows refuses such frames too, but only after delivering them.
            self.close(WSCloseCode.MESSAGE_TOO_BIG,
                       f"message larger than the limit of {self.max_message_size} bytes")
            return 0
        if self.fragments is not None:
            self.close(WSCloseCode.PROTOCOL_ERROR, "a new message began inside a fragmented one")
            return 0
        if self.waiting or self.backlog:
            self.backlog.append((msg_type, frame.get_payload_as_bytes()))
            return 0
        self._handle(msg_type, frame.payload_ptr, frame.payload_size, None, frame)
        return 0

    # -- messages ---------------------------------------------------------

    cdef int _on_fragment(self, WSFrame frame) except -1:
        if frame.msg_type != WSMsgType.CONTINUATION:
            if self.fragments is not None:
                self.close(WSCloseCode.PROTOCOL_ERROR, "a new message began inside a fragmented one")
                return 0
            self.fragments = bytearray()
            self.fragments_type = frame.msg_type
        elif self.fragments is None:
            self.close(WSCloseCode.PROTOCOL_ERROR, "continuation frame without a first frame")
            return 0
        if len(self.fragments) + frame.payload_size > self.max_message_size:
            self.close(WSCloseCode.MESSAGE_TOO_BIG,
                       f"message larger than the limit of {self.max_message_size} bytes")
            return 0
        self.fragments += frame.get_payload_as_memoryview()
        if not frame.fin:
            return 0
        message = bytes(self.fragments)
        self.fragments = None
        if self.waiting or self.backlog:
            self.backlog.append((self.fragments_type, message))
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
                # Parsed headers take up to 4x their text in C arrays.
                self.close(WSCloseCode.MESSAGE_TOO_BIG, f"batch header larger than {MAX_HEADER_BYTES} bytes")
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
        cdef PendingBatch batch
        maxlen = self.maxlens.get(self.single_key)
        if maxlen is None:
            self._hold(WSMsgType.BINARY, data[:size])
            self._wait_for_maxlens([self.single_key])
            return NEEDS_MAXLEN
        pipe = self._pipe()
        if pipe is None:
            return HANDLED
        if owner is None and size >= pipe.writer.by_reference_threshold:
            owner = frame.get_payload_as_memoryview()
        # Messages of one read pass share a batch: one record and one callback.
        batch = pipe.batch_for(self, self.ack, True)
        if batch.expected == 0:
            self.in_flight += 1
        pipe.writer.append_xadd(self.single_key, len(self.single_key), b"*", 1, maxlen,
                                data, size, owner, 0)
        pipe.add(batch, 1, size)
        self._hold_if_overloaded(pipe)
        return HANDLED

    cdef HandleResult _store_batch(self, const char* blob, Py_ssize_t size, object owner,
                                   WSFrame frame) except *:
        cdef RedisPipe pipe
        cdef PendingBatch batch
        cdef BatchHeader parsed
        cdef Py_ssize_t i, start, end, id_length, key_count
        cdef bytes key
        cdef char entry_id[MAX_ENTRY_ID_BYTES]
        cdef list keys
        cdef Py_ssize_t* maxlen_of_key
        try:
            parsed = parse_batch_header_c(self.header, len(self.header), size,
                                          self.offsets_mode, self.route)
        except BatchHeaderError as error:
            self.close(error.close_code, error.reason)
            return HANDLED
        keys = parsed._keys
        key_count = len(keys)
        reason = _decreasing_entry_id(parsed)
        if reason is not None:
            self.close(CLOSE_INVALID_DATA, reason)
            return HANDLED
        missing = [key for key in keys if key not in self.maxlens]
        if missing:
            self._hold(WSMsgType.TEXT, self.header)
            self.header = None
            self._hold(WSMsgType.BINARY, blob[:size])
            self._wait_for_maxlens(missing)
            return NEEDS_MAXLEN
        pipe = self._pipe()
        if pipe is None:
            return HANDLED
        if owner is None and size >= pipe.writer.by_reference_threshold:
            owner = frame.get_payload_as_memoryview()
        maxlen_of_key = <Py_ssize_t*>PyMem_Malloc(key_count * sizeof(Py_ssize_t))
        if maxlen_of_key == NULL:
            raise MemoryError()
        try:
            for i in range(key_count):
                maxlen_of_key[i] = self.maxlens[keys[i]]
            batch = pipe.batch_for(self, self.ack, False)  # one ack per batch message
            for i in range(parsed.count):
                start = parsed.entry_start(i)
                end = parsed.entry_end(i)
                key = <bytes>keys[parsed.key_index(i)]
                id_length = parsed.write_entry_id(i, entry_id)
                pipe.writer.append_xadd(key, len(key), entry_id, id_length,
                                        maxlen_of_key[parsed.key_index(i)],
                                        blob + start, end - start, owner, start)
                # Counted per command: a failure mid-loop leaves no command unowned.
                pipe.add(batch, 1, end - start)
            pipe.end_batch()
        finally:
            PyMem_Free(maxlen_of_key)
        self.header = None
        self.in_flight += 1
        self._hold_if_overloaded(pipe)
        return HANDLED

    cdef RedisPipe _pipe(self):
        pipe = self.link.pipe
        if pipe is None or not (<RedisPipe>pipe).connected:
            self.close(WSCloseCode.INTERNAL_ERROR, "Redis is unavailable")
            return None
        return <RedisPipe>pipe

    cdef int _hold_if_overloaded(self, RedisPipe pipe) except -1:
        if pipe.overloaded:
            pipe.hold_producer(self)
        return 0

    # -- reading the socket ------------------------------------------------

    def set_held(self, bint held):
        """Called by RedisPipe: stop reading while Redis catches up."""
        self.held = held
        self._update_reading()

    cdef int _update_reading(self) except -1:
        """Read the socket only when nothing asks to pause: Redis behind, stream
        metadata loading, or a close waiting for its acks. One place decides,
        so no reason to pause is lifted by another one ending."""
        cdef bint pause
        if self.transport is None or self.transport.is_disconnected:
            return 0
        pause = self.held or self.waiting or (
            self.close_code != 0 and not self.transport.is_close_frame_sent)
        if pause != self.reading_paused:
            self.reading_paused = pause
            if pause:
                self.transport.underlying_transport.pause_reading()
            else:
                self.transport.underlying_transport.resume_reading()
        return 0

    # -- Redis replies (called by RedisPipe) ----------------------------

    def batch_done(self, PendingBatch batch):
        self.in_flight -= 1
        if batch.error is not None:
            if self.ack and not self.batch_mode:
                # Single messages framed together: ack those stored before the refusal.
                for entry_id in batch.replies:
                    if isinstance(entry_id, ReplyError):
                        break
                    self._queue_ack(entry_id)
            message = str(batch.error)
            code = CLOSE_INVALID_DATA if "ID" in message else WSCloseCode.INTERNAL_ERROR
            self.close(code, f"Redis refused an entry: {message}")
        else:
            # Batches sent before a refused message are stored: ack them too.
            self.entries_stored += batch.expected
            self.bytes_stored += batch.nbytes
            if self.ack:
                if self.batch_mode:
                    self._queue_ack(_COMMA.join(batch.replies))
                else:
                    for entry_id in batch.replies:
                        self._queue_ack(entry_id)
        self._maybe_finish_close()

    def replies_done(self):
        self._send_acks()

    cdef int _queue_ack(self, bytes text) except -1:
        """Append one text message (an unmasked server frame) to the acks to send."""
        cdef Py_ssize_t size = len(text)
        if self.ack_frames is None:
            self.ack_frames = bytearray()
        if size < 126:
            self.ack_frames.append(0x81)
            self.ack_frames.append(size)
        elif size < 65536:
            self.ack_frames += b"\x81\x7e" + size.to_bytes(2, "big")
        else:
            self.ack_frames += b"\x81\x7f" + size.to_bytes(8, "big")
        self.ack_frames += text
        return 0

    cdef int _send_acks(self) except -1:
        frames, self.ack_frames = self.ack_frames, None
        if frames and not self.transport.is_disconnected and not self.transport.is_close_frame_sent:
            # The transport may keep the buffer queued: a fresh one is used next time.
            self.transport.underlying_transport.write(frames)
        return 0

    def batch_failed(self, PendingBatch batch, str reason):
        self.in_flight -= 1
        self.close(WSCloseCode.INTERNAL_ERROR, reason)
        self._maybe_finish_close()

    # -- waiting for max_len ----------------------------------------------

    cdef int _hold(self, WSMsgType msg_type, bytes payload) except -1:
        self.backlog.append((msg_type, payload))
        return 0

    cdef int _wait_for_maxlens(self, list keys) except -1:
        if self.waiting:
            return 0
        self.waiting = True
        self._update_reading()
        self.waiting_task = asyncio.get_running_loop().create_task(self._load_then_replay(keys))
        return 0

    async def _load_then_replay(self, list keys):
        try:
            await self.load_maxlens(keys)
        except Exception as error:  # Redis down or refusing: nothing was written
            self.waiting = False
            self.close(WSCloseCode.INTERNAL_ERROR, f"cannot read stream metadata: {error}")
            return
        self.waiting = False
        self.waiting_task = None
        self._replay()
        self._update_reading()

    cdef int _replay(self) except -1:
        cdef WSMsgType msg_type
        cdef bytes payload
        backlog, self.backlog = self.backlog, []
        for position, (msg_type, payload) in enumerate(backlog):
            if self.close_code != 0:
                break  # what was framed before the refusal must still be written
            if msg_type == WSMsgType.CLOSE:
                self._answer_close(payload)
                break
            if self._handle(msg_type, payload, len(payload), payload, None) == NEEDS_MAXLEN:
                # _handle put this message back on the backlog: keep the rest after it.
                self.backlog.extend(backlog[position + 1:])
                break
        if self.link.pipe is not None:
            (<RedisPipe>self.link.pipe).flush()
        return 0

    # -- closing ----------------------------------------------------------

    cdef int _answer_close(self, bytes close_payload) except -1:
        """The client closed: echo its close code (RFC 6455 5.5.1) once the acks
        of what it sent before are out."""
        cdef int code = WSCloseCode.OK
        if len(close_payload) >= 2:
            code = int.from_bytes(close_payload[:2], "big")
        self.client_closed = True
        self.close(code, "")
        return 0

    cpdef close(self, int code, str reason):
        """Stop taking messages; close once every batch already sent is confirmed
        (its ack is sent first), so the client knows exactly what was stored."""
        if self.close_code != 0:
            return
        self.close_code = code
        self.close_reason = reason
        self.backlog = []
        self._update_reading()
        if self.in_flight > 0:
            # Redis normally confirms within milliseconds; never wait forever.
            asyncio.get_running_loop().call_later(CLOSE_ACK_TIMEOUT_SECONDS, self._give_up_on_acks)
        self._maybe_finish_close()

    def _give_up_on_acks(self):
        if self.transport.is_disconnected or self.transport.is_close_frame_sent:
            return
        self._send_acks()
        self.transport.send_close(WSCloseCode.INTERNAL_ERROR, b"Redis did not confirm in time")
        self.transport.disconnect()

    cdef int _maybe_finish_close(self) except -1:
        if (self.close_code == 0 or self.in_flight > 0 or self.transport.is_disconnected
                or self.transport.is_close_frame_sent):
            return 0
        self._send_acks()  # the acks go out before the close frame
        self.transport.send_close(<WSCloseCode>self.close_code,
                                  self.close_reason.encode("utf-8")[:MAX_CLOSE_REASON_BYTES])
        if self.client_closed:
            self.transport.disconnect()  # the closing handshake is complete
            return 0
        # Hanging up at once would reset a client that is still sending, and
        # it would never read the close frame: read on (discarding) until its
        # own close frame arrives, for a short while.
        self._update_reading()
        asyncio.get_running_loop().call_later(CLOSE_GRACE_SECONDS, (<object>self.transport).disconnect)
        return 0
