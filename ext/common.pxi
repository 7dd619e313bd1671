# Declarations every part of engine._core may use, in one place (as asyncpg's
# consts.pxi and uvloop's includes/ do). A part uses a name only if it is
# defined here, in the part itself, or in a part it lists on its "Uses:" line
# and that _core.pyx includes before it (tests/test_layers.py checks this).

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint64_t, UINT64_MAX
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove, memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.uio cimport iovec
from picows.picows cimport WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

import asyncio
import logging
from collections import deque

from hiredis import ReplyError

cdef enum:
    # WebSocket close codes the engine sends (RFC 6455, section 7.4.1).
    CLOSE_OK = 1000
    CLOSE_GOING_AWAY = 1001
    CLOSE_PROTOCOL_ERROR = 1002
    CLOSE_INVALID_DATA = 1007      # malformed input, also a stream id that breaks the id rules
    CLOSE_POLICY_VIOLATION = 1008  # a stream the caller may not use
    CLOSE_MESSAGE_TOO_BIG = 1009
    CLOSE_INTERNAL_ERROR = 1011
    # A close frame's payload is at most 125 bytes: the code, then the reason.
    MAX_CLOSE_REASON_BYTES = 123
    # Linux's IOV_MAX: buffers one writev takes.
    IOV_PER_WRITE = 1024


cdef inline double monotonic() noexcept nogil:
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec + now.tv_nsec * 1e-9
