"""The ingest link: one pipelined RedisPipe per process, reconnected with backoff."""

from __future__ import annotations

from engine._core import RedisPipe
from engine.redis.link import RedisAddress, RedisLink

__all__ = ["IngestLink", "RedisAddress"]


class IngestLink(RedisLink[RedisPipe]):
    """Holds ``pipe`` while Redis is connected (None otherwise) and reconnects it."""

    role = "ingest"

    def __init__(self, url: str, first_delay: float = 0.1, max_delay: float = 5.0):
        self.pipe: RedisPipe | None = None  # read per frame by PushSession: a plain attribute
        super().__init__(url, first_delay, max_delay)

    def _protocol(self) -> RedisPipe:
        return RedisPipe()

    def _hold(self, connection: RedisPipe | None) -> None:
        self.connection = self.pipe = connection
