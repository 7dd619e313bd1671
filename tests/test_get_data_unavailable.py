"""GET /data/{sid} while the read connection to Redis is down: 503 with a JSON
detail, whatever the query. In-process: the real HTTP app, whose runtime is a
stand-in (no Redis at all)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from api.app import create_app
from engine._core import Shards, StreamReader
from engine.config import Config
from engine.metrics import RequestStats


class Signer:
    def verify(self, token: str) -> str:
        return "tester"


@pytest.fixture(params=["no reader", "disconnected reader"])
async def down(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    # ReadLink holds None while Redis is down; a reader that lost its connection
    # may still be held for a moment.
    shards = Shards()
    if request.param == "disconnected reader":
        shards.set_reader(0, StreamReader())
    runtime: Any = SimpleNamespace(
        signer=Signer(), shards=shards, config=Config(), metrics_share=None, http_stats=RequestStats()
    )
    transport = httpx.ASGITransport(app=create_app(runtime))
    headers = {"Authorization": "Bearer t"}
    async with httpx.AsyncClient(transport=transport, base_url="http://engine", headers=headers) as client:
        yield client


@pytest.mark.parametrize(
    "query", ["", "last_entry_id=*&count=5", "last_entry_id=0", "last_entry_id=$", "x=1"]
)
async def test_503_with_a_json_detail_while_redis_is_down(down: httpx.AsyncClient, query: str) -> None:
    response = await down.get(f"/data/a+b?{query}")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert "Redis is unavailable" in response.json()["detail"]


async def test_bad_queries_are_still_400_while_redis_is_down(down: httpx.AsyncClient) -> None:
    response = await down.get("/data/a?count=10001")
    assert response.status_code == 400
    assert "at most 10000" in response.json()["detail"]
