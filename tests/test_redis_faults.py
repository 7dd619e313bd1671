"""The Redis connection is cut mid-stream: producers are told (1011), nothing
acknowledged is lost, /ping reports the outage, the engine reconnects."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import EngineProcess
from tests.cutproxy import CutProxy
from tests.pushclient import push, push_url


@pytest.fixture
def engine_behind_proxy(proxy: CutProxy, tmp_path: Path) -> Iterator[EngineProcess]:
    engine = EngineProcess(tmp_path, f"redis://127.0.0.1:{proxy.port}/0", ["--log-level", "info"])
    engine.start()
    yield engine
    engine.stop()


def ping(engine: EngineProcess) -> httpx.Response:
    return httpx.get(f"{engine.base_url}/ping", timeout=5)


async def test_cut_mid_stream_loses_nothing_acked_and_recovers(
    engine_behind_proxy: EngineProcess, proxy: CutProxy, redis_url: str
) -> None:
    engine = engine_behind_proxy
    token = engine.token()
    sid = f"fault-{uuid.uuid4().hex[:8]}"
    store = redis.Redis.from_url(redis_url)
    acked: list[str] = []
    url = push_url(engine.ws_url, sid, token, batch=True, ack=True)
    # Keep every entry: the check below compares all of them.
    auth = {"Authorization": f"Bearer {token}"}
    httpx.put(
        f"{engine.base_url}/streams/{sid}", json={"max_len": 10_000_000}, headers=auth
    ).raise_for_status()

    async with websockets.connect(url) as ws:

        async def produce() -> None:
            for batch in range(100_000):
                entries = [f"{batch}:{i}".encode() * 10 for i in range(10)]
                ends = [sum(len(e) for e in entries[: i + 1]) for i in range(10)]
                await ws.send(json.dumps(ends))
                await ws.send(b"".join(entries))
                await asyncio.sleep(0)

        async def collect() -> None:
            while True:
                acked.extend((await ws.recv()).split(","))  # type: ignore[union-attr]

        producer = asyncio.create_task(produce())
        collector = asyncio.create_task(collect())
        while len(acked) < 500:
            await asyncio.sleep(0.01)
        proxy.refuse(True)
        proxy.cut()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(asyncio.gather(producer, collector), 10)
        assert ws.close_code == 1011
        assert "Redis" in (ws.close_reason or "")

    # Every acknowledged entry is in Redis, in order.
    stored_ids = [entry_id.decode() for entry_id, _ in store.xrange(sid)]
    assert len(acked) >= 500
    assert stored_ids[: len(acked)] == acked

    # The outage is visible, and a new producer is refused clearly.
    assert ping(engine).status_code == 503
    result = await push(push_url(engine.ws_url, sid, token, ack=True), [b"during outage"], wait_close=True)
    assert result.close_code == 1011
    assert "Redis" in result.close_reason

    # Redis is back: the engine reconnects by itself.
    proxy.refuse(False)
    deadline = time.monotonic() + 15
    while ping(engine).status_code != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert ping(engine).json() is True
    while time.monotonic() < deadline:
        result = await push(
            push_url(engine.ws_url, sid, token, ack=True), [b"after"], expect_acks=1, timeout=5
        )
        if result.acks:
            break
        await asyncio.sleep(0.2)
    assert result.acks and store.xrange(sid)[-1][1][b"d"] == b"after"
    assert "ingest connection to Redis restored" in engine.log()
    assert "Traceback" not in engine.log()


def test_every_rest_endpoint_answers_503_while_redis_is_down(
    engine_behind_proxy: EngineProcess, proxy: CutProxy
) -> None:
    engine = engine_behind_proxy
    auth = {"Authorization": f"Bearer {engine.token()}"}
    sid = f"down-{uuid.uuid4().hex[:8]}"
    proxy.refuse(True)
    proxy.cut()
    requests = [
        ("GET", "/streams/", {}),
        ("GET", "/streams/?info=true", {}),
        ("GET", f"/streams/{sid}", {}),
        ("PUT", f"/streams/{sid}", {"json": {"max_len": 5}}),
        ("DELETE", f"/streams/{sid}", {}),
        ("POST", f"/data/{sid}", {"files": [("f", ("f", b"payload"))]}),
        ("GET", f"/data/{sid}", {}),
    ]
    try:
        with httpx.Client(base_url=engine.base_url, headers=auth, timeout=30) as client:
            for method, path, extra in requests:
                response = client.request(method, path, **extra)
                assert response.status_code == 503, (method, path, response.text)
                assert response.json() == {"detail": "Redis is unavailable"}
            assert client.get("/ping").status_code == 503
            health = client.get("/health")
            assert health.status_code == 503
            assert (
                health.json()["status"] == "redis unreachable"
                and health.json()["redis"]["reachable"] is False
            )
    finally:
        proxy.refuse(False)
    assert "Traceback" not in engine.log()
