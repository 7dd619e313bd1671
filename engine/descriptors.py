"""File descriptors: every socket is one, and a process may hold only so many
(``ulimit -n``). At the limit uvloop refuses new connections without a word
(libuv accepts and closes them) while open sockets go on: this says so, once,
with what to raise, and once more when there is room again."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource

log = logging.getLogger("engine")

CHECK_SECONDS = 2.0
FULL = 0.95  # of the limit: new connections are being refused, or soon will be
ROOM_AGAIN = 0.8


def open_descriptors(limit: int) -> int:
    """How many this process holds (``limit`` when none is left even to count them)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError as error:
        if error.errno in (errno.EMFILE, errno.ENFILE):
            return limit
        raise


class DescriptorWatch:
    def __init__(self, seconds: float = CHECK_SECONDS):
        self.seconds = seconds
        self.limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.full = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.limit != resource.RLIM_INFINITY and os.path.isdir("/proc/self/fd"):
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.seconds)
            self.check(open_descriptors(self.limit))

    def check(self, used: int) -> None:
        if not self.full and used >= FULL * self.limit:
            self.full = True
            log.warning(
                "%d of %d file descriptors in use: new connections are refused while open "
                "ones go on; raise the limit (ulimit -n, LimitNOFILE=) and Redis' maxclients",
                used,
                self.limit,
            )
        elif self.full and used < ROOM_AGAIN * self.limit:
            self.full = False
            log.info("%d of %d file descriptors in use: accepting connections again", used, self.limit)
