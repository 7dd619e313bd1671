"""GET /health through a real engine, on one Redis and on a cluster: the
version, the Redis server and version it reports are the real ones, the
socket counts move with the sockets, no token is needed. (503 while Redis is
down: tests/test_redis_faults.py.)"""

from __future__ import annotations

import asyncio

import httpx
import redis

from engine import __version__ as ENGINE_VERSION
from tests.conftest import EngineProcess
from tests.pulling import connect


async def test_health_reports_the_engine_its_redis_and_its_sockets(
    backend: str, engine: EngineProcess, token: str, store: redis.Redis, sid: str
) -> None:
    before = httpx.get(f"{engine.base_url}/health")
    assert before.status_code == 200
    report = before.json()
    assert report["status"] == "ok"
    assert report["version"] == ENGINE_VERSION
    assert report["uptime_seconds"] > 0
    info = store.info("server")
    if isinstance(info, dict) and "redis_version" not in info:  # a cluster client: per node
        info = next(iter(info.values()))
    assert report["redis"]["version"] == info["redis_version"]
    assert report["redis"]["server"] in ("Redis", "Valkey") and report["redis"]["reachable"] is True
    assert report["redis_connections_up"] >= 3
    if backend == "cluster":
        assert report["redis"]["cluster"] == {"masters": 3, "state": "ok", "slots_ok": 16384}
    else:
        assert "cluster" not in report["redis"]
    follower = await connect(engine.ws_url, token, sid)
    try:
        await asyncio.sleep(0.1)
        during = httpx.get(f"{engine.base_url}/health").json()
        assert during["sockets"]["pull"] == report["sockets"]["pull"] + 1
    finally:
        await follower.close()
