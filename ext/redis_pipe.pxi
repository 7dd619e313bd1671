# The ingest connection to Redis: pipelined commands out, hiredis-parsed
# replies in, each reply matched to the batch waiting for it (FIFO).
#
# Many producer sockets share one RedisPipe; Redis answers in order, so a
# deque of PendingBatch records (one per batch, not per entry) is enough to
# route every reply back.

import asyncio
import logging
import socket
from collections import deque

from hiredis import Reader, ReplyError

cdef Py_ssize_t PIPE_READ_BUFFER_BYTES = 256 * 1024
cdef int PIPE_SEND_BUFFER_BYTES = 4 * 1024 * 1024
# Payload bytes sent but not yet confirmed: above HIGH the producers are
# paused, below LOW they resume. Bounds the engine's memory under overload.
cdef Py_ssize_t PIPE_DEFAULT_HIGH_WATER = 8 * 1024 * 1024
cdef Py_ssize_t PIPE_DEFAULT_LOW_WATER = 2 * 1024 * 1024


_pipe_log = logging.getLogger("engine.redis")


class RedisUnavailable(ConnectionError):
    """The ingest connection to Redis is down (lost, or not connected yet)."""


@cython.final
@cython.freelist(64)
@cython.no_gc
cdef class PendingBatch:
    """Commands of one batch, sent together, awaiting their replies in order.

    ``owner.batch_done(batch)`` is called once every reply arrived (and
    ``owner.replies_done()`` after each read of replies), or
    ``owner.batch_failed(batch, reason)`` if the connection was lost first.
    An owner of None completes ``future`` instead (awaitable submissions).
    """

    cdef readonly object owner
    cdef readonly Py_ssize_t expected
    cdef readonly Py_ssize_t received
    cdef readonly list replies       # every reply, when the owner wants them; else None
    cdef readonly object error       # the first error reply (hiredis.ReplyError) or None
    cdef readonly Py_ssize_t nbytes  # payload bytes, for the in-flight bound
    cdef readonly object future
    cdef public object tag           # the owner's own bookkeeping

    def __repr__(self):
        return (f"<PendingBatch {self.received}/{self.expected} replies, "
                f"{self.nbytes} bytes, error={self.error!r}>")


cdef class _RedisPipeBase:
    pass


