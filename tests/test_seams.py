"""The runtime's seams used for real: the counters move by exactly what sockets did,
and the shard map spreads one producer message over two Redis connections, its
ack still in entry order and acks still in message order when the first
message's connection answers last. In-process (tests.inprocess), on real Redis."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import redis
import websockets

from engine._core import Shards, key_slot
from engine.redis.link import RedisAddress
from engine.runtime import Runtime, connect_nodes
from engine.ws.hub import PullHub
from tests.cutproxy import CutProxy
from tests.inprocess import LOOPS, open_runtime, run, serve
from tests.pulling import collect, step
from tests.pushclient import push

HALF = 8192  # node 0 serves slots below, node 1 the rest


def sid_on_node(node: int, prefix: str) -> str:
    """A new stream id whose key lands on ``node`` of the two-node map."""
    while True:
        sid = f"{prefix}-{uuid.uuid4().hex[:8]}"
        if (key_slot(sid.encode()) >= HALF) == bool(node):
            return sid


async def two_node_runtime(redis_url: str, proxy: CutProxy, **feed_options: int) -> Runtime:
    """A runtime whose shard map has two nodes: node 1 is the same Redis behind a
    proxy that can hold its replies back, as a slow node would."""
    runtime = await open_runtime(redis_url, **feed_options)
    shards = Shards(2)
    shards.assign(0, HALF - 1, 0)
    shards.assign(HALF, 16383, 1)
    old = runtime.links
    addresses = [RedisAddress(redis_url), RedisAddress(proxy.url)]
    runtime.links = await connect_nodes(shards, addresses, runtime.counters)
    runtime.shards = shards
    linger, options = runtime.pulls.linger, runtime.pulls.feed_options
    await runtime.pulls.close()
    runtime.pulls = PullHub(shards, addresses, runtime.counters, linger=linger, feed_options=options)
    for link in old:
        link.close()
    return runtime


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_counters_move_by_what_the_sockets_did(loop: str, redis_url: str, store: redis.Redis) -> None:
    sid = f"counted-{uuid.uuid4().hex[:8]}"
    singles = [b"a", b"bb", b"ccc"]
    batch = [b"x" * 10, b"y" * 20]

    async def main() -> None:
        served = await serve(await open_runtime(redis_url))
        counters = served.runtime.counters
        base = f"ws://127.0.0.1:{served.port}/data/{sid}"
        try:
            before = counters.snapshot()
            pulling = await websockets.connect(f"{base}/pull?last_entry_id=0&latest=false&count=100")
            result = await push(f"{base}/push?ack=true", list(singles), expect_acks=3)
            assert len(result.acks) == 3
            header = json.dumps([10, 30])
            result = await push(f"{base}/push?batch=true&ack=true", [header, b"".join(batch)], expect_acks=1)
            assert len(result.acks) == 1
            got = await collect(pulling, 5)
            assert [payload for _, _, payload in got] == singles + batch
            await pulling.close()
            await asyncio.sleep(0.1)
            after = counters.snapshot()
        finally:
            await served.close()
        moved = {name: after[name] - before[name] for name in before if name not in ("closes", "ack_latency")}
        assert moved["push_messages"] == 3 + 2  # a batch is a header and a blob
        assert moved["push_entries"] == 5
        assert moved["push_bytes"] == sum(map(len, singles + batch))
        assert moved["push_acks"] == 4
        assert moved["push_sockets"] == moved["pull_sockets"] == 0
        assert moved["pull_entries"] == 5
        assert moved["pull_steps"] >= 1
        assert moved["pull_bytes"] > sum(map(len, singles + batch))  # frames and step headers too
        assert moved["redis_errors"] == 0
        assert moved["redis_replies"] >= 5
        # Every ack's latency was counted: three single entries and one batch.
        assert sum(after["ack_latency"]["counts"]) - sum(before["ack_latency"]["counts"]) == 4
        # Each socket closed by its client: the engine echoed 1000 three times.
        assert after["closes"].get(1000, 0) - before["closes"].get(1000, 0) == 3

    run(loop, main)


def test_a_message_spread_over_two_connections_is_acked_in_order(
    redis_url: str, store: redis.Redis, proxy: CutProxy
) -> None:
    near, far = sid_on_node(0, "near"), sid_on_node(1, "far")

    async def main() -> None:
        served = await serve(await two_node_runtime(redis_url, proxy))
        try:
            url = f"ws://127.0.0.1:{served.port}/data/*/push?batch=true&ack=true"
            async with websockets.connect(url) as ws:
                # One message over both nodes: its ack lists the ids in entry order.
                items = [[near, 0], [far, 1], [near, 2], [far, 3]]
                await ws.send(json.dumps(items))
                await ws.send(b"0123")
                ids = (await asyncio.wait_for(ws.recv(), 5)).split(",")
                stored = {
                    sid: [entry_id.decode() for entry_id, _ in store.xrange(sid)] for sid in (near, far)
                }
                assert ids == [stored[near][0], stored[far][0], stored[near][1], stored[far][1]]
                assert [store.xrange(sid)[i][1][b"d"] for sid, i in ((near, 0), (far, 0))] == [b"0", b"1"]
                # The far node answers late: the near message, sent second, waits for it.
                proxy.hold_replies(True)
                await ws.send(json.dumps([[far, 0]]))
                await ws.send(b"F")
                await ws.send(json.dumps([[near, 0]]))
                await ws.send(b"N")
                for _ in range(50):
                    if len(store.xrange(near)) == 3:
                        break
                    await asyncio.sleep(0.02)
                assert len(store.xrange(near)) == 3  # stored, and its reply is in
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.3)
                proxy.hold_replies(False)
                first = await asyncio.wait_for(ws.recv(), 5)
                second = await asyncio.wait_for(ws.recv(), 5)
                assert first == store.xrange(far)[-1][0].decode()
                assert second == store.xrange(near)[-1][0].decode()
        finally:
            await served.close()

    run("uvloop", main)


def test_pull_sockets_read_each_stream_from_its_own_node(
    redis_url: str, store: redis.Redis, proxy: CutProxy
) -> None:
    near, far = sid_on_node(0, "near"), sid_on_node(1, "far")
    ids = {
        sid: [store.xadd(sid, {"d": sid.encode() + b"%d" % i}).decode() for i in range(3)]
        for sid in (near, far)
    }

    async def main() -> None:
        served = await serve(await two_node_runtime(redis_url, proxy, ring_entries=1))
        runtime = served.runtime
        try:
            url = f"ws://127.0.0.1:{served.port}/data/{near}+{far}/pull?last_entry_id=0&latest=false&count=10"
            async with websockets.connect(url) as ws:
                got = await collect(ws, 6)
                assert sorted(entry_id for _, entry_id, _ in got) == sorted(ids[near] + ids[far])
                assert runtime.counters.pull_catch_up_reads >= 2  # one per stream, each on its node
                new = store.xadd(far, {"d": b"later"}).decode()
                assert await step(ws) == [(far, new, b"later")]
        finally:
            await served.close()

    run("uvloop", main)


def test_ack_latency_counts_the_wait_for_stream_metadata(
    redis_url: str, store: redis.Redis, sid: str
) -> None:
    """A batch naming a stream not seen yet waits for its max_len (a "*" socket
    learns its streams from the headers): its ack latency runs from when it
    arrived, not from when it was replayed after the wait."""

    async def main() -> None:
        served = await serve(await open_runtime(redis_url))
        counters = served.runtime.counters
        try:
            before = counters.snapshot()["ack_latency"]
            url = f"ws://127.0.0.1:{served.port}/data/*/push?ack=true&offsets=start"
            store.execute_command("CLIENT", "PAUSE", "1000", "ALL")  # the max_len read waits
            result = await push(url, [json.dumps([[sid, 0]]), b"x"], expect_acks=1)
            assert len(result.acks) == 1
            after = counters.snapshot()["ack_latency"]
        finally:
            store.execute_command("CLIENT", "UNPAUSE")
            await served.close()
        assert sum(after["counts"]) - sum(before["counts"]) == 1
        assert after["sum"] - before["sum"] >= 0.5

    run("uvloop", main)
