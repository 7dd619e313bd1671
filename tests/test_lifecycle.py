"""The engine's own Redis: started, kept across restarts, never left behind."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from engine.redis.embedded import EmbeddedRedis, EmbeddedRedisError
from tests.conftest import ROOT, EngineProcess, free_port


def redis_children(engine: EngineProcess) -> list[psutil.Process]:
    assert engine.process is not None
    return [
        child for child in psutil.Process(engine.process.pid).children() if "redis-server" in child.name()
    ]


def gone(process: psutil.Process, timeout: float = 10.0) -> bool:
    try:
        process.wait(timeout)
    except psutil.TimeoutExpired:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_engine_stops_its_redis_and_a_restart_keeps_metadata(tmp_path: Path, sig: int) -> None:
    engine = EngineProcess(tmp_path / "data").start()
    [redis_process] = redis_children(engine)
    token = engine.token()
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.put(f"{engine.base_url}/streams/kept", json={"fps": 30}, headers=auth).status_code == 200

    assert engine.stop(sig) == 0
    assert gone(redis_process)
    assert "embedded redis-server stopped" in engine.log()
    assert "Traceback" not in engine.log()

    again = EngineProcess(tmp_path / "data").start()
    try:
        # the secret is kept too: the old token still works
        info = httpx.get(f"{again.base_url}/streams/kept", headers=auth).json()
        assert info["meta"] == {"fps": 30}
    finally:
        again.stop()


def test_a_killed_engine_takes_its_redis_with_it(tmp_path: Path) -> None:
    engine = EngineProcess(tmp_path / "data").start()
    [redis_process] = redis_children(engine)
    engine.stop(signal.SIGKILL)
    assert gone(redis_process), "redis-server outlived a SIGKILLed engine"


def test_unreachable_redis_is_retried_with_one_line_each_and_no_traceback(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    engine = EngineProcess(tmp_path / "data", dead).start(wait=False)
    try:
        deadline = time.monotonic() + 15
        while engine.log().count("retrying in") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        engine.stop()
    log = engine.log()
    assert log.count("is not reachable") >= 3
    # Waits double from 0.1 s, each drawn from the upper half of its step (jitter).
    waits = [float(wait) for wait in re.findall(r"retrying in ([0-9.]+) s", log)]
    for wait, step in zip(waits, [0.1, 0.2, 0.4, 0.8], strict=False):
        assert step / 2 - 0.05 <= wait <= step + 0.05
    assert "Traceback" not in log


def test_a_second_engine_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path), pytest.raises(EmbeddedRedisError, match="in use by another engine"):
        EmbeddedRedis(tmp_path).start()


def test_a_missing_redis_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedRedisError, match="cannot run"):
        EmbeddedRedis(tmp_path, binary=str(tmp_path / "no-such-redis")).start()


def test_cli_token_is_accepted_by_the_server(engine: EngineProcess) -> None:
    token = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "token",
            "--user",
            "robot",
            "--days",
            "2",
            "--data-dir",
            str(engine.data_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    response = httpx.get(f"{engine.base_url}/streams/", params={"token": token})
    assert response.status_code == 200


def test_production_mode_uses_the_users_file_and_refuses_dev_logins(tmp_path: Path, redis_url: str) -> None:
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-m", "engine", "adduser", "alice", "--password-stdin", "--data-dir", str(data)],
        cwd=ROOT,
        input="s3cret-pass\n",
        text=True,
        check=True,
        capture_output=True,
    )
    assert (data / "users.json").stat().st_mode & 0o777 == 0o600
    engine = EngineProcess(data, redis_url, ["--auth", "production"]).start()
    try:
        post = lambda user, password: httpx.post(  # noqa: E731
            f"{engine.base_url}/token", data={"username": user, "password": password}
        )
        assert post("alice", "s3cret-pass").status_code == 200
        assert post("alice", "wrong").status_code == 401
        assert post("test", "test").status_code == 401
    finally:
        engine.stop()


async def test_several_worker_processes_share_the_port(tmp_path: Path) -> None:
    from tests.pushclient import push, push_url

    engine = EngineProcess(tmp_path / "data", extra_args=["--workers", "2"]).start()
    [redis_process] = redis_children(engine)
    try:
        token = engine.token()
        for _ in range(6):  # connections land on either worker
            result = await push(push_url(engine.ws_url, "multi", token, ack=True), [b"x"], expect_acks=1)
            assert len(result.acks) == 1
            assert (
                httpx.get(f"{engine.base_url}/streams/multi", params={"token": token}).json()["length"] >= 1
            )
    finally:
        assert engine.stop() == 0
    assert gone(redis_process)


async def test_tls_serves_https_and_wss(
    tmp_path: Path, redis_url: str, certificate: tuple[Path, Path]
) -> None:
    import ssl

    import websockets

    cert, key = certificate
    engine = EngineProcess(
        tmp_path / "data", redis_url, ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    )
    engine.start(wait=False)
    context = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.post(
                    f"https://127.0.0.1:{engine.port}/token",
                    verify=context,
                    data={"username": "t", "password": "t"},
                )
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, engine.log()
                time.sleep(0.1)
        token = response.json()["access_token"]
        url = f"wss://127.0.0.1:{engine.port}/data/tls/push?ack=true&token={token}"
        async with websockets.connect(url, ssl=context) as ws:
            await ws.send(b"secure")
            ack = await ws.recv()
        assert isinstance(ack, str) and "-" in ack
    finally:
        engine.stop()


def test_workers_die_with_their_supervisor_even_by_sigkill(tmp_path: Path) -> None:
    engine = EngineProcess(tmp_path / "data", extra_args=["--workers", "2"]).start()
    assert engine.process is not None
    children = psutil.Process(engine.pid).children(recursive=True)
    assert len(children) >= 3  # two workers and redis-server (and multiprocessing's helper)
    engine.process.kill()
    engine.process.wait()
    for child in children:
        assert gone(child, 15), f"{child.pid} ({' '.join(child.cmdline()[:4])}) outlived its supervisor"
    # Nothing holds the port or the data dir: the next start works.
    again = EngineProcess(tmp_path / "data", port=engine.port, extra_args=["--workers", "2"]).start()
    try:
        assert again.answers_ping()
    finally:
        again.stop()


def test_a_self_signed_certificate_is_made_once_and_served(tmp_path: Path, redis_url: str) -> None:
    import shutil
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    data = tmp_path / "data"
    cert = data / "tls" / "self-signed.pem"
    for start in ("first", "again"):
        engine = EngineProcess(data, redis_url, ["--ssl-self-signed", "--log-level", "info"])
        engine.start(wait=False)
        try:
            deadline = time.monotonic() + 20
            while not cert.exists() or "Uvicorn running" not in engine.log():
                assert (
                    time.monotonic() < deadline
                    and engine.process is not None
                    and engine.process.poll() is None
                ), engine.log()
                time.sleep(0.1)
            made = cert.read_bytes()
            context = ssl.create_default_context(cafile=str(cert))
            response = httpx.get(f"https://127.0.0.1:{engine.port}/ping", verify=context)
            assert response.json() is True
            said = engine.log().count("generated a self-signed certificate")
            assert said == (1 if start == "first" else 0), engine.log()
            if start == "first":
                first = made
            else:
                assert made == first  # reused, not made again
            assert oct((data / "tls" / "self-signed.key").stat().st_mode & 0o777) == "0o600"
        finally:
            engine.stop()
