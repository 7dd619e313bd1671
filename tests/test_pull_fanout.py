"""The shared fan-out of pull sockets, on an engine and a Redis of its own: slow
consumers do not slow the others, and a thousand sockets share one feed per stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from websockets.asyncio.client import ClientConnection

from engine.launcher import EngineProcess
from engine.redis.embedded import EmbeddedRedis
from tests.pulling import collect, connect, connect_slow, new_sid, step


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("fanout-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_engine(own_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    server = EngineProcess(
        Path(tmp_path_factory.mktemp("fanout-engine")), own_redis.url, ["--log-level", "warning"]
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_token(own_engine: EngineProcess) -> str:
    return own_engine.token()


@pytest.fixture(scope="module")
def own_store(own_redis: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(own_redis.url)


def xrange_calls(own_store: redis.Redis) -> int:
    return int(own_store.info("commandstats").get("cmdstat_xrange", {}).get("calls", 0))


def redis_clients(own_store: redis.Redis) -> int:
    """Connections Redis has, this test's own included."""
    return len(own_store.client_list())


def subscribers(own_store: redis.Redis, sids: list[str]) -> list[int]:
    """Subscribers of each stream's keyspace channel."""
    return [count for _, count in own_store.pubsub_numsub(*(f"__keyspace@0__:{sid}" for sid in sids))]


async def test_a_thousand_pull_sockets_share_one_feed_per_stream(
    own_engine: EngineProcess, own_token: str, own_store: redis.Redis
) -> None:
    x, a, b = new_sid("x"), new_sid("a"), new_sid("b")
    paths = [[x]] * 500 + [[a, b]] * 250 + [[b, a]] * 250
    gate = asyncio.Semaphore(100)
    before = redis_clients(own_store)

    async def open_one(sids: list[str]) -> ClientConnection:
        async with gate:
            return await connect(own_engine.ws_url, own_token, sids, latest="false")

    sockets = await asyncio.gather(*(open_one(sids) for sids in paths))
    try:
        await asyncio.sleep(0.3)
        # Three streams, whatever the sockets and the order of their paths, are
        # read by one blocking XREAD: following costs the engine one connection
        # in all (this test runs first on its engine, so nothing opened it
        # before), and Redis publishes no keyspace events for so few.
        assert subscribers(own_store, [x, a, b]) == [0, 0, 0]
        assert redis_clients(own_store) == before + 1
        ids = {s: [] for s in (x, a, b)}  # type: dict[str, list[str]]
        for round_ in range(3):
            for s in (x, a, b):
                ids[s].append(own_store.xadd(s, {"d": b"%s:%d" % (s.encode(), round_)}).decode())
            await asyncio.sleep(0.02)

        async def received(ws: ClientConnection, sids: list[str]) -> dict[str, list[str]]:
            want = 3 * len(sids)
            got: dict[str, list[str]] = {s: [] for s in sids}
            for sid, entry_id, _ in await collect(ws, want, timeout=20):
                got[sid].append(entry_id)
            return got

        results = await asyncio.gather(*(received(ws, sids) for ws, sids in zip(sockets, paths, strict=True)))
        for got, sids in zip(results, paths, strict=True):
            assert got == {s: ids[s] for s in sids}
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))


async def test_a_slow_consumer_does_not_slow_the_others(
    own_engine: EngineProcess, own_token: str, own_store: redis.Redis
) -> None:
    sid = new_sid("slow")
    url = own_engine.ws_url
    fast = [await connect(url, own_token, sid, latest="false", count=50) for _ in range(3)]
    # These two never read until the end: their kernel buffers fill, then the server's.
    slow = await connect_slow(url, own_token, sid, latest="false", count=50)
    slow_latest = await connect_slow(url, own_token, sid, count=50)
    await asyncio.sleep(0.2)
    xranges_before = xrange_calls(own_store)
    ids: list[str] = []
    block = b"x" * 4096
    started = time.monotonic()

    async def produce() -> None:
        for burst in range(30):  # 3000 entries, 12 MiB: far beyond the feed's ring
            pipe = own_store.pipeline(transaction=False)
            for i in range(100):
                pipe.xadd(sid, {"d": b"%06d" % (100 * burst + i) + block})
            ids.extend(entry_id.decode() for entry_id in pipe.execute())
            await asyncio.sleep(0.005)

    async def consume(ws: ClientConnection) -> list[str]:
        return [e[1] for e in await collect(ws, 3000, timeout=30)]

    producer = asyncio.create_task(produce())
    fast_results = await asyncio.gather(*(consume(ws) for ws in fast))
    fast_seconds = time.monotonic() - started
    await producer
    for got in fast_results:
        assert got == ids
    assert fast_seconds < 10, fast_seconds

    # The slow consumer in consecutive mode now reads: nothing is missing, in order
    # (its cursor waited; it caught up from Redis on its own).
    assert [e[1] for e in await collect(slow, 3000, timeout=30)] == ids
    assert xrange_calls(own_store) > xranges_before
    # The slow consumer in latest mode skipped, and ends on the newest entry.
    latest_got: list[str] = []
    while not latest_got or latest_got[-1] != ids[-1]:
        latest_got += [e[1] for e in await step(slow_latest, 10)]
    assert len(latest_got) < len(ids)
    positions = [ids.index(entry_id) for entry_id in latest_got]
    assert positions == sorted(set(positions))  # in order, no repeats
    for ws in [*fast, slow, slow_latest]:
        await ws.close()


async def test_a_feed_reconnects_without_losing_entries(
    own_engine: EngineProcess, own_token: str, own_store: redis.Redis
) -> None:
    sid = new_sid("lost")
    async with await connect(own_engine.ws_url, own_token, sid, latest="false") as ws:
        await asyncio.sleep(0.2)
        ids = [own_store.xadd(sid, {"d": b"before"}).decode()]
        assert [e[1] for e in await step(ws)] == ids
        feeds = [c for c in own_store.client_list() if c.get("cmd") == "xread"]
        for client in feeds:
            own_store.client_kill_filter(_id=client["id"])
        ids += [own_store.xadd(sid, {"d": b"during %d" % i}).decode() for i in range(5)]
        got = await collect(ws, 5, timeout=10)
        assert [e[1] for e in got] == ids[1:]
