"""After a crowd of sockets left, the engine gives freed memory back (a full
collection, then glibc's malloc_trim); not while they are still open."""

from __future__ import annotations

import asyncio
import sys

import pytest

from engine._core import Counters
from engine.memory import TRIM_AFTER_CLOSED, MemoryTrimmer, compact, trim


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_gives_pages_back() -> None:
    blocks = [bytearray(4096) for _ in range(20_000)]
    del blocks[::2]
    assert isinstance(trim(), bool)


async def test_the_trimmer_acts_once_enough_sockets_closed() -> None:
    counters = Counters()
    counters.pull_sockets = 50
    counters.sockets_peak = 50 + TRIM_AFTER_CLOSED - 1
    trimmer = MemoryTrimmer(counters, seconds=0.01)
    trimmer.start()
    await asyncio.sleep(0.05)
    assert counters.sockets_peak == 50 + TRIM_AFTER_CLOSED - 1  # too few left: nothing done
    counters.pull_sockets = 49
    await asyncio.sleep(0.05)
    assert counters.sockets_peak == 49  # trimmed, and the peak starts again from here
    await trimmer.stop()


def test_compact_shrinks_a_table_in_place_keeping_its_contents() -> None:
    table = {f"key-{i}": i for i in range(10_000)}
    members = set(range(10_000))
    for i in range(9_990):
        del table[f"key-{i}"]
        members.discard(i)
    same_table, same_members = table, members
    grown = sys.getsizeof(table), sys.getsizeof(members)
    compact(table)
    compact(members)
    assert table is same_table and members is same_members
    assert list(table.items()) == [(f"key-{i}", i) for i in range(9_990, 10_000)]
    assert members == set(range(9_990, 10_000))
    assert sys.getsizeof(table) < grown[0] / 50 and sys.getsizeof(members) < grown[1] / 50


async def test_the_trimmer_compacts_the_tables_it_watches() -> None:
    counters = Counters()
    counters.sockets_peak = TRIM_AFTER_CLOSED
    table = set(range(5_000))
    for member in range(3, 5_000):
        table.discard(member)
    grown = sys.getsizeof(table)
    trimmer = MemoryTrimmer(counters, seconds=0.01)
    trimmer.watch(table)
    trimmer.start()
    await asyncio.sleep(0.1)
    await trimmer.stop()
    assert table == {0, 1, 2} and sys.getsizeof(table) < grown / 50
