# WebSocket unmasking that keeps the payload in the CPU cache, for picows.
#
# picows (2.3.1) unmasks a client's frame in place with AVX-512/AVX2/SSE2
# non-temporal stores (_mm512_stream_si512 and kin): the payload it just read
# is written past the cache to memory, and the engine's next step, copying it
# into the Redis socket, reads it back from memory. Measured on 256 KiB
# frames: unmasking 54 us and the copy after it 22 us, against 4.6 us and
# 5.6 us with ordinary stores (bench/bench_core.py has the comparison).
#
# picows picks its unmask function at import by taking the address of
# apply_mask_avx512, apply_mask_avx2 or apply_mask_sse2, symbols it exports
# and resolves through the dynamic linker. This module defines the same
# three names with ordinary stores; engine/__init__.py loads it into the
# global symbol scope before picows is imported, so the linker gives picows
# these (`active()` says whether it did). Drop this module once picows
# unmasks with ordinary stores.

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy


cdef inline size_t _unmask(uint8_t* data, size_t length, size_t start, uint32_t mask,
                           uint8_t* out) noexcept nogil:
    """XOR ``data[start:]`` with the 4-byte ``mask`` (its first byte applies at
    ``start``) into ``out``, 8 bytes at a time; return where it stopped (fewer
    than 8 bytes left, for picows' own 4- and 1-byte steps)."""
    cdef uint64_t key = <uint64_t>mask | (<uint64_t>mask << 32)
    cdef uint64_t word
    cdef size_t i = start
    while i + 8 <= length:
        memcpy(&word, data + i, 8)  # unaligned-safe; compiles to one load
        word ^= key
        memcpy(out + i, &word, 8)
        i += 8
    return i


cdef public size_t apply_mask_avx512(uint8_t* data, size_t length, size_t start, uint32_t mask,
                                     uint8_t* out) noexcept nogil:
    return _unmask(data, length, start, mask, out)


cdef public size_t apply_mask_avx2(uint8_t* data, size_t length, size_t start, uint32_t mask,
                                   uint8_t* out) noexcept nogil:
    return _unmask(data, length, start, mask, out)


cdef public size_t apply_mask_sse2(uint8_t* data, size_t length, size_t start, uint32_t mask,
                                   uint8_t* out) noexcept nogil:
    return _unmask(data, length, start, mask, out)


def unmask(data, uint32_t mask):
    """``data`` XORed with ``mask`` as a WebSocket peer does (for tests and benchmarks)."""
    cdef bytearray out = bytearray(data)
    cdef uint8_t* view = <uint8_t*><char*>out
    cdef size_t length = len(out)
    cdef size_t i = _unmask(view, length, 0, mask, view)
    while i < length:
        view[i] ^= (mask >> (8 * (i % 4))) & 0xFF
        i += 1
    return bytes(out)


def active():
    """Whether picows unmasks with this module's function."""
    import ctypes

    import picows.picows as picows_module

    fast_fn = ctypes.CDLL(picows_module.__file__).get_apply_mask_fast_fn
    fast_fn.restype = ctypes.c_void_p
    ours = {<size_t>&apply_mask_avx512, <size_t>&apply_mask_avx2, <size_t>&apply_mask_sse2}
    return fast_fn() in ours
