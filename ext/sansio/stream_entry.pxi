# Stream entries as the read path holds them: ready WebSocket frames (sans-I/O).
#
# A StreamEntry's `wire` bytes hold, back to back: the text frame of a
# one-entry step header `[["sid","id",0]]`, the binary frame header, then
# the payload. The reply parser copies the payload once, from the read
# buffer into `wire` (or the kernel reads it there directly); every pull
# socket then sends slices of the same immutable object: no copy per socket.
#
# Uses: common.pxi, sansio/decimal.pxi, sansio/ws_frame.pxi

import json as _json

@cython.final
cdef class StreamKey:
    """A stream as the read path names it: its id, its Redis key (UTF-8) and its
    id as a JSON string literal in ASCII (non-ASCII escaped), for step headers."""

    cdef readonly str sid
    cdef readonly bytes key
    cdef readonly bytes json

    def __init__(self, str sid):
        self.sid = sid
        self.key = sid.encode("utf-8")
        self.json = _json.dumps(sid, ensure_ascii=True).encode("ascii")

    def __repr__(self):
        return f"StreamKey({self.sid!r})"


@cython.final
@cython.freelist(256)
cdef class StreamEntry:
    """One stream entry, laid out as the frames a pull socket sends (see the top)."""

    cdef bytes wire
    cdef StreamKey stream
    cdef uint64_t ms
    cdef uint64_t seq
    cdef Py_ssize_t id_start        # the id's text inside the step header, in `wire`
    cdef Py_ssize_t id_size
    cdef Py_ssize_t head_size       # the text frame `[["sid","id",0]]`
    cdef Py_ssize_t payload_start   # after the binary frame header
    cdef readonly Py_ssize_t payload_size

    cdef inline const char* id_text(self) noexcept:
        return PyBytes_AS_STRING(self.wire) + self.id_start

    cdef inline const char* payload_ptr(self) noexcept:
        return PyBytes_AS_STRING(self.wire) + self.payload_start

    @property
    def sid(self):
        return self.stream.sid

    @property
    def entry_id(self):
        """The id as Redis writes it, ``"<ms>-<seq>"``."""
        return PyUnicode_DecodeUTF8(self.id_text(), self.id_size, NULL)

    @property
    def id_pair(self):
        return (self.ms, self.seq)

    @property
    def payload(self):
        return PyBytes_FromStringAndSize(self.payload_ptr(), self.payload_size)

    @property
    def frames(self):
        """The text frame and the binary frame of a one-entry step, as sent."""
        return (self.wire[:self.head_size], self.wire[self.head_size:])

    def __repr__(self):
        return f"<StreamEntry {self.stream.sid!r} {self.entry_id} {self.payload_size} bytes>"


cdef StreamEntry new_stream_entry(StreamKey stream, const char* id_text, Py_ssize_t id_size,
                                  uint64_t ms, uint64_t seq, Py_ssize_t payload_size):
    """An entry whose frames are written, payload left to fill at ``payload_start``."""
    cdef StreamEntry entry = StreamEntry.__new__(StreamEntry)
    cdef Py_ssize_t json_size = PyBytes_GET_SIZE(stream.json)
    # [[ + "sid" + ," + id + ",0]]
    cdef Py_ssize_t text_size = 2 + json_size + 2 + id_size + 5
    cdef Py_ssize_t head_size = ws_header_size(text_size) + text_size
    cdef Py_ssize_t size = head_size + ws_header_size(payload_size) + payload_size
    cdef bytes wire = PyBytes_FromStringAndSize(NULL, size)
    cdef char* base = PyBytes_AS_STRING(wire)
    cdef char* out = write_ws_header(base, WS_FIN_TEXT, text_size)
    out[0] = c'['
    out[1] = c'['
    memcpy(out + 2, PyBytes_AS_STRING(stream.json), <size_t>json_size)
    out += 2 + json_size
    out[0] = c','
    out[1] = c'"'
    out += 2
    entry.id_start = out - base
    memcpy(out, id_text, <size_t>id_size)
    out += id_size
    memcpy(out, b'",0]]', 5)
    out += 5
    out = write_ws_header(out, WS_FIN_BINARY, payload_size)
    entry.wire = wire
    entry.stream = stream
    entry.ms = ms
    entry.seq = seq
    entry.id_size = id_size
    entry.head_size = head_size
    entry.payload_start = out - base
    entry.payload_size = payload_size
    return entry


def join_entries(list entries):
    """GET /data: the entries' payloads concatenated, and the ``entry-offset``
    header ``[["sid","id",start],...]`` in ASCII."""
    cdef StreamEntry entry
    cdef Py_ssize_t body_size = 0, text_size = 2, offset = 0
    cdef char* out
    cdef char* head
    cdef bytes body, text
    for entry in entries:
        body_size += entry.payload_size
        # [ "sid" ," id ", offset ] ,
        text_size += 1 + PyBytes_GET_SIZE(entry.stream.json) + 2 + entry.id_size + 2 \
            + MAX_DECIMAL_DIGITS + 2
    body = PyBytes_FromStringAndSize(NULL, body_size)
    out = PyBytes_AS_STRING(body)
    text = PyBytes_FromStringAndSize(NULL, text_size)
    head = PyBytes_AS_STRING(text)
    head[0] = c'['
    head += 1
    for entry in entries:
        memcpy(out + offset, entry.payload_ptr(), <size_t>entry.payload_size)
        head = write_offset_item(head, entry, offset)
        head[0] = c','
        head += 1
        offset += entry.payload_size
    if entries:
        head -= 1
    head[0] = c']'
    head += 1
    return body, PyUnicode_DecodeASCII(PyBytes_AS_STRING(text), head - PyBytes_AS_STRING(text), NULL)


cdef inline char* write_offset_item(char* out, StreamEntry entry, Py_ssize_t offset) noexcept:
    """``["sid","id",offset]`` (room: the json, the id and MAX_DECIMAL_DIGITS + 6)."""
    cdef Py_ssize_t json_size = PyBytes_GET_SIZE(entry.stream.json)
    out[0] = c'['
    memcpy(out + 1, PyBytes_AS_STRING(entry.stream.json), <size_t>json_size)
    out += 1 + json_size
    out[0] = c','
    out[1] = c'"'
    memcpy(out + 2, entry.id_text(), <size_t>entry.id_size)
    out += 2 + entry.id_size
    out[0] = c'"'
    out[1] = c','
    out = write_decimal(out + 2, <uint64_t>offset)
    out[0] = c']'
    return out + 1


