# Pull steps framed for one socket and not written yet (sans-I/O): iovecs
# over the entries' ready frames (sansio/stream_entry.pxi), plus a small
# owned scratch buffer for the step header and the binary frame header of
# steps that carry several entries. The socket writes them with writev and
# hands what the kernel did not take to its transport (`rest_after`),
# entries by reference.
#
# Uses: common.pxi, sansio/ws_frame.pxi, sansio/stream_entry.pxi

from cpython.ref cimport PyObject


@cython.final
cdef class StepFrames:
    """iovecs of the steps framed so far; ``vectors()`` makes them writable."""

    cdef iovec* iov
    cdef PyObject** iov_owner       # the bytes each iov points into; NULL: scratch
    cdef Py_ssize_t count
    cdef Py_ssize_t capacity
    cdef Py_ssize_t nbytes
    cdef char* scratch
    cdef Py_ssize_t scratch_capacity
    cdef Py_ssize_t scratch_used
    cdef Py_ssize_t header_iov      # the open step's header, -1 when none
    cdef char* header_text          # where its JSON text starts
    cdef list keep                  # entries nothing else holds: alive until written

    def __cinit__(self):
        self.keep = []
        self.header_iov = -1

    def __dealloc__(self):
        PyMem_Free(self.scratch)
        PyMem_Free(self.iov)
        PyMem_Free(self.iov_owner)

    cdef int reserve(self, Py_ssize_t entries) except -1:
        """Room for a step of ``entries`` entries (and its header)."""
        cdef iovec* iov
        cdef PyObject** owners
        cdef Py_ssize_t n = self.count + entries + 1
        if n <= self.capacity:
            return 0
        n = max(n, 2 * self.capacity, 8)
        iov = <iovec*>PyMem_Realloc(self.iov, n * sizeof(iovec))
        if iov == NULL:
            raise MemoryError()
        self.iov = iov
        owners = <PyObject**>PyMem_Realloc(self.iov_owner, n * sizeof(PyObject*))
        if owners == NULL:
            raise MemoryError()
        self.iov_owner = owners
        self.capacity = n
        return 0

    cdef int _reserve_scratch(self, Py_ssize_t n) except -1:
        cdef char* grown
        if n <= self.scratch_capacity:
            return 0
        n = max(n, 2 * self.scratch_capacity, 256)
        grown = <char*>PyMem_Realloc(self.scratch, n)
        if grown == NULL:
            raise MemoryError()
        self.scratch = grown
        self.scratch_capacity = n
        return 0

    cdef inline int _add(self, StreamEntry entry, const char* start, Py_ssize_t size,
                         bint keep) except -1:
        self.iov[self.count].iov_base = <void*>start
        self.iov[self.count].iov_len = <size_t>size
        self.iov_owner[self.count] = <PyObject*>entry.wire
        if keep:
            self.keep.append(entry)
        self.nbytes += size
        self.count += 1
        return 0

    cdef int add_entry(self, StreamEntry entry, bint with_header, bint keep) except -1:
        """A one-entry step: the entry's own frames (the binary one alone without
        ``with_header``). ``keep``: nothing else holds the entry until it is written."""
        cdef Py_ssize_t skip = 0 if with_header else entry.head_size
        return self._add(entry, PyBytes_AS_STRING(entry.wire) + skip,
                         PyBytes_GET_SIZE(entry.wire) - skip, keep)

    cdef char* open_step(self, Py_ssize_t text_bound) except NULL:
        """Start a step of several entries whose header text takes at most
        ``text_bound`` bytes; returns where to write that text (a JSON list)."""
        self._reserve_scratch(self.scratch_used + 2 * WS_MAX_FRAME_HEADER + text_bound)
        # The text frame's header is written in front of the text once its size is known.
        self.header_text = self.scratch + self.scratch_used + WS_MAX_FRAME_HEADER
        self.header_iov = self.count
        self.count += 1
        return self.header_text

    cdef int add_payload(self, StreamEntry entry, bint keep) except -1:
        """An entry's payload, inside the open step's binary frame."""
        return self._add(entry, entry.payload_ptr(), entry.payload_size, keep)

    cdef int close_step(self, char* text_end, Py_ssize_t payload_size) except -1:
        """The open step's text ends at ``text_end``; its binary frame carries
        ``payload_size`` bytes of the payloads added since ``open_step``."""
        cdef Py_ssize_t text_size = text_end - self.header_text
        cdef char* head = self.header_text - ws_header_size(text_size)
        cdef char* end
        write_ws_header(head, WS_FIN_TEXT, text_size)
        end = write_ws_header(text_end, WS_FIN_BINARY, payload_size)
        # An offset, not a pointer: scratch may move while it grows.
        self.iov[self.header_iov].iov_base = <void*>(head - self.scratch)
        self.iov[self.header_iov].iov_len = <size_t>(end - head)
        self.iov_owner[self.header_iov] = NULL
        self.nbytes += end - head
        self.scratch_used = end - self.scratch
        self.header_iov = -1
        return 0

    cdef iovec* vectors(self) noexcept:
        """The iovecs, ready for writev (scratch offsets turned into pointers)."""
        cdef Py_ssize_t i
        for i in range(self.count):
            if self.iov_owner[i] == NULL:
                self.iov[i].iov_base = self.scratch + <size_t>self.iov[i].iov_base
        return self.iov

    cdef list rest_after(self, Py_ssize_t written):
        """What the kernel did not take, after ``vectors()``: scratch parts copied,
        entries by reference (memoryview slices of their immutable bytes)."""
        cdef Py_ssize_t i, size, offset
        cdef list rest = []
        cdef char* start
        cdef PyObject* owner
        for i in range(self.count):
            size = <Py_ssize_t>self.iov[i].iov_len
            if written >= size:
                written -= size
                continue
            start = <char*>self.iov[i].iov_base + written
            size -= written
            written = 0
            owner = self.iov_owner[i]
            if owner == NULL:
                rest.append(PyBytes_FromStringAndSize(start, size))
            else:
                offset = start - PyBytes_AS_STRING(<bytes>owner)
                rest.append(memoryview(<bytes>owner)[offset:offset + size])
        return rest

    cdef int reset(self) except -1:
        self.count = 0
        self.nbytes = 0
        self.scratch_used = 0
        self.header_iov = -1
        if self.keep:
            self.keep = []
        return 0
