"""A private redis-server for one engine: started on a unix socket in the data dir, never orphaned."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from engine.process import die_with_parent
from engine.redis.link import Backoff
from engine.redis.servers import (
    EmbeddedRedisError,
    ServerVersion,
    binary_version,
    check_data_dir,
    find_server_binary,
    record_data_dir,
)

__all__ = ["EmbeddedRedis", "EmbeddedRedisError", "find_server_binary"]

log = logging.getLogger("engine.redis")

# sun_path holds 108 bytes on Linux; keep a margin for the terminating NUL.
_MAX_UNIX_PATH = 100


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
    running two servers on the same files, and a record of the server that
    wrote them keeps an older one from starting on them empty.

    With ``supervise``, a server that dies is started again (it reloads its
    append-only file), waiting longer after each failure; after
    ``MAX_RESTARTS`` failures in a row ``failure`` says why and ``on_failure``
    is called (the engine stops, non-zero).
    """

    MAX_RESTARTS = 5
    # A server that stayed up this long before it died starts a new count of failures.
    STABLE_SECONDS = 30.0

    def __init__(
        self,
        data_dir: Path,
        binary: str | None = None,
        startup_timeout: float = 15.0,
        persistent: bool = True,
        supervise: bool = False,
        on_failure: Callable[[str], None] | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.redis_dir = self.data_dir / "redis"
        self.binary = binary
        self.startup_timeout = startup_timeout
        # Benchmarks measure Redis's own limit, without disk writes.
        self.persistent = persistent
        self.supervise = supervise
        self.on_failure = on_failure
        self.server: ServerVersion | None = None
        self.failure: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._command: list[str] = []
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._short_socket_dir: str | None = None
        self.socket_path = self._choose_socket_path()
        self.log_path = self.redis_dir / "redis.log"

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
        binary = find_server_binary(self.binary)
        self.server = binary_version(binary)
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            check_data_dir(self.redis_dir, self.server)
        except BaseException:
            self._release_lock()
            raise
        options = {
            "port": "0",
            "unixsocket": str(self.socket_path),
            "unixsocketperm": "700",
            "dir": str(self.redis_dir.resolve()),
            "appendonly": "yes" if self.persistent else "no",
            "appendfilename": "engine.aof",
            "save": "",
            "daemonize": "no",
            "logfile": str(self.log_path.resolve()),
        }
        self._command = [binary]
        for name, value in options.items():
            self._command += [f"--{name}", value]
        log.info("starting the embedded %s (%s) on %s", self.server, binary, self.socket_path)
        try:
            self._spawn()
        except BaseException:
            self.stop()
            raise
        record_data_dir(self.redis_dir, self.server)
        if self.supervise:
            self._watcher = threading.Thread(target=self._watch, name="embedded-redis", daemon=True)
            self._watcher.start()
        return self

    def _spawn(self) -> None:
        """Run the server and wait until it answers PING."""
        try:
            self.process = subprocess.Popen(
                self._command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_own_group_dying_with_parent,
                close_fds=True,
            )
        except OSError as error:
            raise EmbeddedRedisError(f"cannot run {self._command[0]}: {error}") from None
        self._wait_until_ready()

    def _watch(self) -> None:
        """Restart the server whenever it dies without being asked to stop."""
        failures = 0
        while True:
            process = self.process
            if process is None:
                return
            started = time.monotonic()
            code = process.wait()  # reaps it: no zombie
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= self.STABLE_SECONDS:
                failures = 0
            log.error("the embedded %s exited (code %s): %s", self.server, code, _tail(self.log_path))
            waits = Backoff(first=0.2, most=5.0).waits()
            while True:
                failures += 1
                if failures > self.MAX_RESTARTS:
                    self._give_up(f"the embedded {self.server} failed {self.MAX_RESTARTS} times in a row")
                    return
                if self._stopping.wait(next(waits)):
                    return
                try:
                    self._spawn()
                except EmbeddedRedisError as error:
                    log.error("restarting the embedded %s failed: %s", self.server, error)
                    continue
                log.warning("the embedded %s is running again (its append-only file reloaded)", self.server)
                break

    def _give_up(self, reason: str) -> None:
        self.failure = f"{reason}; see {self.log_path}"
        log.critical("%s: stopping the engine", self.failure)
        if self.on_failure is not None:
            self.on_failure(self.failure)

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

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with code {self.process.returncode}: {_tail(self.log_path)}"
                )
            if self._answers_ping():
                return
            time.sleep(0.02)
        raise EmbeddedRedisError(
            f"redis-server did not answer within {self.startup_timeout:.0f} s: {_tail(self.log_path)}"
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
        self._stopping.set()
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
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout)
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
