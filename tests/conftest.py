"""Real processes for the tests: a redis-server started by the engine's own launcher,
and engine servers started as `python -m engine` on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from engine.redis.embedded import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EngineProcess:
    """One `python -m engine` child process with its own port and data dir."""

    data_dir: Path
    redis_url: str | None = None
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> EngineProcess:
        args = [
            sys.executable,
            "-m",
            "engine",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        if self.redis_url:
            args += ["--redis-url", self.redis_url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PTG_") and k != "REDIS_URL"}
        env.update(self.env)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"engine-{self.port}.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=log)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"engine exited {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(self.base_url + "/ping", timeout=1).json() is True:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"engine not ready after {timeout} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def token(self, user: str = "test") -> str:
        response = httpx.post(self.base_url + "/token", data={"username": user, "password": user})
        response.raise_for_status()
        return str(response.json()["access_token"])


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
