# Unsigned decimal numbers in caller-owned C buffers: written by the RESP
# writer (lengths, MAXLEN) and read and written as parts of entry ids.
#
# Uses: common.pxi

cdef enum:
    # Digits of the largest uint64_t (18446744073709551615).
    MAX_DECIMAL_DIGITS = 20


cdef inline Py_ssize_t decimal_digits(uint64_t value) noexcept nogil:
    cdef Py_ssize_t digits = 1
    while value >= 10:
        value //= 10
        digits += 1
    return digits


cdef inline char* write_decimal(char* out, uint64_t value) noexcept nogil:
    """Write ``value`` in decimal at ``out`` (room for 20 bytes); return the end."""
    cdef char* end = out + decimal_digits(value)
    cdef char* p = end
    while True:
        p -= 1
        p[0] = <char>(c'0' + value % 10)
        value //= 10
        if value == 0:
            return end


cdef inline bint is_digit(unsigned char c) noexcept nogil:
    return c'0' <= c <= c'9'


cdef inline bint fits_one_more_digit(uint64_t value, unsigned int digit) noexcept nogil:
    # value * 10 + digit stays within uint64_t; constants fold at compile time.
    return value < UINT64_MAX // 10 or (value == UINT64_MAX // 10 and digit <= UINT64_MAX % 10)


cdef int read_decimal(const unsigned char* text, Py_ssize_t length, Py_ssize_t* pos,
                      uint64_t* out) noexcept nogil:
    """Read the digits at ``text[pos]``, advancing ``pos`` past them: 1 when they fit
    a uint64_t (``out`` is set), 0 when there is no digit, -1 when they overflow."""
    cdef Py_ssize_t i = pos[0]
    cdef uint64_t value = 0
    cdef unsigned int digit
    cdef bint overflow = False
    if i >= length or not is_digit(text[i]):
        return 0
    while i < length and is_digit(text[i]):
        digit = text[i] - c'0'
        if not fits_one_more_digit(value, digit):
            overflow = True
        value = value * 10 + digit
        i += 1
    pos[0] = i
    if overflow:
        return -1
    out[0] = value
    return 1
