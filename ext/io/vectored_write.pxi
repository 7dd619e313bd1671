# One writev loop for the engine's own direct socket writes (the Redis
# connection's commands, pull sockets' steps): straight from the caller's
# buffers while the transport has nothing queued, no copy.
#
# Uses: common.pxi

from libc.errno cimport EINTR, errno
from posix.uio cimport writev


cdef Py_ssize_t write_vectors(int fd, iovec* vectors, Py_ssize_t count) noexcept:
    """writev ``vectors`` to the non-blocking socket ``fd``, IOV_PER_WRITE at a time,
    until all is written or the kernel takes no more; returns the bytes written.
    An error other than EINTR stops it as EAGAIN does: the transport's own next
    write sees the error and reports the lost connection."""
    cdef Py_ssize_t i = 0, k, block, wanted, total = 0
    cdef ssize_t written
    while i < count:
        block = min(count - i, <Py_ssize_t>IOV_PER_WRITE)
        wanted = 0
        for k in range(i, i + block):
            wanted += <Py_ssize_t>vectors[k].iov_len
        written = writev(fd, vectors + i, <int>block)
        if written < 0:
            if errno == EINTR:
                continue
            return total
        total += written
        if written < wanted:
            return total
        i += block
    return total
