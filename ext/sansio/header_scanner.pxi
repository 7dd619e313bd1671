# Token scanner for the restricted JSON of batch headers: whitespace,
# integers, strings (with escapes) and `null`, read straight from the UTF-8
# bytes. It allocates nothing per token; strings are returned as spans of
# the input and decoded only when the caller needs their text.
#
# Its rules are JSON's (RFC 8259), as Python's json module applies them:
# no leading zeros, "-0" is 0, no raw control characters in strings, only
# the escapes \" \\ \/ \b \f \n \r \t \uXXXX, and a \uD8xx\uDCxx pair is one
# code point (a lone surrogate stays a lone surrogate).
#
# Uses: common.pxi, sansio/decimal.pxi, sansio/ws_frame.pxi


class BatchHeaderError(ValueError):
    """A batch header the server refuses.

    ``str(error)`` is the WebSocket close reason (at most 123 bytes of
    UTF-8); ``close_code`` is 1007 for malformed input and 1008 for a
    stream the socket may not write to.
    """

    def __init__(self, reason, close_code=CLOSE_INVALID_DATA):
        reason = fit_close_reason(str(reason)).decode("utf-8")
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code


cdef struct HeaderCursor:
    const unsigned char* start
    const unsigned char* pos
    const unsigned char* end


cdef struct ScannedInt:
    uint64_t value
    bint negative      # below zero ("-0" is not)
    bint too_large     # beyond uint64_t; value is then meaningless


cdef struct ScannedString:
    Py_ssize_t offset  # of the first byte after the opening quote
    Py_ssize_t length  # of the raw content between the quotes
    bint has_escape


cdef inline bint is_json_space(unsigned char c) noexcept nogil:
    return c == c' ' or c == c'\t' or c == c'\n' or c == c'\r'


cdef inline void skip_space(HeaderCursor* cursor) noexcept nogil:
    while cursor.pos < cursor.end and is_json_space(cursor.pos[0]):
        cursor.pos += 1


cdef inline int peek(HeaderCursor* cursor) noexcept nogil:
    """The next byte, or -1 at the end."""
    if cursor.pos < cursor.end:
        return cursor.pos[0]
    return -1


cdef inline Py_ssize_t cursor_offset(HeaderCursor* cursor) noexcept nogil:
    return cursor.pos - cursor.start


cdef int syntax_error(HeaderCursor* cursor, str expected) except -1:
    cdef int found = peek(cursor)
    if found < 0:
        raise BatchHeaderError(f"malformed batch header: ended where {expected} was expected")
    raise BatchHeaderError(
        f"malformed batch header at byte {cursor_offset(cursor)}: expected {expected}")


cdef int _refuse_number(HeaderCursor* cursor, const unsigned char* at, Py_ssize_t entry,
                        str what) except -1:
    # Cold path, kept out of scan_int so that stays small enough to inline.
    cursor.pos = at
    if at == cursor.end or not (is_digit(at[0]) or at[0] == c'.' or at[0] == c'e' or at[0] == c'E'):
        return syntax_error(cursor, "a digit")
    if is_digit(at[0]):
        raise BatchHeaderError(
            f"malformed batch header at byte {cursor_offset(cursor)}: "
            "numbers must not have leading zeros")
    raise BatchHeaderError(f"entry {entry}: {what} must be an integer, not a fraction or exponent")


cdef inline int scan_int(HeaderCursor* cursor, ScannedInt* out, Py_ssize_t entry,
                         str what) except -1:
    """Read a JSON integer at the cursor; a fraction or exponent is an error.

    ``entry`` and ``what`` ("an offset") only name the value in errors.
    """
    cdef const unsigned char* p = cursor.pos
    cdef uint64_t value = 0
    cdef unsigned int digit
    cdef bint minus = False
    out.value = 0
    out.too_large = False
    if p < cursor.end and p[0] == c'-':
        minus = True
        p += 1
    if p == cursor.end or not is_digit(p[0]):
        return _refuse_number(cursor, p, entry, what)
    if p[0] == c'0':
        p += 1
        if p < cursor.end and is_digit(p[0]):
            return _refuse_number(cursor, p, entry, what)
    else:
        while p < cursor.end and is_digit(p[0]):
            digit = p[0] - c'0'
            if not fits_one_more_digit(value, digit):
                out.too_large = True
            value = value * 10 + digit
            p += 1
    if p < cursor.end and (p[0] == c'.' or p[0] == c'e' or p[0] == c'E'):
        return _refuse_number(cursor, p, entry, what)
    cursor.pos = p
    out.value = value
    out.negative = minus and (value != 0 or out.too_large)
    return 0


