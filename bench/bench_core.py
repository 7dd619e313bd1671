"""Micro-benchmarks of the sans-I/O core, through its Python entry points.

Run: pytest bench/bench_core.py --benchmark-only -p no:cacheprovider

Each Python call here costs what a Cython caller (the push session) does
not pay: argument conversion and buffer export per call.
"""

from __future__ import annotations

import ctypes
import json
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from engine._core import BatchRoute, RespWriter, key_slot, parse_batch_header

ENTRIES = 100
ENTRY_SIZE = 100
BLOB_LEN = ENTRIES * ENTRY_SIZE
SID_OFFSET_HEADER = json.dumps([[f"cam-{i % 4}", i * ENTRY_SIZE] for i in range(ENTRIES)]).encode()
PLAIN_HEADER = json.dumps([(i + 1) * ENTRY_SIZE for i in range(ENTRIES)]).encode()


def test_parse_sid_offset_header_100(benchmark: BenchmarkFixture) -> None:
    route = BatchRoute("any")
    header = benchmark(route.parse, SID_OFFSET_HEADER, BLOB_LEN)
    assert header.count == ENTRIES and header.offsets == "start"


def test_parse_plain_header_100(benchmark: BenchmarkFixture) -> None:
    route = BatchRoute("single", ["cam-0"])
    header = benchmark(route.parse, PLAIN_HEADER, BLOB_LEN)
    assert header.count == ENTRIES and header.offsets == "end"


def test_parse_batch_header_function_sid_offset_100(benchmark: BenchmarkFixture) -> None:
    # The test-facing function builds a BatchRoute per call.
    header = benchmark(parse_batch_header, SID_OFFSET_HEADER, BLOB_LEN, "auto", "any", ())
    assert header.count == ENTRIES


def frame_xadds(writer: RespWriter, payloads: list[bytes]) -> list[bytes | memoryview]:
    for payload in payloads:
        writer.xadd(b"cam-0", b"*", payload, 1000)
    return writer.take()


def test_frame_100_xadds_of_100_bytes(benchmark: BenchmarkFixture) -> None:
    writer = RespWriter()
    payloads = [bytes([i]) * 100 for i in range(100)]
    chunks = benchmark(frame_xadds, writer, payloads)
    assert len(chunks) == 1


def test_frame_8_xadds_of_256_kib(benchmark: BenchmarkFixture) -> None:
    writer = RespWriter()
    payloads = [bytes([i]) * (256 * 1024) for i in range(8)]
    chunks = benchmark(frame_xadds, writer, payloads)
    assert len(chunks) == 17  # framing, payload by reference, framing, ...


def test_key_slot_with_hash_tag(benchmark: BenchmarkFixture) -> None:
    assert benchmark(key_slot, b"{sensor-17}.imu") == key_slot(b"sensor-17")


# -- unmasking a 256 KiB frame, then copying it on (what the engine does next) --

FRAME = 256 * 1024


def _mask_functions() -> dict[str, Any]:
    """picows' own unmask (its non-temporal stores) and the engine's, called the
    same way through ctypes; empty where picows has no such function."""
    import picows.picows as picows_module

    import engine._unmask as unmask_module

    picows_lib = ctypes.CDLL(picows_module.__file__)
    impl_name = ctypes.CFUNCTYPE(ctypes.c_char_p)(("get_apply_mask_fast_impl_name", picows_lib))()
    name = f"apply_mask_{impl_name.decode()}"
    functions = {}
    for label, library in (("picows", picows_lib), ("engine", ctypes.CDLL(unmask_module.__file__))):
        try:
            function = getattr(library, name)  # each library's own definition (dlsym on its handle)
        except AttributeError:
            return {}
        function.restype = ctypes.c_size_t
        function.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_size_t,
            ctypes.c_uint32,
            ctypes.c_void_p,
        ]
        functions[label] = function
    return functions


@pytest.mark.parametrize("implementation", ["picows", "engine"])
def test_unmask_256_kib_then_copy_it(benchmark: BenchmarkFixture, implementation: str) -> None:
    functions = _mask_functions()
    if not functions:
        pytest.skip("picows has no vectorised unmask on this CPU")
    unmask = functions[implementation]
    source = bytes(range(256)) * (FRAME // 256)
    storage = ctypes.create_string_buffer(FRAME + 64)
    start = (-ctypes.addressof(storage)) % 64  # picows loads 64-byte aligned blocks
    address = ctypes.addressof(storage) + start

    def read_unmask_copy() -> bytes:
        ctypes.memmove(address, source, FRAME)  # the kernel's read into the buffer
        unmask(address, FRAME, 0, 0x5A5A5A5A, address)
        return ctypes.string_at(address, FRAME)  # the copy into the Redis socket

    out = benchmark(read_unmask_copy)
    assert out[:4] == bytes(b ^ 0x5A for b in source[:4])
