# WebSocket frames the server writes itself (RFC 6455, section 5.2): the
# header of an unmasked frame, and close reasons that fit a close frame.
# The pull path writes entries' frames ahead of time (sansio/stream_entry.pxi);
# the push path writes its acks; picows frames everything else.
#
# Uses: common.pxi

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize

cdef enum:
    WS_FIN_TEXT = 0x81
    WS_FIN_BINARY = 0x82
    WS_MAX_FRAME_HEADER = 10


cdef inline Py_ssize_t ws_header_size(Py_ssize_t size) noexcept nogil:
    if size < 126:
        return 2
    if size < 65536:
        return 4
    return 10


cdef inline char* write_ws_header(char* out, unsigned char first, Py_ssize_t size) noexcept nogil:
    """An unmasked frame header (FIN and opcode in ``first``); returns its end."""
    cdef int i
    out[0] = <char>first
    if size < 126:
        out[1] = <char>size
        return out + 2
    if size < 65536:
        out[1] = 126
        out[2] = <char>((size >> 8) & 0xFF)
        out[3] = <char>(size & 0xFF)
        return out + 4
    out[1] = 127
    for i in range(8):
        out[2 + i] = <char>((<uint64_t>size >> (56 - 8 * i)) & 0xFF)
    return out + 10


cdef int append_text_frame(bytearray out, bytes text) except -1:
    """Append ``text`` as one unmasked text frame."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(text)
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(out)
    cdef char* end
    PyByteArray_Resize(out, start + WS_MAX_FRAME_HEADER + size)
    end = write_ws_header(PyByteArray_AS_STRING(out) + start, WS_FIN_TEXT, size)
    memcpy(end, PyBytes_AS_STRING(text), <size_t>size)
    PyByteArray_Resize(out, end + size - PyByteArray_AS_STRING(out))
    return 0


cdef inline bint is_valid_close_code(int code) noexcept nogil:
    """A code a peer may send in a close frame: RFC 6455 7.4 (1005, 1006 and
    1015 are never sent), IANA's 1012-1014, and 3000-4999 for applications."""
    return (1000 <= code <= 1003) or (1007 <= code <= 1014) or (3000 <= code <= 4999)


cdef int answer_to_close(const char* payload, Py_ssize_t size) noexcept nogil:
    """The code to answer a peer's close frame with: its own (RFC 6455 5.5.1),
    1000 for a close without a code; 0 for a code no peer may send (answer
    1002 then)."""
    cdef int code
    if size == 0:
        return CLOSE_OK
    if size == 1:
        return 0
    code = (<unsigned char>payload[0] << 8) | <unsigned char>payload[1]
    return code if is_valid_close_code(code) else 0


cdef bytes fit_close_reason(str reason):
    """``reason`` as UTF-8 that fits a close frame, cut on a character boundary
    (and marked "...") when it is longer."""
    cdef bytes encoded = reason.encode("utf-8", "backslashreplace")
    if PyBytes_GET_SIZE(encoded) <= MAX_CLOSE_REASON_BYTES:
        return encoded
    # "ignore" drops the character the cut split.
    return encoded[:MAX_CLOSE_REASON_BYTES - 3].decode("utf-8", "ignore").encode("utf-8") + b"..."


def close_reason(str reason):
    """A close frame's reason: at most 123 bytes of UTF-8, cut on a character boundary."""
    return fit_close_reason(reason)
