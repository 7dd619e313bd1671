# Python views of state the hot classes keep in C, for the tests and for
# metrics: nothing here runs per frame, and the hot classes carry no
# methods for it.
#
# Uses: common.pxi, sansio/reply_parser.pxi, io/pull_feed.pxi


@cython.final
cdef class ReplyFeeder:
    """Feeds bytes to a StreamReplyParser the way a connection reads them."""

    cdef StreamReplyParser parser
    cdef list expected

    def __init__(self):
        self.parser = StreamReplyParser()
        self.expected = []

    def expect(self, str shape, keys=()):
        """Announce a reply to come: "simple", "xread" (keys: the StreamKey list
        of the command) or "range" (keys: its one StreamKey). Replies come in order."""
        self.expected.append((REPLY_SHAPES[shape], list(keys)))

    def feed(self, data):
        """Feed bytes; return the replies completed."""
        cdef StreamReplyParser parser = self.parser
        cdef const unsigned char[:] view = memoryview(data).cast("B")
        cdef Py_ssize_t offset = 0, size
        done = []
        while True:
            if not parser.active() and self.expected:
                shape, keys = self.expected.pop(0)
                parser.begin(shape, keys)
            if parser.active():
                if parser.parse() == PARSE_DONE:
                    done.append(parser.take_result())
                    continue
            elif parser.has_unparsed():
                raise RedisProtocolError("Redis sent a reply nobody asked for")
            if offset >= view.shape[0]:
                return done
            target = parser.next_buffer()
            size = min(len(target), view.shape[0] - offset)
            target[:size] = view[offset:offset + size]
            parser.advanced(size)
            offset += size


def feed_state(PullFeed feed):
    """A feed's followers, those waiting for entries, and its reads' COUNT."""
    return {
        "followers": len(feed.followers),
        "waiting": len(feed.waiting),
        "read_count": feed.read_count,
        "next_read_count": feed.next_read_count(),
    }
