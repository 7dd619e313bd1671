# The stream reads the engine sends, built in one place: a range after an id
# (XRANGE), the newest entries (XREVRANGE) and a feed's blocking XREAD.
#
# Uses: common.pxi, sansio/entry_id.pxi, sansio/stream_entry.pxi


cdef inline bytes exclusive_start(uint64_t ms, uint64_t seq):
    return b"(" + entry_id_bytes(ms, seq)


cdef tuple range_after(bytes key, uint64_t ms, uint64_t seq, Py_ssize_t count):
    """The ``count`` oldest entries after ms-seq."""
    return (b"XRANGE", key, exclusive_start(ms, seq), b"+", b"COUNT", count)


cdef tuple newest_entries(bytes key, Py_ssize_t count, bint after, uint64_t ms, uint64_t seq):
    """The ``count`` newest entries (newest first), after ms-seq when ``after``."""
    return (b"XREVRANGE", key, b"+", exclusive_start(ms, seq) if after else b"-", b"COUNT", count)


cdef tuple streams_after(list keys, list after, Py_ssize_t count, int block_ms):
    """XREAD of the entries after ``after[i]`` (ids as bytes) in each ``keys[i]``
    (StreamKey); waiting up to ``block_ms`` for the first one (-1: not at all)."""
    cdef StreamKey key
    cdef list arguments = [b"XREAD", b"COUNT", count]
    if block_ms >= 0:
        arguments += [b"BLOCK", block_ms]
    arguments.append(b"STREAMS")
    for key in keys:
        arguments.append(key.key)
    arguments.extend(after)
    return tuple(arguments)


cdef tuple newest_before(bytes key, Py_ssize_t count, uint64_t ms, uint64_t seq):
    """The ``count`` newest entries before ms-seq (newest first)."""
    return (b"XREVRANGE", key, exclusive_start(ms, seq), b"-", b"COUNT", count)


def stream_read(StreamKey key, Py_ssize_t count, bint newest, after=None, before=None):
    """Arguments of a read of ``key``: the ``count`` newest entries (newest first),
    of those after ``after`` or before ``before`` (``(ms, seq)``) when given; or,
    with ``newest`` false, the ``count`` oldest after ``after`` (required then)."""
    if newest:
        if before is not None:
            return newest_before(key.key, count, before[0], before[1])
        if after is None:
            return newest_entries(key.key, count, False, 0, 0)
        return newest_entries(key.key, count, True, after[0], after[1])
    if after is None:
        raise ValueError("reading the oldest entries needs the id they follow")
    return range_after(key.key, after[0], after[1], count)
