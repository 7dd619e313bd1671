# Redis Cluster key slot: CRC16-CCITT (XMODEM) of the key, or of its hash
# tag, modulo 16384 -- the same function Redis Cluster uses to place a key.
#
# The shard map (io/shards.pxi) places a key with it once the engine runs in
# front of several Redis nodes; a nogil C function over a 256-entry table
# (one lookup per byte).
#
# Uses: common.pxi

cdef enum:
    REDIS_CLUSTER_SLOTS = 16384

cdef uint16_t _crc16_xmodem_table[256]


cdef void _fill_crc16_xmodem_table() noexcept nogil:
    # Polynomial 0x1021, initial value 0, no reflection, no final xor.
    cdef int byte, bit
    cdef uint16_t crc
    for byte in range(256):
        crc = <uint16_t>(byte << 8)
        for bit in range(8):
            if crc & 0x8000:
                crc = <uint16_t>((crc << 1) ^ 0x1021)
            else:
                crc = <uint16_t>(crc << 1)
        _crc16_xmodem_table[byte] = crc


_fill_crc16_xmodem_table()


cdef inline uint16_t crc16_xmodem(const unsigned char* data, Py_ssize_t length) noexcept nogil:
    cdef uint16_t crc = 0
    cdef Py_ssize_t i
    for i in range(length):
        crc = <uint16_t>((crc << 8) ^ _crc16_xmodem_table[<uint8_t>((crc >> 8) ^ data[i])])
    return crc


cdef int redis_key_slot(const char* key, Py_ssize_t length) noexcept nogil:
    """Slot of ``key[:length]``, following Redis' hash tag rule exactly."""
    # Only the part between the first '{' and the first '}' after it is
    # hashed, and only when that part is non-empty: "foo{}{bar}" hashes the
    # whole key, "foo{{bar}}" hashes "{bar".
    cdef const char* open_brace = <const char*>memchr(key, b'{', <size_t>length)
    cdef const char* close_brace
    cdef Py_ssize_t tag_start
    if open_brace != NULL:
        tag_start = open_brace - key + 1
        close_brace = <const char*>memchr(open_brace + 1, b'}', <size_t>(length - tag_start))
        if close_brace != NULL and close_brace - key > tag_start:
            return crc16_xmodem(<const unsigned char*>key + tag_start,
                                close_brace - key - tag_start) & (REDIS_CLUSTER_SLOTS - 1)
    return crc16_xmodem(<const unsigned char*>key, length) & (REDIS_CLUSTER_SLOTS - 1)


def key_slot(key):
    """Redis Cluster hash slot (0..16383) of ``key`` (bytes or another bytes-like object)."""
    cdef Py_buffer view
    cdef int slot
    if type(key) is bytes:
        return redis_key_slot(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
    if isinstance(key, str):
        raise TypeError("key_slot() takes bytes; encode str keys as UTF-8 first")
    PyObject_GetBuffer(key, &view, PyBUF_SIMPLE)
    slot = redis_key_slot(<const char*>view.buf, view.len)
    PyBuffer_Release(&view)
    return slot
