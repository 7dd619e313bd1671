"""Micro-benchmarks of the sans-I/O core, through its Python entry points.

Run: pytest bench/bench_core.py --benchmark-only -p no:cacheprovider

Each Python call here costs what a Cython caller (the push session) does
not pay: argument conversion and buffer export per call.
"""

from __future__ import annotations

import json

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
