"""Giving memory back after a crowd of sockets left: glibc keeps the heap pages
it freed, so RSS stayed where the peak was; malloc_trim(0) returns them."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import sys
from collections.abc import Callable

from engine._core import Counters

log = logging.getLogger("engine")

CHECK_SECONDS = 5.0
# Sockets that closed since the last peak before a trim is worth its few milliseconds.
TRIM_AFTER_CLOSED = 200
# Checks that trim once sockets left: what they followed lingers a few seconds
# longer (engine/ws/hub.py LINGER_SECONDS) before it is freed.
TRIMS_AFTER_CLOSING = 3

_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


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

    def __init__(
        self, counters: Counters, seconds: float = CHECK_SECONDS, forget: Callable[[], object] = lambda: None
    ):
        """``forget`` drops what only the sockets that left needed, before a trim."""
        self.counters = counters
        self.seconds = seconds
        self.forget = forget
        self._task: asyncio.Task[None] | None = None
        self._trims_left = 0

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
                gc.collect()
                await asyncio.get_running_loop().run_in_executor(None, trim)
