"""Real processes for the tests: a redis-server started by the engine's own launcher,
and engine servers started as `python -m engine` on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from engine.launcher import EngineProcess, free_port
from engine.redis.embedded import EmbeddedRedis

__all__ = ["ROOT", "EngineProcess", "free_port"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def engine(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """A shared engine in dev auth mode on the session's Redis."""
    server = EngineProcess(tmp_path_factory.mktemp("engine"), redis_url, ["--log-level", "warning"])
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token(engine: EngineProcess) -> str:
    return engine.token()


@pytest.fixture
def http(engine: EngineProcess, token: str) -> Iterator[httpx.Client]:
    """An authenticated client of the shared engine."""
    with httpx.Client(base_url=engine.base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture
def anon(engine: EngineProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=engine.base_url) as client:
        yield client


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client of the session's Redis, to check what the engine stored."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session", params=["uvloop", "asyncio"])
def loop_engine(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EngineProcess]:
    """An engine on uvloop and one on plain asyncio: protocol tests run on both."""
    server = EngineProcess(
        tmp_path_factory.mktemp(f"engine-{request.param}"),
        redis_url,
        ["--log-level", "warning", "--loop", request.param, "--max-message-size", str(20 * 1024 * 1024)],
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def loop_token(loop_engine: EngineProcess) -> str:
    return loop_engine.token()