cdef inline int hex_digit(unsigned char c) noexcept nogil:
    if c'0' <= c <= c'9':
        return c - c'0'
    if c'a' <= c <= c'f':
        return c - c'a' + 10
    if c'A' <= c <= c'F':
        return c - c'A' + 10
    return -1


cdef inline int hex4(const unsigned char* p) noexcept nogil:
    """Value of 4 hex digits (already validated by scan_string)."""
    return (hex_digit(p[0]) << 12) | (hex_digit(p[1]) << 8) | (hex_digit(p[2]) << 4) | hex_digit(p[3])


cdef int scan_string(HeaderCursor* cursor, ScannedString* out) except -1:
    """Check a JSON string at the cursor (on its quote) and record its span."""
    cdef const unsigned char* p = cursor.pos + 1
    cdef unsigned char c
    cdef int i
    out.offset = p - cursor.start
    out.has_escape = False
    while True:
        if p == cursor.end:
            raise BatchHeaderError("malformed batch header: unterminated string")
        c = p[0]
        if c == c'"':
            break
        if c < 0x20:
            cursor.pos = p
            raise BatchHeaderError(
                f"malformed batch header at byte {cursor_offset(cursor)}: "
                "control character inside a string")
        if c == c'\\':
            out.has_escape = True
            p += 1
            if p == cursor.end:
                raise BatchHeaderError("malformed batch header: unterminated string")
            c = p[0]
            if c == c'u':
                for i in range(1, 5):
                    if p + i >= cursor.end or hex_digit(p[i]) < 0:
                        cursor.pos = p - 1
                        raise BatchHeaderError(
                            f"malformed batch header at byte {cursor_offset(cursor)}: "
                            "\\u must be followed by 4 hex digits")
                p += 4
            elif not (c == c'"' or c == c'\\' or c == c'/' or c == c'b' or c == c'f'
                      or c == c'n' or c == c'r' or c == c't'):
                cursor.pos = p - 1
                raise BatchHeaderError(
                    f"malformed batch header at byte {cursor_offset(cursor)}: invalid escape")
        p += 1
    out.length = (p - cursor.start) - out.offset
    cursor.pos = p + 1
    return 0


cdef inline str _decode_utf8(const unsigned char* data, Py_ssize_t length):
    return PyUnicode_DecodeUTF8(<const char*>data, length, NULL)


cdef str decode_string(const unsigned char* start, ScannedString* span):
    """The text of a string checked by scan_string (UnicodeDecodeError on bad UTF-8)."""
    cdef const unsigned char* data = start + span.offset
    cdef Py_ssize_t length = span.length
    cdef Py_ssize_t i = 0, run_start = 0
    cdef int code, low
    cdef unsigned char c
    cdef list pieces
    if not span.has_escape:
        return _decode_utf8(data, length)
    # Escapes are rare in stream ids: decode runs of raw UTF-8 between them.
    pieces = []
    while i < length:
        if data[i] != c'\\':
            i += 1
            continue
        if i > run_start:
            pieces.append(_decode_utf8(data + run_start, i - run_start))
        c = data[i + 1]
        if c == c'u':
            code = hex4(data + i + 2)
            i += 6
            if (0xD800 <= code <= 0xDBFF and i + 6 <= length
                    and data[i] == c'\\' and data[i + 1] == c'u'):
                low = hex4(data + i + 2)
                if 0xDC00 <= low <= 0xDFFF:
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
            pieces.append(chr(code))
        else:
            pieces.append(_SIMPLE_ESCAPES[c])
            i += 2
        run_start = i
    if length > run_start:
        pieces.append(_decode_utf8(data + run_start, length - run_start))
    return "".join(pieces)


cdef dict _SIMPLE_ESCAPES = {
    ord('"'): '"', ord('\\'): '\\', ord('/'): '/', ord('b'): '\b',
    ord('f'): '\f', ord('n'): '\n', ord('r'): '\r', ord('t'): '\t',
}


cdef bint scan_null(HeaderCursor* cursor) noexcept nogil:
    """Consume the literal `null` at the cursor if it is there."""
    cdef const unsigned char* p = cursor.pos
    if (cursor.end - p >= 4 and p[0] == c'n' and p[1] == c'u' and p[2] == c'l'
            and p[3] == c'l'):
        cursor.pos = p + 4
        return True
    return False
