"""How a process follows streams (engine/ws/hub.py): quiet streams read when
Redis notifies a change, busy ones by the node's HotReader, and what happens
when notifications are lost, turned off or refused. In-process, on the tests'
Redis, so the hub's state can be looked at."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
import websockets
from websockets.asyncio.client import ClientConnection

from engine.redis.embedded import EmbeddedRedis
from engine.redis.link import client_name
from engine.ws import hub
from engine.ws.hub import NodeFollow, PullHub
from tests.inprocess import Served, pull_server, run
from tests.pulling import collect

LOOPS = ["asyncio", "uvloop"]


def new_sid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def subscribers(store: redis.Redis, sid: str) -> int:
    ((_, count),) = store.pubsub_numsub(f"__keyspace@0__:{sid}")
    return int(count)


def node(pulls: PullHub) -> NodeFollow:
    (only,) = pulls.nodes
    return only


async def until(condition: object, seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "not within the time"
        await asyncio.sleep(0.01)


async def pulling(served: Served, sid: str) -> ClientConnection:
    url = f"ws://127.0.0.1:{served.port}/data/{sid}/pull?latest=false&count=1000"
    return await websockets.connect(url)


async def entry_ids(ws: ClientConnection, n: int) -> list[str]:
    return [entry_id for _, entry_id, _ in await collect(ws, n, timeout=10)]


@pytest.mark.parametrize("loop", LOOPS)
def test_quiet_streams_are_read_when_redis_says_they_changed(
    loop: str, redis_url: str, store: redis.Redis
) -> None:
    sids = [new_sid("quiet") for _ in range(50)]

    async def main() -> None:
        served = await pull_server(redis_url, notify_past=0)
        counters = served.runtime.counters
        try:
            sockets = [await pulling(served, sid) for sid in sids]
            await until(lambda: all(feed.started for feed in served.runtime.pulls.feeds.values()))
            assert [subscribers(store, sid) for sid in sids] == [1] * 50
            before = counters.snapshot()
            ids = [store.xadd(sid, {"d": sid.encode()}).decode() for sid in sids]
            for ws, entry_id in zip(sockets, ids, strict=True):
                assert await entry_ids(ws, 1) == [entry_id]
            after = counters.snapshot()
            # One notification and one read per entry (XADD with MAXLEN would add
            # an "xtrim" event; these have none).
            assert after["notifications"] - before["notifications"] == 50
            assert after["feed_entries"] - before["feed_entries"] == 50
            assert 50 <= after["feed_reads"] - before["feed_reads"] <= 60
            for ws in sockets:
                await ws.close()
            # Nobody follows them once the feeds' linger is over: unsubscribed.
            await until(lambda: not served.runtime.pulls.feeds)
            await until(lambda: all(subscribers(store, sid) == 0 for sid in sids))
        finally:
            await served.close()

    run(loop, main)


@pytest.fixture
def fast_rates(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(hub, "RATE_SECONDS", 0.2)
    monkeypatch.setattr(hub, "HOT_ENTRIES_PER_SECOND", 100)
    monkeypatch.setattr(hub, "COLD_ENTRIES_PER_SECOND", 20)
    yield


@pytest.mark.parametrize("loop", LOOPS)
def test_a_busy_stream_moves_to_the_hot_reader_and_back(
    loop: str, redis_url: str, store: redis.Redis, fast_rates: None
) -> None:
    sid = new_sid("busy")

    async def main() -> None:
        served = await pull_server(redis_url, notify_past=0)
        pulls = served.runtime.pulls
        producer = redis.asyncio.Redis.from_url(redis_url)
        ids: list[str] = []
        stop = asyncio.Event()

        async def produce(per_tick: int) -> None:
            n = 0
            while not stop.is_set():
                async with producer.pipeline(transaction=False) as pipe:
                    for _ in range(per_tick):
                        pipe.xadd(sid, {"d": b"%06d" % n})
                        n += 1
                    ids.extend(entry_id.decode() for entry_id in await pipe.execute())
                await asyncio.sleep(0.01)

        try:
            ws = await pulling(served, sid)
            await until(lambda: subscribers(store, sid) == 1)
            (feed,) = pulls.feeds.values()
            busy = asyncio.create_task(produce(10))  # about 1,000 a second
            # Busy: read by the HotReader, and no longer notified.
            await until(lambda: feed in node(pulls).hot.feeds and subscribers(store, sid) == 0)
            stop.set()
            await busy
            # Quiet again: notified, and the HotReader let it go.
            await until(lambda: subscribers(store, sid) == 1 and feed not in node(pulls).hot.feeds)
            ids.extend(store.xadd(sid, {"d": b"after"}).decode() for _ in range(3))
            # Every entry once, in order, across both moves.
            assert await entry_ids(ws, len(ids)) == ids
            await ws.close()
        finally:
            await producer.aclose()
            await served.close()

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_lost_subscription_misses_nothing(loop: str, redis_url: str, store: redis.Redis) -> None:
    sid = new_sid("resubscribed")

    async def main() -> None:
        served = await pull_server(redis_url, notify_past=0)
        try:
            ws = await pulling(served, sid)
            await until(lambda: subscribers(store, sid) == 1)
            name = client_name("keyspace notifications")  # this process's
            (listener,) = [client for client in store.client_list() if client["name"] == name]
            store.client_kill_filter(_id=listener["id"])
            # Stored while nobody listens: read once the subscription is back.
            ids = [store.xadd(sid, {"d": b"%d" % i}).decode() for i in range(3)]
            assert await entry_ids(ws, 3) == ids
            await until(lambda: subscribers(store, sid) == 1)
            ids.append(store.xadd(sid, {"d": b"later"}).decode())
            assert await entry_ids(ws, 1) == ids[3:]
            await ws.close()
        finally:
            await served.close()

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_keyspace_events_turned_off_are_turned_on_again(
    loop: str,
    redis_url: str,
    store: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(hub, "RATE_SECONDS", 0.1)
    monkeypatch.setattr(hub, "CHECK_EVERY", 2)
    sid = new_sid("turned-off")
    flags = store.config_get("notify-keyspace-events")["notify-keyspace-events"]

    async def main() -> None:
        served = await pull_server(redis_url, notify_past=0)
        try:
            ws = await pulling(served, sid)
            await until(lambda: subscribers(store, sid) == 1)
            store.config_set("notify-keyspace-events", "")
            ids = [store.xadd(sid, {"d": b"unnoticed"}).decode()]
            # The next check finds the events off, turns them on, and reads.
            assert await entry_ids(ws, 1) == ids
            assert "stopped publishing keyspace events" in caplog.text
            ids.append(store.xadd(sid, {"d": b"noticed"}).decode())
            assert await entry_ids(ws, 1) == ids[1:]
            await ws.close()
        finally:
            await served.close()

    try:
        with caplog.at_level(logging.WARNING, logger="engine.pull"):
            run(loop, main)
    finally:
        store.config_set("notify-keyspace-events", flags)


@pytest.mark.parametrize("loop", LOOPS)
def test_without_keyspace_events_streams_are_still_followed(
    loop: str, redis_url: str, store: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # As on a managed Redis that does not allow CONFIG.
    user = f"no-config-{uuid.uuid4().hex[:6]}"
    store.acl_setuser(
        user, enabled=True, passwords=["+secret"], keys=["*"], channels=["*"], commands=["+@all", "-config"]
    )
    scheme, _, rest = redis_url.partition("://")
    limited_url = f"{scheme}://{user}:secret@{rest}"
    sids = [new_sid("unnotified") for _ in range(3)]

    async def main() -> None:
        served = await pull_server(limited_url, notify_past=0)
        pulls = served.runtime.pulls
        try:
            sockets = [await pulling(served, sid) for sid in sids]
            await until(
                lambda: len(node(pulls).hot.feeds) == 3 and all(f.started for f in node(pulls).hot.feeds)
            )
            for _ in range(2):
                ids = [store.xadd(sid, {"d": b"x"}).decode() for sid in sids]
                for ws, entry_id in zip(sockets, ids, strict=True):
                    assert await entry_ids(ws, 1) == [entry_id]
            assert [subscribers(store, sid) for sid in sids] == [0, 0, 0]
            assert "will not publish keyspace events" in caplog.text
            for ws in sockets:
                await ws.close()
        finally:
            await served.close()

    try:
        with caplog.at_level(logging.WARNING, logger="engine.pull"):
            run(loop, main)
    finally:
        store.acl_deluser(user)


@pytest.mark.parametrize("loop", LOOPS)
def test_keyspace_events_are_turned_on_only_past_what_the_hot_reader_takes(loop: str, tmp_path: Path) -> None:
    # On a Redis of its own: keyspace events, once on, stay on.
    with EmbeddedRedis(tmp_path / "redis", persistent=False) as server:
        own = redis.Redis.from_url(server.url)
        sids = [new_sid("few") for _ in range(3)]

        def flags() -> str:
            return str(own.config_get("notify-keyspace-events")["notify-keyspace-events"])

        async def main() -> None:
            served = await pull_server(server.url, notify_past=2)
            pulls = served.runtime.pulls
            try:
                sockets = [await pulling(served, sid) for sid in sids[:2]]
                await until(
                    lambda: all(f.started for f in node(pulls).hot.feeds) and len(node(pulls).hot.feeds) == 2
                )
                ids = [own.xadd(sid, {"d": b"few"}).decode() for sid in sids[:2]]
                for ws, entry_id in zip(sockets, ids, strict=True):
                    assert await entry_ids(ws, 1) == [entry_id]
                # Two streams: every XADD of this Redis is spared the events.
                assert flags() == ""
                sockets.append(await pulling(served, sids[2]))
                await until(lambda: subscribers(own, sids[2]) == 1)
                assert set("Kt") <= set(flags())
                ids = [own.xadd(sid, {"d": b"more"}).decode() for sid in sids]
                for ws, entry_id in zip(sockets, ids, strict=True):
                    assert await entry_ids(ws, 1) == [entry_id]
                for ws in sockets:
                    await ws.close()
            finally:
                await served.close()

        try:
            run(loop, main)
        finally:
            own.close()
