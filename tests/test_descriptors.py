"""Out of file descriptors (EMFILE): the engine refuses new connections for as long
as it lacks them, says so once, and every open socket, a kept /ping connection
and pushes go on; once sockets close it accepts again."""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path

import httpx
import psutil
import websockets

from tests.conftest import EngineProcess


async def exhaust(engine: EngineProcess) -> None:
    token = engine.token()
    base = engine.ws_url
    with httpx.Client(base_url=engine.base_url, timeout=10) as kept:
        assert kept.get("/ping").status_code == 200
        pusher = await websockets.connect(f"{base}/data/fd-x/push?ack=true&token={token}")
        puller = await websockets.connect(f"{base}/data/fd-x/pull?token={token}")
        crowd, refused = [], 0
        for _ in range(250):
            try:
                crowd.append(await websockets.connect(f"{base}/data/fd-y/pull?token={token}", open_timeout=3))
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
                refused += 1
        assert refused > 0 and crowd
        await asyncio.sleep(2.5)  # the watch looks every 2 s
        assert kept.get("/ping").status_code == 200
        await pusher.send(b"still here")
        entry_id = await asyncio.wait_for(pusher.recv(), 5)
        assert (await asyncio.wait_for(puller.recv(), 5)).startswith(f'[["fd-x","{entry_id}"')
        for ws in crowd:
            await ws.close()
        await asyncio.sleep(2.5)
        again = await websockets.connect(f"{base}/data/fd-y/pull?token={token}", open_timeout=3)
        await again.close()
        await pusher.close()
        await puller.close()


def test_out_of_descriptors_the_open_sockets_go_on(tmp_path: Path, redis_url: str) -> None:
    engine = EngineProcess(tmp_path, redis_url).start()
    try:
        in_use = psutil.Process(engine.pid).num_fds()
        resource.prlimit(engine.pid, resource.RLIMIT_NOFILE, (in_use + 150, in_use + 150))
        asyncio.run(exhaust(engine))
        time.sleep(0.1)
    finally:
        engine.stop()
    log = engine.log()
    assert log.count("file descriptors in use: new connections are refused") == 1
    assert "accepting connections again" in log
    assert "Traceback" not in log
