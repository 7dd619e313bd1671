"""kill -9 of the engine under acked load, alone and as the supervisor of two
workers: no process is left behind, the next start works on the same port and
data, and every acked entry is there."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import psutil
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import EngineProcess
from tests.pushclient import push_url

BATCH = 10


async def push_until_killed(engine: EngineProcess, sid: str) -> list[str]:
    """Acked entry ids of batches pushed (a window of 8) until the engine is killed."""
    acked: list[str] = []
    assert engine.process is not None
    async with websockets.connect(push_url(engine.ws_url, sid, engine.token(), batch=True, ack=True)) as ws:

        async def send() -> None:
            header = json.dumps([(i + 1) * 4 for i in range(BATCH)])
            sent = 0
            try:
                while True:
                    while sent - len(acked) // BATCH >= 8:
                        if ws.close_code is not None:
                            return
                        await asyncio.sleep(0.001)
                    await ws.send(header)
                    await ws.send(b"".join(b"%04d" % ((sent * BATCH + i) % 10000) for i in range(BATCH)))
                    sent += 1
            except ConnectionClosed:
                pass

        async def receive() -> None:
            try:
                while True:
                    acked.extend(str(await ws.recv()).split(","))
            except ConnectionClosed:
                pass

        tasks = [asyncio.ensure_future(send()), asyncio.ensure_future(receive())]
        await asyncio.sleep(1.0)
        engine.process.kill()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    return acked


def stored_ids(engine: EngineProcess, sid: str) -> set[str]:
    ids: set[str] = set()
    params = {"count": "200", "last_entry_id": "0", "token": engine.token()}
    while True:
        response = httpx.get(f"{engine.base_url}/data/{sid}", params=params, timeout=10)
        response.raise_for_status()
        page = [str(item[1]) for item in json.loads(response.headers["entry-offset"])]
        if not page:
            return ids
        ids.update(page)
        params["last_entry_id"] = page[-1]


@pytest.mark.parametrize("workers", [1, 2])
def test_kill_9_of_the_engine_leaves_nothing_behind_and_loses_nothing_acked(
    workers: int, tmp_path: Path, sid: str
) -> None:
    engine = EngineProcess(tmp_path / "data", extra_args=["--workers", str(workers)]).start()
    token = engine.token()
    # Keep every entry (no MAXLEN trimming): the check compares all of them.
    httpx.put(
        f"{engine.base_url}/streams/{sid}", json={"max_len": 100_000_000}, params={"token": token}
    ).raise_for_status()
    children = psutil.Process(engine.pid).children(recursive=True)
    acked = asyncio.run(push_until_killed(engine, sid))
    assert engine.process is not None
    engine.process.wait()
    assert len(acked) > 10 * BATCH
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except psutil.TimeoutExpired:
            pytest.fail(f"{child.pid} ({' '.join(child.cmdline()[:3])}) outlived the killed engine")
    again = EngineProcess(tmp_path / "data", port=engine.port, extra_args=["--workers", str(workers)]).start()
    try:
        stored = stored_ids(again, sid)
    finally:
        again.stop()
    missing = [entry_id for entry_id in acked if entry_id not in stored]
    assert missing == [], f"{len(missing)} of {len(acked)} acked entries missing"
