"""One pull socket that fails (an exception in its own code) closes with 1011 and
nothing else: not the process's shared StreamReader, not the other sockets of
its feed. In-process (tests.inprocess): the fault is injected through the
socket's shard map (its ``reader_for_key`` raises after some uses)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
import redis
import websockets
from websockets.exceptions import ConnectionClosed

from engine._core import StreamKey, feed_state
from tests.inprocess import pull_server, run
from tests.pulling import collect, step


async def closed_with(ws: Any, timeout: float = 5.0) -> int | None:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed:
        return ws.close_code  # type: ignore[no-any-return]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_failing_catch_up_leaves_the_shared_reader_alone(
    loop: str, redis_url: str, store: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    sid = f"fault-{uuid.uuid4().hex[:8]}"
    pipe = store.pipeline(transaction=False)
    for i in range(300):
        pipe.xadd(sid, {"d": b"%04d" % i})
    ids = [entry_id.decode() for entry_id in pipe.execute()]
    key = StreamKey(sid)

    async def main() -> None:
        served = await pull_server(redis_url)
        shards = served.runtime.shards
        reader = shards.reader_for_key(key.key)
        url = f"ws://127.0.0.1:{served.port}/data/{sid}/pull?last_entry_id=0&count=256"
        try:
            # One use: the first catch-up read. The second catch-up, started from
            # the first one's reply on the shared reader, raises.
            async with websockets.connect(url + "&fault=1") as bad:
                assert [e[1] for e in await step(bad)] == ids[:256]
                assert await closed_with(bad) == 1011
            assert shards.reader_for_key(key.key) is reader and reader is not None and reader.connected
            replies = await asyncio.wait_for(
                reader.read([("range", [key], (b"XRANGE", key.key, b"-", b"+"))]), 5
            )
            assert len(replies[0]) == 300
            async with websockets.connect(url) as good:
                assert [e[1] for e in await collect(good, 300)] == ids
        finally:
            await served.close()

    with caplog.at_level(logging.ERROR, logger="engine.pull"):
        run(loop, lambda: asyncio.wait_for(main(), 30))
    assert "injected fault" in caplog.text


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_socket_failing_when_woken_does_not_stop_the_others(
    loop: str, redis_url: str, store: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    sid = f"fault-{uuid.uuid4().hex[:8]}"
    first = store.xadd(sid, {"d": b"first"}).decode()

    async def main() -> None:
        # A one-entry ring: five entries at once push both sockets behind it, so
        # each must catch up from Redis when woken; the first one's reads raise.
        served = await pull_server(redis_url, ring_entries=1)
        runtime = served.runtime
        url = f"ws://127.0.0.1:{served.port}/data/{sid}/pull?last_entry_id={first}&count=10"
        try:
            bad = await websockets.connect(url + "&fault=0")
            good = await websockets.connect(url)
            for _ in range(100):
                feeds = list(runtime.pulls.feeds.values())
                if feeds and feed_state(feeds[0])["waiting"] == 2:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the sockets never waited")
            pipe = store.pipeline(transaction=True)
            for i in range(5):
                pipe.xadd(sid, {"d": b"%d" % i})
            ids = [entry_id.decode() for entry_id in pipe.execute()]
            assert [e[1] for e in await collect(good, 5)] == ids
            assert await closed_with(bad) == 1011
            # The feed goes on for the others.
            new = store.xadd(sid, {"d": b"after"}).decode()
            assert [e[1] for e in await step(good)] == [new]
            await good.close()
        finally:
            await served.close()

    with caplog.at_level(logging.ERROR, logger="engine.pull"):
        run(loop, lambda: asyncio.wait_for(main(), 30))
    assert "injected fault" in caplog.text
