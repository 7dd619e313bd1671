"""The read link: one StreamReader per process for GET /data and pull sockets
catching up, reconnected with backoff (pull feeds open their own)."""

from __future__ import annotations

from engine._core import StreamReader
from engine.redis.link import RedisLink


class ReadLink(RedisLink[StreamReader]):
    """Holds ``reader`` while Redis is connected (None otherwise) and reconnects it."""

    role = "read"

    def __init__(self, url: str, first_delay: float = 0.1, max_delay: float = 5.0):
        self.reader: StreamReader | None = None  # read by PullSession: a plain attribute
        super().__init__(url, first_delay, max_delay)

    def _protocol(self) -> StreamReader:
        return StreamReader()

    def _hold(self, connection: StreamReader | None) -> None:
        self.connection = self.reader = connection
