"""Following thousands of streams from one engine process: the Redis
connections stay bounded whatever the number of streams, and one push that
touches every stream reaches every socket, bytes equal. The test-sized form
of 10,000 pull sockets on 10,000 streams (bench/sockets.py measures that)."""

from __future__ import annotations

import asyncio
import json
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import websockets
from websockets.asyncio.client import ClientConnection

from engine.launcher import EngineProcess
from engine.redis.embedded import EmbeddedRedis
from tests.pulling import collect, connect, new_sid

SOCKETS = 2000
# Descriptors the test process needs beside its sockets (Redis clients, files).
SPARE_DESCRIPTORS = 200


def sockets_allowed() -> int:
    """Raise this process's descriptor limit to its hard limit (the engine it
    starts inherits it); how many sockets fit, at most SOCKETS."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return int(min(SOCKETS, soft - SPARE_DESCRIPTORS))


@pytest.fixture(scope="module")
def many() -> int:
    n = sockets_allowed()
    if n < 500:
        pytest.skip(f"a descriptor limit of {n + SPARE_DESCRIPTORS} is too low to open hundreds of sockets")
    return n


@pytest.fixture(scope="module")
def own_redis(many: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("scale-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_engine(own_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    server = EngineProcess(
        Path(tmp_path_factory.mktemp("scale-engine")), own_redis.url, ["--log-level", "warning"]
    )
    server.start()
    yield server
    server.stop()


def engine_clients(store: redis.Redis) -> int:
    """Connections Redis has from engine processes (named ptg-engine-...)."""
    return sum(1 for client in store.client_list() if client["name"].startswith("ptg-engine-"))


async def test_thousands_of_streams_cost_two_connections_and_every_push_arrives(
    many: int, own_engine: EngineProcess, own_redis: EmbeddedRedis
) -> None:
    store = redis.Redis.from_url(own_redis.url)
    token = own_engine.token()
    sids = [new_sid(f"fleet{i}") for i in range(many)]
    before = engine_clients(store)
    gate = asyncio.Semaphore(100)

    async def open_one(sid: str) -> ClientConnection:
        async with gate:
            return await connect(own_engine.ws_url, token, sid, latest="false", count=10)

    sockets = await asyncio.gather(*(open_one(sid) for sid in sids))
    try:
        # Subscribed, every one: a stream's notifications reach one subscriber.
        deadline = asyncio.get_running_loop().time() + 30
        while len(store.pubsub_channels("__keyspace@0__:fleet*")) < many:
            assert asyncio.get_running_loop().time() < deadline, "not subscribed within 30 s"
            await asyncio.sleep(0.1)
        # The engine's own connections plus the two that follow: not one per stream.
        assert engine_clients(store) == before + 2

        # One batch through the engine's push socket, an entry for every stream.
        payloads = [b"%d:" % i + bytes([i % 256]) * (i % 64) for i in range(many)]
        header = json.dumps([[sid, sum(map(len, payloads[:i]))] for i, sid in enumerate(sids)])
        push_url = f"{own_engine.ws_url}/data/*/push?token={token}&ack=true&offsets=start"
        async with websockets.connect(push_url) as producer:
            await producer.send(header)
            await producer.send(b"".join(payloads))
            ack = await asyncio.wait_for(producer.recv(), 30)
        ids = str(ack).split(",")
        assert len(ids) == many

        results = await asyncio.gather(*(collect(ws, 1, timeout=30) for ws in sockets))
        for sid, entry_id, payload, got in zip(sids, ids, payloads, results, strict=True):
            assert got == [(sid, entry_id, payload)]
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))
