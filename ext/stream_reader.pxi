# The read side's Redis connection: stream reads out (pipelined), replies
# parsed by StreamReplyParser into StreamEntry objects, each reply handed
# to the owner of its request (FIFO, as Redis answers in order).
#
# One StreamReader per process serves GET /data and pull sockets catching
# up; every pull feed owns one more for its blocking XREAD.
#
# An owner that raises while handling its reply fails on its own (on_error):
# the connection and the other owners' requests go on.

import logging

_read_log = logging.getLogger("engine.pull")

@cython.final
@cython.freelist(64)
cdef class ReadRequest:
    """One command sent; its reply goes to ``owner.on_reply(self, reply)``."""

    cdef ReplyShape shape
    cdef list keys              # StreamKey list the reply is read for
    cdef ReadOwner owner
    cdef Py_ssize_t slot        # the owner's own index for this request
    cdef object tag             # the owner's own bookkeeping


cdef class ReadOwner:
    """Receives replies: a list of entries (range), a list of such lists, one per
    key (xread), a Python object (simple) or a hiredis.ReplyError."""

    cdef int on_reply(self, ReadRequest request, object reply) except -1:
        return 0

    cdef int on_lost(self, ReadRequest request, str reason) except -1:
        return 0

    cdef int on_error(self, ReadRequest request, object error) except -1:
        """``on_reply`` or ``on_lost`` raised ``error`` (already logged)."""
        return 0


cdef int deliver_reply(ReadRequest request, object reply) except -1:
    """Hand ``reply`` to its owner; an exception there fails that owner only."""
    try:
        request.owner.on_reply(request, reply)
    except Exception as error:
        _read_log.exception("a read reply handler failed (%s)", type(request.owner).__name__)
        _owner_error(request, error)
    return 0


cdef int deliver_lost(ReadRequest request, str reason) except -1:
    try:
        request.owner.on_lost(request, reason)
    except Exception as error:
        _read_log.exception("a lost read handler failed (%s)", type(request.owner).__name__)
        _owner_error(request, error)
    return 0


cdef int _owner_error(ReadRequest request, object error) except -1:
    try:
        request.owner.on_error(request, error)
    except Exception:
        _read_log.exception("a read error handler failed (%s)", type(request.owner).__name__)
    return 0


@cython.final
cdef class ReadBatch(ReadOwner):
    """Requests sent together whose replies complete one future (a list, in order)."""

    cdef list replies
    cdef Py_ssize_t left
    cdef object future

    cdef int on_reply(self, ReadRequest request, object reply) except -1:
        self.replies[request.slot] = reply
        self.left -= 1
        if self.left == 0 and not self.future.done():
            self.future.set_result(self.replies)
        return 0

    cdef int on_lost(self, ReadRequest request, str reason) except -1:
        if not self.future.done():
            self.future.set_exception(RedisUnavailable(reason))
        return 0

    cdef int on_error(self, ReadRequest request, object error) except -1:
        if not self.future.done():
            self.future.set_exception(error)
        return 0


cdef class _StreamReaderBase:
    pass


cdef class StreamReader(_StreamReaderBase, asyncio.BufferedProtocol):
    """asyncio.BufferedProtocol for a Redis connection that reads streams (it
    derives from it for plain asyncio, as RedisPipe does)."""

    cdef object transport
    cdef StreamReplyParser parser
    cdef object pending             # deque[ReadRequest]
    cdef RespWriter writer
    cdef readonly bint connected
    cdef bint broken                # a reply made no sense: read nothing more
    cdef public object on_lost      # callable(reason: str) or None
    cdef object lost_reason

    def __init__(self, on_lost=None):
        self.parser = StreamReplyParser()
        self.pending = deque()
        self.writer = RespWriter()
        self.on_lost = on_lost

    # -- asyncio protocol ----------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.connected = True

    def connection_lost(self, exc):
        cdef ReadRequest request
        reason = "Redis connection lost" + (f": {exc}" if exc else "")
        self.connected = False
        self.transport = None
        self.lost_reason = reason
        self.writer.take()
        pending, self.pending = self.pending, deque()
        for request in pending:
            deliver_lost(request, reason)
        if self.on_lost is not None:
            self.on_lost(reason)

    def get_buffer(self, Py_ssize_t size_hint):
        return self.parser.next_buffer()

    def buffer_updated(self, Py_ssize_t nbytes):
        cdef ReadRequest request
        cdef StreamReplyParser parser = self.parser
        parser.advanced(nbytes)
        if self.broken:
            return
        try:
            while True:
                if not parser.active():
                    if not self.pending:
                        if parser.has_unparsed():
                            raise RedisProtocolError("Redis sent a reply nobody asked for")
                        return
                    request = <ReadRequest>self.pending[0]
                    parser.begin(request.shape, request.keys)
                if parser.parse() == PARSE_MORE:
                    return
                request = <ReadRequest>self.pending.popleft()
                deliver_reply(request, parser.take_result())
        except RedisProtocolError as error:
            # Out of step with Redis: nothing read from here on can be trusted.
            self.broken = True
            self.lost_reason = str(error)
            self.transport.abort()

    def eof_received(self):
        return False

    # -- requests -------------------------------------------------------

    cdef ReadRequest send(self, ReplyShape shape, list keys, ReadOwner owner, Py_ssize_t slot,
                          tuple arguments):
        """Frame one command and queue its request (``flush`` writes it)."""
        cdef ReadRequest request = ReadRequest.__new__(ReadRequest)
        if not self.connected:
            raise RedisUnavailable(self.lost_reason or "Redis is not connected")
        self.writer.command(*arguments)
        request.shape = shape
        request.keys = keys
        request.owner = owner
        request.slot = slot
        self.pending.append(request)
        return request

    cdef int flush(self) except -1:
        if self.connected and self.writer.pending_bytes:
            self.transport.writelines(self.writer.take())
        return 0

    # -- Python API -----------------------------------------------------

    def read(self, requests):
        """Send ``(shape, keys, arguments)`` commands together; returns a future of
        their replies in order. Shapes: "simple", "xread", "range"."""
        cdef ReadBatch batch = ReadBatch.__new__(ReadBatch)
        cdef Py_ssize_t slot = 0
        batch.future = asyncio.get_running_loop().create_future()
        batch.replies = []
        for shape, keys, arguments in requests:
            batch.replies.append(None)
            self.send(_SHAPES[shape], list(keys), batch, slot, tuple(arguments))
            slot += 1
        batch.left = slot
        self.flush()
        if slot == 0:
            batch.future.set_result([])
        return batch.future

    def call(self, *arguments):
        """One control command (AUTH, SELECT, PING); returns a future of its reply."""
        return _first_reply_or_error(self.read([("simple", (), arguments)]))

    @property
    def pending_requests(self):
        return len(self.pending)

    def close(self):
        if self.transport is not None:
            self.transport.close()


async def _first_reply_or_error(future):
    reply = (await future)[0]
    if isinstance(reply, ReplyError):
        raise reply
    return reply
