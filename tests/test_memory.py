"""After a crowd of sockets left, the engine gives freed memory back (a full
collection, then glibc's malloc_trim); not while they are still open."""

from __future__ import annotations

import asyncio
import sys

import pytest

from engine._core import Counters
from engine.memory import TRIM_AFTER_CLOSED, MemoryTrimmer, trim


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