cdef class RedisPipe(_RedisPipeBase, asyncio.BufferedProtocol):
    """asyncio.BufferedProtocol for one pipelined Redis connection (TCP, unix or TLS).

    It derives from asyncio.BufferedProtocol because plain asyncio checks
    isinstance() to choose get_buffer/buffer_updated over data_received."""

    cdef object transport
    cdef object reader
    cdef bytearray read_buffer
    cdef object pending              # deque[PendingBatch]
    cdef PendingBatch open           # the batch being framed, not queued yet
    cdef list completed_owners       # owners whose batches completed in this read
    cdef readonly RespWriter writer
    cdef readonly bint connected
    cdef bint transport_paused       # the transport's own write buffer is full
    cdef readonly Py_ssize_t in_flight_bytes
    cdef readonly Py_ssize_t high_water
    cdef readonly Py_ssize_t low_water
    cdef readonly bint overloaded
    cdef set held_producers          # producers asked to stop reading
    cdef list drain_waiters          # futures of drained()
    cdef int fd                      # for direct vectored writes; -1 when not allowed
    cdef public object on_lost       # callable(reason: str) or None
    cdef object lost_reason

    def __init__(self, on_lost=None, Py_ssize_t high_water=PIPE_DEFAULT_HIGH_WATER,
                 Py_ssize_t low_water=PIPE_DEFAULT_LOW_WATER,
                 Py_ssize_t by_reference_threshold=RESP_DEFAULT_BY_REFERENCE_THRESHOLD):
        self.reader = Reader()
        self.read_buffer = bytearray(PIPE_READ_BUFFER_BYTES)
        self.pending = deque()
        self.completed_owners = []
        self.writer = RespWriter(by_reference_threshold)
        self.high_water = high_water
        self.low_water = low_water
        self.held_producers = set()
        self.drain_waiters = []
        self.fd = -1
        self.on_lost = on_lost

    # -- asyncio protocol ----------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.connected = True
        self.fd = -1
        sock = transport.get_extra_info("socket")
        # Direct writes go around the transport only when it has no TLS layer.
        if sock is not None and transport.get_extra_info("sslcontext") is None:
            self.fd = sock.fileno()
            # A send buffer that holds several large entries lets one writev
            # take a whole batch: no copy of the rest, no second write
            # (W3, 256 KiB entries: 14% of the engine was that copy). The
            # kernel caps it at net.core.wmem_max.
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PIPE_SEND_BUFFER_BYTES)
            except OSError:
                pass

    def connection_lost(self, exc):
        cdef PendingBatch batch
        reason = "Redis connection lost" + (f": {exc}" if exc else "")
        self.connected = False
        self.transport = None
        self.fd = -1
        self.lost_reason = reason
        self.end_batch()
        self.writer.reset()
        pending, self.pending = self.pending, deque()
        self.in_flight_bytes = 0
        self._resume_producers()
        for batch in pending:
            self._fail(batch, reason)
        if self.on_lost is not None:
            self.on_lost(reason)

    def get_buffer(self, Py_ssize_t size_hint):
        return self.read_buffer

    def buffer_updated(self, Py_ssize_t nbytes):
        self.reader.feed(self.read_buffer, 0, nbytes)
        self._drain_replies()

    def eof_received(self):
        return False

    def pause_writing(self):
        self.transport_paused = True
        self.overloaded = True

    def resume_writing(self):
        self.transport_paused = False
        self._update_overload()

    # -- replies --------------------------------------------------------

    cdef int _drain_replies(self) except -1:
        cdef PendingBatch batch
        reader_gets = self.reader.gets
        while True:
            reply = reader_gets()
            if reply is False:
                self._after_replies()
                return 0
            if not self.pending:
                # A reply nobody asked for means the stream is out of step: never
                # guess, and take nothing more until connection_lost has run.
                self.connected = False
                self.fd = -1
                self.transport.abort()
                return 0
            batch = <PendingBatch>self.pending[0]
            if isinstance(reply, ReplyError):
                if batch.error is None:
                    batch.error = reply
            if batch.replies is not None:
                batch.replies.append(reply)
            batch.received += 1
            if batch.received == batch.expected:
                self.pending.popleft()
                self.in_flight_bytes -= batch.nbytes
                if self.overloaded:
                    self._update_overload()
                self._complete(batch)

    cdef int _after_replies(self) except -1:
        # Owners write what their completed batches produced (acks) once per
        # read of replies: one syscall per socket, not one per batch.
        if not self.completed_owners:
            return 0
        owners, self.completed_owners = self.completed_owners, []
        for owner in owners:
            try:
                owner.replies_done()
            except Exception:
                _pipe_log.exception("error sending the replies of %r", owner)
        return 0

    cdef int _complete(self, PendingBatch batch) except -1:
        if batch.owner is not None:
            self.completed_owners.append(batch.owner)
            try:
                batch.owner.batch_done(batch)
            except Exception:
                # One socket's fault must not break the connection all share.
                _pipe_log.exception("error handling a Redis reply for %r", batch.owner)
        elif not batch.future.done():
            if batch.error is not None:
                batch.future.set_exception(batch.error)
            else:
                batch.future.set_result(batch.replies)
        return 0

    cdef int _fail(self, PendingBatch batch, str reason) except -1:
        if batch.owner is not None:
            try:
                batch.owner.batch_failed(batch, reason)
            except Exception:
                _pipe_log.exception("error failing a batch of %r", batch.owner)
        elif not batch.future.done():
            batch.future.set_exception(RedisUnavailable(reason))
        return 0

    # -- submissions ----------------------------------------------------

    cdef PendingBatch batch_for(self, object owner, bint want_replies, bint join):
        """The batch to frame the next commands into (with ``writer``, then ``add``).

        With ``join``, commands of one owner framed back to back share one
        batch (one record, one callback for a whole read pass of single
        messages). Any other call ends the open batch first, so batches are
        queued exactly in the order their commands were framed.
        """
        cdef PendingBatch batch = self.open
        if not self.connected:
            raise RedisUnavailable(self.lost_reason or "Redis is not connected")
        if batch is not None:
            if join and batch.owner is owner and (batch.replies is not None) == want_replies:
                return batch
            self.end_batch()
        batch = PendingBatch.__new__(PendingBatch)
        batch.owner = owner
        batch.replies = [] if want_replies else None
        self.open = batch
        return batch

    cdef int add(self, PendingBatch batch, Py_ssize_t commands, Py_ssize_t nbytes) except -1:
        """Count ``commands`` just framed into ``writer`` for the open ``batch``."""
        batch.expected += commands
        batch.nbytes += nbytes
        self.in_flight_bytes += nbytes
        if self.in_flight_bytes > self.high_water:
            self.overloaded = True
        return 0

    cdef int end_batch(self) except -1:
        """Queue the open batch for its replies (before its commands are written)."""
        cdef PendingBatch batch = self.open
        self.open = None
        if batch is not None and batch.expected > 0:
            self.pending.append(batch)
        return 0

    cdef int flush(self) except -1:
        """Write everything framed so far: one writev straight from the writer's
        buffers when the transport has nothing queued, and a copy of only what
        the socket did not take (references into a producer's read buffer
        must not outlive the frame callback)."""
        cdef RespWriter writer = self.writer
        cdef Py_ssize_t written = 0
        self.end_batch()
        if writer.pending() == 0:
            return 0
        if not self.connected:
            writer.reset()
            return 0
        if self.fd >= 0 and self.transport.get_write_buffer_size() == 0:
            try:
                written = writer.write_to(self.fd)
            except OSError:
                written = 0  # the transport reports the broken connection below
        if written < writer.pending():
            self.transport.write(writer.rest_after(written))
        writer.reset()
        return 0

    # -- producers' backpressure --------------------------------------

    cdef int hold_producer(self, object producer) except -1:
        """Ask a producer (``producer.set_held(bool)``) to stop reading its
        socket until Redis catches up; it decides with its own other reasons
        to pause (waiting for metadata, closing) when to read again."""
        if producer not in self.held_producers:
            self.held_producers.add(producer)
            producer.set_held(True)
        return 0

    cdef int _update_overload(self) except -1:
        if self.transport_paused or self.in_flight_bytes > self.low_water:
            return 0
        self.overloaded = False
        self._resume_producers()
        return 0

    cdef int _resume_producers(self) except -1:
        producers, self.held_producers = self.held_producers, set()
        for producer in producers:
            try:
                producer.set_held(False)
            except Exception:
                _pipe_log.exception("error resuming %r", producer)
        for waiter in self.drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.drain_waiters = []
        return 0

    async def drained(self):
        """Wait until Redis has caught up (for producers without a socket to pause)."""
        if not self.overloaded:
            return
        waiter = asyncio.get_running_loop().create_future()
        self.drain_waiters.append(waiter)
        await waiter

    # -- Python API (control commands, POST /data, tests) --------------

    def call(self, *arguments):
        """Send one command now; returns a future of its reply."""
        cdef PendingBatch batch = self.batch_for(None, True, False)
        batch.future = asyncio.get_running_loop().create_future()
        self.writer.command(*arguments)
        self.add(batch, 1, 0)
        self.flush()
        return _first_reply(batch.future)

    def xadd_many(self, entries):
        """XADD each ``(key, entry_id, payload, maxlen)``; returns a future of the
        replies (entry ids as bytes); an error reply fails the whole future."""
        cdef PendingBatch batch = self.batch_for(None, True, False)
        batch.future = asyncio.get_running_loop().create_future()
        for key, entry_id, payload, maxlen in entries:
            self.writer.xadd(key, entry_id, payload, maxlen)
            self.add(batch, 1, len(payload))
        self.flush()
        return batch.future

    @property
    def pending_batches(self):
        return len(self.pending)

    def close(self):
        if self.transport is not None:
            self.transport.close()


async def _first_reply(future):
    replies = await future
    return replies[0]
