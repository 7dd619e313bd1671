# The subscriber connection of one Redis node: keyspace notifications of the
# streams the process follows.
#
# Redis publishes every change of a key on "__keyspace@<db>__:<key>" (with
# notify-keyspace-events K and t). A quiet followed stream costs nothing but
# its channel: when a message arrives for it, its PullFeed queues one
# non-blocking XREAD on the node's read connection, and every read queued
# while one buffer of messages is dispatched goes out in one write. A busy
# stream is read by the node's HotReader instead (io/pull_feed.pxi), so that
# its thousands of messages a second are not parsed at all.
#
# The channel -> feed map is the hub's (engine/ws/hub.py): it outlives this
# connection, and after a reconnect the hub subscribes it again.
#
# Uses: common.pxi, counters.pxi, io/redis_connection.pxi, io/shards.pxi, io/pull_feed.pxi

cdef Py_ssize_t LISTENER_READ_BUFFER_BYTES = 64 * 1024


@cython.final
cdef class KeyspaceListener(RedisConnection):
    """One pub/sub connection. ``channels`` maps a channel to its PullFeed, or to a
    callable(channel, data) for channels that are not streams' (the hub's)."""

    cdef object reader
    cdef bytearray buffer
    cdef public dict channels
    cdef Shards shards
    cdef Py_ssize_t node
    cdef list to_flush                  # StreamReaders with reads queued in this buffer
    cdef public object on_unread        # callable(feed): its node's reader was down

    def __init__(self, Shards shards, Py_ssize_t node, dict channels, Counters counters=None,
                 on_lost=None):
        RedisConnection.__init__(self, counters, on_lost)
        self.reader = HiredisReader()
        self.buffer = bytearray(LISTENER_READ_BUFFER_BYTES)
        self.shards = shards
        self.node = node
        self.channels = channels
        self.to_flush = []

    cdef object read_buffer(self):
        return self.buffer

    cdef int read_replies(self, Py_ssize_t nbytes) except -1:
        cdef object reply
        cdef StreamReader reader
        self.reader.feed(self.buffer, 0, nbytes)
        gets = self.reader.gets
        try:
            while True:
                reply = gets()
                if reply is False:
                    break
                # A message is pushed; anything else answers a command (SUBSCRIBE
                # answers once per channel, PING with ["pong", ""] once subscribed).
                if type(reply) is list and len(<list>reply) == 3 and (<list>reply)[0] == b"message":
                    self.counters.notifications += 1
                    self.dispatch((<list>reply)[1], (<list>reply)[2])
                else:
                    self.deliver(reply)
        finally:
            for reader in self.to_flush:
                reader.flush()
            self.to_flush = []
        return 0

    cdef int dispatch(self, object channel, object data) except -1:
        cdef object target = self.channels.get(channel)
        cdef PullFeed feed
        cdef StreamReader reader
        if target is None:
            return 0  # unsubscribed while the message was on its way
        if type(target) is not PullFeed:
            target(channel, data)
            return 0
        feed = <PullFeed>target
        reader = self.shards.reader_for(feed.key.key)
        if reader is None:
            if self.on_unread is not None:
                self.on_unread(feed)
            return 0
        if feed.request_read(reader) and not reader.queued_for_flush:
            reader.queued_for_flush = True
            self.to_flush.append(reader)
        return 0

    def subscribe(self, channels):
        """SUBSCRIBE ``channels`` (bytes); a future done once Redis confirmed them all."""
        return self._send(b"SUBSCRIBE", list(channels))

    def unsubscribe(self, channels):
        """UNSUBSCRIBE ``channels``; a future done once Redis confirmed."""
        return self._send(b"UNSUBSCRIBE", list(channels))

    cdef object _send(self, bytes verb, list channels):
        cdef FutureOwner owner = FutureOwner.expecting(1, True, True)
        cdef RedisRequest request
        if not channels:
            owner.future.set_result(None)
            return owner.future
        request = self.open_request(owner, False, False)
        self.writer.command(verb, *channels)
        request.expected = len(channels)  # one confirmation per channel
        self.flush()
        return owner.future
