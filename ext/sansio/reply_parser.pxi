# Replies of the read connection, parsed in place (sans-I/O): stream reads
# (XREAD, XRANGE, XREVRANGE) straight into StreamEntry objects, and simple
# replies (status, error, integer, bulk string) into Python objects.
#
# Uses: common.pxi, sansio/entry_id.pxi, sansio/stream_entry.pxi

from cpython.buffer cimport PyBUF_WRITE
from cpython.memoryview cimport PyMemoryView_FromMemory

cdef enum:
    # Room for a RESP line "$<digits>\r\n" or "*<digits>\r\n" of a sane size.
    RESP_MAX_LINE = 64
    # A read smaller than this would cost a syscall for little data.
    REPLY_MIN_READ = 16 * 1024

cdef Py_ssize_t REPLY_READ_BUFFER_BYTES = 64 * 1024
# After a large reply the buffer is given back down to the default size.
cdef Py_ssize_t REPLY_KEPT_BUFFER_BYTES = 1024 * 1024


cdef enum ReplyShape:
    SHAPE_SIMPLE = 0    # a status, error, integer or bulk string: a Python object
    SHAPE_XREAD = 1     # null, or [[key, [[id, [field, value, ...]], ...]], ...]
    SHAPE_RANGE = 2     # [[id, [field, value, ...]], ...] of one known key

cdef dict REPLY_SHAPES = {"simple": SHAPE_SIMPLE, "xread": SHAPE_XREAD, "range": SHAPE_RANGE}

cdef enum ParseState:
    P_IDLE = 0          # no reply expected yet
    P_TOP = 1
    P_STREAM_PAIR = 2   # XREAD: *2 before a stream's key
    P_STREAM_KEY = 3
    P_ENTRY_LIST = 4
    P_ENTRY_PAIR = 5
    P_ENTRY_ID = 6
    P_FIELD_LIST = 7
    P_FIELD_NAME = 8
    P_FIELD_VALUE = 9
    P_PAYLOAD = 10      # copying (or receiving) the `d` value into the entry
    P_SKIP = 11         # skipping bytes: another field's value, or a CRLF
    P_SIMPLE_BULK = 12  # SHAPE_SIMPLE: a bulk string's body

cdef enum:
    TOP_DONE = 1
    TOP_MORE = 2

cdef enum ParseStatus:
    PARSE_ERROR = -1
    PARSE_MORE = 0      # wait for more bytes
    PARSE_DONE = 1      # a whole reply is parsed: take_result()


class RedisProtocolError(ConnectionError):
    """Redis sent bytes that are not the reply expected: the connection is unusable."""


