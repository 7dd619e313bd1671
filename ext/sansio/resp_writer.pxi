# RESP2 command framing for the Redis connection (sans-I/O).
#
# Storing an entry is `XADD <key> MAXLEN ~ <N> <id> d <payload>`. Framing
# and small payloads are copied into one owned malloc'ed buffer; a payload
# of at least `by_reference_threshold` bytes ends the current owned chunk
# and is passed by reference as a chunk of its own. The writer describes
# those buffers as iovecs (`fill_vectors`) for the connection's writev, and
# copies only what the socket did not take (`rest_after`); `take()` returns
# the same chunks as Python objects.
#
# Uses: common.pxi, sansio/decimal.pxi


cdef Py_ssize_t RESP_DEFAULT_BY_REFERENCE_THRESHOLD = 16 * 1024
cdef Py_ssize_t RESP_DEFAULT_CAPACITY = 64 * 1024
# After a burst the buffer may have grown large; take() gives memory above
# this back instead of keeping it for the connection's lifetime.
cdef Py_ssize_t RESP_KEPT_CAPACITY_LIMIT = 1024 * 1024
# "$" + up to 20 digits + "\r\n": the framing before one bulk string.
cdef Py_ssize_t RESP_MAX_BULK_HEADER = 23

cdef const char* _XADD_HEAD = b"*8\r\n$4\r\nXADD\r\n"
cdef Py_ssize_t _XADD_HEAD_LEN = 14
cdef const char* _MAXLEN_APPROX = b"$6\r\nMAXLEN\r\n$1\r\n~\r\n"
cdef Py_ssize_t _MAXLEN_APPROX_LEN = 19
cdef const char* _FIELD_D = b"$1\r\nd\r\n"
cdef Py_ssize_t _FIELD_D_LEN = 7


cdef inline char* _write_bytes(char* out, const char* data, Py_ssize_t length) noexcept nogil:
    memcpy(out, data, <size_t>length)
    return out + length


cdef inline char* _write_bulk_header(char* out, Py_ssize_t length) noexcept nogil:
    out[0] = b'$'
    out = write_decimal(out + 1, length)
    out[0] = b'\r'
    out[1] = b'\n'
    return out + 2


cdef inline char* _write_crlf(char* out) noexcept nogil:
    out[0] = b'\r'
    out[1] = b'\n'
    return out + 2


cdef object _byte_view(object source, Py_ssize_t offset, Py_ssize_t length):
    """``source[offset:offset + length]`` as a flat byte buffer, without copying."""
    if type(source) is bytes and offset == 0 and length == PyBytes_GET_SIZE(source):
        return source
    view = memoryview(source)
    if view.ndim != 1 or view.itemsize != 1 or view.format != "B":
        # Transports count len() in items: make every item one byte.
        view = view.cast("B")
    return view[offset:offset + length]


cdef object _resp_argument(object argument):
    """One command argument as bytes or a flat byte view; raises before any framing."""
    if type(argument) is bytes:
        return argument
    if isinstance(argument, str):
        return (<str>argument).encode("utf-8")
    if isinstance(argument, int) and not isinstance(argument, bool):
        return str(argument).encode("ascii")
    if isinstance(argument, (bool, float)) or argument is None:
        raise TypeError(f"a Redis argument must be bytes-like, str or int, "
                        f"not {type(argument).__name__}")
    view = memoryview(argument)
    if not view.c_contiguous:
        raise BufferError("a Redis argument must be a contiguous buffer")
    return _byte_view(view, 0, view.nbytes)


cdef inline (Py_ssize_t, char*) _copy_after(char* out, const char* data, Py_ssize_t length,
                                            Py_ssize_t position, Py_ssize_t skip) noexcept:
    """Copy the part of ``data`` (at ``position`` in a stream) that lies past ``skip``."""
    cdef Py_ssize_t offset = 0
    if position + length <= skip:
        return position + length, out
    if position < skip:
        offset = skip - position
    memcpy(out, data + offset, <size_t>(length - offset))
    return position + length, out + (length - offset)


