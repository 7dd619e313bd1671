# The one Redis connection class, and its two uses.
#
# RedisConnection owns everything a pipelined connection does per command
# and per reply: commands framed by a RespWriter and written with one writev
# straight from its buffers; replies matched to requests in order (Redis
# answers in order, so a FIFO of RedisRequest records, one per group of
# commands, routes every reply); the in-flight bound that pauses producers;
# and a lost connection failing every request. A RedisOwner (typed) receives
# the outcome of its requests.
#
# Its two uses differ only in how replies are parsed:
#   RedisPipe     the ingest connection: XADDs of many producers, replies
#                 parsed by hiredis (short bulk strings);
#   StreamReader  stream reads: replies parsed in place by StreamReplyParser
#                 into ready WebSocket frames.
# Reconnecting is done once per connection, in Python (engine/redis/link.py).
#
# Uses: common.pxi, counters.pxi, sansio/resp_writer.pxi, sansio/reply_parser.pxi,
#       io/vectored_write.pxi


import socket

from hiredis import ProtocolError as HiredisProtocolError
from hiredis import Reader as HiredisReader

# The ingest connection's kernel send buffer: one writev takes a whole batch
# of large entries (W3, 256 KiB entries: 14% of the engine was copying the
# rest). The kernel caps it at net.core.wmem_max.
cdef int PIPE_SEND_BUFFER_BYTES = 4 * 1024 * 1024
cdef Py_ssize_t PIPE_READ_BUFFER_BYTES = 256 * 1024
# Payload bytes sent but not yet confirmed: above HIGH the producers are
# paused, below LOW they resume. Bounds the engine's memory under overload.
cdef Py_ssize_t DEFAULT_HIGH_WATER = 8 * 1024 * 1024
cdef Py_ssize_t DEFAULT_LOW_WATER = 2 * 1024 * 1024
# How long a durability barrier (WAITAOF, WAIT) waits for disks and replicas.
cdef int BARRIER_TIMEOUT_MS = 5000

_redis_log = logging.getLogger("engine.redis")


cdef inline bint is_redirect(object reply):
    """A Redis Cluster's MOVED or ASK error: the command was not executed, the
    slot is (being) served by another node."""
    return type(reply) is ReplyError and str(reply).startswith(("MOVED ", "ASK "))


cdef inline bint is_retryable(object reply):
    """A Redis Cluster error after which the same read succeeds later: MOVED or
    ASK (once the slot map caught up), TRYAGAIN (a slot being migrated),
    CLUSTERDOWN (until the cluster is whole again)."""
    return type(reply) is ReplyError and str(reply).startswith(("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN"))


def worth_retrying(reply):
    """Whether a read answered ``reply`` should be sent again a little later."""
    return is_retryable(reply)


class RedisUnavailable(ConnectionError):
    """The connection to Redis is down (lost, or not connected yet)."""


@cython.final
@cython.freelist(64)
cdef class RedisRequest:
    """Commands sent together for one owner, awaiting their replies in order.

    While it waits it is part of cycles (connection -> request -> owner ->
    connection), which its reply or the lost connection break; it stays
    known to the cyclic GC for a connection that is dropped without closing."""

    cdef RedisOwner owner
    cdef Py_ssize_t expected
    cdef Py_ssize_t received
    cdef Py_ssize_t nbytes          # payload bytes, for the in-flight bound
    cdef list replies               # every reply, when the owner wants them; else None
    cdef object reply               # the last reply
    cdef object error               # the first error reply (hiredis.ReplyError) or None
    cdef Py_ssize_t errors          # error replies
    cdef ReplyShape shape           # how a StreamReader parses the replies
    cdef list keys                  # StreamKey list the replies are read for
    cdef Py_ssize_t slot            # the owner's own index for this request
    cdef object tag                 # the owner's own bookkeeping
    # Durability: done only once Redis' append-only file is fsynced (wait_local)
    # and this many replicas have the writes, as the next barrier reports.
    cdef bint wait_local
    cdef int wait_replicas
    cdef bint is_barrier            # a WAITAOF/WAIT of the connection itself
    # A Redis Cluster's redirects: replies being asked for again on another node
    # (the request completes once they are answered), and whether this request
    # is such a resend itself (its own redirects go back to the resender).
    cdef Py_ssize_t resending
    cdef bint no_resend
    cdef bint finished              # completed or failed: later outcomes are ignored


