"""One pull socket that fails (an exception in its own code) closes with 1011 and
nothing else: not the process's shared StreamReader, not the other sockets of
its feed. In-process, as in test_pull_loops: the fault is injected through the
socket's ``reads`` (its ``reader`` attribute raises after some uses)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import pytest
import redis
import websockets
from picows import WSUpgradeRequest, ws_create_server
from websockets.exceptions import ConnectionClosed

from engine._core import StreamKey
from engine.redis.reads import ReadLink
from engine.ws.hub import PullHub
from engine.ws.pull import pull_endpoint
from tests.pulling import collect, step
from tests.test_pull_loops import run


class FaultyReads:
    """``reads`` whose ``reader`` works ``uses`` times, then raises."""

    def __init__(self, reads: ReadLink, uses: int):
        self.reads = reads
        self.uses = uses

    @property
    def reader(self) -> Any:
        self.uses -= 1
        if self.uses < 0:
            raise RuntimeError("injected fault")
        return self.reads.reader


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


async def fault_server(redis_url: str, **feed_options: int) -> tuple[Any, Any, int]:
    """Sockets whose query has ``fault=N`` get reads that fail after N uses."""
    reads = ReadLink(redis_url)
    await reads.connect()
    runtime = SimpleNamespace(reads=reads, pulls=PullHub(redis_url, linger=0.1, feed_options=feed_options))

    def route(request: WSUpgradeRequest) -> Any:
        path, _, query_text = request.path.decode().partition("?")
        sids = path.split("/")[2].split("+")
        query = dict(parse_qsl(query_text))
        own = runtime
        if "fault" in query:
            own = SimpleNamespace(reads=FaultyReads(reads, int(query.pop("fault"))), pulls=runtime.pulls)
        return pull_endpoint(own, sids, query, "test")  # type: ignore[arg-type]

    server = await ws_create_server(route, "127.0.0.1", 0)
    return runtime, server, server.sockets[0].getsockname()[1]


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
        runtime, server, port = await fault_server(redis_url)
        reader = runtime.reads.reader
        url = f"ws://127.0.0.1:{port}/data/{sid}/pull?last_entry_id=0&count=256"
        try:
            # Two uses: the first catch-up read (send, flush). The second catch-up,
            # started from the first one's reply on the shared reader, raises.
            async with websockets.connect(url + "&fault=2") as bad:
                assert [e[1] for e in await step(bad)] == ids[:256]
                assert await closed_with(bad) == 1011
            assert runtime.reads.reader is reader and reader.connected
            replies = await asyncio.wait_for(
                reader.read([("range", [key], (b"XRANGE", key.key, b"-", b"+"))]), 5
            )
            assert len(replies[0]) == 300
            async with websockets.connect(url) as good:
                assert [e[1] for e in await collect(good, 300)] == ids
        finally:
            server.close()
            await runtime.pulls.close()
            await runtime.reads.close()

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
        runtime, server, port = await fault_server(redis_url, ring_entries=1)
        url = f"ws://127.0.0.1:{port}/data/{sid}/pull?last_entry_id={first}&count=10"
        try:
            bad = await websockets.connect(url + "&fault=0")
            good = await websockets.connect(url)
            for _ in range(100):
                feeds = list(runtime.pulls.feeds.values())
                if feeds and feeds[0].waiting_sessions == 2:
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
            server.close()
            await runtime.pulls.close()
            await runtime.reads.close()

    with caplog.at_level(logging.ERROR, logger="engine.pull"):
        run(loop, lambda: asyncio.wait_for(main(), 30))
    assert "injected fault" in caplog.text
