"""What one engine process holds while it serves: connections, catalog, token signer."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from engine.auth import TokenSigner, load_or_create_secret
from engine.config import Config
from engine.maxlen import MaxLenCache
from engine.redis.connect import control_client
from engine.redis.ingest import IngestLink
from engine.redis.reads import ReadLink
from engine.store import StreamCatalog
from engine.users import UsersFile, dev_login_ok
from engine.ws.hub import PullHub


@dataclass
class Runtime:
    """Per-process state. Nothing here is needed by another process: any engine
    process (or host) in front of the same Redis serves any request."""

    config: Config
    redis_url: str
    redis: Redis
    catalog: StreamCatalog
    signer: TokenSigner
    users: UsersFile
    ingest: IngestLink
    maxlens: MaxLenCache
    reads: ReadLink
    pulls: PullHub

    @classmethod
    async def open(cls, config: Config, redis_url: str) -> Runtime:
        redis = control_client(redis_url)
        secret = config.secret or load_or_create_secret(config.data_dir)
        ingest = IngestLink(redis_url)
        await ingest.connect()
        reads = ReadLink(redis_url)
        await reads.connect()
        maxlens = MaxLenCache(redis, config.max_len)
        maxlens.start()
        return cls(
            config=config,
            redis_url=redis_url,
            redis=redis,
            catalog=StreamCatalog(redis),
            signer=TokenSigner(secret, config.token_lifetime),
            users=UsersFile(config.data_dir),
            ingest=ingest,
            maxlens=maxlens,
            reads=reads,
            pulls=PullHub(redis_url),
        )

    def login_ok(self, user: str, password: str) -> bool:
        if self.config.auth == "dev":
            return dev_login_ok(user, password)
        return self.users.check(user, password)

    async def close(self) -> None:
        await self.maxlens.stop()
        await self.pulls.close()
        await self.reads.close()
        await self.ingest.close()
        await self.redis.aclose()