@cython.final
cdef class _SentBatch:
    """What one flush wrote, kept until every command of it is answered."""

    cdef bytes framed
    cdef Py_ssize_t commands
    cdef list bounds                # each command's offsets, found when one is resent


@cython.final
cdef class ResendHandle:
    """One command a cluster node redirected or refused for now, being sent again
    elsewhere: ``answer(reply)`` with the reply it got there, or ``fail(reason)``.
    Only the first call counts."""

    cdef RedisConnection connection
    cdef RedisRequest request
    cdef Py_ssize_t index
    cdef bint used

    def answer(self, reply):
        if not self.used:
            self.used = True
            self.connection._resend_answered(self.request, self.index, reply)

    def fail(self, str reason):
        if not self.used:
            self.used = True
            self.connection._resend_failed(self.request, reason)


cdef class RedisOwner:
    """Receives what became of its requests. A method that raises is logged, then
    ``request_error`` is called: one owner's fault never breaks the connection."""

    cdef int request_done(self, RedisRequest request) except -1:
        """Every reply of ``request`` arrived (error replies included)."""
        return 0

    cdef int request_failed(self, RedisRequest request, str reason) except -1:
        """The connection was lost before ``request`` was answered."""
        return 0

    cdef int request_error(self, RedisRequest request, object error) except -1:
        return 0

    cdef int replies_done(self) except -1:
        """Called once per read of replies that completed requests of this owner
        (acks of several batches go out in one write)."""
        return 0

    cdef int set_held(self, bint held) except -1:
        """Stop (True) or go on (False) sending: Redis is behind."""
        return 0


@cython.final
cdef class FutureOwner(RedisOwner):
    """The owner of the Python API's requests: one future for all of them, with
    each request's reply (or list of replies) in ``slot`` order; with
    ``raise_errors`` an error reply raises instead."""

    cdef object future
    cdef list results
    cdef Py_ssize_t left
    cdef bint raise_errors
    cdef bint single                # the result is the one request's

    @staticmethod
    cdef FutureOwner expecting(Py_ssize_t requests, bint raise_errors, bint single):
        cdef FutureOwner owner = FutureOwner.__new__(FutureOwner)
        owner.future = asyncio.get_running_loop().create_future()
        owner.results = [None] * requests
        owner.left = requests
        owner.raise_errors = raise_errors
        owner.single = single
        if requests == 0:
            owner.future.set_result([])
        return owner

    cdef int request_done(self, RedisRequest request) except -1:
        if self.future.done():
            return 0
        if self.raise_errors and request.error is not None:
            self.future.set_exception(request.error)
            return 0
        self.results[request.slot] = request.replies if request.replies is not None else request.reply
        self.left -= 1
        if self.left == 0:
            self.future.set_result(self.results[0] if self.single else self.results)
        return 0

    cdef int request_failed(self, RedisRequest request, str reason) except -1:
        if not self.future.done():
            self.future.set_exception(RedisUnavailable(reason))
        return 0

    cdef int request_error(self, RedisRequest request, object error) except -1:
        if not self.future.done():
            self.future.set_exception(error)
        return 0


cdef class _ConnectionBase:
    pass


