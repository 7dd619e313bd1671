# Unsigned decimal formatting into caller-owned C buffers, shared by the RESP
# writer (lengths, MAXLEN) and the batch header (entry ids "ms-seq").

from libc.stdint cimport uint64_t

# Digits of the largest uint64_t (18446744073709551615).
cdef enum:
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
