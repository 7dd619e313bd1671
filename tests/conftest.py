"""Real processes for the tests: a redis-server started by the engine's own launcher,
and engine servers started as `python -m engine` on free ports."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from engine.launcher import EngineProcess, free_port
from engine.redis.embedded import EmbeddedRedis
from engine.redis.local_cluster import LocalCluster
from tests.cutproxy import CutProxy

__all__ = ["ROOT", "EngineProcess", "free_port", "stored"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


# The end-to-end modules whose tests run on one Redis and on a Redis Cluster.
ON_BOTH_BACKENDS = {
    "test_push",
    "test_pull",
    "test_get_data",
    "test_post_data",
    "test_rest_streams",
    "test_maxlen",
    "test_health",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``backend``: what the engines of a test run on, "redis" (one server) or
    "cluster". Every test that uses it is parametrized (one value for most), so
    that the session fixtures made for one backend are never reused for the other."""
    module = metafunc.module.__name__.rpartition(".")[2]
    if "backend" in metafunc.fixturenames:
        backends = ["redis", "cluster"] if module in ON_BOTH_BACKENDS else ["redis"]
        metafunc.parametrize("backend", backends, scope="session")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A local Redis Cluster: 3 masters, each with one replica."""
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_url(backend: str, request: pytest.FixtureRequest) -> str:
    if backend == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return str(request.getfixturevalue("redis_server").url)


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
def store(backend: str, redis_url: str) -> Iterator[redis.Redis]:
    """A plain client of the session's Redis (or cluster), to check what the engine stored."""
    client = (
        redis.RedisCluster.from_url(redis_url) if backend == "cluster" else redis.Redis.from_url(redis_url)
    )
    yield client  # type: ignore[misc]  # a RedisCluster serves the same commands
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


@pytest.fixture
def sid(request: pytest.FixtureRequest) -> str:
    """A new stream id, named after the test module (``push-1a2b...``)."""
    return f"{request.module.__name__.rpartition('test_')[2]}-{uuid.uuid4().hex[:10]}"


def stored(store: redis.Redis, sid: str) -> list[tuple[str, bytes]]:
    """(entry id, payload) of every entry of ``sid``, as Redis holds them."""
    return [(entry_id.decode(), fields[b"d"]) for entry_id, fields in store.xrange(sid)]


@pytest.fixture
def proxy(redis_server: EmbeddedRedis) -> Iterator[CutProxy]:
    """A TCP proxy in front of the session's Redis that a test can cut or slow down."""
    cut_proxy = CutProxy(str(redis_server.socket_path)).start()
    yield cut_proxy
    cut_proxy.stop()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (PEM files)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *subject, *files],
        check=True,
        capture_output=True,
    )
    return cert, key