cdef class RedisConnection(_ConnectionBase, asyncio.BufferedProtocol):
    """asyncio.BufferedProtocol for one pipelined Redis connection (TCP, unix or
    TLS). It derives from asyncio.BufferedProtocol because plain asyncio checks
    isinstance() to choose get_buffer/buffer_updated over data_received."""

    cdef object transport
    cdef int fd                       # for direct vectored writes; -1 when not allowed
    cdef readonly bint connected
    cdef bint broken                  # a reply made no sense: read nothing more
    cdef str lost_reason
    cdef public object on_lost        # callable(reason: str) or None
    cdef public object on_redirect    # callable(error: ReplyError) or None: a cluster's MOVED or ASK
    # On a cluster, what was written is kept until answered, so that a command
    # told MOVED, ASK, TRYAGAIN or CLUSTERDOWN (not executed) can be sent again
    # by on_resend(error, command bytes, ResendHandle) instead of failing.
    cdef public bint keeps_sent
    cdef public object on_resend
    cdef object sent                  # deque[_SentBatch]
    cdef Py_ssize_t sent_answered     # replies received for sent[0]
    cdef RespWriter writer
    cdef object pending               # deque[RedisRequest]
    cdef RedisRequest open            # the request being framed, not queued yet
    cdef list done_owners             # owners whose requests completed in this read
    cdef Counters counters
    cdef int send_buffer_bytes        # SO_SNDBUF to ask for; 0: the kernel's default
    cdef iovec* vectors
    cdef Py_ssize_t vectors_capacity
    cdef bint queued_for_flush        # on its shard map's list of framed connections
    # Durability barriers: requests answered but waiting for the next barrier's
    # reply, and what the barrier to frame next must wait for.
    cdef list awaiting_barrier
    cdef bint barrier_local
    cdef int barrier_replicas
    # Backpressure
    cdef bint transport_paused        # the transport's own write buffer is full
    cdef readonly Py_ssize_t in_flight_bytes
    cdef Py_ssize_t high_water
    cdef Py_ssize_t low_water
    cdef bint overloaded
    cdef set held                     # owners asked to stop sending
    cdef list drain_waiters           # futures of drained()

    def __init__(self, Counters counters=None, on_lost=None,
                 Py_ssize_t high_water=DEFAULT_HIGH_WATER, Py_ssize_t low_water=DEFAULT_LOW_WATER,
                 Py_ssize_t by_reference_threshold=RESP_DEFAULT_BY_REFERENCE_THRESHOLD):
        self.counters = counters if counters is not None else Counters()
        self.on_lost = on_lost
        self.writer = RespWriter(by_reference_threshold)
        self.pending = deque()
        self.sent = deque()
        self.done_owners = []
        self.fd = -1
        self.high_water = high_water
        self.low_water = low_water
        self.held = set()
        self.drain_waiters = []
        self.awaiting_barrier = []

    def __dealloc__(self):
        PyMem_Free(self.vectors)

    # -- asyncio protocol ----------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.connected = True
        self.fd = -1
        sock = transport.get_extra_info("socket")
        # Direct writes go around the transport only when it has no TLS layer.
        if sock is not None and transport.get_extra_info("sslcontext") is None:
            self.fd = sock.fileno()
            if self.send_buffer_bytes:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)
                except OSError:
                    pass

    def connection_lost(self, exc):
        cdef RedisRequest request
        reason = self.lost_reason or "Redis connection lost" + (f": {exc}" if exc else "")
        self.connected = False
        self.transport = None
        self.fd = -1
        self.lost_reason = reason
        self.end_request()
        self.writer.reset()
        self.sent.clear()
        self.sent_answered = 0
        pending, self.pending = self.pending, deque()
        awaiting, self.awaiting_barrier = self.awaiting_barrier, []
        self.barrier_local, self.barrier_replicas = False, 0
        self.in_flight_bytes = 0
        self._release_held()
        # Answered but never made durable: as lost as the unanswered ones.
        for request in awaiting:
            self._fail(request, reason)
        for request in pending:
            if not request.is_barrier:
                self._fail(request, reason)
        if self.on_lost is not None:
            self.on_lost(reason)

    def get_buffer(self, Py_ssize_t sizehint):
        return self.read_buffer()

    def buffer_updated(self, Py_ssize_t nbytes):
        if self.broken:
            return
        try:
            self.read_replies(nbytes)
        except (RedisProtocolError, HiredisProtocolError) as error:
            # Out of step with Redis: nothing read from here on can be trusted.
            _redis_log.error("closing a Redis connection: %s", error)
            self.broken = True
            self.lost_reason = f"Redis protocol error: {error}"
            self._stop_writing()
            self.transport.abort()
        self._after_replies()

    def eof_received(self):
        return False

    def pause_writing(self):
        self.transport_paused = True
        self.overloaded = True

    def resume_writing(self):
        self.transport_paused = False
        self._update_overload()

    # -- replies (the parsing is the subclass's) ------------------------

    cdef object read_buffer(self):
        """Where the next read goes."""
        raise NotImplementedError

    cdef int read_replies(self, Py_ssize_t nbytes) except -1:
        """``nbytes`` were read into the last read buffer: parse them and ``deliver``
        every complete reply. Raises RedisProtocolError for bytes that make no sense."""
        raise NotImplementedError

    cdef int deliver(self, object reply) except -1:
        """One reply arrived: it answers the oldest request."""
        cdef RedisRequest request
        cdef bytes command = None
        if not self.pending:
            raise RedisProtocolError("Redis sent a reply nobody asked for")
        request = <RedisRequest>self.pending[0]
        if self.keeps_sent:
            command = self._answered_command(is_retryable(reply))
        self.counters.redis_replies += 1
        if type(reply) is ReplyError:
            self.counters.redis_errors += 1
            if self.on_redirect is not None and is_redirect(reply):
                # The slot is served elsewhere now: the command was not executed.
                self.on_redirect(reply)
            # A kept command comes back only for a retryable reply.
            if command is not None and self._resend(request, reply, command):
                reply = None  # in its place until the command is answered elsewhere
            else:
                request.errors += 1
                if request.error is None:
                    request.error = reply
        if request.replies is not None:
            request.replies.append(reply)
        request.reply = reply
        request.received += 1
        if request.received == request.expected:
            self.pending.popleft()
            if request.nbytes:
                self.in_flight_bytes -= request.nbytes
                if self.overloaded:
                    self._update_overload()
            if request.is_barrier:
                self._barrier_done(request)
            elif request.resending:
                pass  # completed when the last command sent elsewhere is answered
            elif request.wait_local or request.wait_replicas:
                self.awaiting_barrier.append(request)
            else:
                self._complete(request)
        return 0

    # -- a cluster's redirects ---------------------------------------------

    cdef bytes _keep_sent(self):
        """Keep everything framed until it is answered; the kept bytes."""
        cdef _SentBatch batch = _SentBatch.__new__(_SentBatch)
        batch.framed = self.writer.rest_after(0)
        batch.commands = self.writer.commands()
        self.sent.append(batch)
        return batch.framed

    cdef bytes _answered_command(self, bint wanted):
        """The next reply answers the oldest kept command: forget it, and return
        its bytes when ``wanted``."""
        cdef _SentBatch batch
        cdef Py_ssize_t position = self.sent_answered
        if not self.sent:
            return None  # written before keeps_sent was set
        batch = <_SentBatch>self.sent[0]
        self.sent_answered += 1
        if self.sent_answered == batch.commands:
            self.sent.popleft()
            self.sent_answered = 0
        if not wanted:
            return None
        if batch.bounds is None:
            batch.bounds = resp_command_bounds(batch.framed)
        return batch.framed[<Py_ssize_t>batch.bounds[position]:<Py_ssize_t>batch.bounds[position + 1]]

    cdef bint _resend(self, RedisRequest request, object error, bytes command) except -1:
        """Hand ``command`` (told ``error``) to on_resend; whether it took it. Writes
        that wait for a barrier are not resent: the barrier is this node's."""
        cdef ResendHandle handle
        if (self.on_resend is None or request.no_resend or request.is_barrier
                or request.wait_local or request.wait_replicas):
            return False
        handle = ResendHandle.__new__(ResendHandle)
        handle.connection = self
        handle.request = request
        handle.index = request.received
        request.resending += 1
        # Its owner sends nothing new meanwhile: that could be stored before it.
        self._hold_for_resend(request.owner, True)
        try:
            # on_resend answers the handle later, never before it returns.
            self.on_resend(error, command, handle)
        except Exception:
            _redis_log.exception("cannot send a redirected command again")
            handle.used = True
            request.resending -= 1
            self._hold_for_resend(request.owner, False)
            return False
        self.counters.redis_resends += 1
        return True

    cdef int _hold_for_resend(self, RedisOwner owner, bint held) except -1:
        try:
            owner.set_held(held)
        except Exception:
            _redis_log.exception("error pausing or resuming %r", owner)
        return 0

    cdef int _resend_answered(self, RedisRequest request, Py_ssize_t index, object reply) except -1:
        self._hold_for_resend(request.owner, False)
        if request.finished:
            return 0
        if request.replies is not None:
            request.replies[index] = reply
        if index == request.expected - 1:
            request.reply = reply
        if type(reply) is ReplyError:
            request.errors += 1
            if request.error is None:
                request.error = reply
        request.resending -= 1
        if request.resending == 0 and request.received == request.expected:
            self._complete(request)
            self._after_replies()
        return 0

    cdef int _resend_failed(self, RedisRequest request, str reason) except -1:
        self._hold_for_resend(request.owner, False)
        if not request.finished:
            self._fail(request, reason)
        return 0

    cdef int _barrier_done(self, RedisRequest barrier) except -1:
        """A barrier answered: every request held for it (all framed before it) is
        done if Redis made it as durable as it asked, failed if not."""
        cdef RedisRequest request
        cdef Py_ssize_t fsynced = 0, replicas = 0, i = 0
        cdef str reason = None
        held, self.awaiting_barrier = self.awaiting_barrier, []
        if barrier.error is not None:
            reason = f"Redis could not confirm durability: {barrier.error}"
        else:
            if barrier.wait_local:
                fsynced = (<list>barrier.replies[i])[0]
                i += 1
            if barrier.wait_replicas:
                replicas = barrier.replies[i]
        for request in held:
            if reason is None and request.wait_local and fsynced < 1:
                reason = f"Redis did not fsync its append-only file within {BARRIER_TIMEOUT_MS} ms"
            if reason is None and replicas < request.wait_replicas:
                reason = (f"only {replicas} of {request.wait_replicas} replicas confirmed "
                          f"within {BARRIER_TIMEOUT_MS} ms")
            if reason is None:
                self._complete(request)
            else:
                self._fail(request, reason)
        return 0

    cdef int _complete(self, RedisRequest request) except -1:
        cdef RedisOwner owner = request.owner
        if request.finished:
            return 0
        request.finished = True
        if not self.done_owners or self.done_owners[len(self.done_owners) - 1] is not owner:
            self.done_owners.append(owner)
        try:
            owner.request_done(request)
        except Exception as error:
            _redis_log.exception("a Redis reply handler failed (%s)", type(owner).__name__)
            self._owner_error(request, error)
        return 0

    cdef int _fail(self, RedisRequest request, str reason) except -1:
        if request.finished:
            return 0
        request.finished = True
        try:
            request.owner.request_failed(request, reason)
        except Exception as error:
            _redis_log.exception("a lost Redis request handler failed (%s)", type(request.owner).__name__)
            self._owner_error(request, error)
        return 0

    cdef int _owner_error(self, RedisRequest request, object error) except -1:
        try:
            request.owner.request_error(request, error)
        except Exception:
            _redis_log.exception("a Redis error handler failed (%s)", type(request.owner).__name__)
        return 0

    cdef int _after_replies(self) except -1:
        cdef RedisOwner owner
        if not self.done_owners:
            return 0
        owners, self.done_owners = self.done_owners, []
        for owner in owners:
            try:
                owner.replies_done()
            except Exception:
                _redis_log.exception("error sending what Redis replies produced (%s)", type(owner).__name__)
        return 0

    # -- requests -------------------------------------------------------

    cdef RedisRequest open_request(self, RedisOwner owner, bint want_replies, bint join):
        """The request to frame the next commands into, then count them in it.

        With ``join``, commands of one owner framed back to back share one
        request (one record, one callback for a whole read pass of single
        messages). Any other call ends the open request first, so requests are
        queued exactly in the order their commands were framed.
        """
        cdef RedisRequest request = self.open
        if not self.connected:
            raise RedisUnavailable(self.lost_reason or "Redis is not connected")
        if request is not None:
            if join and request.owner is owner and (request.replies is not None) == want_replies:
                return request
            self.end_request()
        request = RedisRequest.__new__(RedisRequest)
        request.owner = owner
        request.replies = [] if want_replies else None
        self.open = request
        return request

    cdef int end_request(self) except -1:
        """Queue the open request for its replies (before its commands are written)."""
        cdef RedisRequest request = self.open
        self.open = None
        if request is not None and request.expected > 0:
            self.pending.append(request)
            if request.wait_local:
                self.barrier_local = True
            if request.wait_replicas > self.barrier_replicas:
                self.barrier_replicas = request.wait_replicas
        return 0

    cdef int _frame_barrier(self) except -1:
        """One barrier after the requests that asked for durability since the last:
        group commit, one wait per flush however many messages it carries."""
        cdef RedisRequest barrier = RedisRequest.__new__(RedisRequest)
        barrier.is_barrier = True
        barrier.replies = []
        if self.barrier_local:
            barrier.wait_local = True
            self.writer.command(b"WAITAOF", 1, 0, BARRIER_TIMEOUT_MS)
            barrier.expected += 1
        if self.barrier_replicas:
            barrier.wait_replicas = self.barrier_replicas
            self.writer.command(b"WAIT", self.barrier_replicas, BARRIER_TIMEOUT_MS)
            barrier.expected += 1
        self.pending.append(barrier)
        self.barrier_local, self.barrier_replicas = False, 0
        return 0

    cdef int command(self, RedisRequest request, tuple arguments) except -1:
        """Frame one command (bytes-like, str or int arguments) for ``request``."""
        self.writer.command(*arguments)
        request.expected += 1
        return 0

    cdef int flush(self) except -1:
        """Write everything framed so far: one writev straight from the writer's
        buffers when the transport has nothing queued, and a copy of only what
        the socket did not take (references into a producer's read buffer
        must not outlive the frame callback)."""
        cdef RespWriter writer = self.writer
        cdef Py_ssize_t written = 0, needed
        cdef bytes kept = None
        self.end_request()
        if self.connected and (self.barrier_local or self.barrier_replicas):
            self._frame_barrier()
        self.queued_for_flush = False
        if writer.pending() == 0:
            return 0
        if not self.connected:
            writer.reset()
            return 0
        if self.keeps_sent:
            kept = self._keep_sent()
        if self.fd >= 0 and self.transport.get_write_buffer_size() == 0:
            needed = writer.vector_count()
            if needed > self.vectors_capacity:
                self._grow_vectors(needed)
            written = write_vectors(self.fd, self.vectors, writer.fill_vectors(self.vectors))
        if written < writer.pending():
            # What the socket did not take, from the kept copy when there is one.
            self.transport.write(writer.rest_after(written) if kept is None else memoryview(kept)[written:])
        writer.reset()
        return 0

    cdef int _grow_vectors(self, Py_ssize_t needed) except -1:
        cdef iovec* grown
        needed = max(needed, 2 * self.vectors_capacity, 16)
        grown = <iovec*>PyMem_Realloc(self.vectors, needed * sizeof(iovec))
        if grown == NULL:
            raise MemoryError()
        self.vectors = grown
        self.vectors_capacity = needed
        return 0

    # -- backpressure ---------------------------------------------------

    cdef int hold(self, RedisOwner owner) except -1:
        """Ask ``owner`` to stop sending until Redis catches up; it decides with its
        own other reasons to pause when to go on."""
        if owner not in self.held:
            self.held.add(owner)
            self.counters.producer_pauses += 1
            owner.set_held(True)
        return 0

    cdef int _count_in_flight(self, RedisRequest request, Py_ssize_t nbytes) except -1:
        """``nbytes`` more of ``request`` wait for Redis (given back when it is
        answered); past the high-water mark, producers writing here are held."""
        request.nbytes += nbytes
        self.in_flight_bytes += nbytes
        if self.in_flight_bytes > self.high_water:
            self.overloaded = True
        return 0

    cdef int _update_overload(self) except -1:
        if self.transport_paused or self.in_flight_bytes > self.low_water:
            return 0
        self.overloaded = False
        self._release_held()
        return 0

    cdef int _release_held(self) except -1:
        cdef RedisOwner owner
        held, self.held = self.held, set()
        for owner in held:
            try:
                owner.set_held(False)
            except Exception:
                _redis_log.exception("error resuming %r", owner)
        for waiter in self.drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.drain_waiters = []
        return 0

    async def drained(self):
        """Wait until Redis has caught up (for senders without a socket to pause)."""
        if not self.overloaded:
            return
        waiter = asyncio.get_running_loop().create_future()
        self.drain_waiters.append(waiter)
        await waiter

    # -- Python API (control commands, POST /data, GET /data) ------------

    def call(self, *arguments):
        """Send one command now; returns a future of its reply (an error reply raises)."""
        cdef FutureOwner owner = FutureOwner.expecting(1, True, True)
        self.command(self.open_request(owner, False, False), arguments)
        self.flush()
        return owner.future

    def send_raw(self, commands, Py_ssize_t count):
        """Send ``count`` commands framed already (bytes-like); returns a future of
        the list of their replies, error replies in it (not raised). Its own
        redirects are not resent: they are the caller's to handle. Their bytes
        count as in flight until answered, as XADDs' payloads do: a resharding's
        resends make producers writing here wait like their own writes would."""
        if count < 1:
            raise ValueError("send_raw sends one command or more")
        cdef FutureOwner owner = FutureOwner.expecting(1, False, True)
        cdef RedisRequest request = self.open_request(owner, True, False)
        cdef Py_buffer view
        request.no_resend = True
        PyObject_GetBuffer(commands, &view, PyBUF_SIMPLE)
        try:
            self.writer.append_raw(<const char*>view.buf, view.len, count)
            self._count_in_flight(request, view.len)
        finally:
            PyBuffer_Release(&view)
        request.expected += count
        self.flush()
        return owner.future

    def close(self):
        if self.transport is not None:
            self._stop_writing()
            self.transport.close()

    cdef int _stop_writing(self) except -1:
        # Until connection_lost runs, nothing more is taken or written (the
        # descriptor may be closed, and then reused by another socket).
        self.connected = False
        self.fd = -1
        return 0