@cython.final
cdef class RespWriter:
    """Frames Redis commands into buffers ready for ``transport.writelines``.

    Small payloads are copied; payloads of at least
    ``by_reference_threshold`` bytes are kept by reference until ``take()``
    hands them out, so the caller must not change them in between.
    """

    # The framed bytes, in order, are: owned[0:cut[0]], refs[0],
    # owned[cut[0]:cut[1]], refs[1], ..., owned[cut[-1]:_length].
    cdef char* _buffer               # every owned byte, contiguous
    cdef Py_ssize_t _length
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _initial_capacity
    cdef list _refs                  # payloads passed by reference (flat byte buffers)
    cdef list _cuts                  # owned offset at which each reference sits
    cdef Py_ssize_t _ref_bytes       # total size of _refs
    cdef Py_ssize_t _command_count
    cdef readonly Py_ssize_t by_reference_threshold

    def __cinit__(self, Py_ssize_t by_reference_threshold=RESP_DEFAULT_BY_REFERENCE_THRESHOLD,
                  Py_ssize_t initial_capacity=RESP_DEFAULT_CAPACITY):
        if by_reference_threshold < 1:
            raise ValueError("by_reference_threshold must be at least 1 byte")
        if initial_capacity < 64:
            initial_capacity = 64
        self.by_reference_threshold = by_reference_threshold
        self._initial_capacity = initial_capacity
        self._buffer = <char*>malloc(<size_t>initial_capacity)
        if self._buffer == NULL:
            raise MemoryError()
        self._capacity = initial_capacity
        self._length = 0
        self._refs = []
        self._cuts = []
        self._ref_bytes = 0
        self._command_count = 0

    def __dealloc__(self):
        free(self._buffer)
        self._buffer = NULL

    # -- owned buffer --------------------------------------------------

    cdef inline int _reserve(self, Py_ssize_t extra) except -1:
        if self._length + extra > self._capacity:
            self._grow(self._length + extra)
        return 0

    cdef int _grow(self, Py_ssize_t needed) except -1:
        cdef Py_ssize_t capacity = self._capacity * 2
        cdef char* grown
        if capacity < needed:
            capacity = needed
        grown = <char*>realloc(self._buffer, <size_t>capacity)
        if grown == NULL:
            raise MemoryError()
        self._buffer = grown
        self._capacity = capacity
        return 0

    cdef int _append_reference(self, object chunk, Py_ssize_t length) except -1:
        self._refs.append(chunk)
        self._cuts.append(self._length)
        self._ref_bytes += length
        return 0

    cdef inline bint has_references(self) noexcept:
        """Whether a framed chunk points into a caller's buffer (write it before
        that buffer changes)."""
        return len(self._refs) > 0

    cdef inline Py_ssize_t pending(self) noexcept:
        return self._length + self._ref_bytes

    # -- handing the bytes out -------------------------------------------

    cdef list _chunks(self):
        cdef list chunks = []
        cdef Py_ssize_t start = 0, cut, i
        for i in range(len(self._refs)):
            cut = self._cuts[i]
            if cut > start:
                chunks.append(PyBytes_FromStringAndSize(self._buffer + start, cut - start))
            chunks.append(self._refs[i])
            start = cut
        if self._length > start:
            chunks.append(PyBytes_FromStringAndSize(self._buffer + start, self._length - start))
        return chunks

    cdef inline Py_ssize_t vector_count(self) noexcept:
        """How many iovecs ``fill_vectors`` needs at most."""
        return 2 * len(self._refs) + 1

    cdef Py_ssize_t fill_vectors(self, iovec* vectors) except -1:
        """Describe everything framed, in order, as iovecs (``vector_count()`` of
        room); return how many. They point into the writer's buffer and the
        referenced payloads: valid until the next framing call or ``reset``."""
        cdef Py_ssize_t n = 0, i, start = 0, cut
        cdef Py_buffer view
        for i in range(len(self._refs)):
            cut = self._cuts[i]
            if cut > start:
                vectors[n].iov_base = self._buffer + start
                vectors[n].iov_len = <size_t>(cut - start)
                n += 1
            PyObject_GetBuffer(self._refs[i], &view, PyBUF_SIMPLE)
            # The reference object keeps its memory alive; the view is
            # released at once (nothing can resize these buffers meanwhile).
            vectors[n].iov_base = view.buf
            vectors[n].iov_len = <size_t>view.len
            PyBuffer_Release(&view)
            n += 1
            start = cut
        if self._length > start:
            vectors[n].iov_base = self._buffer + start
            vectors[n].iov_len = <size_t>(self._length - start)
            n += 1
        return n

    cdef bytes rest_after(self, Py_ssize_t skip):
        """The framed bytes after the first ``skip``, as one owned bytes object."""
        cdef Py_ssize_t size = self.pending() - skip
        cdef bytes rest = PyBytes_FromStringAndSize(NULL, size)
        cdef char* out = PyBytes_AS_STRING(rest)
        cdef Py_ssize_t position = 0  # in the framed stream
        cdef Py_ssize_t start = 0, cut, i, length
        cdef Py_buffer view
        for i in range(len(self._refs) + 1):
            cut = self._cuts[i] if i < len(self._refs) else self._length
            position, out = _copy_after(out, self._buffer + start, cut - start, position, skip)
            start = cut
            if i < len(self._refs):
                PyObject_GetBuffer(self._refs[i], &view, PyBUF_SIMPLE)
                try:
                    position, out = _copy_after(out, <char*>view.buf, view.len, position, skip)
                finally:
                    PyBuffer_Release(&view)
        return rest

    cdef int reset(self) except -1:
        """Forget everything framed (it was written or handed over)."""
        self._length = 0
        self._refs = []
        self._cuts = []
        self._ref_bytes = 0
        self._command_count = 0
        if self._capacity > RESP_KEPT_CAPACITY_LIMIT:
            free(self._buffer)
            self._buffer = <char*>malloc(<size_t>self._initial_capacity)
            self._capacity = self._initial_capacity
            if self._buffer == NULL:
                self._capacity = 0
                raise MemoryError()
        return 0

    # -- commands ------------------------------------------------------

    cdef int append_xadd(self, const char* key, Py_ssize_t key_length,
                         const char* entry_id, Py_ssize_t entry_id_length,
                         Py_ssize_t maxlen,
                         const char* payload, Py_ssize_t payload_length,
                         object payload_source, Py_ssize_t source_offset) except -1:
        """Frame ``XADD key MAXLEN ~ maxlen entry_id d payload``.

        ``payload_source`` is None (always copy) or a buffer object holding
        the payload at ``source_offset``; it is then passed by reference
        when the payload reaches the threshold, and must stay unchanged
        until the chunks from ``take()`` are written.
        """
        cdef bint by_reference = (payload_source is not None
                                  and payload_length >= self.by_reference_threshold)
        # Fixed parts, 4 variable bulk headers (key, MAXLEN value, id,
        # payload) and the CRLF after each of their bodies.
        cdef Py_ssize_t size = (_XADD_HEAD_LEN + _MAXLEN_APPROX_LEN + _FIELD_D_LEN
                                + 4 * (RESP_MAX_BULK_HEADER + 2) + MAX_DECIMAL_DIGITS
                                + key_length + entry_id_length)
        cdef char* out
        if maxlen < 0:
            raise ValueError("MAXLEN must not be negative")
        if not by_reference:
            size += payload_length
        self._reserve(size)
        out = self._buffer + self._length
        out = _write_bytes(out, _XADD_HEAD, _XADD_HEAD_LEN)
        out = _write_bulk_header(out, key_length)
        out = _write_crlf(_write_bytes(out, key, key_length))
        out = _write_bytes(out, _MAXLEN_APPROX, _MAXLEN_APPROX_LEN)
        out = _write_bulk_header(out, decimal_digits(maxlen))
        out = _write_crlf(write_decimal(out, maxlen))
        out = _write_bulk_header(out, entry_id_length)
        out = _write_crlf(_write_bytes(out, entry_id, entry_id_length))
        out = _write_bytes(out, _FIELD_D, _FIELD_D_LEN)
        out = _write_bulk_header(out, payload_length)
        if by_reference:
            self._length = out - self._buffer
            self._append_reference(
                _byte_view(payload_source, source_offset, payload_length), payload_length)
            out = self._buffer + self._length
        else:
            out = _write_bytes(out, payload, payload_length)
        out = _write_crlf(out)
        self._length = out - self._buffer
        self._command_count += 1
        return 0

    cdef int _append_bulk(self, const char* data, Py_ssize_t length, object source) except -1:
        cdef bint by_reference = source is not None and length >= self.by_reference_threshold
        cdef char* out
        self._reserve(RESP_MAX_BULK_HEADER + 2 + (0 if by_reference else length))
        out = _write_bulk_header(self._buffer + self._length, length)
        if by_reference:
            self._length = out - self._buffer
            self._append_reference(_byte_view(source, 0, length), length)
            out = self._buffer + self._length
        else:
            out = _write_bytes(out, data, length)
        self._length = _write_crlf(out) - self._buffer
        return 0

    def xadd(self, key, entry_id, payload, Py_ssize_t maxlen):
        """Frame ``XADD key MAXLEN ~ maxlen entry_id d payload`` (bytes-like arguments)."""
        cdef Py_buffer key_view, id_view, payload_view
        PyObject_GetBuffer(key, &key_view, PyBUF_SIMPLE)
        try:
            PyObject_GetBuffer(entry_id, &id_view, PyBUF_SIMPLE)
            try:
                PyObject_GetBuffer(payload, &payload_view, PyBUF_SIMPLE)
                try:
                    self.append_xadd(<const char*>key_view.buf, key_view.len,
                                     <const char*>id_view.buf, id_view.len, maxlen,
                                     <const char*>payload_view.buf, payload_view.len,
                                     payload, 0)
                finally:
                    PyBuffer_Release(&payload_view)
            finally:
                PyBuffer_Release(&id_view)
        finally:
            PyBuffer_Release(&key_view)

    def command(self, *arguments):
        """Frame any command; arguments are bytes-like, str (UTF-8) or int."""
        cdef list parts = [_resp_argument(argument) for argument in arguments]
        cdef Py_buffer view
        cdef char* out
        if not parts:
            raise ValueError("a Redis command needs at least one argument")
        self._reserve(RESP_MAX_BULK_HEADER)
        out = self._buffer + self._length
        out[0] = b'*'
        out = _write_crlf(write_decimal(out + 1, len(parts)))
        self._length = out - self._buffer
        for part in parts:
            PyObject_GetBuffer(part, &view, PyBUF_SIMPLE)
            try:
                self._append_bulk(<const char*>view.buf, view.len, part)
            finally:
                PyBuffer_Release(&view)
        self._command_count += 1

    cdef int append_raw(self, const char* data, Py_ssize_t length, Py_ssize_t commands) except -1:
        """Append ``commands`` commands already framed (``data``, copied)."""
        self._reserve(length)
        memcpy(self._buffer + self._length, data, <size_t>length)
        self._length += length
        self._command_count += commands
        return 0

    cdef inline Py_ssize_t commands(self) noexcept:
        return self._command_count

    def take(self):
        """Return the framed chunks (a list for ``writelines``) and start afresh."""
        cdef list chunks = self._chunks()
        self.reset()
        return chunks

    @property
    def pending_bytes(self):
        """Bytes framed since the last ``take()``."""
        return self.pending()

    @property
    def command_count(self):
        """Commands framed since the last ``take()``."""
        return self._command_count


