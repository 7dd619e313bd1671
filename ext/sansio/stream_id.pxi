# Stream id validation (PROTOCOL.md, "Stream ids are opaque strings").
#
# Runs once per stream id seen in a path or a batch header, so it lives in
# Cython: a batch of 100 entries with [sid, off] items checks 100 ids.
#
# Uses: common.pxi

from cpython.unicode cimport Py_UNICODE_ISSPACE

cdef Py_ssize_t MAX_STREAM_ID_BYTES = 256


class InvalidStreamId(ValueError):
    """A stream id that breaks the protocol's rules; str() is the reason."""


cdef inline bint _is_forbidden_char(Py_UCS4 c) noexcept:
    # '+' separates streams in a path segment, '/' separates path segments;
    # C0/C1 controls, DEL and any whitespace would be unreadable in keys.
    if c < 0x20 or c == 0x7F or (0x80 <= c <= 0x9F):
        return True
    if c == u'+' or c == u'/':
        return True
    return Py_UNICODE_ISSPACE(c)


cpdef bytes check_stream_id(str sid):
    """Return ``sid`` encoded as UTF-8, or raise InvalidStreamId saying why."""
    cdef Py_UCS4 c
    cdef bytes encoded
    if not sid:
        raise InvalidStreamId("stream id is empty")
    for c in sid:
        if _is_forbidden_char(c):
            raise InvalidStreamId(
                f"stream id {sid!r} contains a forbidden character {c!r} "
                "(no '+', '/', whitespace or control characters)")
    try:
        encoded = sid.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidStreamId(f"stream id {sid!r} is not valid Unicode text") from None
    if len(encoded) > MAX_STREAM_ID_BYTES:
        raise InvalidStreamId(
            f"stream id is {len(encoded)} bytes of UTF-8, more than {MAX_STREAM_ID_BYTES}")
    if encoded.startswith(b"XMETA:"):
        raise InvalidStreamId(f"stream id {sid!r} uses the reserved prefix 'XMETA:'")
    return encoded
