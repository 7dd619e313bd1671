"""After a crowd of sockets left, the engine gives freed memory back (a full
collection, then glibc's malloc_trim); not while they are still open."""

from __future__ import annotations

import asyncio
import sys

import pytest

from engine._core import Counters
from engine.memory import TRIM_AFTER_CLOSED, MemoryTrimmer, compact, trim
from tests.inprocess import pull_server, run
from tests.pulling import connect

# Pull sockets in one test process (both ends of each: two descriptors).
CROWD = 200


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


def test_a_crowd_of_followers_leaves_no_grown_tables_behind(redis_url: str, sid: str) -> None:
    """The pull hub's tables grew with the crowd's streams; once its feeds
    stopped, forgetting what crowds left shrinks them back."""

    async def main() -> None:
        served = await pull_server(redis_url)
        hub = served.runtime.pulls
        empty = sys.getsizeof({}), sys.getsizeof(set())
        try:
            ws_url = f"ws://127.0.0.1:{served.port}"
            sockets = [await connect(ws_url, "", f"{sid}-{i}") for i in range(CROWD)]
            assert len(hub.feeds) == CROWD
            grown = sys.getsizeof(hub.feeds)
            for ws in sockets:
                await ws.close()
            await asyncio.sleep(0.5)  # the feeds lingered 0.1 s, then stopped
            assert not hub.feeds
            assert sys.getsizeof(hub.feeds) == grown  # a dict never shrinks by itself
            served.runtime.forget_what_crowds_left()
            tables = [hub.feeds, hub._followed_on, hub._idle]
            for node in hub.nodes:
                tables += [node.feeds, node.channels, node._received]
            assert all(sys.getsizeof(table) in empty for table in tables)
        finally:
            await served.close()

    run("uvloop", main)