@cython.final
cdef class StreamReplyParser:
    """Incremental RESP2 parser for the replies of one Redis connection.

    The connection says which shape the next reply has (``begin``), hands
    out ``next_buffer()`` for every read and reports it with
    ``advanced(n)``; ``parse()`` returns PARSE_DONE once the reply is whole.
    """

    cdef char* buffer
    cdef Py_ssize_t capacity
    cdef Py_ssize_t start           # first unparsed byte
    cdef Py_ssize_t end             # end of the bytes read
    cdef Py_ssize_t wanted          # bytes from `start` the current item needs in the buffer
    cdef bint direct                # the last buffer handed out was the entry's payload
    cdef ParseState state
    cdef ReplyShape shape
    cdef list keys                  # StreamKey of the request, in its order
    cdef object result
    cdef list stream_entries        # the list being filled
    cdef StreamKey stream           # the stream being read
    cdef Py_ssize_t streams_left
    cdef Py_ssize_t entries_left
    cdef Py_ssize_t fields_left     # field names and values left in the entry
    cdef bint is_payload_field
    cdef StreamEntry entry          # the entry being read (None until its payload)
    cdef uint64_t entry_ms
    cdef uint64_t entry_seq
    cdef char entry_id[MAX_ENTRY_ID_BYTES]
    cdef Py_ssize_t entry_id_size
    cdef Py_ssize_t fill            # payload bytes of `entry` still to come
    cdef Py_ssize_t skip_left

    def __cinit__(self):
        self.buffer = <char*>malloc(<size_t>REPLY_READ_BUFFER_BYTES)
        if self.buffer == NULL:
            raise MemoryError()
        self.capacity = REPLY_READ_BUFFER_BYTES

    def __dealloc__(self):
        free(self.buffer)
        self.buffer = NULL

    # -- buffers ---------------------------------------------------------

    cdef object next_buffer(self):
        """Where the next read goes: the payload being filled, else the buffer."""
        cdef Py_ssize_t unparsed = self.end - self.start
        cdef Py_ssize_t needed
        if self.state == P_PAYLOAD and unparsed == 0:
            self.direct = True
            return PyMemoryView_FromMemory(
                <char*>self.entry.payload_ptr() + self.entry.payload_size - self.fill,
                self.fill, PyBUF_WRITE)
        self.direct = False
        if unparsed == 0:
            self.start = self.end = 0
            if self.capacity > REPLY_KEPT_BUFFER_BYTES:
                self._resize(REPLY_READ_BUFFER_BYTES)
        needed = max(self.wanted, unparsed + REPLY_MIN_READ)
        if self.capacity - self.start < needed or self.capacity - self.end < REPLY_MIN_READ:
            if self.start > 0:
                memmove(self.buffer, self.buffer + self.start, <size_t>unparsed)
                self.start = 0
                self.end = unparsed
            if self.capacity < needed:
                self._resize(needed)
        return PyMemoryView_FromMemory(self.buffer + self.end, self.capacity - self.end, PyBUF_WRITE)

    cdef int _resize(self, Py_ssize_t capacity) except -1:
        cdef char* grown = <char*>malloc(<size_t>capacity)
        if grown == NULL:
            raise MemoryError()
        memcpy(grown, self.buffer + self.start, <size_t>(self.end - self.start))
        free(self.buffer)
        self.buffer = grown
        self.capacity = capacity
        self.end -= self.start
        self.start = 0
        return 0

    cdef int advanced(self, Py_ssize_t nbytes) except -1:
        """``nbytes`` were read into the last buffer handed out."""
        if self.direct:
            self.direct = False
            self.fill -= nbytes
            if self.fill == 0:
                self.state = P_SKIP
                self.skip_left = 2
        else:
            self.end += nbytes
        return 0

    cdef inline bint has_unparsed(self) noexcept:
        return self.end > self.start

    # -- replies ---------------------------------------------------------

    cdef int begin(self, ReplyShape shape, list keys) except -1:
        self.shape = shape
        self.keys = keys
        self.state = P_TOP
        self.result = None
        return 0

    cdef inline bint active(self) noexcept:
        return self.state != P_IDLE

    cdef object take_result(self):
        result = self.result
        self.result = None
        self.stream_entries = None
        self.stream = None
        self.keys = None
        self.state = P_IDLE
        return result

    cdef int _line(self, char* kind, int64_t* number, Py_ssize_t* text_end) except -1:
        """Read one RESP line at `start`: 1 when whole (`start` moves past it), 0 if not yet."""
        cdef const char* p = self.buffer + self.start
        cdef Py_ssize_t available = self.end - self.start
        cdef const char* cr
        cdef Py_ssize_t i, size
        cdef bint negative = False
        cdef int64_t value = 0
        if available < 3:
            self.wanted = 3
            return 0
        cr = <const char*>memchr(p, c'\r', <size_t>available)
        if cr == NULL or cr + 1 >= p + available:
            if available > RESP_MAX_LINE and p[0] != c'-' and p[0] != c'+':
                raise RedisProtocolError("a RESP line is too long")
            self.wanted = available + 1
            return 0
        if cr[1] != c'\n':
            raise RedisProtocolError("a RESP line does not end with CRLF")
        size = cr - p
        kind[0] = p[0]
        text_end[0] = self.start + size
        if p[0] != c'-' and p[0] != c'+':
            i = 1
            if i < size and p[i] == c'-':
                negative = True
                i += 1
            if i >= size:
                raise RedisProtocolError("a RESP length without digits")
            while i < size:
                if not (c'0' <= p[i] <= c'9') or value > 100000000000000000:
                    raise RedisProtocolError("a RESP length is not a number")
                value = value * 10 + (p[i] - c'0')
                i += 1
            number[0] = -value if negative else value
        self.start += size + 2
        self.wanted = 0
        return 1

    cdef int _bulk(self, int64_t size) except -1:
        """Whether the bulk body of ``size`` bytes and its CRLF are in the buffer."""
        if self.end - self.start < size + 2:
            self.wanted = size + 2
            return 0
        return 1

    cdef ParseStatus parse(self) except PARSE_ERROR:
        cdef char kind = 0
        cdef int64_t number = 0
        cdef Py_ssize_t line_start, text_end = 0, k
        cdef ParseState state
        while True:
            state = self.state
            if state == P_PAYLOAD:
                k = min(self.end - self.start, self.fill)
                if k == 0:
                    return PARSE_MORE
                memcpy(<char*>self.entry.payload_ptr() + self.entry.payload_size - self.fill,
                       self.buffer + self.start, <size_t>k)
                self.start += k
                self.fill -= k
                if self.fill:
                    return PARSE_MORE
                self.state = P_SKIP
                self.skip_left = 2
                continue
            if state == P_SKIP:
                k = min(self.end - self.start, self.skip_left)
                self.start += k
                self.skip_left -= k
                if self.skip_left:
                    return PARSE_MORE
                if self._field_done():
                    return PARSE_DONE
                continue
            if state == P_IDLE:
                if self.has_unparsed():
                    raise RedisProtocolError("Redis sent a reply nobody asked for")
                return PARSE_MORE
            line_start = self.start
            if not self._line(&kind, &number, &text_end):
                return PARSE_MORE
            if state == P_TOP:
                k = self._top(kind, number, line_start, text_end)
                if k == TOP_DONE:
                    return PARSE_DONE
                if k == TOP_MORE:
                    return PARSE_MORE
            elif state == P_SIMPLE_BULK:
                raise RedisProtocolError("unreachable parser state")
            elif state == P_FIELD_VALUE:
                self._expect(kind, c'$', number)
                if self.is_payload_field:
                    self.entry = new_stream_entry(self.stream, self.entry_id, self.entry_id_size,
                                                  self.entry_ms, self.entry_seq, number)
                    self.fill = number
                    self.state = P_PAYLOAD if number else P_SKIP
                    self.skip_left = 2
                else:
                    self.state = P_SKIP
                    self.skip_left = number + 2
            elif state == P_ENTRY_ID or state == P_FIELD_NAME or state == P_STREAM_KEY:
                self._expect(kind, c'$', number)
                if not self._bulk(number):
                    self.start = line_start
                    return PARSE_MORE
                if state == P_ENTRY_ID:
                    self._read_entry_id(number)
                elif state == P_FIELD_NAME:
                    self.is_payload_field = (self.entry is None and number == 1
                                             and self.buffer[self.start] == c'd')
                    self.fields_left -= 1
                    self.state = P_FIELD_VALUE
                else:
                    self._read_stream_key(number)
                self.start += number + 2
            elif state == P_STREAM_PAIR or state == P_ENTRY_PAIR:
                self._expect(kind, c'*', number)
                if number != 2:
                    raise RedisProtocolError("a stream reply pair does not have 2 items")
                self.state = P_STREAM_KEY if state == P_STREAM_PAIR else P_ENTRY_ID
            elif state == P_ENTRY_LIST:
                self._expect(kind, c'*', number)
                self.entries_left = number
                if self._entries_started():
                    return PARSE_DONE
            elif state == P_FIELD_LIST:
                # *-1: an entry without fields (deleted, as some commands report it)
                self._expect(kind, c'*', number if number != -1 else 0)
                self.fields_left = number if number > 0 else 0
                self.entry = None
                if self.fields_left == 0:
                    if self._entry_done():
                        return PARSE_DONE
                else:
                    self.state = P_FIELD_NAME

    cdef int _expect(self, char kind, char wanted, int64_t number) except -1:
        if kind != wanted or number < 0:
            raise RedisProtocolError(
                f"expected {chr(wanted)!r} in a stream reply, got {chr(<unsigned char>kind)!r}")
        return 0

    cdef int _top(self, char kind, int64_t number, Py_ssize_t line_start,
                   Py_ssize_t text_end) except -1:
        """The first line of a reply: TOP_DONE when the reply is already whole,
        TOP_MORE when its body is not all read yet, else 0 (go on)."""
        cdef Py_ssize_t i
        if kind == c'-':
            self.result = ReplyError(PyUnicode_DecodeUTF8(
                self.buffer + line_start + 1, text_end - line_start - 1, "replace"))
            return self._finish()
        if self.shape == SHAPE_SIMPLE:
            if kind == c'+':
                self.result = PyBytes_FromStringAndSize(self.buffer + line_start + 1,
                                                        text_end - line_start - 1)
                return self._finish()
            if kind == c':':
                self.result = number
                return self._finish()
            if kind == c'$':
                if number < 0:
                    return self._finish()
                if not self._bulk(number):
                    self.start = line_start
                    return TOP_MORE
                self.result = PyBytes_FromStringAndSize(self.buffer + self.start, number)
                self.start += number + 2
                return self._finish()
            raise RedisProtocolError(f"unexpected reply type {chr(<unsigned char>kind)!r}")
        if kind != c'*':
            raise RedisProtocolError(f"expected an array for a stream read, got {chr(<unsigned char>kind)!r}")
        if self.shape == SHAPE_XREAD:
            self.result = [[] for i in range(len(self.keys))]
            if number <= 0:
                return self._finish()
            self.streams_left = number
            self.state = P_STREAM_PAIR
            return False
        self.result = self.stream_entries = []
        self.stream = <StreamKey>self.keys[0]
        self.entries_left = number if number > 0 else 0
        return self._entries_started()

    cdef int _finish(self) noexcept:
        self.state = P_IDLE
        return True

    cdef int _read_stream_key(self, int64_t size) except -1:
        cdef StreamKey key
        cdef Py_ssize_t i
        for i in range(len(self.keys)):
            key = <StreamKey>self.keys[i]
            if (PyBytes_GET_SIZE(key.key) == size
                    and memcmp(PyBytes_AS_STRING(key.key), self.buffer + self.start, <size_t>size) == 0):
                self.stream = key
                self.stream_entries = <list>(<list>self.result)[i]
                self.state = P_ENTRY_LIST
                return 0
        raise RedisProtocolError("XREAD replied for a stream it was not asked about")

    cdef int _read_entry_id(self, int64_t size) except -1:
        if size > MAX_ENTRY_ID_BYTES or read_entry_id(
                <const unsigned char*>self.buffer + self.start, size,
                &self.entry_ms, &self.entry_seq) != ID_EXACT:
            raise RedisProtocolError("a stream entry id is not <ms>-<seq>")
        memcpy(self.entry_id, self.buffer + self.start, <size_t>size)
        self.entry_id_size = size
        self.state = P_FIELD_LIST
        return 0

    cdef int _entries_started(self) except -1:
        if self.entries_left == 0:
            return self._stream_done()
        self.state = P_ENTRY_PAIR
        return False

    cdef int _field_done(self) except -1:
        """After a field's value; True when the whole reply is done."""
        self.fields_left -= 1
        if self.fields_left > 0:
            self.state = P_FIELD_NAME
            return False
        return self._entry_done()

    cdef int _entry_done(self) except -1:
        if self.entry is None:
            # No `d` field (written by another tool): an empty payload.
            self.entry = new_stream_entry(self.stream, self.entry_id, self.entry_id_size,
                                          self.entry_ms, self.entry_seq, 0)
        self.stream_entries.append(self.entry)
        self.entry = None
        self.entries_left -= 1
        if self.entries_left > 0:
            self.state = P_ENTRY_PAIR
            return False
        return self._stream_done()

    cdef int _stream_done(self) except -1:
        if self.shape == SHAPE_XREAD:
            self.streams_left -= 1
            if self.streams_left > 0:
                self.state = P_STREAM_PAIR
                return False
        return self._finish()
