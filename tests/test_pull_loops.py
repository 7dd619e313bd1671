"""The read path in-process, on uvloop and on plain asyncio, over TCP and TLS: a
picows server whose listeners are PullSessions fed by a PullHub, and the
StreamReader on its own (replies, a lost connection)."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import websockets

from engine._core import RedisUnavailable, StreamKey, StreamReader, feed_state
from engine.redis.link import RedisAddress
from tests.inprocess import LOOPS, pull_server, run
from tests.pulling import collect, step


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_pull_on_each_loop(
    loop: str, tls: bool, redis_url: str, store: redis.Redis, certificate: tuple[Path, Path]
) -> None:
    sid = f"loops-{uuid.uuid4().hex[:8]}"
    # 300 entries of 20 KiB in steps of 50: 1 MiB messages, more than a socket takes at once.
    ids = [store.xadd(sid, {"d": b"%04d" % i + b"x" * 20_000}).decode() for i in range(300)]

    async def main() -> None:
        server_tls = client_tls = None
        if tls:
            server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server_tls.load_cert_chain(*certificate)
            client_tls = ssl.create_default_context(cafile=str(certificate[0]))
        served = await pull_server(redis_url, server_tls)
        port = served.port
        scheme = "wss" if tls else "ws"
        try:
            async with websockets.connect(
                f"{scheme}://127.0.0.1:{port}/data/{sid}/pull?last_entry_id=0&count=50",
                ssl=client_tls,
                max_size=2**24,
            ) as ws:
                got = await collect(ws, 300)
                assert [e[1] for e in got] == ids
                assert [e[2][:4] for e in got] == [b"%04d" % i for i in range(300)]
                new = store.xadd(sid, {"d": b"after"}).decode()
                assert await step(ws) == [(sid, new, b"after")]
            async with websockets.connect(
                f"{scheme}://127.0.0.1:{port}/data/{sid}/pull?last_entry_id=*&count=2", ssl=client_tls
            ) as ws:
                assert [e[1] for e in await step(ws)] == [ids[-1], new]
        finally:
            await served.close()

    run(loop, main)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_stream_reader_replies_and_a_lost_connection(loop: str, redis_url: str, store: redis.Redis) -> None:
    sid = f"reader-{uuid.uuid4().hex[:8]}"
    key = StreamKey(sid)
    payloads = [b"a", b"b" * 300_000, b""]
    ids = [store.xadd(sid, {"d": p}).decode() for p in payloads]

    async def main() -> None:
        lost: list[str] = []
        reader = await RedisAddress(redis_url).open(lambda: _reader(lost.append))
        assert await reader.call("PING") == b"PONG"
        replies = await reader.read(
            [
                ("range", [key], (b"XRANGE", key.key, b"-", b"+")),
                ("range", [key], (b"XREVRANGE", key.key, b"+", b"-", b"COUNT", 1)),
                ("xread", [key], (b"XREAD", b"STREAMS", key.key, ids[0])),
                ("simple", [], (b"GET", b"no-such-key")),
            ]
        )
        assert [e.payload for e in replies[0]] == payloads
        assert [e.entry_id for e in replies[1]] == ids[-1:]
        assert [e.entry_id for e in replies[2][0]] == ids[1:]
        assert replies[3] is None
        reader_id = await reader.call("CLIENT", "ID")
        blocked = reader.read([("xread", [key], (b"XREAD", b"BLOCK", b"0", b"STREAMS", key.key, b"$"))])
        await asyncio.sleep(0.1)
        store.client_kill_filter(_id=reader_id)
        with pytest.raises(RedisUnavailable):
            await asyncio.wait_for(blocked, 5)
        assert lost and "lost" in lost[0]
        with pytest.raises(RedisUnavailable):
            reader.read([("simple", [], (b"PING",))])

    run(loop, main)


def _reader(on_lost: Callable[[str], None]) -> Any:
    return StreamReader(on_lost=on_lost)


def test_sockets_that_leave_leave_no_trace(redis_url: str) -> None:
    sid = f"leave-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        served = await pull_server(redis_url, None)
        runtime = served.runtime
        try:
            url = f"ws://127.0.0.1:{served.port}/data/{sid}/pull"
            sockets = [await websockets.connect(url) for _ in range(20)]
            await asyncio.sleep(0.2)
            (feed,) = runtime.pulls.feeds.values()
            assert feed_state(feed)["waiting"] == 20 and feed_state(feed)["followers"] == 20
            for ws in sockets[:15]:
                await ws.close()
            await asyncio.sleep(0.1)
            assert feed_state(feed)["waiting"] == 5 and feed_state(feed)["followers"] == 5
            for ws in sockets[15:]:
                await ws.close()
            await asyncio.sleep(0.3)  # past the hub's linger (0.1 s here)
            assert runtime.pulls.feeds == {} and feed.closed
        finally:
            await served.close()

    run("uvloop", main)
