"""Run an engine as a child process: for tests, benchmarks and scripts that
need a real server on a free port (it dies with its parent)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from engine.process import die_with_parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EngineProcess:
    """``python -m engine serve`` on its own port and data dir.

    Without ``redis_url`` the engine starts its own embedded Redis. The
    process environment is cleaned of PTG_* variables so only ``extra_args``
    and ``env`` configure it. Output goes to ``log_path``.
    """

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

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, wait: bool = True, timeout: float = 30.0) -> EngineProcess:
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
        source_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
        env.update(self.env)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"engine-{self.port}.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=die_with_parent,
            )
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.stop()  # an engine that did not come up is not left running
                raise
        return self

    def answers_ping(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/ping", timeout=1) as response:
                return bool(json.load(response) is True)
        except (OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"engine exited with code {self.process.returncode}: {self.log()}")
            if self.answers_ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"engine did not answer /ping within {timeout:.0f} s: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the engine and wait for it; returns its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def token(self, user: str = "test") -> str:
        """A token from /token (dev mode: the password is the user name)."""
        body = urllib.parse.urlencode({"username": user, "password": user}).encode()
        with urllib.request.urlopen(self.base_url + "/token", body, timeout=10) as response:
            return str(json.load(response)["access_token"])