def resp_command_bounds(const unsigned char[:] framed):
    """Where each command of ``framed`` (RESP arrays of bulk strings, as a
    RespWriter frames them) starts, and where the last one ends: n + 1 offsets.
    Raises ValueError for bytes that are not such commands."""
    cdef Py_ssize_t position = 0, size = framed.shape[0], count, length, i
    cdef list bounds = [0]
    while position < size:
        count, position = _resp_length(framed, position, b'*')
        for i in range(count):
            length, position = _resp_length(framed, position, b'$')
            position += length + 2
            if position > size:
                raise ValueError("a framed command is cut short")
        bounds.append(position)
    return bounds


cdef (Py_ssize_t, Py_ssize_t) _resp_length(const unsigned char[:] framed, Py_ssize_t position,
                                           unsigned char kind) except *:
    """The decimal after ``kind`` at ``position``, and where what follows its CRLF starts."""
    cdef Py_ssize_t value = 0, size = framed.shape[0]
    if position >= size or framed[position] != kind:
        raise ValueError(f"expected {chr(kind)!r} at byte {position} of framed commands")
    position += 1
    while position < size and 48 <= framed[position] <= 57:
        value = value * 10 + framed[position] - 48
        position += 1
    if position + 1 >= size or framed[position] != 13 or framed[position + 1] != 10:
        raise ValueError(f"a malformed length at byte {position} of framed commands")
    return value, position + 2
