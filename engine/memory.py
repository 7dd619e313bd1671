"""Giving memory back after a crowd of sockets left: glibc keeps the heap pages
it freed, so RSS stayed where the peak was; malloc_trim(0) returns them. Dicts
and sets never shrink as entries go, so the tables a crowd grew are compacted
first (engine.allocator says why the engine runs on glibc's malloc)."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import sys
from collections.abc import Callable
from typing import Any

from engine._core import Counters

log = logging.getLogger("engine")

CHECK_SECONDS = 5.0
# Sockets that closed since the last peak before a trim is worth its few milliseconds.
TRIM_AFTER_CLOSED = 200
# Checks that trim once sockets left: what they followed lingers a few seconds
# longer (engine/ws/hub.py LINGER_SECONDS) before it is freed.
TRIMS_AFTER_CLOSING = 3

_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


def compact(table: dict[Any, Any] | set[Any]) -> None:
    """Shrink ``table`` to what it holds, in place, so whatever refers to it keeps
    it: a dict or set that once held 9,000 sockets' entries keeps a table of that
    size (about 300 KB) after they are gone, however few it holds now."""
    contents = list(table.items()) if isinstance(table, dict) else list(table)
    table.clear()
    table.update(contents)


def trim() -> bool:
    """Return freed heap pages to the system; whether any were (False off glibc)."""
    if _LIBC is None or not hasattr(_LIBC, "malloc_trim"):
        return False
    return bool(_LIBC.malloc_trim(0))


class MemoryTrimmer:
    """Watches the open sockets; after TRIM_AFTER_CLOSED of them closed since the
    peak (Counters.sockets_peak, kept by the sessions), trims on the next
    TRIMS_AFTER_CLOSING checks (in a thread: it
    locks each malloc arena in turn)."""

    def __init__(self, counters: Counters, seconds: float = CHECK_SECONDS):
        self.counters = counters
        self.seconds = seconds
        # Drops what only the sockets that left needed, before a trim (the runtime's).
        self.forget: Callable[[], object] = lambda: None
        self._task: asyncio.Task[None] | None = None
        self._trims_left = 0
        self._tables: dict[int, dict[Any, Any] | set[Any]] = {}

    def watch(self, table: dict[Any, Any] | set[Any]) -> None:
        """Compact ``table``, which lives as long as the process, before each trim."""
        self._tables[id(table)] = table

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.seconds)
            open_now = self.counters.push_sockets + self.counters.pull_sockets
            if self.counters.sockets_peak - open_now >= TRIM_AFTER_CLOSED:
                self.counters.sockets_peak = open_now
                self._trims_left = TRIMS_AFTER_CLOSING
            if self._trims_left:
                self._trims_left -= 1
                # Closed connections wait in reference cycles (protocol and transport
                # refer to each other) until a full collection frees them.
                self.forget()
                for table in self._tables.values():
                    compact(table)
                gc.collect()
                await asyncio.get_running_loop().run_in_executor(None, trim)
