"""Reads of the pull path are bounded in bytes as well as in entries: with large
entries a socket catching up and a feed's XREAD ask Redis for about 1 MiB per
stream at a time (at least one entry), not 256 or 512 entries. In-process."""

from __future__ import annotations

import asyncio
import uuid

import redis
import websockets

from engine._core import feed_state
from tests.inprocess import pull_server, run
from tests.pulling import collect

ENTRY = 100_000  # ~10 per MiB


def test_large_entries_are_read_about_a_mebibyte_at_a_time(redis_url: str, store: redis.Redis) -> None:
    sid = f"bounds-{uuid.uuid4().hex[:8]}"
    pipe = store.pipeline(transaction=False)
    for i in range(30):
        pipe.xadd(sid, {"d": b"%04d" % i + b"x" * (ENTRY - 4)})
    ids = [entry_id.decode() for entry_id in pipe.execute()]

    async def main() -> None:
        served = await pull_server(redis_url)
        runtime = served.runtime
        try:
            url = f"ws://127.0.0.1:{served.port}/data/{sid}/pull?last_entry_id=0&count=1000"
            async with websockets.connect(url, max_size=2**26) as ws:
                got = await collect(ws, 30)
                assert [e[1] for e in got] == ids
                (feed,) = runtime.pulls.feeds.values()
                # 3 MB from Redis in reads of 10 entries, not one XRANGE COUNT 1000
                # (the only socket of this runtime).
                assert runtime.counters.pull_catch_up_reads >= 3
                assert feed_state(feed)["next_read_count"] == (1024 * 1024) // ENTRY
                # Small entries: the feed reads up to its entry limit again.
                pipe = store.pipeline(transaction=False)
                for _ in range(2000):
                    pipe.xadd(sid, {"d": b"s"})
                pipe.execute()
                await collect(ws, 2000)
                assert feed_state(feed)["next_read_count"] == feed.read_count == 512
        finally:
            await served.close()

    run("uvloop", lambda: asyncio.wait_for(main(), 30))