@cython.final
cdef class RedisPipe(RedisConnection):
    """The ingest connection: pipelined XADDs of many producers; replies parsed by
    hiredis (XADD answers with short bulk strings: one Python call per reply)."""

    cdef object reader
    cdef bytearray buffer

    def __init__(self, Counters counters=None, on_lost=None,
                 Py_ssize_t high_water=DEFAULT_HIGH_WATER, Py_ssize_t low_water=DEFAULT_LOW_WATER,
                 Py_ssize_t by_reference_threshold=RESP_DEFAULT_BY_REFERENCE_THRESHOLD):
        RedisConnection.__init__(self, counters, on_lost, high_water, low_water, by_reference_threshold)
        self.reader = HiredisReader()
        self.buffer = bytearray(PIPE_READ_BUFFER_BYTES)
        self.send_buffer_bytes = PIPE_SEND_BUFFER_BYTES

    cdef object read_buffer(self):
        return self.buffer

    cdef int read_replies(self, Py_ssize_t nbytes) except -1:
        cdef object reply
        self.reader.feed(self.buffer, 0, nbytes)
        gets = self.reader.gets
        while True:
            reply = gets()
            if reply is False:
                return 0
            self.deliver(reply)

    cdef int xadd(self, RedisRequest request, const char* key, Py_ssize_t key_length,
                  const char* entry_id, Py_ssize_t entry_id_length, Py_ssize_t maxlen,
                  const char* payload, Py_ssize_t payload_length,
                  object payload_source, Py_ssize_t source_offset) except -1:
        """Frame ``XADD key MAXLEN ~ maxlen entry_id d payload`` for ``request``
        (see RespWriter.append_xadd for ``payload_source``)."""
        self.writer.append_xadd(key, key_length, entry_id, entry_id_length, maxlen,
                                payload, payload_length, payload_source, source_offset)
        request.expected += 1
        self._count_in_flight(request, payload_length)
        return 0

    def xadd_many(self, entries, bint wait_fsync=False, int wait_replicas=0):
        """XADD each ``(key, entry_id, payload, maxlen)``; returns a future of the
        replies (entry ids as bytes); an error reply fails the whole future. With
        ``wait_fsync`` or ``wait_replicas`` it completes after a barrier confirmed."""
        cdef FutureOwner owner = FutureOwner.expecting(1, True, True)
        cdef RedisRequest request = self.open_request(owner, True, False)
        cdef Py_buffer view
        request.wait_local = wait_fsync
        request.wait_replicas = wait_replicas
        for key, entry_id, payload, maxlen in entries:
            PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
            try:
                self.xadd(request, key, len(key), entry_id, len(entry_id), maxlen,
                          <const char*>view.buf, view.len, payload, 0)
            finally:
                PyBuffer_Release(&view)
        self.flush()
        return owner.future


