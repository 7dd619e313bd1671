"""SIGTERM with batches in flight: the engine stops reading producers, acks every
batch Redis stored, then closes 1001; nothing acked is missing, nothing stored is
unacked. With an external Redis and with the engine's own."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
import redis
import websockets
from websockets.exceptions import ConnectionClosed

from engine.redis.embedded import EmbeddedRedis
from tests.conftest import EngineProcess
from tests.pushclient import push_url

BATCH = 10


async def produce_until_closed(url: str, engine: EngineProcess) -> tuple[list[str], int | None]:
    """Send batches as fast as the socket takes them; SIGTERM the engine meanwhile."""
    acked: list[str] = []
    async with websockets.connect(url, max_size=None) as ws:

        async def send() -> None:
            header = json.dumps([(i + 1) * 8 for i in range(BATCH)])
            number = 0
            try:
                while True:
                    await ws.send(header)
                    await ws.send(b"".join(b"%08d" % (number * BATCH + i) for i in range(BATCH)))
                    number += 1
                    if number % 50 == 0:
                        await asyncio.sleep(0)
            except ConnectionClosed:
                pass

        async def receive() -> None:
            try:
                while True:
                    acked.extend(str(await ws.recv()).split(","))
            except ConnectionClosed:
                pass

        sender, receiver = asyncio.ensure_future(send()), asyncio.ensure_future(receive())
        await asyncio.sleep(0.5)
        assert engine.process is not None
        engine.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(receiver, 20)
        await asyncio.wait_for(sender, 20)
        return acked, ws.close_code


@pytest.mark.parametrize("redis_kind", ["external", "embedded"])
async def test_sigterm_acks_every_stored_batch_then_closes_1001(
    redis_kind: str, redis_url: str, tmp_path: Path, sid: str
) -> None:
    external = redis_kind == "external"
    engine = EngineProcess(tmp_path / "data", redis_url if external else None, ["--log-level", "info"])
    engine.start()
    token = engine.token()
    # Keep every entry: the check compares all of them.
    import httpx

    httpx.put(
        f"{engine.base_url}/streams/{sid}",
        json={"max_len": 100_000_000},
        headers={"Authorization": f"Bearer {token}"},
    ).raise_for_status()
    acked, code = await produce_until_closed(
        push_url(engine.ws_url, sid, token, batch=True, ack=True), engine
    )
    assert engine.stop() == 0
    assert code == 1001
    assert len(acked) > 10 * BATCH, "batches were acked before the signal"
    if external:
        stored = [entry_id.decode() for entry_id, _ in redis.Redis.from_url(redis_url).xrange(sid)]
    else:
        with EmbeddedRedis(tmp_path / "data") as own:
            stored = [entry_id.decode() for entry_id, _ in redis.Redis.from_url(own.url).xrange(sid)]
    assert stored == acked
    assert "Traceback" not in engine.log()