@cython.final
cdef class StreamReader(RedisConnection):
    """Stream reads (XREAD, XRANGE, XREVRANGE) and their replies parsed in place
    into StreamEntry objects; simple replies for control commands."""

    cdef StreamReplyParser parser

    def __init__(self, Counters counters=None, on_lost=None):
        RedisConnection.__init__(self, counters, on_lost)
        self.parser = StreamReplyParser()

    cdef object read_buffer(self):
        return self.parser.next_buffer()

    cdef int read_replies(self, Py_ssize_t nbytes) except -1:
        cdef StreamReplyParser parser = self.parser
        cdef RedisRequest request
        parser.advanced(nbytes)
        while True:
            if not parser.active():
                if not self.pending:
                    if parser.has_unparsed():
                        raise RedisProtocolError("Redis sent a reply nobody asked for")
                    return 0
                request = <RedisRequest>self.pending[0]
                parser.begin(request.shape, request.keys)
            if parser.parse() == PARSE_MORE:
                return 0
            self.deliver(parser.take_result())

    cdef RedisRequest send_read(self, ReplyShape shape, list keys, RedisOwner owner, Py_ssize_t slot,
                                tuple arguments):
        """Frame one read and queue its request (``flush`` writes it)."""
        cdef RedisRequest request = self.open_request(owner, False, False)
        request.shape = shape
        request.keys = keys
        request.slot = slot
        self.command(request, arguments)
        self.end_request()
        return request

    def read(self, requests):
        """Send ``(shape, keys, arguments)`` commands together; returns a future of
        their replies in order (error replies as hiredis.ReplyError objects).
        Shapes: "simple", "xread" (keys: the command's StreamKey list), "range"
        (keys: its one StreamKey)."""
        cdef list batch = list(requests)
        cdef FutureOwner owner = FutureOwner.expecting(len(batch), False, False)
        cdef Py_ssize_t slot
        for slot in range(len(batch)):
            shape, keys, arguments = batch[slot]
            self.send_read(REPLY_SHAPES[shape], list(keys), owner, slot, tuple(arguments))
        self.flush()
        return owner.future
